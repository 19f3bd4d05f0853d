// SPDX-License-Identifier: LGPL-2.1-or-later
// Access control as other users see it: the test runs as root and forks children
// that drop to nobody (65534) or another uid before connecting.
#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

constexpr uid_t nobody = 65534;
constexpr gid_t nogroup = 65534;
constexpr uid_t other = 65533;

}  // namespace

TEST(BrokerAccess, ByDefaultOnlyRootAndTheBrokersUidMayDoAnything) {
  BrokerProcess broker;
  auto root = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "secret"}}, {p.write.get()}).ok());
  std::size_t baseline = broker.fd_count();
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    auto hello = c.expect({{"op", "hello"}}, "", "hello");
    if (hello.body["peer"]["uid"] != nobody)
      c.fail("hello reports uid " + hello.body["peer"]["uid"].dump());
    c.expect({{"op", "get"}, {"name", "secret"}}, "EACCES", "get");
    c.expect({{"op", "take"}, {"name", "secret"}}, "EACCES", "take");
    c.expect({{"op", "delete"}, {"name", "secret"}}, "EACCES", "delete");
    c.put("mine", "EACCES", "put");
    c.expect({{"op", "stats"}}, "EACCES", "stats");
    auto list = c.expect({{"op", "list"}}, "", "list");
    if (!list.body["entries"].empty()) c.fail("list shows " + list.body["entries"].dump());
  });
  EXPECT_EQ(result, "");
  // The refused put's fd was closed; the entry is intact.
  EXPECT_TRUE(broker.settles_at(baseline));
  EXPECT_TRUE(call(root.get(), {{"op", "get"}, {"name", "secret"}}).ok());
}

TEST(BrokerAccess, RulesGrantOperationsOnPrefixes) {
  json config = {{"rules",
                  {{{"prefix", "shared/"}, {"users", {"nobody"}}, {"allow", {"get", "put"}}},
                   {{"name", "stats-ok"}, {"users", {nobody}}, {"allow", {"stats"}}}}}};
  BrokerProcess broker(config);
  auto root = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "shared/root"}}, {p.write.get()}).ok());
  ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "private/root"}}, {p.write.get()}).ok());
  std::string result = as_user_expect(broker, nobody, nogroup, {}, [&](Expectations& c) {
    c.expect({{"op", "get"}, {"name", "shared/root"}}, "", "get shared");
    c.expect({{"op", "take"}, {"name", "shared/root"}}, "EACCES", "take shared");
    c.expect({{"op", "get"}, {"name", "private/root"}}, "EACCES", "get private");
    c.put("shared/mine", "", "put shared");
    c.put("other/mine", "EACCES", "put other");
    c.expect({{"op", "stats"}}, "", "stats");
    auto list = call(c.sock(), {{"op", "list"}});
    std::vector<std::string> names;
    for (auto& e : list.body["entries"]) names.push_back(e["name"]);
    if (names != std::vector<std::string>{"shared/mine", "shared/root"})
      c.fail("list shows " + list.body.dump());
  });
  EXPECT_EQ(result, "");
  auto mine = call(root.get(), {{"op", "get"}, {"name", "shared/mine"}});
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine.body["owner"]["uid"], nobody);
}

TEST(BrokerAccess, OwnersMayGetTakeDeleteWhatTheyPutOthersMayNot) {
  json config = {{"rules", {{{"prefix", "u/"}, {"users", {nobody, other}}, {"allow", {"put"}}}}}};
  BrokerProcess broker(config);
  EXPECT_EQ(as_user_expect(broker, nobody, nogroup, {},
                           [&](Expectations& c) {
                             c.put("u/a", "", "put a");
                             c.put("u/b", "", "put b");
                             c.expect({{"op", "get"}, {"name", "u/a"}}, "", "get own");
                             c.expect({{"op", "delete"}, {"name", "u/a"}}, "", "delete own");
                           }),
            "");
  EXPECT_EQ(
      as_user_expect(broker, other, other, {},
                     [&](Expectations& c) {
                       c.expect({{"op", "get"}, {"name", "u/b"}}, "EACCES", "get other's");
                       c.expect({{"op", "take"}, {"name", "u/b"}}, "EACCES", "take other's");
                       c.expect({{"op", "delete"}, {"name", "u/b"}}, "EACCES", "delete other's");
                     }),
      "");
  EXPECT_EQ(as_user_expect(broker, nobody, nogroup, {},
                           [&](Expectations& c) {
                             c.expect({{"op", "take"}, {"name", "u/b"}}, "", "take own");
                           }),
            "");
}

