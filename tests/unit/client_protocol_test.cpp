// SPDX-License-Identifier: LGPL-2.1-or-later
// The client's half of wire protocol v1 on its own: requests it writes and how it
// reads replies, including every way a reply can be wrong.
#include "client_protocol.hpp"

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using fdbroker::BrokerError;
using nlohmann::json;
namespace detail = fdbroker::detail;

namespace {

// The errno a call throws as std::system_error, or 0 if it does not throw one.
template <class F>
int thrown_errno(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code().value();
  }
  return 0;
}

}  // namespace

TEST(ClientProtocol, NameRequestCarriesOpIdNameAndWait) {
  json r = json::parse(detail::name_request("take", 7, "web/http", 250));
  EXPECT_EQ(r, (json{{"op", "take"}, {"id", 7}, {"name", "web/http"}, {"wait_ms", 250}}));
  json plain = json::parse(detail::name_request("delete", 8, "x"));
  EXPECT_FALSE(plain.contains("wait_ms"));
}

TEST(ClientProtocol, PutRequestCarriesEveryOption) {
  fdbroker::PutOptions options;
  options.meta_json = R"({"port": 80, "tags": ["a"]})";
  options.ttl_ms = 1500;
  options.replace = true;
  options.expect_generation = 0;
  json r = json::parse(detail::put_request(3, "db", options));
  EXPECT_EQ(r["op"], "put");
  EXPECT_EQ(r["meta"], (json{{"port", 80}, {"tags", {"a"}}}));
  EXPECT_EQ(r["ttl_ms"], 1500);
  EXPECT_EQ(r["replace"], true);
  EXPECT_EQ(r["expect_generation"], 0);
}

TEST(ClientProtocol, PutRequestOmitsUnsetOptions) {
  json r = json::parse(detail::put_request(3, "db", {}));
  EXPECT_EQ(r, (json{{"op", "put"}, {"id", 3}, {"name", "db"}}));
}

TEST(ClientProtocol, PutRejectsMetaThatIsNotAnObject) {
  fdbroker::PutOptions options;
  for (const char* bad : {"[1]", "42", "{", "\"text\""}) {
    options.meta_json = bad;
    EXPECT_THROW(detail::put_request(1, "db", options), std::invalid_argument) << bad;
  }
}

TEST(ClientProtocol, ListRequestPassesCursorBack) {
  json r = json::parse(detail::list_request(4, "web/", 10, std::string("abc")));
  EXPECT_EQ(
      r, (json{{"op", "list"}, {"id", 4}, {"prefix", "web/"}, {"limit", 10}, {"cursor", "abc"}}));
}

TEST(ClientProtocol, ErrorReplyThrowsBrokerErrorWithTheNamedErrno) {
  try {
    detail::parse_entry_reply(
        R"({"id":5,"ok":false,"error":"EACCES","message":"uid 65534 may not get 'db'"})", 5);
    FAIL() << "no exception";
  } catch (const BrokerError& e) {
    EXPECT_EQ(e.code().value(), EACCES);
    EXPECT_EQ(e.error_name(), "EACCES");
    EXPECT_EQ(e.message(), "uid 65534 may not get 'db'");
  }
}

TEST(ClientProtocol, UnknownErrnoNameSurfacesAsEprotoWithTheName) {
  try {
    detail::parse_empty_reply(R"({"id":1,"ok":false,"error":"EWEIRD","message":"m"})", 1);
    FAIL() << "no exception";
  } catch (const BrokerError& e) {
    EXPECT_EQ(e.code().value(), EPROTO);
    EXPECT_EQ(e.error_name(), "EWEIRD");
    EXPECT_NE(std::string(e.what()).find("EWEIRD"), std::string::npos);
  }
}

