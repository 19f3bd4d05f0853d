// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "entry_name.hpp"
#include "json_shape.hpp"
#include "nss.hpp"
#include "operation.hpp"
#include "principals_config.hpp"

using namespace fdbroker::daemon;

namespace {

// The single error a config produces; fails the test if there is not exactly one.
std::string only_error(const std::string& text) {
  auto r = parse_config(text);
  EXPECT_FALSE(r.config.has_value()) << text;
  EXPECT_EQ(r.errors.size(), 1u) << text;
  return r.errors.empty() ? "" : r.errors[0];
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

}  // namespace

TEST(Config, EmptyObjectGivesTheDefaults) {
  auto r = parse_config("{}");
  ASSERT_TRUE(r.config.has_value());
  const Config& c = *r.config;
  EXPECT_EQ(c.socket_path, "/run/fdbroker/fdbroker.sock");
  EXPECT_EQ(c.socket_mode, 0660u);
  EXPECT_FALSE(c.socket_group.has_value());
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.limits.max_connections, 4096u);
  EXPECT_EQ(c.limits.max_fds, 0u);
  EXPECT_EQ(c.owner_rights, perm_get | perm_take | perm_delete);
  EXPECT_TRUE(c.rules.empty());
  EXPECT_TRUE(c.entries.empty());
}

TEST(Config, CommentsAreAllowed) {
  auto r = parse_config("// top\n{ /* inline */ \"log_level\": \"debug\" // trailing\n}");
  ASSERT_TRUE(r.config.has_value()) << (r.errors.empty() ? "" : r.errors[0]);
  EXPECT_EQ(r.config->log_level, "debug");
}

TEST(Config, FullConfigIsParsed) {
  auto r = parse_config(R"({
    "socket": {"path": "/tmp/x.sock", "mode": "0600", "group": "nogroup"},
    "limits": {"max_connections": 10, "max_fds": 100, "max_entries_per_uid": 3,
               "max_fds_per_uid": 4, "max_wait_ms": 5, "client_timeout_ms": 6,
               "max_queued_replies": 7, "shutdown_timeout_ms": 8},
    "owner_rights": ["get"],
    "rules": [{"prefix": "web/", "users": ["nobody", 1000, "*"], "groups": ["nogroup", "42"],
               "allow": ["get", "put"], "deny": ["take"]}],
    "entries": [
      {"name": "f", "type": "file", "path": "/etc/hostname",
       "flags": ["wronly", "append", "create"], "mode": "0640",
       "meta": {"a": 1}, "access": [{"users": ["root"], "allow": ["*"]}]},
      {"name": "t", "type": "tcp", "address": "[::]:8080", "backlog": 5, "reuseport": true,
       "v6only": true},
      {"name": "u", "type": "udp", "address": "127.0.0.1:53"},
      {"name": "s", "type": "unix", "path": "/tmp/s.sock", "socket_type": "seqpacket",
       "mode": "0600", "owner": "nobody", "group": 65534}
    ]})");
  ASSERT_TRUE(r.config.has_value()) << r.errors[0];
  const Config& c = *r.config;
  EXPECT_EQ(c.socket_mode, 0600u);
  EXPECT_EQ(*c.socket_group, 65534u);
  EXPECT_EQ(c.limits.max_queued_replies, 7u);
  EXPECT_EQ(c.owner_rights, perm_get);
  ASSERT_EQ(c.rules.size(), 2u);
  EXPECT_EQ(c.rules[0].match, "web/");
  EXPECT_TRUE(c.rules[0].prefix);
  EXPECT_TRUE(c.rules[0].who.any);
  EXPECT_EQ(c.rules[0].who.users, (std::vector<uid_t>{65534, 1000}));
  EXPECT_EQ(c.rules[0].who.groups, (std::vector<gid_t>{65534, 42}));
  EXPECT_EQ(c.rules[0].allow, perm_get | perm_put);
  EXPECT_EQ(c.rules[0].deny, perm_take);
  EXPECT_EQ(c.rules[1].match, "f");  // an entry's access list becomes exact-name rules
  EXPECT_FALSE(c.rules[1].prefix);
  EXPECT_EQ(c.rules[1].allow, perm_all);
  EXPECT_EQ(c.rules[1].origin, "entries[0].access[0]");
  ASSERT_EQ(c.entries.size(), 4u);
  EXPECT_EQ(c.entries[0].open_flags, O_WRONLY | O_APPEND | O_CREAT);
  EXPECT_EQ(c.entries[0].meta, R"({"a":1})");
  EXPECT_EQ(c.entries[1].kind, StaticKind::tcp);
  EXPECT_TRUE(c.entries[1].reuseport);
  EXPECT_EQ(c.entries[1].backlog, 5);
  EXPECT_EQ(c.entries[2].kind, StaticKind::udp);
  EXPECT_EQ(c.entries[3].socket_type, SOCK_SEQPACKET);
  EXPECT_EQ(*c.entries[3].owner, 65534u);
}