TEST(BrokerAccess, DenyRulesOverrideOwnership) {
  json config = {{"rules",
                  {{{"prefix", "u/"}, {"users", {"*"}}, {"allow", {"put"}}},
                   {{"name", "u/pinned"}, {"users", {"*"}}, {"deny", {"take", "delete"}}}}}};
  BrokerProcess broker(config);
  EXPECT_EQ(as_user_expect(broker, nobody, nogroup, {},
                           [&](Expectations& c) {
                             c.put("u/pinned", "", "put");
                             c.expect({{"op", "get"}, {"name", "u/pinned"}}, "", "get");
                             c.expect({{"op", "take"}, {"name", "u/pinned"}}, "EACCES", "take");
                             c.expect({{"op", "delete"}, {"name", "u/pinned"}}, "EACCES", "delete");
                           }),
            "");
}

TEST(BrokerAccess, SupplementaryGroupsFromSoPeergroupsCount) {
  json config = {{"rules", {{{"prefix", "g/"}, {"groups", {4242}}, {"allow", {"get"}}}}}};
  BrokerProcess broker(config);
  auto root = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "g/x"}}, {p.write.get()}).ok());
  EXPECT_EQ(as_user_expect(broker, nobody, nogroup, {4242},
                           [&](Expectations& c) {
                             c.expect({{"op", "get"}, {"name", "g/x"}}, "", "with group");
                           }),
            "");
  EXPECT_EQ(as_user_expect(broker, nobody, nogroup, {4243},
                           [&](Expectations& c) {
                             c.expect({{"op", "get"}, {"name", "g/x"}}, "EACCES", "without group");
                           }),
            "");
}

TEST(BrokerAccess, StaticEntryAccessListsApply) {
  json config = {{"entries",
                  {{{"name", "hostname"},
                    {"type", "file"},
                    {"path", "/etc/hostname"},
                    {"access", {{{"users", {"nobody"}}, {"allow", {"get"}}}}}},
                   {{"name", "hidden"}, {"type", "file"}, {"path", "/etc/hostname"}}}}};
  BrokerProcess broker(config);
  EXPECT_EQ(
      as_user_expect(
          broker, nobody, nogroup, {},
          [&](Expectations& c) {
            auto r = c.expect({{"op", "get"}, {"name", "hostname"}}, "", "get granted static");
            if (r.fds.size() != 1) c.fail("no fd");
            c.expect({{"op", "get"}, {"name", "hidden"}}, "EACCES", "get other static");
            // Not allowed to take at all: refused as such (root gets EPERM,
            // broker_ops_test), the same answer as for any name it may not
            // take.
            c.expect({{"op", "take"}, {"name", "hostname"}}, "EACCES", "take static");
          }),
      "");
}

TEST(BrokerAccess, AForbiddenNameIsRefusedWhetherOrNotItExists) {
  // An unprivileged peer must not learn which names exist by telling ENOENT from
  // EACCES, nor park waiting for an entry it could never get.
  json config = {
      {"entries", {{{"name", "secret/exists"}, {"type", "file"}, {"path", "/etc/hostname"}}}},
      {"rules", {{{"prefix", "public/"}, {"users", {"nobody"}}, {"allow", {"get", "delete"}}}}}};
  BrokerProcess broker(config);
  std::size_t baseline = broker.fd_count();
  EXPECT_EQ(
      as_user_expect(
          broker, nobody, nogroup, {},
          [&](Expectations& c) {
            for (const char* name : {"secret/exists", "secret/missing"}) {
              for (const char* op : {"get", "take", "delete"}) {
                c.expect({{"op", op}, {"name", name}}, "EACCES", std::string(op) + " " + name);
              }
              c.put(name, "EACCES", std::string("put ") + name);
            }
            // Refused at once, not after the wait.
            c.expect({{"op", "get"}, {"name", "secret/missing"}, {"wait_ms", 60000}}, "EACCES",
                     "get with wait_ms");
            // Where it may look, existence is its business.
            c.expect({{"op", "get"}, {"name", "public/missing"}}, "ENOENT", "get public");
            c.expect({{"op", "delete"}, {"name", "public/missing"}}, "ENOENT", "delete public");
          }),
      "");
  EXPECT_TRUE(broker.settles_at(baseline));  // the refused puts' descriptors were closed
}

TEST(BrokerAccess, QuotasArePerUid) {
  json config = {{"limits", {{"max_entries_per_uid", 1}}},
                 {"rules", {{{"prefix", ""}, {"users", {"*"}}, {"allow", {"put"}}}}}};
  BrokerProcess broker(config);
  auto root = broker.connect();
  auto p = pipe_pair();
  ASSERT_TRUE(call(root.get(), {{"op", "put"}, {"name", "r1"}}, {p.write.get()}).ok());
  EXPECT_EQ(call(root.get(), {{"op", "put"}, {"name", "r2"}}, {p.write.get()}).error(), "EDQUOT");
  EXPECT_EQ(as_user_expect(broker, nobody, nogroup, {},
                           [&](Expectations& c) {
                             c.put("n1", "", "first");
                             c.put("n2", "EDQUOT", "second");
                           }),
            "");
}