TEST(ClientProtocol, MalformedRepliesAreEproto) {
  for (const char* bad :
       {"not json", "[1,2]", R"({"id":1})", R"({"id":2,"ok":true,"server":"x","protocol":1})",
        R"({"id":1,"ok":"yes"})", R"({"id":1,"ok":false,"message":"no error name"})",
        R"({"id":1,"ok":true,"protocol":"one"})"}) {
    EXPECT_EQ(thrown_errno([&] { detail::parse_hello_reply(bad, 1); }), EPROTO) << bad;
  }
}

TEST(ClientProtocol, HelloReplyParsesThePeersUnitAndCgroup) {
  auto hello = detail::parse_hello_reply(
      R"({"id":1,"ok":true,"server":"fdbrokerd","protocol":1,"peer":{"uid":33,"gid":33,
          "pid":42,"unit":"nginx.service","cgroup":"/system.slice/nginx.service"}})",
      1);
  EXPECT_EQ(hello.peer.pid, 42);
  EXPECT_EQ(hello.peer.unit, "nginx.service");
  EXPECT_EQ(hello.peer.cgroup, "/system.slice/nginx.service");
  // null: in no unit, or the broker had no pidfd.
  hello = detail::parse_hello_reply(
      R"({"id":1,"ok":true,"protocol":1,"peer":{"uid":0,"gid":0,"pid":1,"unit":null,"cgroup":""}})",
      1);
  EXPECT_EQ(hello.peer.unit, std::nullopt);
  EXPECT_EQ(hello.peer.cgroup, "");
  // A broker older than the fields.
  hello = detail::parse_hello_reply(
      R"({"id":1,"ok":true,"protocol":1,"peer":{"uid":0,"gid":0,"pid":1}})", 1);
  EXPECT_EQ(hello.peer.unit, std::nullopt);
  EXPECT_EQ(hello.peer.cgroup, "");
  for (const char* bad :
       {R"({"id":1,"ok":true,"protocol":1,"peer":{"uid":0,"gid":0,"pid":1,"unit":7}})",
        R"({"id":1,"ok":true,"protocol":1,"peer":{"uid":0,"gid":0,"pid":1,"cgroup":[]}})"}) {
    EXPECT_EQ(thrown_errno([&] { detail::parse_hello_reply(bad, 1); }), EPROTO) << bad;
  }
}

TEST(ClientProtocol, EntryReplyParsesDescriptionsOwnerAndExpiry) {
  auto entry = detail::parse_entry_reply(R"({"id":9,"ok":true,"name":"web","generation":12,
      "meta":{"role":"http"},"owner":{"uid":1000},"expires_ms":900,
      "fds":[{"kind":"socket","family":"inet","type":"stream","listening":true,
              "local":"127.0.0.1:80"},
             {"kind":"file","path":"/etc/hostname","access":"r"},
             {"kind":"socket","family":38,"type":"raw","listening":false,"local":""}]})",
                                         9);
  EXPECT_EQ(entry.name, "web");
  EXPECT_EQ(entry.generation, 12u);
  EXPECT_EQ(json::parse(entry.meta_json), (json{{"role", "http"}}));
  EXPECT_EQ(entry.owner_uid, 1000u);
  EXPECT_FALSE(entry.is_static);
  EXPECT_EQ(entry.expires_ms, 900);
  ASSERT_EQ(entry.fd_descriptions.size(), 3u);
  EXPECT_EQ(entry.fd_descriptions[0].kind, "socket");
  EXPECT_TRUE(entry.fd_descriptions[0].listening);
  EXPECT_EQ(entry.fd_descriptions[0].local, "127.0.0.1:80");
  EXPECT_EQ(entry.fd_descriptions[1].path, "/etc/hostname");
  EXPECT_EQ(entry.fd_descriptions[1].access, "r");
  EXPECT_EQ(entry.fd_descriptions[2].family, "38");
  json body = json::parse(entry.json);
  EXPECT_FALSE(body.contains("id"));
  EXPECT_FALSE(body.contains("ok"));
  EXPECT_EQ(body["generation"], 12);
}