TEST(Config, OpeningChangesOnlyWithHowTheFdIsOpened) {
  auto a = parse_config(
      R"({"entries": [{"name": "t", "type": "tcp", "address": "127.0.0.1:1", "meta": {"x": 1}}]})");
  auto b = parse_config(
      R"({"entries": [{"name": "t", "type": "tcp", "address": "127.0.0.1:1", "meta": {"x": 2}}]})");
  auto c = parse_config(R"({"entries": [{"name": "t", "type": "tcp", "address": "127.0.0.1:2"}]})");
  ASSERT_TRUE(a.config && b.config && c.config);
  EXPECT_EQ(a.config->entries[0].opening, b.config->entries[0].opening);
  EXPECT_NE(a.config->entries[0].opening, c.config->entries[0].opening);
}

TEST(Config, EveryErrorNamesItsKey) {
  struct Case {
    const char* text;
    const char* key;
  };
  const Case cases[] = {
      {R"({"sockett": {}})", "sockett: unknown key"},
      {R"({"socket": []})", "socket: must be an object"},
      {R"({"socket": {"path": 5}})", "socket.path: must be a string"},
      {R"({"socket": {"path": ""}})", "socket.path: must not be empty"},
      {R"({"socket": {"mode": "0999"}})", "socket.mode:"},
      {R"({"socket": {"mode": 432}})", "socket.mode:"},
      {R"({"socket": {"group": "no-such-group-xyz"}})", "socket.group: unknown group"},
      {R"({"log_level": "loud"})", "log_level:"},
      {R"({"limits": {"max_connections": 0}})", "limits.max_connections:"},
      {R"({"limits": {"max_connections": -1}})", "limits.max_connections:"},
      {R"({"limits": {"max_wait_ms": "5"}})", "limits.max_wait_ms:"},
      {R"({"limits": {"max_fd": 5}})", "limits.max_fd: unknown key"},
      {R"({"owner_rights": ["put"]})", "owner_rights:"},
      {R"({"owner_rights": ["fly"]})", "owner_rights[0]: unknown operation"},
      {R"({"rules": {}})", "rules: must be an array"},
      {R"({"rules": [{"users": ["root"], "allow": ["get"]}]})",
       "rules[0]: needs \"prefix\" or \"name\""},
      {R"({"rules": [{"prefix": "a", "name": "b", "users": ["root"], "allow": ["get"]}]})",
       "rules[0]: has both"},
      {R"({"rules": [{"prefix": "a b", "users": ["root"], "allow": ["get"]}]})",
       "rules[0].prefix: invalid prefix"},
      {R"({"rules": [{"name": "a/../b", "users": ["root"], "allow": ["get"]}]})",
       "rules[0].name: invalid entry name"},
      {R"({"rules": [{"prefix": "", "allow": ["get"]}]})",
       "rules[0]: needs \"users\", \"groups\" or \"units\""},
      {R"({"rules": [{"prefix": "", "users": ["root"]}]})",
       "rules[0]: needs \"allow\" or \"deny\""},
      {R"({"rules": [{"prefix": "", "users": ["no-such-user-xyz"], "allow": ["get"]}]})",
       "rules[0].users[0]: unknown user"},
      {R"({"rules": [{"prefix": "", "users": [true], "allow": ["get"]}]})", "rules[0].users[0]:"},
      {R"({"rules": [{"prefix": "", "groups": "wheel", "allow": ["get"]}]})",
       "rules[0].groups: must be an array"},
      {R"({"rules": [{"prefix": "", "users": ["root"], "allow": ["get", 1]}]})",
       "rules[0].allow[1]: must be a string"},
      {R"({"rules": [{"prefix": "", "users": ["root"], "allow": ["get"], "extra": 1}]})",
       "rules[0].extra: unknown key"},
      {R"({"entries": [{"type": "file", "path": "/x"}]})", "entries[0].name: is required"},
      {R"({"entries": [{"name": "..", "type": "file", "path": "/x"}]})",
       "entries[0].name: invalid entry name"},
      {R"({"entries": [{"name": "a", "type": "pipe"}]})", "entries[0].type:"},
      {R"({"entries": [{"name": "a", "type": "file"}]})", "entries[0].path: is required"},
      {R"({"entries": [{"name": "a", "type": "file", "path": "/x", )"
       R"("flags": ["rdonly", "wronly"]}]})",
       "entries[0].flags: more than one"},
      {R"({"entries": [{"name": "a", "type": "file", "path": "/x", "flags": ["sideways"]}]})",
       "entries[0].flags[0]: unknown open flag"},
      {R"({"entries": [{"name": "a", "type": "tcp", "address": "localhost:80"}]})",
       "entries[0].address: bad IPv4"},
      {R"({"entries": [{"name": "a", "type": "tcp", "address": "[::1:80"}]})",
       "entries[0].address:"},
      {R"({"entries": [{"name": "a", "type": "tcp", "address": "1.2.3.4:70000"}]})",
       "entries[0].address: bad port"},
      {R"({"entries": [{"name": "a", "type": "tcp", "address": "1.2.3.4"}]})",
       "entries[0].address:"},
      {R"({"entries": [{"name": "a", "type": "tcp", "address": "1.2.3.4:1", "backlog": 0}]})",
       "entries[0].backlog:"},
      {R"({"entries": [{"name": "a", "type": "udp", "address": "1.2.3.4:1", "backlog": 5}]})",
       "entries[0].backlog: unknown key"},
      {R"({"entries": [{"name": "a", "type": "tcp", "address": "1.2.3.4:1", "v6only": "yes"}]})",
       "entries[0].v6only:"},
      {R"({"entries": [{"name": "a", "type": "unix", "path": "/x", "socket_type": "dgram"}]})",
       "entries[0].socket_type:"},
      {R"({"entries": [{"name": "a", "type": "unix", "path": "/x", "owner": "no-such-user-xyz"}]})",
       "entries[0].owner: unknown user"},
      {R"({"entries": [{"name": "a", "type": "file", "path": "/x", "meta": []}]})",
       "entries[0].meta: must be an object"},
      {R"({"entries": [{"name": "a", "type": "file", "path": "/x", )"
       R"("access": [{"prefix": "", "users": ["root"], "allow": ["get"]}]}]})",
       "entries[0].access[0].prefix: unknown key"},
      {R"({"entries": [{"name": "a", "type": "file", "path": "/x"}, )"
       R"({"name": "a", "type": "file", "path": "/y"}]})",
       "entries[1].name: duplicate"},
  };
  for (const auto& c : cases) {
    std::string error = only_error(c.text);
    EXPECT_TRUE(starts_with(error, c.key))
        << c.text << "\n  gave: " << error << "\n  want: " << c.key;
  }
}

TEST(Config, AllProblemsAreReportedAtOnce) {
  auto r = parse_config(R"({"log_level": 1, "limits": {"max_connections": "x"}, "bogus": true})");
  EXPECT_FALSE(r.config.has_value());
  EXPECT_EQ(r.errors.size(), 3u);
}

TEST(Config, InvalidJsonSaysWhere) {
  auto r = parse_config("{\"log_level\": }");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("line 1"), std::string::npos) << r.errors[0];
  auto top = parse_config("[]");
  ASSERT_EQ(top.errors.size(), 1u);
  EXPECT_NE(top.errors[0].find("must be a JSON object"), std::string::npos);
}

