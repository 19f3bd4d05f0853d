// SPDX-License-Identifier: LGPL-2.1-or-later
#include "worker_pool.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

namespace fdbroker::daemon {

// Shared by the pool and its threads: a thread stuck in a job outlives the pool.
struct WorkerPool::State {
  struct Item {
    std::unique_ptr<Job> job;
    uid_t uid;
  };
  struct Counts {
    std::size_t pending = 0;  // queued, running or done but not finished
    std::size_t running = 0;
  };

  Options options;
  std::mutex mutex;
  std::condition_variable work;  // a job was queued, or a uid's running job returned
  std::deque<Item> queue;
  std::deque<Item> done;  // ran; finish() due on the loop
  std::unordered_map<uid_t, Counts> per_uid;
  bool stopping = false;
  unique_fd wakeup;  // eventfd: readable when `done` is not empty

  // The oldest job whose uid may run one more.
  std::deque<Item>::iterator next() {
    return std::find_if(queue.begin(), queue.end(), [this](const Item& item) {
      return per_uid[item.uid].running < options.max_running_per_uid;
    });
  }

  void worker() {
    std::unique_lock lock(mutex);
    for (;;) {
      if (stopping) return;
      auto it = next();
      if (it == queue.end()) {
        work.wait(lock);
        continue;
      }
      Item item = std::move(*it);
      queue.erase(it);
      ++per_uid[item.uid].running;
      lock.unlock();
      item.job->run();
      lock.lock();
      --per_uid[item.uid].running;
      if (stopping) {
        // The pool is gone: nobody will finish this job. Its destructor
        // releases what it holds, here, off any loop.
        lock.unlock();
        item.job.reset();
        return;
      }
      done.push_back(std::move(item));
      std::uint64_t one = 1;
      (void)!::write(wakeup.get(), &one, sizeof one);
      work.notify_all();  // a job of this uid may run now
    }
  }
};

WorkerPool::WorkerPool(EventLoop& loop, Options options)
    : loop_(loop), state_(std::make_shared<State>()) {
  state_->options = options;
  state_->wakeup = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!state_->wakeup.valid()) throw std::system_error(errno, std::generic_category(), "eventfd");
  if (auto ec = loop_.watch(state_->wakeup.get(), EPOLLIN, [this](std::uint32_t) { on_done(); })) {
    throw std::system_error(ec, "watching the worker pool");
  }
  // The threads inherit the mask in force when they are created: all blocked,
  // so that every signal goes to the loop's signalfd.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  for (unsigned i = 0; i < options.threads; ++i) {
    std::thread([state = state_] { state->worker(); }).detach();
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

WorkerPool::~WorkerPool() {
  loop_.unwatch(state_->wakeup.get());
  std::deque<State::Item> dropped;
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
    dropped.swap(state_->queue);
    dropped.insert(dropped.end(), std::make_move_iterator(state_->done.begin()),
                   std::make_move_iterator(state_->done.end()));
    state_->done.clear();
    // No thread writes to it once `stopping` is set (under this lock): closed
    // now, not whenever the last thread returns.
    state_->wakeup.reset();
  }
  state_->work.notify_all();
  // `dropped` goes here: jobs that never ran, or ran and were never finished.
}

bool WorkerPool::submit(std::unique_ptr<Job>& job, uid_t uid) {
  {
    std::lock_guard lock(state_->mutex);
    State::Counts& mine = state_->per_uid[uid];
    if (state_->queue.size() >= state_->options.max_queued ||
        mine.pending >= state_->options.max_pending_per_uid) {
      if (mine.pending == 0) state_->per_uid.erase(uid);
      return false;
    }
    ++mine.pending;
    state_->queue.push_back({std::move(job), uid});
  }
  state_->work.notify_all();
  return true;
}

std::size_t WorkerPool::pending() const {
  std::lock_guard lock(state_->mutex);
  std::size_t n = 0;
  for (const auto& [uid, counts] : state_->per_uid) n += counts.pending;
  return n;
}

void WorkerPool::on_done() {
  std::uint64_t count = 0;
  (void)!::read(state_->wakeup.get(), &count, sizeof count);
  std::deque<State::Item> finished;
  {
    std::lock_guard lock(state_->mutex);
    finished.swap(state_->done);
    for (const auto& item : finished) {
      auto it = state_->per_uid.find(item.uid);
      if (it != state_->per_uid.end() && --it->second.pending == 0) state_->per_uid.erase(it);
    }
  }
  // finish() may submit more work or destroy whatever it likes, but not the
  // pool itself (the broker owns both and outlives the loop's handlers).
  for (auto& item : finished) item.job->finish();
}

}  // namespace fdbroker::daemon
