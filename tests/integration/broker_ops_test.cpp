// SPDX-License-Identifier: LGPL-2.1-or-later
// Every operation of protocol v1 against a real fdbrokerd, over raw messages.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>

#include <set>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

unique_fd tcp_listener() {
  unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(s.get(), 4), 0);
  return s;
}

std::uint16_t port_of(int sock) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

}  // namespace

TEST(BrokerOps, HelloReportsThePeerAsTheKernelSeesIt) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto r = call(c.get(), {{"op", "hello"}, {"id", 1}});
  ASSERT_TRUE(r.ok()) << r.raw;
  EXPECT_EQ(r.body["id"], 1);
  EXPECT_EQ(r.body["server"], "fdbrokerd");
  EXPECT_EQ(r.body["protocol"], 1);
  EXPECT_EQ(r.body["peer"]["pid"], ::getpid());
  EXPECT_EQ(r.body["peer"]["uid"], ::getuid());
  EXPECT_EQ(r.body["peer"]["gid"], ::getgid());
}

TEST(BrokerOps, PutThenGetHandsOutTheSameOpenFileDescription) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  {
    auto c = broker.connect();
    auto p = pipe_pair();
    auto put = call(c.get(), {{"op", "put"}, {"name", "db/pipe"}, {"meta", {{"role", "primary"}}}},
                    {p.write.get()});
    ASSERT_TRUE(put.ok()) << put.raw;
    EXPECT_GE(put.body["generation"].get<std::uint64_t>(), 1u);
    p.write.reset();
    EXPECT_TRUE(write_end_open(p.read.get()));  // the broker holds a copy

    auto get = call(c.get(), {{"op", "get"}, {"name", "db/pipe"}});
    ASSERT_TRUE(get.ok()) << get.raw;
    ASSERT_EQ(get.fds.size(), 1u);
    EXPECT_EQ(get.body["name"], "db/pipe");
    EXPECT_EQ(get.body["generation"], put.body["generation"]);
    EXPECT_EQ(get.body["meta"]["role"], "primary");
    EXPECT_EQ(get.body["owner"]["uid"], ::getuid());
    EXPECT_EQ(get.body["fds"][0]["kind"], "pipe");
    EXPECT_EQ(get.body["fds"][0]["access"], "w");
    ASSERT_EQ(::write(get.fds[0].get(), "x", 1), 1);
    char byte = 0;
    ASSERT_EQ(::read(p.read.get(), &byte, 1), 1);
    EXPECT_EQ(byte, 'x');

    auto del = call(c.get(), {{"op", "delete"}, {"name", "db/pipe"}});
    ASSERT_TRUE(del.ok()) << del.raw;
    get.fds.clear();
    EXPECT_TRUE(reaches_eof(p.read.get()));  // the broker closed its copy on delete
  }
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerOps, GetDescribesEachKindOfDescriptor) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto listener = tcp_listener();
  unique_fd file(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
  unique_fd memfd(::memfd_create("state", MFD_CLOEXEC));
  unique_fd dir(::open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto p = pipe_pair();
  auto put = call(c.get(), {{"op", "put"}, {"name", "kinds"}},
                  {listener.get(), file.get(), memfd.get(), dir.get(), p.read.get(), c.get()});
  ASSERT_TRUE(put.ok()) << put.raw;
  auto get = call(c.get(), {{"op", "get"}, {"name", "kinds"}});
  ASSERT_TRUE(get.ok()) << get.raw;
  ASSERT_EQ(get.fds.size(), 6u);
  const json& fds = get.body["fds"];
  expect_fields(fds[0], {{"kind", "socket"},
                         {"family", "inet"},
                         {"type", "stream"},
                         {"listening", true},
                         {"local", "127.0.0.1:" + std::to_string(port_of(listener.get()))}});
  expect_fields(fds[1], {{"kind", "file"}, {"path", "/etc/hostname"}, {"access", "r"}});
  expect_fields(fds[2], {{"kind", "memfd"}, {"name", "state"}});
  expect_fields(fds[3], {{"kind", "directory"}, {"path", "/tmp"}});
  expect_fields(fds[4], {{"kind", "pipe"}, {"access", "r"}});
  expect_fields(
      fds[5],
      {{"kind", "socket"}, {"family", "unix"}, {"type", "seqpacket"}, {"listening", false}});
  EXPECT_TRUE(same_file(get.fds[0].get(), listener.get()));
  EXPECT_TRUE(same_file(get.fds[2].get(), memfd.get()));
}

TEST(BrokerOps, PutOfAnExistingNameIsEexistUnlessReplace) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto p = pipe_pair();
  auto first = call(c.get(), {{"op", "put"}, {"name", "x"}}, {p.write.get()});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(call(c.get(), {{"op", "put"}, {"name", "x"}}, {p.read.get()}).error(), "EEXIST");
  auto second = call(c.get(), {{"op", "put"}, {"name", "x"}, {"replace", true}}, {p.read.get()});
  ASSERT_TRUE(second.ok()) << second.raw;
  EXPECT_GT(second.body["generation"].get<std::uint64_t>(),
            first.body["generation"].get<std::uint64_t>());
  // The replaced fds were closed: only our write end keeps the pipe writable.
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
}