TEST(ClientProtocol, StaticFlagIsReadAtTopLevelOrInOwner) {
  auto top = detail::parse_entry_reply(
      R"({"id":1,"ok":true,"name":"a","generation":1,"owner":{"uid":0},"static":true,"fds":[]})",
      1);
  auto nested = detail::parse_entry_reply(
      R"({"id":1,"ok":true,"name":"a","generation":1,"owner":{"uid":0,"static":true},"fds":[]})",
      1);
  EXPECT_TRUE(top.is_static);
  EXPECT_TRUE(nested.is_static);
}

TEST(ClientProtocol, ListReplyKeepsCursorOnlyWhileMoreRemain) {
  auto more = detail::parse_list_reply(
      R"({"id":2,"ok":true,"entries":[)"
      R"({"name":"a","generation":1,"meta":{},"owner":{"uid":0},"fds":[]}],"cursor":"a"})",
      2);
  ASSERT_EQ(more.entries.size(), 1u);
  EXPECT_EQ(more.cursor, "a");
  auto last = detail::parse_list_reply(R"({"id":3,"ok":true,"entries":[]})", 3);
  EXPECT_FALSE(last.cursor.has_value());
}

TEST(ClientProtocol, PutReplyReturnsGeneration) {
  EXPECT_EQ(detail::parse_put_reply(R"({"id":1,"ok":true,"name":"a","generation":41})", 1), 41u);
  EXPECT_EQ(thrown_errno([] { detail::parse_put_reply(R"({"id":1,"ok":true,"name":"a"})", 1); }),
            EPROTO);
}

TEST(ClientProtocol, StatsReplyParsesCountersByOpAndOutcome) {
  auto stats =
      detail::parse_stats_reply(R"({"id":1,"ok":true,"uptime_ms":5,"entries":2,"fds_held":3,
      "fds_limit":100,"connections":{"current":1,"total":4,"dropped":0},
      "requests":{"get":{"ok":7,"ENOENT":2},"put":{"ok":1}}})",
                                1);
  EXPECT_EQ(stats.entries, 2);
  EXPECT_EQ(stats.fds_held, 3);
  EXPECT_EQ(stats.connections_total, 4);
  EXPECT_EQ(stats.requests.at("get").at("ok"), 7);
  EXPECT_EQ(stats.requests.at("get").at("ENOENT"), 2);
  EXPECT_EQ(stats.requests.at("put").at("ok"), 1);
  EXPECT_EQ(thrown_errno(
                [] { detail::parse_stats_reply(R"({"id":1,"ok":true,"requests":{"get":3}})", 1); }),
            EPROTO);
}

TEST(ClientProtocol, UpgradeRequestNamesTheBinaryOnlyIfGiven) {
  EXPECT_EQ(json::parse(detail::upgrade_request(3, "")), (json{{"op", "upgrade"}, {"id", 3}}));
  EXPECT_EQ(json::parse(detail::upgrade_request(4, "/usr/sbin/fdbrokerd")),
            (json{{"op", "upgrade"}, {"id", 4}, {"binary", "/usr/sbin/fdbrokerd"}}));
}

TEST(ClientProtocol, UpgradeReplyReturnsTheNewPidOrEproto) {
  EXPECT_EQ(detail::parse_upgrade_reply(R"({"id":5,"ok":true,"pid":4242})", 5), 4242);
  EXPECT_EQ(thrown_errno([] { detail::parse_upgrade_reply(R"({"id":5,"ok":true})", 5); }), EPROTO);
  EXPECT_EQ(thrown_errno([] { detail::parse_upgrade_reply(R"({"id":5,"ok":true,"pid":"1"})", 5); }),
            EPROTO);
  EXPECT_EQ(thrown_errno(
                [] { detail::parse_upgrade_reply(R"({"id":5,"ok":false,"error":"EBUSY"})", 5); }),
            EBUSY);
}