TEST(Config, MissingFileIsAnErrorNamingThePath) {
  auto r = load_config_file("/nonexistent/fdbroker.json");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_TRUE(starts_with(r.errors[0], "/nonexistent/fdbroker.json: cannot open")) << r.errors[0];
}

TEST(Config, TheShippedExamplesAreValid) {
  for (const char* name : {"fdbroker.json", "dev.json", "default.json"}) {
    auto r = load_config_file(std::string(FDBROKER_SOURCE_DIR) + "/config/" + name);
    EXPECT_TRUE(r.config.has_value()) << name << ": " << (r.errors.empty() ? "" : r.errors[0]);
  }
}

TEST(Names, AlphabetLengthAndSegments) {
  EXPECT_TRUE(valid_name("web/http"));
  EXPECT_TRUE(valid_name("a.b_c:d@e-f/G9"));
  EXPECT_TRUE(valid_name(std::string(255, 'a')));
  EXPECT_TRUE(valid_name("a..b"));
  EXPECT_FALSE(valid_name(""));
  EXPECT_FALSE(valid_name(std::string(256, 'a')));
  EXPECT_FALSE(valid_name("a b"));
  EXPECT_FALSE(valid_name("é"));
  EXPECT_FALSE(valid_name(".."));
  EXPECT_FALSE(valid_name("a/../b"));
  EXPECT_FALSE(valid_name("./a"));
  EXPECT_FALSE(valid_name("a/."));
  EXPECT_TRUE(valid_prefix(""));
  EXPECT_FALSE(valid_prefix("a\nb"));
}

