// SPDX-License-Identifier: LGPL-2.1-or-later
// Waiters on a real EventLoop: requests parked by connection id, found by the
// entry's name in the order they came, expired by the loop's timer exactly once,
// and a connection that closes while its request waits leaves nothing behind.
#include "waiters.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "run_loop.hpp"

using namespace fdbroker::daemon;
using namespace std::chrono_literals;
using fdbroker::test::run_until;

namespace {

Request get_request(const std::string& name, const std::string& id) {
  Request req;
  req.has_op = true;
  req.op = Op::get;
  req.name = name;
  req.id = id;
  req.wait_ms = 60000;
  return req;
}

struct Expiry {
  ConnectionId id;
  std::string name;
  std::string request_id;
};

}  // namespace

TEST(Waiters, WakeByNameFindsTheWaitersOfThatNameInTheOrderTheyCame) {
  EventLoop loop;
  Waiters waiters(loop, nullptr);
  waiters.park(11, get_request("db", "1"), 60s);
  waiters.park(12, get_request("cache", "2"), 60s);
  waiters.park(13, get_request("db", "3"), 60s);
  EXPECT_EQ(waiters.waiting_for("db"), (std::vector<ConnectionId>{11, 13}));
  EXPECT_EQ(waiters.waiting_for("cache"), (std::vector<ConnectionId>{12}));
  EXPECT_TRUE(waiters.waiting_for("nothing").empty());
  // Waking: each is unparked in turn and gets its own request back.
  for (ConnectionId id : waiters.waiting_for("db")) {
    auto r = waiters.unpark(id);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->name, "db");
    EXPECT_EQ(r->id, id == 11 ? "1" : "3");
  }
  EXPECT_TRUE(waiters.waiting_for("db").empty());
  EXPECT_FALSE(waiters.parked(11));
  EXPECT_TRUE(waiters.parked(12));
  EXPECT_EQ(waiters.size(), 1u);
}

TEST(Waiters, ExpiryHandsBackTheRequestOnceAndForgetsIt) {
  EventLoop loop;
  std::vector<Expiry> expired;
  Waiters waiters(loop, [&](ConnectionId id, std::unique_ptr<Request> r) {
    ASSERT_NE(r, nullptr);
    EXPECT_FALSE(waiters.parked(id));  // no longer parked when told
    expired.push_back({id, r->name, r->id});
  });
  waiters.park(7, get_request("late", "\"x\""), 20ms);
  waiters.park(8, get_request("late", "\"y\""), 60s);
  ASSERT_TRUE(run_until(loop, [&] { return !expired.empty(); }));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].id, 7u);
  EXPECT_EQ(expired[0].name, "late");
  EXPECT_EQ(expired[0].request_id, "\"x\"");
  EXPECT_EQ(waiters.waiting_for("late"), (std::vector<ConnectionId>{8}));
  EXPECT_EQ(waiters.unpark(7), nullptr);
  // Never a second time.
  EXPECT_FALSE(run_until(
      loop, [&] { return expired.size() > 1; }, 100ms));
}

TEST(Waiters, AConnectionClosedWhileWaitingLeavesNothingBehind) {
  EventLoop loop;
  std::vector<Expiry> expired;
  Waiters waiters(loop, [&](ConnectionId id, std::unique_ptr<Request> r) {
    expired.push_back({id, r->name, r->id});
  });
  waiters.park(5, get_request("db", "1"), 10ms);
  // The connection closes: the broker unparks it, which cancels its timer.
  auto r = waiters.unpark(5);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->name, "db");
  EXPECT_FALSE(run_until(
      loop, [&] { return !expired.empty(); }, 100ms));
  EXPECT_TRUE(expired.empty());
  EXPECT_TRUE(waiters.waiting_for("db").empty());
  EXPECT_EQ(waiters.size(), 0u);
  EXPECT_EQ(waiters.unpark(5), nullptr);
  // A new connection (a new id, even if the kernel gave it the same fd number)
  // waits on its own, and nothing of the old one wakes or expires with it.
  waiters.park(6, get_request("db", "2"), 10ms);
  EXPECT_EQ(waiters.waiting_for("db"), (std::vector<ConnectionId>{6}));
  ASSERT_TRUE(run_until(loop, [&] { return !expired.empty(); }));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].id, 6u);
  EXPECT_EQ(expired[0].request_id, "2");
}

TEST(Waiters, DestroyedWithRequestsParkedItsTimersNeverFire) {
  EventLoop loop;
  int fired = 0;
  {
    Waiters waiters(loop, [&](ConnectionId, std::unique_ptr<Request>) { ++fired; });
    waiters.park(1, get_request("a", "1"), 5ms);
    waiters.park(2, get_request("b", "2"), 5ms);
  }
  EXPECT_FALSE(run_until(
      loop, [&] { return fired > 0; }, 100ms));
}