TEST(BrokerOps, ExpectGenerationIsACompareAndSwap) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto p = pipe_pair();
  EXPECT_EQ(
      call(c.get(), {{"op", "put"}, {"name", "cas"}, {"expect_generation", 5}}, {p.write.get()})
          .error(),
      "ESTALE");
  auto created =
      call(c.get(), {{"op", "put"}, {"name", "cas"}, {"expect_generation", 0}}, {p.write.get()});
  ASSERT_TRUE(created.ok()) << created.raw;
  auto gen = created.body["generation"].get<std::uint64_t>();
  EXPECT_EQ(
      call(c.get(), {{"op", "put"}, {"name", "cas"}, {"expect_generation", 0}}, {p.write.get()})
          .error(),
      "ESTALE");
  EXPECT_EQ(call(c.get(), {{"op", "put"}, {"name", "cas"}, {"expect_generation", gen + 1}},
                 {p.write.get()})
                .error(),
            "ESTALE");
  auto swapped =
      call(c.get(), {{"op", "put"}, {"name", "cas"}, {"expect_generation", gen}}, {p.read.get()});
  ASSERT_TRUE(swapped.ok()) << swapped.raw;
  EXPECT_GT(swapped.body["generation"].get<std::uint64_t>(), gen);
  // Generations keep growing across delete and put of the same name.
  ASSERT_TRUE(call(c.get(), {{"op", "delete"}, {"name", "cas"}}).ok());
  auto again = call(c.get(), {{"op", "put"}, {"name", "cas"}}, {p.read.get()});
  EXPECT_GT(again.body["generation"].get<std::uint64_t>(),
            swapped.body["generation"].get<std::uint64_t>());
}

TEST(BrokerOps, TakeRemovesTheEntryAndHandsOverItsFds) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  {
    auto c = broker.connect();
    auto p = pipe_pair();
    ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "t"}}, {p.write.get()}).ok());
    p.write.reset();
    auto taken = call(c.get(), {{"op", "take"}, {"name", "t"}, {"id", "tk"}});
    ASSERT_TRUE(taken.ok()) << taken.raw;
    EXPECT_EQ(taken.body["id"], "tk");
    ASSERT_EQ(taken.fds.size(), 1u);
    EXPECT_EQ(call(c.get(), {{"op", "get"}, {"name", "t"}}).error(), "ENOENT");
    EXPECT_EQ(call(c.get(), {{"op", "take"}, {"name", "t"}}).error(), "ENOENT");
    taken.fds.clear();
    EXPECT_TRUE(reaches_eof(p.read.get()));  // the broker kept no copy
  }
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerOps, DeleteOfAMissingEntryIsEnoent) {
  BrokerProcess broker;
  auto c = broker.connect();
  EXPECT_EQ(call(c.get(), {{"op", "delete"}, {"name", "nothing"}}).error(), "ENOENT");
  EXPECT_EQ(call(c.get(), {{"op", "get"}, {"name", "nothing"}}).error(), "ENOENT");
}

TEST(BrokerOps, ListPaginatesWithPrefixLimitAndCursor) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto p = pipe_pair();
  std::set<std::string> expected;
  for (int i = 0; i < 23; ++i) {
    std::string name = "svc/" + std::to_string(100 + i);
    ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", name}}, {p.write.get()}).ok());
    expected.insert(name);
  }
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "other"}}, {p.write.get()}).ok());
  std::vector<std::string> seen;
  json request = {{"op", "list"}, {"prefix", "svc/"}, {"limit", 5}};
  int pages = 0;
  for (;;) {
    auto r = call(c.get(), request);
    ASSERT_TRUE(r.ok()) << r.raw;
    EXPECT_TRUE(r.fds.empty());
    EXPECT_LE(r.body["entries"].size(), 5u);
    for (auto& e : r.body["entries"]) {
      seen.push_back(e["name"]);
      EXPECT_EQ(e["static"], false);
      EXPECT_EQ(e["fds"][0]["kind"], "pipe");
    }
    ++pages;
    if (!r.body.contains("cursor")) break;
    request["cursor"] = r.body["cursor"];
  }
  EXPECT_EQ(pages, 5);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.size(), expected.size());
}