TEST(Config, AcceptFuseFdsIsABooleanDefaultingToFalse) {
  EXPECT_FALSE(parse_config("{}").config->accept_fuse_fds);
  auto on = parse_config(R"({"accept_fuse_fds": true})");
  ASSERT_TRUE(on.config.has_value());
  EXPECT_TRUE(on.config->accept_fuse_fds);
  EXPECT_FALSE(parse_config(R"({"accept_fuse_fds": false})").config->accept_fuse_fds);
  auto bad = parse_config(R"({"accept_fuse_fds": "yes"})");
  EXPECT_FALSE(bad.config.has_value());
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0], "accept_fuse_fds: must be true or false");
}

TEST(Config, MessagesNameTheOperationsFromTheTable) {
  EXPECT_EQ(only_error(R"({"owner_rights": ["fly"]})"),
            "owner_rights[0]: unknown operation \"fly\" (get, take, put, delete, stats, *)");
  EXPECT_EQ(only_error(R"({"owner_rights": "get"})"),
            "owner_rights: must be an array of operations (get, take, put, delete, stats, *)");
  EXPECT_EQ(only_error(R"({"socket": {"group": "a\u0000b"}})"),
            "socket.group: a group name with a NUL byte");
  EXPECT_EQ(
      only_error(R"({"rules": [{"prefix": "", "users": ["no-such-user-xyz"], "allow": []}]})"),
      "rules[0].users[0]: unknown user \"no-such-user-xyz\"");
}

TEST(Operations, NamesAndPermissionsRoundTrip) {
  for (std::size_t i = 0; i < op_count; ++i) {
    auto op = static_cast<Op>(i);
    EXPECT_EQ(op_named(op_name(op)), op) << op_name(op);
  }
  EXPECT_STREQ(op_name(Op::del), "delete");
  EXPECT_FALSE(op_named("del").has_value());
  EXPECT_FALSE(op_named("").has_value());
  for (unsigned perm : {perm_get, perm_take, perm_put, perm_delete, perm_stats}) {
    EXPECT_EQ(perm_named(perm_name(perm)), perm) << perm_name(perm);
  }
  EXPECT_EQ(perm_named("*"), perm_all);
  EXPECT_FALSE(perm_named("list").has_value());  // an op no rule grants
  EXPECT_FALSE(perm_named("hello").has_value());
  EXPECT_STREQ(perm_name(perm_all), "?");
  EXPECT_EQ(perm_names(), "get, take, put, delete, stats, *");
}

TEST(Nss, NamesAndNumbersResolve) {
  Outcome<uid_t> root = lookup_user("root");
  ASSERT_TRUE(root.ok()) << root.failure().why;
  EXPECT_EQ(*root, 0u);
  Outcome<gid_t> root_group = lookup_group("root");
  ASSERT_TRUE(root_group.ok()) << root_group.failure().why;
  EXPECT_EQ(*root_group, 0u);
  // A decimal id is taken as it is, whether or not a user has it.
  Outcome<uid_t> numeric = lookup_user("4000000000");
  ASSERT_TRUE(numeric.ok());
  EXPECT_EQ(*numeric, 4000000000u);
  Outcome<gid_t> numeric_group = lookup_group("42");
  ASSERT_TRUE(numeric_group.ok());
  EXPECT_EQ(*numeric_group, 42u);
}

TEST(Nss, FailuresSayWhy) {
  Outcome<uid_t> unknown = lookup_user("no-such-user-xyz");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.failure().err, ENOENT);
  EXPECT_EQ(unknown.failure().why, "unknown user \"no-such-user-xyz\"");
  Outcome<gid_t> unknown_group = lookup_group("no-such-group-xyz");
  ASSERT_FALSE(unknown_group.ok());
  EXPECT_EQ(unknown_group.failure().err, ENOENT);
  EXPECT_EQ(unknown_group.failure().why, "unknown group \"no-such-group-xyz\"");
  // "root\0x" must not resolve as root: NSS would see only "root".
  Outcome<uid_t> nul = lookup_user(std::string_view("root\0x", 6));
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(nul.failure().err, EINVAL);
  EXPECT_EQ(nul.failure().why, "a user name with a NUL byte");
  EXPECT_FALSE(lookup_user("").ok());
  EXPECT_FALSE(lookup_user("-1").ok());
}

