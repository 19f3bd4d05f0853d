// SPDX-License-Identifier: LGPL-2.1-or-later
#include "closer.hpp"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "clock.hpp"
#include "fd_description.hpp"

namespace fdbroker::daemon {

namespace {

std::atomic<Closer*> current_closer{nullptr};

// Unknown mounts share one key: they may wait behind each other, never behind a known mount.
constexpr std::uint64_t unknown_mount = ~std::uint64_t{0};

}  // namespace

struct Closer::State {
  struct Item {
    int fd;
    std::uint64_t mount;
    uid_t uid;
  };
  struct Slot {  // what one thread is closing
    bool active = false;
    int fd = -1;
    std::uint64_t mount = 0;
    Clock::time_point since;
    bool reported = false;
  };

  Options options;
  mutable std::mutex mutex;
  std::condition_variable work;          // an item was queued, or a mount became free
  mutable std::condition_variable idle;  // a close finished
  std::condition_variable watch;         // wakes the watcher early (stopping)
  std::deque<Item> queue;
  std::unordered_set<std::uint64_t> busy_mounts;
  std::unordered_map<uid_t, std::size_t> per_uid;
  std::vector<Slot> slots;
  std::size_t pending = 0;
  bool stopping = false;

  void warn(const std::string& line) {
    if (stopping) return;  // the process is on its way out; logging may be gone
    if (options.warn) {
      options.warn(line);
    } else {
      spdlog::warn("{}", line);
    }
  }

  // The oldest item whose mount no thread is closing on.
  std::deque<Item>::iterator next() {
    for (auto it = queue.begin(); it != queue.end(); ++it) {
      if (!busy_mounts.contains(it->mount)) return it;
    }
    return queue.end();
  }

  void worker(std::size_t index) {
    std::unique_lock lock(mutex);
    for (;;) {
      auto it = next();
      if (it == queue.end()) {
        if (stopping && queue.empty()) return;
        work.wait(lock);
        continue;
      }
      Item item = *it;
      queue.erase(it);
      busy_mounts.insert(item.mount);
      Slot& slot = slots[index];
      slot = Slot{true, item.fd, item.mount, Clock::now(), false};
      lock.unlock();
      ::close(item.fd);  // may hang in the file system: that is why we are here
      lock.lock();
      if (slot.reported) {
        auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - slot.since);
        warn("closer: the close of fd " + std::to_string(item.fd) + " (mount " +
             mount_text(item.mount) + ") returned after " + std::to_string(took.count()) + " ms");
      }
      slot.active = false;
      busy_mounts.erase(item.mount);
      --pending;
      if (item.uid != no_uid) {
        auto u = per_uid.find(item.uid);
        if (u != per_uid.end() && --u->second == 0) per_uid.erase(u);
      }
      idle.notify_all();
      work.notify_all();  // the mount is free: its next item may go
    }
  }

  // Logs each close that hangs, once, after slow_after.
  void watcher() {
    std::unique_lock lock(mutex);
    auto period =
        std::max<std::chrono::milliseconds>(options.slow_after / 4, std::chrono::milliseconds(10));
    while (!stopping) {
      watch.wait_for(lock, period);
      auto now = Clock::now();
      for (Slot& slot : slots) {
        if (!slot.active || slot.reported || now - slot.since < options.slow_after) continue;
        slot.reported = true;
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - slot.since);
        warn("closer: the close of fd " + std::to_string(slot.fd) + " (mount " +
             mount_text(slot.mount) + ") has not returned after " + std::to_string(ms.count()) +
             " ms: its file system does not answer (a stalled FUSE daemon?); other mounts' closes "
             "go on");
      }
    }
  }

  static std::string mount_text(std::uint64_t mount) {
    return mount == unknown_mount ? std::string("unknown") : std::to_string(mount);
  }
};

Closer::Closer(Options options) : state_(std::make_shared<State>()) {
  if (options.threads == 0) options.threads = 1;
  state_->options = std::move(options);
  state_->slots.resize(state_->options.threads);
  // The threads take no signal (they inherit the mask): SIGTERM and the rest are
  // the event loop's, through its signalfd, whenever it blocks them.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  for (unsigned i = 0; i < state_->options.threads; ++i) {
    threads_.emplace_back([s = state_, i] { s->worker(i); });
  }
  threads_.emplace_back([s = state_] { s->watcher(); });
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Closer::~Closer() {
  Closer* self = this;
  current_closer.compare_exchange_strong(self, nullptr);
  bool hanging;
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
    hanging = state_->pending != 0;
  }
  state_->work.notify_all();
  state_->watch.notify_all();
  for (auto& t : threads_) {
    // Joining a thread stuck in close() would hang us with it: leave it (it
    // holds the state) and let the process go.
    if (hanging) {
      t.detach();
    } else {
      t.join();
    }
  }
}

void Closer::close(std::vector<unique_fd>& fds, uid_t uid) {
  if (fds.empty()) return;
  std::vector<State::Item> items;
  items.reserve(fds.size());
  for (auto& fd : fds) {
    // Looked up here, on the caller's thread: statx(DONT_SYNC)/fdinfo never block.
    auto mount = mount_id_of(fd.get());
    items.push_back({fd.release(), mount.value_or(unknown_mount), uid});
  }
  fds.clear();
  {
    std::lock_guard lock(state_->mutex);
    for (auto& item : items) state_->queue.push_back(item);
    state_->pending += items.size();
    if (uid != no_uid) state_->per_uid[uid] += items.size();
  }
  state_->work.notify_all();
}

void Closer::close(unique_fd fd, uid_t uid) {
  std::vector<unique_fd> one;
  one.push_back(std::move(fd));
  close(one, uid);
}

std::size_t Closer::pending() const {
  std::lock_guard lock(state_->mutex);
  return state_->pending;
}

bool Closer::over_quota(uid_t uid) const {
  if (uid == no_uid) return false;
  std::lock_guard lock(state_->mutex);
  auto it = state_->per_uid.find(uid);
  return it != state_->per_uid.end() && it->second >= state_->options.max_pending_per_uid;
}

std::size_t Closer::slow() const {
  std::lock_guard lock(state_->mutex);
  std::size_t n = 0;
  for (const auto& slot : state_->slots) n += slot.active && slot.reported ? 1 : 0;
  return n;
}

std::size_t Closer::queued_behind_slow() const {
  std::lock_guard lock(state_->mutex);
  std::unordered_set<std::uint64_t> slow_mounts;
  for (const auto& slot : state_->slots) {
    if (slot.active && slot.reported) slow_mounts.insert(slot.mount);
  }
  std::size_t n = 0;
  for (const auto& item : state_->queue) n += slow_mounts.contains(item.mount) ? 1 : 0;
  return n;
}

bool Closer::wait_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->idle.wait_for(lock, timeout, [&] { return state_->pending == 0; });
}

Closer* Closer::current() noexcept { return current_closer.load(); }
void Closer::make_current(Closer* closer) noexcept { current_closer.store(closer); }

void close_later(std::vector<unique_fd>& fds, uid_t uid) {
  if (fds.empty()) return;
  if (Closer* closer = Closer::current()) {
    closer->close(fds, uid);
  } else {
    fds.clear();
  }
}

bool closes_over_quota(uid_t uid) {
  Closer* closer = Closer::current();
  return closer != nullptr && closer->over_quota(uid);
}

}  // namespace fdbroker::daemon
