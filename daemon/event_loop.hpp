// SPDX-License-Identifier: LGPL-2.1-or-later
// One thread, one epoll: fd watches, timers (one timerfd for all of them) and
// signals (a signalfd), each with a callback.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <fdbroker/unique_fd.hpp>

#include "clock.hpp"

namespace fdbroker::daemon {

class EventLoop {
 public:
  using FdHandler = std::function<void(std::uint32_t events)>;
  using TimerId = std::uint64_t;
  using HookId = std::uint64_t;

  // Creates the epoll, timerfd and signalfd. Throws std::system_error.
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Watches `fd` (borrowed: the caller closes it after unwatch()) for `events`
  // (EPOLLIN/EPOLLOUT; level-triggered). Errors: epoll_ctl's.
  std::error_code watch(int fd, std::uint32_t events, FdHandler handler);
  std::error_code modify(int fd, std::uint32_t events);
  // Safe from inside any handler, including the fd's own.
  void unwatch(int fd);

  // Runs `fn` once at `when`. Returns an id for cancel(); never 0.
  TimerId add_timer(Clock::time_point when, std::function<void()> fn);
  // Cancelling an id that already fired or was cancelled is a no-op.
  void cancel(TimerId id);

  // Blocks `signo` and calls `fn` when it arrives (through the signalfd).
  void on_signal(int signo, std::function<void()> fn);

  // Runs `fn` at the end of every turn of the loop: after each batch of events
  // has been handled (and once before the first wait), before epoll_wait blocks
  // again; also after the batch in which stop() was called. Work that the batch's
  // handlers left for the end of the turn goes here, e.g. one fd-store state
  // write for all of them (group commit). Hooks run in the order they were added;
  // one may add timers, watch fds or remove hooks. Returns an id, never 0.
  HookId add_turn_hook(std::function<void()> fn);
  // Removing an id that was removed already is a no-op.
  void remove_turn_hook(HookId id);

  // Runs until stop(). Throws std::system_error if epoll_wait fails.
  void run();
  void stop() noexcept { running_ = false; }

 private:
  struct Watch {
    int fd;
    FdHandler handler;
    bool alive = true;
  };

  void arm_timerfd();
  void run_timers();
  void read_signals();
  void run_turn_hooks();

  unique_fd epoll_;
  unique_fd timerfd_;
  unique_fd signalfd_;
  std::unordered_map<int, std::unique_ptr<Watch>> watches_;
  std::vector<std::unique_ptr<Watch>> graveyard_;  // unwatched during a batch; freed after it

  std::set<std::pair<Clock::time_point, TimerId>> timers_;
  std::unordered_map<TimerId, std::pair<Clock::time_point, std::function<void()>>> timer_fns_;
  TimerId next_timer_ = 1;
  Clock::time_point armed_ = Clock::time_point::max();

  std::map<HookId, std::function<void()>> turn_hooks_;  // by id: the order they were added
  HookId next_hook_ = 1;

  std::map<int, std::function<void()>> signals_;
  bool running_ = false;
};

}  // namespace fdbroker::daemon
