// SPDX-License-Identifier: LGPL-2.1-or-later
// The Closer, in process. A close that hangs for a while is made with a real
// kernel object: a blocking TCP socket whose peer reads nothing, with unsent
// data and SO_LINGER, whose close() waits out the linger time (a FUSE file
// whose daemon stopped answering is the Python test test_fuse_stall.py).
#include "closer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>

#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A TCP connection over loopback whose close() blocks for `linger` seconds.
struct LingeringSocket {
  unique_fd listener, client, server;

  explicit LingeringSocket(int linger_s) {
    listener.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(listener.get(), 1), 0);
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len);
    client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int small = 4096;
    ::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    EXPECT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ::setsockopt(server.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    // Fill both buffers: the peer never reads, so the data stays unsent.
    ::fcntl(client.get(), F_SETFL, O_NONBLOCK);
    char chunk[4096] = {};
    while (::send(client.get(), chunk, sizeof chunk, MSG_NOSIGNAL) > 0) {
    }
    ::fcntl(client.get(), F_SETFL, 0);  // blocking again: close() waits for the linger
    linger l{1, linger_s};
    EXPECT_EQ(::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  }
};

struct Lines {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex);
      lines.push_back(line);
    };
  }
  bool any(std::string_view what) {
    std::lock_guard lock(mutex);
    for (const auto& l : lines)
      if (l.find(what) != std::string::npos) return true;
    return false;
  }
};

// Whether the last copy of a pipe's read end is closed: writing fails with EPIPE.
bool read_end_closed(int write_end) { return ::write(write_end, "x", 1) < 0 && errno == EPIPE; }

}  // namespace

class CloserTest : public ::testing::Test {
 protected:
  void SetUp() override { std::signal(SIGPIPE, SIG_IGN); }
};

TEST_F(CloserTest, ClosesEverythingItIsGivenAndEmptiesTheVector) {
  auto before = test::open_fd_count();
  {
    Closer closer;
    std::vector<unique_fd> fds;
    for (int i = 0; i < 100; ++i) fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    auto p = test::pipe_pair();
    fds.push_back(std::move(p.read));
    closer.close(fds, 1000);
    EXPECT_TRUE(fds.empty());
    ASSERT_TRUE(closer.wait_idle(5s));
    EXPECT_EQ(closer.pending(), 0u);
    EXPECT_TRUE(read_end_closed(p.write.get()));
  }
  EXPECT_EQ(test::open_fd_count(), before);
}

TEST_F(CloserTest, CloseLaterWithoutACloserClosesAtOnce) {
  ASSERT_EQ(Closer::current(), nullptr);
  auto p = test::pipe_pair();
  std::vector<unique_fd> fds;
  fds.push_back(std::move(p.read));
  close_later(fds, 5);
  EXPECT_TRUE(fds.empty());
  EXPECT_TRUE(read_end_closed(p.write.get()));
  EXPECT_FALSE(closes_over_quota(5));
}

TEST_F(CloserTest, AHangingCloseDelaysNoOtherMount) {
  Lines log;
  Closer closer(Closer::Options{
      .threads = 2, .max_pending_per_uid = 100, .slow_after = 100ms, .warn = log.sink()});
  LingeringSocket hang(2);
  std::vector<unique_fd> fds;
  fds.push_back(std::move(hang.client));
  closer.close(fds);
  std::this_thread::sleep_for(50ms);  // (not needed for the check; lets the hang start first)
  auto p = test::pipe_pair();
  fds.push_back(std::move(p.read));
  auto start = Clock::now();
  closer.close(fds);
  while (!read_end_closed(p.write.get())) {
    ASSERT_LT(Clock::now() - start, 1500ms) << "the pipe's close waited behind the hanging socket";
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(closer.pending(), 1u);  // the socket is still being closed
  // Logged while it hangs, and when it returns.
  while (!log.any("has not returned")) {
    ASSERT_LT(Clock::now() - start, 1500ms);
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(closer.slow(), 1u);
  ASSERT_TRUE(closer.wait_idle(10s));
  EXPECT_TRUE(log.any("returned after"));
  EXPECT_EQ(closer.slow(), 0u);
}

TEST_F(CloserTest, PendingClosesAreCountedPerUid) {
  Closer closer(
      Closer::Options{.threads = 2, .max_pending_per_uid = 2, .slow_after = 10s, .warn = {}});
  Closer::make_current(&closer);
  LingeringSocket hang(2);
  LingeringSocket waits_behind(1);  // same mount (sockfs): never two closes on one mount at once
  std::vector<unique_fd> fds;
  fds.push_back(std::move(hang.client));
  close_later(fds, 1000);
  EXPECT_FALSE(closes_over_quota(1000));
  fds.push_back(std::move(waits_behind.client));
  close_later(fds, 1000);
  EXPECT_TRUE(closes_over_quota(1000));
  EXPECT_FALSE(closes_over_quota(1001));
  EXPECT_FALSE(closes_over_quota(Closer::no_uid));
  EXPECT_EQ(closer.pending(), 2u);
  ASSERT_TRUE(closer.wait_idle(10s));
  EXPECT_FALSE(closes_over_quota(1000));
  Closer::make_current(nullptr);
}

TEST_F(CloserTest, DestructorDoesNotWaitForAHangingClose) {
  auto hang = std::make_unique<LingeringSocket>(3);
  auto start = Clock::now();
  {
    Closer closer;
    Closer::make_current(&closer);
    closer.close(std::move(hang->client));
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(closer.pending(), 1u);
  }  // the close still hangs here: its thread is left to finish on its own
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(Closer::current(), nullptr);  // no dangling current closer
}

TEST_F(CloserTest, CountsWhatWaitsBehindASlowClose) {
  Lines log;
  Closer closer(Closer::Options{
      .threads = 2, .max_pending_per_uid = 100, .slow_after = 100ms, .warn = log.sink()});
  LingeringSocket hang(1);
  auto quick = test::pipe_pair();  // pipefs: another mount, never behind the socket
  unique_fd behind(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));  // sockfs, as the hanging one
  closer.close(std::move(hang.client));
  auto start = Clock::now();
  while (closer.slow() == 0) {
    ASSERT_LT(Clock::now() - start, 900ms);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(closer.queued_behind_slow(), 0u);
  closer.close(std::move(behind));
  closer.close(std::move(quick.read));
  while (!read_end_closed(quick.write.get())) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(closer.queued_behind_slow(), 1u);
  ASSERT_TRUE(closer.wait_idle(10s));
  EXPECT_EQ(closer.queued_behind_slow(), 0u);
}