TEST(JsonShape, ReportsEachProblemWithItsPath) {
  JsonShape shape;
  auto doc = nlohmann::json::parse(R"({"n": 9, "b": 1, "s": "x", "m": "0640", "typo": 0})");
  unsigned n = 3;
  bool b = false;
  std::string s;
  std::string absent;
  mode_t m = 0;
  shape.only_keys(doc, "top", {"n", "b", "s", "m"});
  shape.uint_field(doc, "top", "n", n, 1, 5);
  shape.bool_field(doc, "top", "b", b);
  EXPECT_TRUE(shape.string_field(doc, "top", "s", s, true));
  EXPECT_FALSE(shape.string_field(doc, "top", "absent", absent, true));
  shape.mode_field(doc, "top", "m", m);
  EXPECT_EQ(n, 3u);  // left alone: out of range
  EXPECT_EQ(s, "x");
  EXPECT_EQ(m, 0640u);
  EXPECT_EQ(shape.errors(), (std::vector<std::string>{
                                "top.typo: unknown key",
                                "top.n: must be an integer between 1 and 5",
                                "top.b: must be true or false",
                                "top.absent: is required",
                            }));
  EXPECT_EQ(JsonShape::index("rules", 2), "rules[2]");
  EXPECT_EQ(JsonShape::join("", "log_level"), "log_level");
}

TEST(Config, UnitsMayNameWhoARuleAppliesTo) {
  auto r = parse_config(R"({
    "rules": [
      {"prefix": "web/", "units": ["nginx.service", "user@1000.service"], "allow": ["get"]},
      {"prefix": "db/", "users": ["root"], "units": ["session-3.scope"], "allow": ["get"]},
      {"prefix": "x/", "users": [], "units": ["x.service"], "allow": ["get"]}
    ],
    "entries": [{"name": "f", "type": "file", "path": "/dev/null",
                 "access": [{"units": ["app.service"], "allow": ["get"]}]}]
  })");
  ASSERT_TRUE(r.config.has_value()) << r.errors[0];
  const auto& rules = r.config->rules;
  ASSERT_EQ(rules.size(), 4u);
  // Units alone: any uid in them.
  EXPECT_TRUE(rules[0].who.any);
  EXPECT_EQ(rules[0].who.units, (std::vector<std::string>{"nginx.service", "user@1000.service"}));
  // With users: both must match.
  EXPECT_FALSE(rules[1].who.any);
  EXPECT_EQ(rules[1].who.users, std::vector<uid_t>{0});
  EXPECT_EQ(rules[1].who.units, std::vector<std::string>{"session-3.scope"});
  // An explicit empty users list still matches nobody.
  EXPECT_FALSE(rules[2].who.any);
  EXPECT_TRUE(rules[2].who.users.empty());
  EXPECT_TRUE(rules[3].who.any);
  EXPECT_EQ(rules[3].who.units, std::vector<std::string>{"app.service"});
  EXPECT_EQ(rules[3].origin, "entries[0].access[0]");
}

TEST(Config, UnitNames) {
  for (const char* good : {"nginx.service", "foo.scope", "user@1000.service",
                           "a-b_c:d\\x2d.service", "getty@tty1.service", "session-3.scope"}) {
    EXPECT_TRUE(valid_unit_name(good)) << good;
  }
  for (const char* bad :
       {"", ".service", "nginx", "nginx.socket", "system.slice", "foo.mount", "foo@.service",
        "@x.service", "a@b@c.service", "a b.service", "a/b.service", "nginx.service\n"}) {
    EXPECT_FALSE(valid_unit_name(bad)) << bad;
  }
  EXPECT_FALSE(valid_unit_name(std::string(256, 'a') + ".service"));
  EXPECT_TRUE(valid_unit_name(std::string(255 - 8, 'a') + ".service"));
}

namespace {

// Every error of a config, each exactly as given.
void expect_errors(const std::string& text, const std::vector<std::string>& want) {
  auto r = parse_config(text);
  EXPECT_FALSE(r.config.has_value()) << text;
  EXPECT_EQ(r.errors, want) << text;
}

}  // namespace

