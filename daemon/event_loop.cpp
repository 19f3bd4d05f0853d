// SPDX-License-Identifier: LGPL-2.1-or-later
#include "event_loop.hpp"

#include <fdbroker/error.hpp>

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

namespace fdbroker::daemon {

EventLoop::EventLoop() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) throw_errno(errno, "epoll_create1");
  timerfd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timerfd_.valid()) throw_errno(errno, "timerfd_create");
  sigset_t none;
  sigemptyset(&none);
  signalfd_.reset(::signalfd(-1, &none, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signalfd_.valid()) throw_errno(errno, "signalfd");
  for (int fd : {timerfd_.get(), signalfd_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    // The loop's own fds are tagged by number: small integers, never a Watch pointer.
    ev.data.u64 = static_cast<std::uint64_t>(fd);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno(errno, "epoll_ctl");
  }
}

EventLoop::~EventLoop() = default;

std::error_code EventLoop::watch(int fd, std::uint32_t events, FdHandler handler) {
  auto w = std::make_unique<Watch>(Watch{fd, std::move(handler)});
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = w.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_code(errno);
  watches_[fd] = std::move(w);
  return {};
}

std::error_code EventLoop::modify(int fd, std::uint32_t events) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return errno_code(ENOENT);
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = it->second.get();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return errno_code(errno);
  return {};
}

void EventLoop::unwatch(int fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  // Events for it may still sit in the current batch: keep the Watch allocated
  // (and marked dead) until the batch is done, so those events are skipped.
  it->second->alive = false;
  graveyard_.push_back(std::move(it->second));
  watches_.erase(it);
}

EventLoop::TimerId EventLoop::add_timer(Clock::time_point when, std::function<void()> fn) {
  TimerId id = next_timer_++;
  timers_.emplace(when, id);
  timer_fns_.emplace(id, std::pair{when, std::move(fn)});
  if (when < armed_) arm_timerfd();
  return id;
}

void EventLoop::cancel(TimerId id) {
  auto it = timer_fns_.find(id);
  if (it == timer_fns_.end()) return;
  timers_.erase({it->second.first, id});
  timer_fns_.erase(it);
  // The timerfd may now fire early for nothing; run_timers() copes, and re-arms.
}

void EventLoop::arm_timerfd() {
  itimerspec spec{};
  if (timers_.empty()) {
    armed_ = Clock::time_point::max();
  } else {
    armed_ = timers_.begin()->first;
    auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(armed_.time_since_epoch()).count();
    // steady_clock is CLOCK_MONOTONIC on Linux, so its epoch is the timerfd's.
    // A zero it_value would disarm: make it at least 1 ns.
    if (ns <= 0) ns = 1;
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  ::timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
}

void EventLoop::run_timers() {
  std::uint64_t expirations;
  (void)!::read(timerfd_.get(), &expirations, sizeof expirations);
  auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    TimerId id = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto it = timer_fns_.find(id);
    std::function<void()> fn = std::move(it->second.second);
    timer_fns_.erase(it);
    fn();  // may add or cancel timers
  }
  arm_timerfd();
}

void EventLoop::on_signal(int signo, std::function<void()> fn) {
  signals_[signo] = std::move(fn);
  sigset_t set;
  sigemptyset(&set);
  for (auto& [s, f] : signals_) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signalfd(signalfd_.get(), &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

void EventLoop::read_signals() {
  signalfd_siginfo info;
  while (::read(signalfd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    auto it = signals_.find(static_cast<int>(info.ssi_signo));
    if (it != signals_.end()) it->second();
  }
}

EventLoop::HookId EventLoop::add_turn_hook(std::function<void()> fn) {
  HookId id = next_hook_++;
  turn_hooks_.emplace(id, std::move(fn));
  return id;
}

void EventLoop::remove_turn_hook(HookId id) { turn_hooks_.erase(id); }

void EventLoop::run_turn_hooks() {
  // By id, looked up afresh each time: a hook may remove others (or itself).
  for (auto it = turn_hooks_.begin(); it != turn_hooks_.end();) {
    HookId id = it->first;
    std::function<void()> fn = it->second;  // a copy: the hook may remove itself
    fn();
    it = turn_hooks_.upper_bound(id);
  }
}

void EventLoop::run() {
  running_ = true;
  epoll_event events[64];
  run_turn_hooks();  // what was left before the loop started (a restored state to write)
  while (running_) {
    int n = ::epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, "epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      std::uint64_t tag = events[i].data.u64;
      if (tag == static_cast<std::uint64_t>(timerfd_.get())) {
        run_timers();
      } else if (tag == static_cast<std::uint64_t>(signalfd_.get())) {
        read_signals();
      } else {
        auto* w = static_cast<Watch*>(events[i].data.ptr);
        if (w->alive) w->handler(events[i].events);
      }
    }
    graveyard_.clear();
    run_turn_hooks();
  }
}

}  // namespace fdbroker::daemon
