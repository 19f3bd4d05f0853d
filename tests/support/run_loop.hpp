// SPDX-License-Identifier: LGPL-2.1-or-later
// Driving the daemon's EventLoop from a test: run it until a condition holds,
// with a bound that only limits how long a failing test waits.
#pragma once

#include <chrono>
#include <functional>

#include "event_loop.hpp"

namespace fdbroker::test {

// Runs `loop` until `done()` or `limit` passed; whether `done()` was reached.
// `done` is checked every millisecond, between the loop's own events.
inline bool run_until(daemon::EventLoop& loop, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  using daemon::Clock;
  auto deadline = Clock::now() + limit;
  bool met = false;
  std::function<void()> tick = [&] {
    if (done()) {
      met = true;
      loop.stop();
    } else if (Clock::now() >= deadline) {
      loop.stop();
    } else {
      loop.add_timer(Clock::now() + std::chrono::milliseconds(1), tick);
    }
  };
  loop.add_timer(Clock::now(), tick);
  loop.run();
  return met;
}

}  // namespace fdbroker::test
