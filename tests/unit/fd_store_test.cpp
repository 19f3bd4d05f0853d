// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_store.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using fdbroker::test::pipe_pair;
using fdbroker::test::reaches_eof;

namespace {

StoredEntry make_entry(const std::string& name, uid_t owner, std::vector<unique_fd> fds,
                       std::optional<Clock::time_point> expiry = std::nullopt) {
  StoredEntry e;
  e.name = name;
  e.owner = owner;
  e.fds = std::make_shared<const FdSet>(std::move(fds));
  e.fds_json = "[]";
  e.expiry = expiry;
  e.render();
  return e;
}

std::vector<unique_fd> one(unique_fd fd) {
  std::vector<unique_fd> v;
  v.push_back(std::move(fd));
  return v;
}

}  // namespace

TEST(FdStore, InsertFindExtractKeepTheBooks) {
  FdStore store(10);
  auto p = pipe_pair();
  auto now = Clock::now();
  EXPECT_EQ(store.find("a", now), nullptr);
  StoredEntry e = make_entry("a", 1000, one(std::move(p.write)));
  e.generation = store.next_generation();
  EXPECT_EQ(e.generation, 10u);
  EXPECT_FALSE(store.insert(std::move(e)).has_value());
  ASSERT_NE(store.find("a", now), nullptr);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.fds_held(), 1u);
  EXPECT_EQ(store.usage(1000).entries, 1u);
  EXPECT_EQ(store.usage(1000).fds, 1u);
  EXPECT_EQ(store.next_generation(), 11u);
  auto out = store.extract("a");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.fds_held(), 0u);
  EXPECT_EQ(store.usage(1000).entries, 0u);
  out.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));  // dropping the entry closed its fd
}

TEST(FdStore, InsertReplacesAndReturnsTheOldEntry) {
  FdStore store;
  auto p1 = pipe_pair();
  auto p2 = pipe_pair();
  store.insert(make_entry("a", 1, one(std::move(p1.write))));
  auto old = store.insert(make_entry("a", 2, one(std::move(p2.write))));
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->owner, 1u);
  EXPECT_EQ(store.usage(1).entries, 0u);
  EXPECT_EQ(store.usage(2).entries, 1u);
  EXPECT_EQ(store.fds_held(), 1u);
  old.reset();
  EXPECT_TRUE(reaches_eof(p1.read.get()));
  EXPECT_TRUE(fdbroker::test::write_end_open(p2.read.get()));
}

TEST(FdStore, SharedFdSetOutlivesTheEntry) {
  FdStore store;
  auto p = pipe_pair();
  store.insert(make_entry("a", 1, one(std::move(p.write))));
  std::shared_ptr<const FdSet> queued =
      store.find("a", Clock::now())->fds;  // as a queued reply holds it
  store.extract("a");
  EXPECT_TRUE(fdbroker::test::write_end_open(p.read.get()));
  EXPECT_EQ(FdSet::live(), 1u);
  queued.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_EQ(FdSet::live(), 0u);
}

TEST(FdStore, ExpiredEntriesAreInvisibleAndExpireRemovesThem) {
  FdStore store;
  auto now = Clock::now();
  auto p = pipe_pair();
  store.insert(make_entry("soon", 1, one(std::move(p.write)), now + std::chrono::milliseconds(10)));
  store.insert(
      make_entry("later", 1, one(unique_fd(::dup(p.read.get()))), now + std::chrono::hours(1)));
  store.insert(make_entry("never", 1, one(unique_fd(::dup(p.read.get())))));
  ASSERT_TRUE(store.next_expiry().has_value());
  EXPECT_EQ(*store.next_expiry(), now + std::chrono::milliseconds(10));
  EXPECT_NE(store.find("soon", now), nullptr);
  EXPECT_EQ(store.find("soon", now + std::chrono::milliseconds(10)), nullptr);
  auto gone = store.expire(now + std::chrono::milliseconds(20));
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].name, "soon");
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(*store.next_expiry(), now + std::chrono::hours(1));
  store.extract("later");
  EXPECT_FALSE(store.next_expiry().has_value());
}

TEST(FdStore, StaticEntriesCountTowardNoQuota) {
  FdStore store;
  auto p = pipe_pair();
  StoredEntry e = make_entry("s", 0, one(std::move(p.write)));
  e.is_static = true;
  store.insert(std::move(e));
  EXPECT_EQ(store.usage(0).entries, 0u);
  EXPECT_EQ(store.fds_held(), 1u);
}

TEST(FdStore, RenderPrecomputesReplyAndListFragments) {
  auto p = pipe_pair();
  StoredEntry e = make_entry("n/a", 7, one(std::move(p.write)));
  e.generation = 42;
  e.meta = R"({"k":"v"})";
  e.fds_json = R"([{"kind":"pipe"}])";
  e.render();
  EXPECT_EQ(e.reply_body,
            R"("ok":true,"name":"n/a","generation":42,"meta":{"k":"v"},"owner":{"uid":7},)"
            R"("fds":[{"kind":"pipe"}]})");
  EXPECT_EQ(e.list_head + "}",
            R"({"name":"n/a","generation":42,"meta":{"k":"v"},"owner":{"uid":7},)"
            R"("fds":[{"kind":"pipe"}],"static":false})");
}
