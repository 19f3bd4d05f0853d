// SPDX-License-Identifier: LGPL-2.1-or-later
// Runs work that may block (an `open` on behalf of a client) off the event loop,
// and finishes it on the loop.
//
// Why: open() waits for as long as the file system wants (a FUSE daemon that
// stopped answering, a hung NFS server); on the loop's thread, one such open
// would freeze every client. Here it holds one worker thread, and the loop goes
// on serving everyone else.
//
// How it stays bounded, and fair: a fixed number of threads; at most
// max_running_per_uid of them run one uid's jobs at once, so that one uid whose
// opens hang cannot occupy every thread (its further jobs wait, and other uids'
// jobs pass them); a queue of at most max_queued jobs, max_pending_per_uid of
// one uid (submit() refuses more).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>

#include "event_loop.hpp"

namespace fdbroker::daemon {

class WorkerPool {
 public:
  // One piece of work: run() on a worker thread, then finish() on the loop's
  // thread. A job whose pool is gone before it finishes is destroyed on its
  // worker thread without finish(): its destructor must release what it holds.
  class Job {
   public:
    virtual ~Job() = default;
    virtual void run() = 0;
    virtual void finish() = 0;
  };

  struct Options {
    unsigned threads = 4;
    std::size_t max_queued = 1024;
    std::size_t max_pending_per_uid = 256;
    std::size_t max_running_per_uid = 2;
  };

  // Creates the threads (signals blocked in them: the loop takes them). Throws
  // std::system_error.
  WorkerPool(EventLoop& loop, Options options);
  // Never waits for a job that hangs: threads still running one are left to
  // finish on their own (detached), and their jobs are destroyed there.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job` for `uid`. False (and `job` left untouched) when the queue is
  // full or `uid` has max_pending_per_uid jobs not finished yet.
  [[nodiscard]] bool submit(std::unique_ptr<Job>& job, uid_t uid);

  // Jobs queued, running or done but not yet finished.
  [[nodiscard]] std::size_t pending() const;

 private:
  struct State;
  void on_done();

  EventLoop& loop_;
  std::shared_ptr<State> state_;
};

}  // namespace fdbroker::daemon