TEST(ClientProtocol, OpenRequestNamesAccessModeFirstThenModifiers) {
  fdbroker::OpenFlags flags;
  flags.access = fdbroker::OpenAccess::read_write;
  flags.create = true;
  flags.excl = true;
  flags.append = true;
  flags.trunc = true;
  flags.nonblock = true;
  json r = json::parse(detail::open_request(6, "/srv/a b", flags, 0640));
  EXPECT_EQ(r, (json{{"op", "open"},
                     {"id", 6},
                     {"path", "/srv/a b"},
                     {"flags", {"rdwr", "append", "create", "excl", "trunc", "nonblock"}},
                     {"mode", "0640"}}));
}

TEST(ClientProtocol, OpenRequestDefaultsToReadOnlyWithoutMode) {
  json r = json::parse(detail::open_request(1, "/etc/hostname", {}, std::nullopt));
  EXPECT_EQ(r, (json{{"op", "open"}, {"id", 1}, {"path", "/etc/hostname"}, {"flags", {"rdonly"}}}));
  fdbroker::OpenFlags write;
  write.access = fdbroker::OpenAccess::write;
  EXPECT_EQ(json::parse(detail::open_request(2, "/x", write, 0))["flags"], json{"wronly"});
  EXPECT_EQ(json::parse(detail::open_request(2, "/x", write, 0))["mode"], "0000");
  EXPECT_EQ(json::parse(detail::open_request(2, "/x", write, 0777))["mode"], "0777");
}

TEST(ClientProtocol, OpenRequestRefusesAModeAbove0777BeforeSending) {
  EXPECT_THROW(detail::open_request(1, "/x", {}, 01000), std::invalid_argument);
  EXPECT_THROW(detail::open_request(1, "/x", {}, 04755), std::invalid_argument);
}

TEST(ClientProtocol, OpenFlagsFromPosixMapEveryBitOrRefuse) {
  auto f = fdbroker::open_flags_from_posix(O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC);
  EXPECT_EQ(f.access, fdbroker::OpenAccess::write);
  EXPECT_TRUE(f.create);
  EXPECT_TRUE(f.excl);
  EXPECT_FALSE(f.trunc || f.append || f.nonblock);
  auto g = fdbroker::open_flags_from_posix(O_RDWR | O_APPEND | O_TRUNC | O_NONBLOCK | O_NOCTTY |
                                           O_NOFOLLOW);
  EXPECT_EQ(fdbroker::open_flag_names(g),
            (std::vector<std::string>{"rdwr", "append", "trunc", "nonblock"}));
  EXPECT_EQ(fdbroker::open_flags_from_posix(O_RDONLY).access, fdbroker::OpenAccess::read);
  for (int bad : {O_ACCMODE, O_RDONLY | O_DIRECTORY, O_PATH, O_RDWR | O_TMPFILE,
                  O_RDONLY | O_DIRECT, O_RDONLY | O_ASYNC, O_WRONLY | O_SYNC, O_RDONLY | O_NOATIME,
                  // open(2) takes these; the broker would answer EINVAL.
                  O_RDONLY | O_APPEND, O_RDONLY | O_TRUNC, O_WRONLY | O_EXCL}) {
    EXPECT_THROW(fdbroker::open_flags_from_posix(bad), std::invalid_argument) << bad;
  }
}

TEST(ClientProtocol, BindRequestCarriesBacklogAndReuseportOnlyIfSet) {
  EXPECT_EQ(json::parse(detail::bind_request(3, "tcp://[::]:443", {})),
            (json{{"op", "bind"}, {"id", 3}, {"address", "tcp://[::]:443"}}));
  fdbroker::BrokerBindOptions options;
  options.backlog = 64;
  options.reuseport = true;
  EXPECT_EQ(json::parse(detail::bind_request(4, "udp://127.0.0.1:53", options)),
            (json{{"op", "bind"},
                  {"id", 4},
                  {"address", "udp://127.0.0.1:53"},
                  {"backlog", 64},
                  {"reuseport", true}}));
  options.backlog = -1;
  EXPECT_THROW(detail::bind_request(5, "tcp://127.0.0.1:1", options), std::invalid_argument);
}