TEST(Config, UnitErrors) {
  expect_errors(R"({"rules": [{"prefix": "", "units": "nginx.service", "allow": ["get"]}]})",
                {"rules[0].units: must be an array of unit names such as \"nginx.service\""});
  expect_errors(R"({"rules": [{"prefix": "", "units": [], "allow": ["get"]}]})",
                {"rules[0].units: must name at least one unit"});
  expect_errors(
      R"({"rules": [{"prefix": "", "units": [1, "nginx", "x.slice"], "allow": ["get"]}]})",
      {"rules[0].units[0]: must be a string",
       "rules[0].units[1]: not a .service or .scope unit name: \"nginx\"",
       "rules[0].units[2]: not a .service or .scope unit name: \"x.slice\""});
}

TEST(Config, FilesRulesAreParsedWithTheirDefaults) {
  auto r = parse_config(R"({
    "files": [
      {"name": "tls-keys", "root": "/etc/ssl/private", "match": ["*.key", "*.pem"],
       "users": ["root"], "units": ["nginx.service"], "allow": ["read"]},
      {"name": "spool", "root": "/var/spool/app", "match": ["**"],
       "groups": ["root"], "allow": ["read", "write", "create"], "mode": "0640",
       "owner": "nobody", "group": 0, "types": ["file", "fifo", "socket", "device"],
       "same_mount": true},
      {"name": "no-secrets", "root": "/var/spool/app", "match": ["secret/**"],
       "users": ["*"], "deny": ["read", "write", "create"]}
    ]
  })");
  ASSERT_TRUE(r.config.has_value()) << r.errors[0];
  EXPECT_TRUE(r.warnings.empty());
  const auto& f = r.config->files;
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].name, "tls-keys");
  EXPECT_EQ(f[0].origin, "files[0]");
  EXPECT_EQ(f[0].root, "/etc/ssl/private");
  EXPECT_EQ(f[0].match, (std::vector<std::string>{"*.key", "*.pem"}));
  EXPECT_EQ(f[0].who.users, std::vector<uid_t>{0});
  EXPECT_FALSE(f[0].who.any);
  EXPECT_EQ(f[0].who.units, std::vector<std::string>{"nginx.service"});
  EXPECT_EQ(f[0].allow, unsigned{right_read});
  EXPECT_EQ(f[0].deny, 0u);
  EXPECT_EQ(f[0].containment.types, unsigned{type_file});
  EXPECT_EQ(f[0].containment.mode, 0600u);
  EXPECT_FALSE(f[0].containment.same_mount);
  EXPECT_FALSE(f[0].containment.owner.has_value());
  EXPECT_FALSE(f[0].containment.group.has_value());
  EXPECT_EQ(f[1].allow, unsigned{right_read | right_write | right_create});
  EXPECT_EQ(f[1].who.groups, std::vector<gid_t>{0});
  EXPECT_EQ(f[1].containment.mode, 0640u);
  EXPECT_EQ(f[1].containment.owner, 65534u);
  EXPECT_EQ(f[1].containment.group, 0u);
  EXPECT_EQ(f[1].containment.types, unsigned{type_file | type_fifo | type_socket | type_device});
  EXPECT_TRUE(f[1].containment.same_mount);
  EXPECT_TRUE(f[2].who.any);
  EXPECT_EQ(f[2].allow, 0u);
  EXPECT_EQ(f[2].deny, unsigned{right_read | right_write | right_create});
}