TEST(BrokerOps, ListStaysWithinTheMessageLimit) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto p = pipe_pair();
  std::string big(15000, 'm');
  for (int i = 0; i < 10; ++i) {
    auto r = call(c.get(),
                  {{"op", "put"}, {"name", "big/" + std::to_string(i)}, {"meta", {{"pad", big}}}},
                  {p.write.get()});
    ASSERT_TRUE(r.ok()) << r.raw;
  }
  std::size_t total = 0;
  json request = {{"op", "list"}, {"limit", 1000}};
  for (;;) {
    auto r = call(c.get(), request);
    ASSERT_TRUE(r.ok());
    EXPECT_LE(r.raw.size(), 65536u);
    EXPECT_GE(r.body["entries"].size(), 1u);
    total += r.body["entries"].size();
    if (!r.body.contains("cursor")) break;
    request["cursor"] = r.body["cursor"];
  }
  EXPECT_EQ(total, 10u);
}

TEST(BrokerOps, IdIsEchoedVerbatim) {
  BrokerProcess broker;
  auto c = broker.connect();
  // Plain requests keep the id's very text (1.50 stays 1.50)...
  for (std::string id : {"7", "\"abc\"", "null", "true", "1.50", "-3e2"}) {
    auto r = call_raw(c.get(), "{\"op\":\"hello\",\"id\":" + id + "}");
    EXPECT_NE(r.raw.find("\"id\":" + id), std::string::npos) << id << " → " << r.raw;
    auto e = call_raw(c.get(), "{\"op\":\"get\",\"name\":\"missing\",\"id\":" + id + "}");
    EXPECT_NE(e.raw.find("\"id\":" + id), std::string::npos) << id << " → " << e.raw;
  }
  // ...and escaped ones the same JSON value.
  auto escaped = call_raw(c.get(), R"({"op":"hello","id":"\u00e9\n"})");
  EXPECT_EQ(escaped.body["id"], "\u00e9\n");
  auto no_id = call(c.get(), {{"op", "hello"}});
  EXPECT_FALSE(no_id.body.contains("id"));
}

TEST(BrokerOps, PipelinedRequestsAreAnsweredInOrder) {
  BrokerProcess broker;
  auto c = broker.connect();
  for (int i = 0; i < 50; ++i)
    send_raw(c.get(), json({{"op", i % 2 ? "hello" : "get"}, {"name", "n"}, {"id", i}}).dump());
  for (int i = 0; i < 50; ++i) {
    auto r = receive(c.get());
    EXPECT_EQ(r.body["id"], i);
  }
}

TEST(BrokerOps, StatsCountsRequestsByOpAndOutcome) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "s"}}, {p.write.get(), p.read.get()}).ok());
  call(c.get(), {{"op", "get"}, {"name", "s"}});
  call(c.get(), {{"op", "get"}, {"name", "nope"}});
  call_raw(c.get(), "garbage");
  auto r = call(c.get(), {{"op", "stats"}});
  ASSERT_TRUE(r.ok()) << r.raw;
  EXPECT_EQ(r.body["entries"], 1);
  EXPECT_EQ(r.body["fds_held"], 2);
  EXPECT_GT(r.body["fds_limit"].get<std::uint64_t>(), 2u);
  EXPECT_EQ(r.body["connections"]["current"], 1);
  EXPECT_EQ(r.body["requests"]["put"]["ok"], 1);
  EXPECT_EQ(r.body["requests"]["get"]["ok"], 1);
  EXPECT_EQ(r.body["requests"]["get"]["ENOENT"], 1);
  EXPECT_EQ(r.body["requests"]["invalid"]["EPROTO"], 1);
  EXPECT_GE(r.body["uptime_ms"].get<std::int64_t>(), 0);
}

