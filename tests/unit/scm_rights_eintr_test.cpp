// SPDX-License-Identifier: LGPL-2.1-or-later
// EINTR: a real signal (handler installed without SA_RESTART) interrupting a
// blocking recvfds() is retried by default and reported with no_retry_eintr.
// The helper thread sends the signal only once /proc shows the test thread
// blocked inside recvmsg, so the interruption is certain, not a matter of timing.
// sendmsg is interrupted through the syscall seam, as a blocking send cannot be
// made to block without also risking a partial stream write.
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "sys_override.hpp"
#include "test_util.hpp"

namespace {

using fdbroker::io_flags;
using namespace fdbroker::test;
using namespace std::chrono_literals;

std::atomic<int> signals_caught{0};
void on_signal(int) { signals_caught.fetch_add(1); }

// Installs on_signal for SIGUSR1 without SA_RESTART, so that a blocking syscall
// it interrupts fails with EINTR; restores the previous action afterwards.
class InterruptingHandler {
 public:
  InterruptingHandler() {
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: that is the point
    EXPECT_EQ(::sigaction(SIGUSR1, &action, &saved_), 0);
    signals_caught = 0;
  }
  InterruptingHandler(const InterruptingHandler&) = delete;
  InterruptingHandler& operator=(const InterruptingHandler&) = delete;
  ~InterruptingHandler() { ::sigaction(SIGUSR1, &saved_, nullptr); }

 private:
  struct sigaction saved_ {};
};

// True once thread `tid` of this process sleeps in syscall `nr`
// (/proc/<pid>/task/<tid>/syscall starts with the syscall number while blocked).
bool wait_until_blocked_in(pid_t tid, long nr) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/syscall";
  for (int i = 0; i < 10000; ++i) {
    std::ifstream in(path);
    long current = -1;
    if (in >> current && current == nr) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// Interrupts `target` (blocked in recvmsg) with SIGUSR1 once, then, after it is
// blocked in recvmsg again (retried) or not, sends one message with an fd.
struct Interrupter {
  pthread_t target;
  pid_t target_tid;
  int sock;
  int fd_to_send;
  bool expect_retry;
  bool blocked_first = false;
  bool blocked_again = false;

  void operator()() {
    blocked_first = wait_until_blocked_in(target_tid, SYS_recvmsg);
    ::pthread_kill(target, SIGUSR1);
    while (signals_caught.load() == 0) std::this_thread::sleep_for(1ms);
    if (expect_retry) blocked_again = wait_until_blocked_in(target_tid, SYS_recvmsg);
    fdbroker::sendfds(sock, "after the signal", {fd_to_send});
  }
};

// One blocking try_recvfds(sock, 64, 4, flags) on this thread, interrupted once by
// SIGUSR1 while blocked in recvmsg; then `sender` sends one message with `fd`. Expects
// the interruption to have happened (blocked first, one signal caught).
struct InterruptedReceive {
  fdbroker::result<fdbroker::received_message> got;
  bool blocked_again;  // recvmsg was entered again after the signal
};
InterruptedReceive receive_interrupted(int sock, int sender, int fd, bool expect_retry,
                                       io_flags flags) {
  InterruptingHandler handler;
  Interrupter interrupter{::pthread_self(), static_cast<pid_t>(::gettid()), sender, fd,
                          expect_retry};
  std::thread helper(std::ref(interrupter));
  auto got = fdbroker::try_recvfds(sock, 64, 4, flags);
  helper.join();
  EXPECT_TRUE(interrupter.blocked_first);
  EXPECT_EQ(signals_caught.load(), 1);
  return {std::move(got), interrupter.blocked_again};
}

TEST(ScmRightsEintr, SignalDuringABlockingRecvIsRetriedAndTheMessageArrives) {
  auto [a, b] = fdbroker::socketpair();
  auto pipe = pipe_pair();
  auto [got, blocked_again] =
      receive_interrupted(b.get(), a.get(), pipe.write.get(), true, io_flags::none);

  EXPECT_TRUE(blocked_again) << "recvmsg was not called again after EINTR";
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_EQ(got->payload, "after the signal");
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_TRUE(same_file(got->fds[0].get(), pipe.write.get()));
}

TEST(ScmRightsEintr, NoRetryEintrReportsTheSignal) {
  auto [a, b] = fdbroker::socketpair();
  auto pipe = pipe_pair();
  auto [got, blocked_again] =
      receive_interrupted(b.get(), a.get(), pipe.write.get(), false, io_flags::no_retry_eintr);

  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error(), std::error_code(EINTR, std::system_category()));
  // Nothing was consumed: the message sent afterwards is whole.
  auto message = fdbroker::recvfds(b.get(), 64, 4);
  EXPECT_EQ(message.payload, "after the signal");
  EXPECT_EQ(message.fds.size(), 1u);
}

int sendmsg_calls = 0;
ssize_t sendmsg_eintr_once(int sock, const msghdr* msg, int flags) {
  if (sendmsg_calls++ == 0) {
    errno = EINTR;
    return -1;
  }
  return ::sendmsg(sock, msg, flags);
}

// The sendmsg seam fails its first call with EINTR while this object lives.
struct SendmsgEintrOnce {
  SysOverride restore;
  SendmsgEintrOnce() {
    fdbroker::detail::sys::calls.sendmsg = sendmsg_eintr_once;
    sendmsg_calls = 0;
  }
};

int recvmsg_calls = 0;
ssize_t recvmsg_eintr_once(int sock, msghdr* msg, int flags) {
  if (recvmsg_calls++ == 0) {
    errno = EINTR;
    return -1;
  }
  return ::recvmsg(sock, msg, flags);
}

TEST(ScmRightsEintr, InterruptedSendmsgIsRetriedAndSendsOnce) {
  auto [a, b] = fdbroker::socketpair();
  auto pipe = pipe_pair();
  SendmsgEintrOnce seam;
  EXPECT_EQ(fdbroker::sendfds(a.get(), "once", {pipe.write.get()}), 4u);
  EXPECT_EQ(sendmsg_calls, 2);
  auto message = fdbroker::recvfds(b.get(), 16, 4);
  EXPECT_EQ(message.payload, "once");
  EXPECT_EQ(message.fds.size(), 1u);
  EXPECT_TRUE(nothing_queued(b.get())) << "sent twice";
}

TEST(ScmRightsEintr, InterruptedSendmsgWithNoRetryIsEintrAndSendsNothing) {
  auto [a, b] = fdbroker::socketpair();
  auto pipe = pipe_pair();
  SendmsgEintrOnce seam;
  auto sent = fdbroker::try_sendfds(a.get(), "x", 1, std::vector<int>{pipe.write.get()}.data(), 1,
                                    io_flags::no_retry_eintr);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error(), std::error_code(EINTR, std::system_category()));
  EXPECT_EQ(sendmsg_calls, 1);
  EXPECT_TRUE(nothing_queued(b.get()));
  try {
    sendmsg_calls = 0;
    fdbroker::sendfds(a.get(), "x", {}, io_flags::no_retry_eintr);
    ADD_FAILURE() << "did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINTR);
  }
}

TEST(ScmRightsEintr, InterruptedRecvmsgThroughTheSeamIsRetried) {
  auto [a, b] = fdbroker::socketpair();
  fdbroker::sendfds(a.get(), "seam");
  SysOverride restore;
  fdbroker::detail::sys::calls.recvmsg = recvmsg_eintr_once;
  recvmsg_calls = 0;
  EXPECT_EQ(fdbroker::recvfds(b.get(), 16).payload, "seam");
  EXPECT_EQ(recvmsg_calls, 2);
}

}  // namespace