TEST(Config, FilesRuleErrors) {
  const std::string ok = R"("name": "r", "root": "/srv", "match": ["**"], "users": ["*"])";
  auto files = [](const std::string& rule) { return R"({"files": [{)" + rule + "}]}"; };
  expect_errors(R"({"files": {}})", {"files: must be an array"});
  expect_errors(R"({"files": [1]})", {"files[0]: must be an object"});
  expect_errors(files(ok), {"files[0]: needs \"allow\" or \"deny\""});
  expect_errors(files(ok + R"(, "allow": ["read"], "colour": 1)"),
                {"files[0].colour: unknown key"});
  expect_errors(files(R"("root": "/srv", "match": ["**"], "users": ["*"], "allow": ["read"])"),
                {"files[0].name: is required"});
  expect_errors(files(R"("name": "a b", "root": "/srv", "match": ["**"], "users": ["*"], )"
                      R"("allow": ["read"])"),
                {"files[0].name: invalid rule name \"a b\" (1-64 bytes of A-Za-z0-9._:@-)"});
  expect_errors(files(R"("name": "r", "match": ["**"], "users": ["*"], "allow": ["read"])"),
                {"files[0].root: is required"});
  expect_errors(files(R"("name": "r", "root": "srv", "match": ["**"], "users": ["*"], )"
                      R"("allow": ["read"])"),
                {"files[0].root: must be an absolute path"});
  expect_errors(files(R"("name": "r", "root": "/srv/../etc", "match": ["**"], "users": ["*"], )"
                      R"("allow": ["read"])"),
                {"files[0].root: must not contain a \".\" or \"..\" segment"});
  expect_errors(files(R"("name": "r", "root": "/srv/", "match": ["**"], "users": ["*"], )"
                      R"("allow": ["read"])"),
                {"files[0].root: must not end in '/'"});
  expect_errors(files(R"("name": "r", "root": "/srv", "users": ["*"], "allow": ["read"])"),
                {"files[0].match: is required"});
  expect_errors(files(R"("name": "r", "root": "/srv", "match": [], "users": ["*"], )"
                      R"("allow": ["read"])"),
                {"files[0].match: must be a non-empty array of globs (\"*.key\", \"**\")"});
  expect_errors(files(R"("name": "r", "root": "/srv", "match": "**", "users": ["*"], )"
                      R"("allow": ["read"])"),
                {"files[0].match: must be a non-empty array of globs (\"*.key\", \"**\")"});
  expect_errors(files(R"("name": "r", "root": "/srv", "match": [1, "/x", "../y", "a//b", ""], )"
                      R"("users": ["*"], "allow": ["read"])"),
                {"files[0].match[0]: must be a string",
                 "files[0].match[1]: must be relative to the rule's root (no leading '/')",
                 "files[0].match[2]: has a \".\" or \"..\" segment, which no path has",
                 "files[0].match[3]: has an empty segment (\"//\" or a trailing '/')",
                 "files[0].match[4]: must not be empty"});
  expect_errors(files(R"("name": "r", "root": "/srv", "match": ["**"], "allow": ["read"])"),
                {"files[0]: needs \"users\", \"groups\" or \"units\""});
  expect_errors(files(ok + R"(, "allow": ["read", "execute"])"),
                {"files[0].allow[1]: unknown word \"execute\" (read, write, create)"});
  expect_errors(files(ok + R"(, "allow": "read")"),
                {"files[0].allow: must be an array of read, write, create"});
  expect_errors(files(ok + R"(, "allow": [])"),
                {"files[0].allow: must not be empty (read, write, create)"});
  expect_errors(files(ok + R"(, "deny": [true])"), {"files[0].deny[0]: must be a string"});
  expect_errors(files(ok + R"(, "allow": ["read"], "types": ["file", "symlink"])"),
                {"files[0].types[1]: unknown word \"symlink\" (file, fifo, socket, device)"});
  expect_errors(files(ok + R"(, "allow": ["read"], "types": [])"),
                {"files[0].types: must not be empty (file, fifo, socket, device)"});
  expect_errors(files(ok + R"(, "allow": ["create"], "mode": "4755")"),
                {"files[0].mode: must be at most \"0777\" (no setuid, setgid or sticky bit)"});
  expect_errors(files(ok + R"(, "allow": ["create"], "mode": "rw")"),
                {"files[0].mode: must be an octal string such as \"0660\", got \"rw\""});
  expect_errors(files(ok + R"(, "allow": ["create"], "mode": 384)"),
                {"files[0].mode: must be an octal string such as \"0660\""});
  expect_errors(files(ok + R"(, "allow": ["create"], "owner": "no-such-user-xyz")"),
                {"files[0].owner: unknown user \"no-such-user-xyz\""});
  expect_errors(files(ok + R"(, "allow": ["create"], "group": "no-such-group-xyz")"),
                {"files[0].group: unknown group \"no-such-group-xyz\""});
  expect_errors(files(ok + R"(, "allow": ["read"], "same_mount": 1)"),
                {"files[0].same_mount: must be true or false"});
  expect_errors(R"({"files": [{"name": "r", "root": "/a", "match": ["**"], "users": ["*"], )"
                R"("allow": ["read"]}, {"name": "r", "root": "/b", "match": ["**"], )"
                R"("users": ["*"], "allow": ["read"]}]})",
                {"files[1].name: duplicate rule name \"r\""});
}

TEST(Config, FilesRuleSettingsThatCannotApplyWarn) {
  auto r = parse_config(R"({"files": [{"name": "r", "root": "/srv", "match": ["**"], )"
                        R"("users": ["*"], "allow": ["read"], "owner": "root"}]})");
  ASSERT_TRUE(r.config.has_value());
  EXPECT_EQ(r.warnings, std::vector<std::string>{
                            "files[0]: \"owner\" and \"group\" apply to created files, and this "
                            "rule does not allow create"});
}