TEST(BrokerOps, TtlExpiresTheEntry) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(
      call(c.get(), {{"op", "put"}, {"name", "ttl"}, {"ttl_ms", 150}}, {p.write.get()}).ok());
  p.write.reset();
  auto r = call(c.get(), {{"op", "get"}, {"name", "ttl"}});
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r.body["expires_ms"].get<std::int64_t>(), 0);
  EXPECT_LE(r.body["expires_ms"].get<std::int64_t>(), 150);
  r.fds.clear();
  // The broker closes its copy when the timer fires, without any request.
  EXPECT_TRUE(reaches_eof(p.read.get(), 2000));
  EXPECT_EQ(call(c.get(), {{"op", "get"}, {"name", "ttl"}}).error(), "ENOENT");
  c.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerOps, StaticEntriesAreReadOnly) {
  json config = {{"entries",
                  {{{"name", "etc/hostname"},
                    {"type", "file"},
                    {"path", "/etc/hostname"},
                    {"meta", {{"from", "config"}}}}}}};
  BrokerProcess broker(config);
  auto c = broker.connect();
  auto r = call(c.get(), {{"op", "get"}, {"name", "etc/hostname"}});
  ASSERT_TRUE(r.ok()) << r.raw;
  EXPECT_EQ(r.body["owner"]["static"], true);
  EXPECT_EQ(r.body["meta"]["from"], "config");
  EXPECT_EQ(r.body["fds"][0]["path"], "/etc/hostname");
  auto p = pipe_pair();
  EXPECT_EQ(
      call(c.get(), {{"op", "put"}, {"name", "etc/hostname"}, {"replace", true}}, {p.write.get()})
          .error(),
      "EPERM");
  EXPECT_EQ(call(c.get(), {{"op", "take"}, {"name", "etc/hostname"}}).error(), "EPERM");
  EXPECT_EQ(call(c.get(), {{"op", "delete"}, {"name", "etc/hostname"}}).error(), "EPERM");
  auto list = call(c.get(), {{"op", "list"}});
  ASSERT_EQ(list.body["entries"].size(), 1u);
  EXPECT_EQ(list.body["entries"][0]["static"], true);
}

TEST(BrokerOps, StaticListeningSocketsAreOpenedFromConfig) {
  json config = {{"entries",
                  {{{"name", "tcp4"}, {"type", "tcp"}, {"address", "127.0.0.1:0"}, {"backlog", 8}},
                   {{"name", "tcp6"},
                    {"type", "tcp"},
                    {"address", "[::1]:0"},
                    {"v6only", true},
                    {"reuseport", true}},
                   {{"name", "udp4"}, {"type", "udp"}, {"address", "127.0.0.1:0"}}}}};
  BrokerProcess broker(config);
  auto c = broker.connect();
  auto tcp4 = call(c.get(), {{"op", "get"}, {"name", "tcp4"}});
  ASSERT_TRUE(tcp4.ok()) << tcp4.raw;
  EXPECT_EQ(tcp4.body["fds"][0]["family"], "inet");
  EXPECT_EQ(tcp4.body["fds"][0]["listening"], true);
  auto tcp6 = call(c.get(), {{"op", "get"}, {"name", "tcp6"}});
  ASSERT_TRUE(tcp6.ok()) << tcp6.raw;
  EXPECT_EQ(tcp6.body["fds"][0]["family"], "inet6");
  int v6only = 0, reuseport = 0;
  socklen_t len = sizeof v6only;
  ::getsockopt(tcp6.fds[0].get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len);
  ::getsockopt(tcp6.fds[0].get(), SOL_SOCKET, SO_REUSEPORT, &reuseport, &len);
  EXPECT_EQ(v6only, 1);
  EXPECT_EQ(reuseport, 1);
  auto udp = call(c.get(), {{"op", "get"}, {"name", "udp4"}});
  ASSERT_TRUE(udp.ok()) << udp.raw;
  EXPECT_EQ(udp.body["fds"][0]["type"], "dgram");
  // The handed-out listener accepts connections made to its address.
  unique_fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_of(tcp4.fds[0].get()));
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  unique_fd accepted(::accept4(tcp4.fds[0].get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
}

TEST(BrokerOps, StaticUnixSocketGetsItsModeAndOwner) {
  char tmpl[] = "/tmp/fdbroker-unix-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/ctl.sock";
  json config = {{"entries",
                  {{{"name", "ctl"},
                    {"type", "unix"},
                    {"path", path},
                    {"socket_type", "seqpacket"},
                    {"mode", "0640"},
                    {"owner", 65534},
                    {"group", "nogroup"}}}}};
  {
    BrokerProcess broker(config);
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(st.st_uid, 65534u);
    auto c = broker.connect();
    auto r = call(c.get(), {{"op", "get"}, {"name", "ctl"}});
    ASSERT_TRUE(r.ok()) << r.raw;
    EXPECT_EQ(r.body["fds"][0]["local"], path);
    EXPECT_EQ(r.body["fds"][0]["type"], "seqpacket");
    EXPECT_EQ(r.body["fds"][0]["listening"], true);
  }
  std::filesystem::remove_all(tmpl);
}

TEST(BrokerOps, QuotasGiveEdquotAndTheGlobalLimitEnospc) {
  BrokerProcess broker(
      json{{"limits", {{"max_entries_per_uid", 2}, {"max_fds_per_uid", 3}, {"max_fds", 100}}}});
  auto c = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "q1"}}, {p.write.get()}).ok());
  EXPECT_EQ(
      call(c.get(), {{"op", "put"}, {"name", "q2"}}, {p.write.get(), p.write.get(), p.write.get()})
          .error(),
      "EDQUOT");
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "q2"}}, {p.write.get()}).ok());
  EXPECT_EQ(call(c.get(), {{"op", "put"}, {"name", "q3"}}, {p.write.get()}).error(), "EDQUOT");
  // Replacing one's own entry does not count twice.
  EXPECT_TRUE(call(c.get(), {{"op", "put"}, {"name", "q2"}, {"replace", true}},
                   {p.write.get(), p.read.get()})
                  .ok());

  BrokerProcess small(json{{"limits", {{"max_fds", 3}}}});
  auto s = small.connect();
  ASSERT_TRUE(call(s.get(), {{"op", "put"}, {"name", "a"}}, {p.write.get(), p.write.get()}).ok());
  EXPECT_EQ(call(s.get(), {{"op", "put"}, {"name", "b"}}, {p.write.get(), p.write.get()}).error(),
            "ENOSPC");
  EXPECT_TRUE(call(s.get(), {{"op", "put"}, {"name", "b"}}, {p.write.get()}).ok());
  auto stats = call(s.get(), {{"op", "stats"}});
  EXPECT_EQ(stats.body["fds_limit"], 3);
  EXPECT_EQ(stats.body["fds_held"], 3);
}

