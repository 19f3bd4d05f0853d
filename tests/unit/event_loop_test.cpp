// SPDX-License-Identifier: LGPL-2.1-or-later
// EventLoop's turn hooks: they run once after each batch of events (and once
// before the first wait), in the order added, and can be removed, even by
// themselves. SystemdFdStore and the broker's durable replies rely on it.
#include "event_loop.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

#include <fdbroker/unique_fd.hpp>

namespace fdbroker::daemon {
namespace {

TEST(EventLoopTurnHooks, RunAfterEachBatchInTheOrderAdded) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  unique_fd read_end(fds[0]), write_end(fds[1]);
  std::vector<std::string> trace;
  // Two bytes in the pipe: the handler reads one per event, so two turns see it.
  ASSERT_EQ(::write(write_end.get(), "ab", 2), 2);
  ASSERT_FALSE(loop.watch(read_end.get(), EPOLLIN, [&](std::uint32_t) {
    char c;
    ASSERT_EQ(::read(read_end.get(), &c, 1), 1);
    trace.push_back(std::string("read ") + c);
    if (c == 'b') loop.stop();
  }));
  loop.add_turn_hook([&] { trace.push_back("first"); });
  loop.add_turn_hook([&] { trace.push_back("second"); });
  loop.run();
  std::vector<std::string> expected = {"first",  "second", "read a", "first",
                                       "second", "read b", "first",  "second"};
  EXPECT_EQ(trace, expected);
  loop.unwatch(read_end.get());
}

TEST(EventLoopTurnHooks, RemovedHooksStopRunningEvenFromInsideAHook) {
  EventLoop loop;
  int runs_a = 0, runs_b = 0, turns = 0;
  EventLoop::HookId b = 0;
  EventLoop::HookId a = loop.add_turn_hook([&] {
    ++runs_a;
    loop.remove_turn_hook(a);  // itself
    loop.remove_turn_hook(b);  // the next one, before it ran this turn
  });
  b = loop.add_turn_hook([&] { ++runs_b; });
  EventLoop::HookId counter = loop.add_turn_hook([&] {
    if (++turns == 3) loop.stop();
  });
  EXPECT_NE(a, 0u);
  EXPECT_NE(counter, 0u);
  // Three turns: a timer due now wakes the loop each time.
  std::function<void()> tick = [&] { loop.add_timer(Clock::now(), tick); };
  loop.add_timer(Clock::now(), tick);
  loop.run();
  EXPECT_EQ(runs_a, 1);
  EXPECT_EQ(runs_b, 0);
  EXPECT_EQ(turns, 3);
  loop.remove_turn_hook(a);  // again: a no-op
}

}  // namespace
}  // namespace fdbroker::daemon