TEST(Config, BindRulesAreParsed) {
  auto r = parse_config(R"({
    "bind": [
      {"name": "https", "address": "tcp://*:443", "users": ["root"], "allow": ["bind"]},
      {"name": "high-ports", "address": "tcp://127.0.0.1:8000-8999", "groups": ["root"],
       "allow": ["bind"], "reuseport": true},
      {"name": "no-dns", "address": "udp6://[::1]:53", "users": ["*"], "deny": ["bind"]}
    ]
  })");
  ASSERT_TRUE(r.config.has_value()) << r.errors[0];
  const auto& b = r.config->binds;
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].name, "https");
  EXPECT_EQ(b[0].origin, "bind[0]");
  EXPECT_EQ(b[0].socket_type, SOCK_STREAM);
  EXPECT_FALSE(b[0].host.has_value());
  EXPECT_EQ(b[0].port_lo, 443);
  EXPECT_EQ(b[0].port_hi, 443);
  EXPECT_TRUE(b[0].allow);
  EXPECT_FALSE(b[0].deny);
  EXPECT_FALSE(b[0].reuseport);
  EXPECT_EQ(b[1].host, "127.0.0.1");
  EXPECT_EQ(b[1].port_lo, 8000);
  EXPECT_EQ(b[1].port_hi, 8999);
  EXPECT_TRUE(b[1].reuseport);
  EXPECT_EQ(b[2].socket_type, SOCK_DGRAM);
  EXPECT_EQ(b[2].family, AF_INET6);
  EXPECT_TRUE(b[2].deny);
  EXPECT_FALSE(b[2].allow);
}

TEST(Config, BindRuleErrors) {
  auto bind = [](const std::string& rule) { return R"({"bind": [{)" + rule + "}]}"; };
  const std::string ok = R"("name": "b", "address": "tcp://*:80", "users": ["*"])";
  expect_errors(R"({"bind": {}})", {"bind: must be an array"});
  expect_errors(R"({"bind": ["x"]})", {"bind[0]: must be an object"});
  expect_errors(bind(ok), {"bind[0]: needs \"allow\" or \"deny\""});
  expect_errors(bind(ok + R"(, "allow": ["listen"])"),
                {"bind[0].allow[0]: unknown word \"listen\" (bind)"});
  expect_errors(bind(ok + R"(, "allow": ["bind"], "backlog": 5)"),
                {"bind[0].backlog: unknown key"});
  expect_errors(bind(ok + R"(, "allow": ["bind"], "reuseport": "yes")"),
                {"bind[0].reuseport: must be true or false"});
  expect_errors(bind(R"("name": "b", "users": ["*"], "allow": ["bind"])"),
                {"bind[0].address: is required"});
  expect_errors(bind(R"("name": "b", "address": 80, "users": ["*"], "allow": ["bind"])"),
                {"bind[0].address: must be a string"});
  expect_errors(bind(R"("name": "b", "address": "tcp://*:0", "users": ["*"], "allow": ["bind"])"),
                {"bind[0].address: port 0 is not a port a rule can allow (a request names one)"});
  expect_errors(bind(R"("name": "b", "address": "tcp://*:9-8", "users": ["*"], "allow": ["bind"])"),
                {"bind[0].address: port range \"9-8\" is empty (LO must be <= HI)"});
  expect_errors(
      bind(R"("name": "b", "address": "unix:/x", "users": ["*"], "allow": ["bind"])"),
      {"bind[0].address: must be tcp://, tcp6://, udp:// or udp6:// HOST:PORT, got \"unix:/x\""});
  expect_errors(bind(R"("name": "b", "address": "tcp://*:80", "allow": ["bind"])"),
                {"bind[0]: needs \"users\", \"groups\" or \"units\""});
  expect_errors(R"({"bind": [{"name": "b", "address": "tcp://*:80", "users": ["*"], )"
                R"("allow": ["bind"]}, {"name": "b", "address": "tcp://*:81", )"
                R"("users": ["*"], "allow": ["bind"]}]})",
                {"bind[1].name: duplicate rule name \"b\""});
  // A name used in "files" may be used again in "bind": names are per section.
  auto r = parse_config(R"({"files": [{"name": "x", "root": "/srv", "match": ["**"], )"
                        R"("users": ["*"], "allow": ["read"]}], "bind": [{"name": "x", )"
                        R"("address": "tcp://*:80", "users": ["*"], "allow": ["bind"]}]})");
  EXPECT_TRUE(r.config.has_value()) << r.errors[0];
}