TEST(BrokerOps, PutOfTheMaximumOf253FdsWorks) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  {
    auto c = broker.connect();
    auto p = pipe_pair();
    std::vector<int> fds(253, p.write.get());
    ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "many"}}, fds).ok());
    EXPECT_TRUE(broker.settles_at(baseline + 1 + 253));
    auto r = call(c.get(), {{"op", "take"}, {"name", "many"}});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.fds.size(), 253u);
  }
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerOps, RefusedPutsCloseEveryFdTheyCarried) {
  json config = {{"limits", {{"max_entries_per_uid", 2}, {"max_fds", 4}}},
                 {"entries", {{{"name", "static"}, {"type", "file"}, {"path", "/etc/hostname"}}}}};
  BrokerProcess broker(config);
  auto c = broker.connect();
  auto keep = pipe_pair();
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "held"}}, {keep.write.get()}).ok());
  std::size_t baseline = broker.fd_count();
  auto p = pipe_pair();
  std::vector<int> three(3, p.write.get());
  std::vector<int> four(4, p.write.get());
  std::string near_limit(65536 - 200, 'm');
  const std::pair<json, std::string> refused[] = {
      {{{"op", "put"}, {"name", "held"}}, "EEXIST"},
      {{{"op", "put"}, {"name", "held"}, {"expect_generation", 1}}, "ESTALE"},
      {{{"op", "put"}, {"name", "static"}, {"replace", true}}, "EPERM"},
      {{{"op", "put"}, {"name", "fresh"}, {"meta", {{"pad", near_limit}}}}, "EMSGSIZE"},
  };
  for (const auto& [request, error] : refused) {
    EXPECT_EQ(call(c.get(), request, {p.write.get()}).error(), error)
        << request.dump().substr(0, 100);
  }
  EXPECT_EQ(call(c.get(), {{"op", "put"}, {"name", "x"}}, four).error(), "ENOSPC");
  ASSERT_TRUE(call(c.get(), {{"op", "put"}, {"name", "second"}}, {p.read.get()}).ok());
  ++baseline;
  EXPECT_EQ(call(c.get(), {{"op", "put"}, {"name", "third"}}, three).error(), "EDQUOT");
  EXPECT_TRUE(broker.settles_at(baseline));
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
}
