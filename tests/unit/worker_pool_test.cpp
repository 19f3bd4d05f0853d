// SPDX-License-Identifier: LGPL-2.1-or-later
// The WorkerPool, in process: work runs off the loop's thread, finishes on it,
// and a job that hangs (a read from a pipe nobody writes, standing in for an
// open on a file system that never answers) holds one thread, never the loop
// or the other jobs.
#include "worker_pool.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "run_loop.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using namespace fdbroker::test;

namespace {

struct Record {
  std::atomic<int> started{0};  // hang_on: the work is under way on a worker
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  int finished = 0;  // loop thread only
  std::thread::id run_on;
  std::thread::id finish_on;
};

// Runs `work`, and counts what happened to it.
class CountingJob final : public WorkerPool::Job {
 public:
  CountingJob(Record& record, std::function<void()> work = {})
      : record_(record), work_(std::move(work)) {}
  ~CountingJob() override { ++record_.destroyed; }
  void run() override {
    if (work_) work_();
    record_.run_on = std::this_thread::get_id();
    ++record_.ran;
  }
  void finish() override {
    record_.finish_on = std::this_thread::get_id();
    ++record_.finished;
  }

 private:
  Record& record_;
  std::function<void()> work_;
};

std::unique_ptr<WorkerPool::Job> job(Record& r, std::function<void()> work = {}) {
  return std::make_unique<CountingJob>(r, std::move(work));
}

// Blocks in read() until the pipe's write end is written or closed.
std::function<void()> hang_on(const Pipe& p, Record& r) {
  int fd = p.read.get();
  return [fd, &r] {
    ++r.started;
    char c;
    (void)!::read(fd, &c, 1);
  };
}

// Waits (bounded) until `r` has `n` jobs under way.
bool started(Record& r, int n) {
  for (int i = 0; i < 5000 && r.started < n; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return r.started >= n;
}

}  // namespace

TEST(WorkerPool, RunsOffTheLoopAndFinishesOnIt) {
  EventLoop loop;
  WorkerPool pool(loop, {});
  Record r;
  auto j = job(r);
  ASSERT_TRUE(pool.submit(j, 1000));
  EXPECT_EQ(j, nullptr);  // taken
  ASSERT_TRUE(run_until(loop, [&] { return r.finished == 1; }));
  EXPECT_NE(r.run_on, std::this_thread::get_id());
  EXPECT_EQ(r.finish_on, std::this_thread::get_id());
  EXPECT_EQ(r.destroyed, 1);
  EXPECT_EQ(pool.pending(), 0u);
}

TEST(WorkerPool, AUidWhoseJobsHangHoldsItsShareOfThreadsAndOthersPassIt) {
  EventLoop loop;
  WorkerPool pool(loop, {.threads = 2, .max_running_per_uid = 1});
  Pipe stall = pipe_pair();
  Record hung, behind, quick;
  auto h = job(hung, hang_on(stall, hung));
  ASSERT_TRUE(pool.submit(h, 1));
  ASSERT_TRUE(started(hung, 1));
  // uid 1's next job waits for its running one; uid 2's pass it, on the other thread.
  auto b = job(behind);
  ASSERT_TRUE(pool.submit(b, 1));
  for (int i = 0; i < 5; ++i) {
    auto q = job(quick);
    ASSERT_TRUE(pool.submit(q, 2));
    ASSERT_TRUE(run_until(loop, [&] { return quick.finished == i + 1; }));
  }
  EXPECT_EQ(hung.ran, 0);
  EXPECT_EQ(behind.ran, 0);
  EXPECT_EQ(pool.pending(), 2u);
  stall.write.reset();  // the "file system" answers at last
  ASSERT_TRUE(run_until(loop, [&] { return hung.finished == 1 && behind.finished == 1; }));
  EXPECT_EQ(pool.pending(), 0u);
}

TEST(WorkerPool, RefusesBeyondItsBoundsAndLeavesTheJobToTheCaller) {
  EventLoop loop;
  WorkerPool pool(loop, {.threads = 1, .max_queued = 2, .max_pending_per_uid = 2});
  Pipe stall = pipe_pair();
  Record r;
  auto a = job(r, hang_on(stall, r));
  auto b = job(r);
  ASSERT_TRUE(pool.submit(a, 1));
  ASSERT_TRUE(started(r, 1));  // the one thread is held
  ASSERT_TRUE(pool.submit(b, 1));
  auto c = job(r);
  EXPECT_FALSE(pool.submit(c, 1));  // uid 1 has two
  EXPECT_NE(c, nullptr);
  auto d = job(r);
  auto e = job(r);
  EXPECT_TRUE(pool.submit(d, 2));   // the queue: b, d (a runs)
  EXPECT_FALSE(pool.submit(e, 3));  // full
  EXPECT_NE(e, nullptr);
  stall.write.reset();
  ASSERT_TRUE(run_until(loop, [&] { return r.finished == 3; }));
  // Room again for uid 1 once its jobs finished.
  EXPECT_TRUE(pool.submit(c, 1));
  ASSERT_TRUE(run_until(loop, [&] { return r.finished == 4; }));
}

TEST(WorkerPool, DestroyingThePoolNeverWaitsForAHangingJob) {
  Pipe stall = pipe_pair();
  Record r;
  std::size_t fds_before = open_fd_count();
  {
    EventLoop loop;
    WorkerPool pool(loop, {.threads = 1, .max_queued = 4});
    auto hanging = job(r, hang_on(stall, r));
    auto queued = job(r);
    ASSERT_TRUE(pool.submit(hanging, 1));
    ASSERT_TRUE(started(r, 1));
    ASSERT_TRUE(pool.submit(queued, 1));
  }  // returns although a job hangs; the queued one is destroyed, never run
  EXPECT_EQ(r.destroyed, 1);
  EXPECT_EQ(r.ran, 0);
  // The hanging job, once it returns, is destroyed on its thread, unfinished.
  stall.write.reset();
  for (int i = 0; i < 5000 && r.destroyed < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(r.destroyed, 2);
  EXPECT_EQ(r.finished, 0);
  // The eventfd is closed once the last thread is gone (just after the job);
  // of the pipe, only the read end is left.
  for (int i = 0; i < 5000 && open_fd_count() != fds_before - 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(open_fd_count(), fds_before - 1);
}
