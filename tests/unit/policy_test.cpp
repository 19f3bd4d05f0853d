// SPDX-License-Identifier: LGPL-2.1-or-later
#include "policy.hpp"

#include <gtest/gtest.h>

using namespace fdbroker::daemon;

namespace {

ClientIdentity peer(uid_t uid, gid_t gid = 100, std::vector<gid_t> groups = {}) {
  ClientIdentity p;
  p.uid = uid;
  p.gid = gid;
  p.groups = std::move(groups);
  return p;
}

Rule rule(std::string match, bool prefix, Principals who, unsigned allow, unsigned deny = 0) {
  Rule r;
  r.match = std::move(match);
  r.prefix = prefix;
  r.who = std::move(who);
  r.allow = allow;
  r.deny = deny;
  r.origin = "test";
  return r;
}

}  // namespace

TEST(Policy, RootAndTheBrokersOwnUidMayDoAnything) {
  Policy policy({}, perm_get | perm_take | perm_delete, 1234);
  for (unsigned perm : {perm_get, perm_take, perm_put, perm_delete, perm_stats}) {
    EXPECT_TRUE(policy.check(peer(0), perm, "x", nullptr).allowed);
    EXPECT_TRUE(policy.check(peer(1234), perm, "x", nullptr).allowed);
    EXPECT_FALSE(policy.check(peer(1000), perm, "x", nullptr).allowed);
  }
}

TEST(Policy, OwnerMayGetTakeDeleteButNotPut) {
  Policy policy({}, perm_get | perm_take | perm_delete, 0);
  uid_t owner = 1000;
  EXPECT_TRUE(policy.check(peer(1000), perm_get, "x", &owner).allowed);
  EXPECT_TRUE(policy.check(peer(1000), perm_take, "x", &owner).allowed);
  EXPECT_TRUE(policy.check(peer(1000), perm_delete, "x", &owner).allowed);
  EXPECT_FALSE(policy.check(peer(1000), perm_put, "x", &owner).allowed);
  EXPECT_FALSE(policy.check(peer(1001), perm_get, "x", &owner).allowed);
  EXPECT_EQ(policy.check(peer(1000), perm_get, "x", &owner).reason, "owner");
}

TEST(Policy, OwnerRightsAreConfigurable) {
  Policy policy({}, perm_get, 0);
  uid_t owner = 1000;
  EXPECT_TRUE(policy.check(peer(1000), perm_get, "x", &owner).allowed);
  EXPECT_FALSE(policy.check(peer(1000), perm_take, "x", &owner).allowed);
}

TEST(Policy, PrefixRulesMatchUsersAndGroups) {
  Principals users;
  users.users = {1000};
  Principals groups;
  groups.groups = {50};
  Policy policy(
      {rule("web/", true, users, perm_get | perm_put), rule("db", false, groups, perm_get)},
      perm_get, 0);
  EXPECT_TRUE(policy.check(peer(1000), perm_get, "web/http", nullptr).allowed);
  EXPECT_TRUE(policy.check(peer(1000), perm_put, "web/", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(1000), perm_take, "web/http", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(1000), perm_get, "webx", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(1001), perm_get, "web/http", nullptr).allowed);
  // Exact name: no prefix match.
  EXPECT_TRUE(policy.check(peer(2000, 50), perm_get, "db", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(2000, 50), perm_get, "db2", nullptr).allowed);
  // Supplementary groups count as much as the primary one.
  EXPECT_TRUE(policy.check(peer(2000, 7, {3, 50}), perm_get, "db", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(2000, 7, {3}), perm_get, "db", nullptr).allowed);
}

TEST(Policy, DenyBeatsAllowAndOwnership) {
  Principals anyone;
  anyone.any = true;
  Policy policy(
      {rule("", true, anyone, perm_get), rule("locked", false, anyone, 0, perm_get | perm_delete)},
      perm_get | perm_take | perm_delete, 0);
  uid_t owner = 1000;
  EXPECT_TRUE(policy.check(peer(5), perm_get, "open", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(5), perm_get, "locked", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(1000), perm_delete, "locked", &owner).allowed);
  EXPECT_TRUE(policy.check(peer(1000), perm_take, "locked", &owner).allowed);
  // Admins are not subject to rules.
  EXPECT_TRUE(policy.check(peer(0), perm_get, "locked", nullptr).allowed);
}

TEST(Policy, StatsRulesIgnoreTheName) {
  Principals users;
  users.users = {1000};
  Policy policy({rule("web/", true, users, perm_stats)}, 0, 0);
  EXPECT_TRUE(policy.check(peer(1000), perm_stats, "", nullptr).allowed);
  EXPECT_FALSE(policy.check(peer(1001), perm_stats, "", nullptr).allowed);
}