TEST(ClientProtocol, OpenReplyParsesPathRuleCreatedAndTheOneDescription) {
  auto opened = detail::parse_open_reply(
      R"({"id":7,"ok":true,"path":"/srv/spool/j.tmp","rule":"spool","created":true,)"
      R"("fds":[{"kind":"file","path":"/srv/spool/j.tmp","access":"w"}]})",
      7);
  EXPECT_EQ(opened.path, "/srv/spool/j.tmp");
  EXPECT_EQ(opened.rule, "spool");
  EXPECT_TRUE(opened.created);
  EXPECT_EQ(opened.description.kind, "file");
  EXPECT_EQ(opened.description.access, "w");
  EXPECT_FALSE(opened.fd.valid());  // attached by Client::open, not by the parser
  json body = json::parse(opened.json);
  EXPECT_FALSE(body.contains("id"));
  EXPECT_EQ(body["rule"], "spool");
}

TEST(ClientProtocol, OpenReplyWithoutExactlyOneDescriptionOrRuleIsEproto) {
  for (
      const char* bad :
      {R"({"id":1,"ok":true,"path":"/a","rule":"r","created":false,"fds":[]})",
       R"({"id":1,"ok":true,"path":"/a","rule":"r","created":false,"fds":[{"kind":"file"},{"kind":"file"}]})",
       R"({"id":1,"ok":true,"path":"/a","rule":"r","created":false})",
       R"({"id":1,"ok":true,"path":"/a","created":false,"fds":[{"kind":"file"}]})",
       R"({"id":1,"ok":true,"path":"/a","rule":"r","created":"yes","fds":[{"kind":"file"}]})",
       R"({"id":1,"ok":true,"path":"/a","rule":"r","fds":["file"]})"}) {
    EXPECT_EQ(thrown_errno([&] { detail::parse_open_reply(bad, 1); }), EPROTO) << bad;
  }
}

TEST(ClientProtocol, OpenRefusalsCarryTheBrokersErrno) {
  for (const auto& [name, err] :
       std::vector<std::pair<std::string, int>>{{"EACCES", EACCES},
                                                {"ELOOP", ELOOP},
                                                {"EXDEV", EXDEV},
                                                {"EOPNOTSUPP", EOPNOTSUPP},
                                                {"EEXIST", EEXIST}}) {
    std::string reply = R"({"id":2,"ok":false,"error":")" + name + R"(","message":"m"})";
    EXPECT_EQ(thrown_errno([&] { detail::parse_open_reply(reply, 2); }), err) << name;
  }
}

TEST(ClientProtocol, BindReplyParsesAddressRuleAndDescription) {
  auto bound = detail::parse_bind_reply(
      R"({"id":8,"ok":true,"address":"tcp://127.0.0.1:844","rule":"https",)"
      R"("fds":[{"kind":"socket","family":"inet","type":"stream","listening":true,)"
      R"("local":"127.0.0.1:844"}]})",
      8, "tcp://localhost:844");
  EXPECT_EQ(bound.address, "tcp://127.0.0.1:844");
  EXPECT_EQ(bound.rule, "https");
  EXPECT_TRUE(bound.description.listening);
  EXPECT_EQ(bound.description.local, "127.0.0.1:844");
  auto without_address = detail::parse_bind_reply(
      R"({"id":9,"ok":true,"rule":"r","fds":[{"kind":"socket"}]})", 9, "udp://[::1]:53");
  EXPECT_EQ(without_address.address, "udp://[::1]:53");
  EXPECT_EQ(thrown_errno([] {
              detail::parse_bind_reply(R"({"id":1,"ok":true,"rule":"r","fds":[]})", 1, "tcp://x:1");
            }),
            EPROTO);
  EXPECT_EQ(thrown_errno([] {
              detail::parse_bind_reply(R"({"id":1,"ok":false,"error":"EADDRINUSE"})", 1,
                                       "tcp://127.0.0.1:1");
            }),
            EADDRINUSE);
}
