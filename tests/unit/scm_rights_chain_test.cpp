// SPDX-License-Identifier: LGPL-2.1-or-later
// A descriptor passed along a chain of three processes: parent -> child ->
// grandchild. The grandchild checks it is the parent's file (st_dev/st_ino sent
// in the payload), that it arrived close-on-exec, and writes through it; the
// parent reads that back, then sees EOF, which proves that no process in the
// chain kept a copy.
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using namespace fdbroker::test;

struct Identity {
  dev_t dev;
  ino_t ino;
};

// Exit codes tell the parent which step failed in a child.
enum ChildFailure : int {
  recv_failed = 20,
  wrong_fd_count,
  not_cloexec,
  wrong_file,
  write_failed,
  send_failed,
  fork_failed,
  grandchild_failed
};

// In the grandchild: receive, check, write through the fd, exit.
[[noreturn]] void grandchild(int sock) {
  auto got = fdbroker::try_recvfds(sock, sizeof(Identity), 4);
  if (!got.ok() || got->payload.size() != sizeof(Identity)) ::_exit(recv_failed);
  if (got->fds.size() != 1) ::_exit(wrong_fd_count);
  int fd = got->fds[0].get();
  if (!is_cloexec(fd)) ::_exit(not_cloexec);
  Identity expected;
  std::memcpy(&expected, got->payload.data(), sizeof expected);
  struct stat st {};
  if (::fstat(fd, &st) < 0 || st.st_dev != expected.dev || st.st_ino != expected.ino)
    ::_exit(wrong_file);
  const std::string note = "from grandchild " + std::to_string(::getpid());
  if (::write(fd, note.data(), note.size()) != static_cast<ssize_t>(note.size()))
    ::_exit(write_failed);
  ::_exit(0);
}

// In the child: fork the grandchild, receive from the parent, forward, close.
[[noreturn]] void child(int from_parent, int to_grandchild, int grandchild_end) {
  pid_t pid = ::fork();
  if (pid < 0) ::_exit(fork_failed);
  if (pid == 0) {
    ::close(from_parent);
    ::close(to_grandchild);
    grandchild(grandchild_end);
  }
  ::close(grandchild_end);
  {
    auto got = fdbroker::try_recvfds(from_parent, sizeof(Identity), 4);
    if (!got.ok() || got->payload.size() != sizeof(Identity)) ::_exit(recv_failed);
    if (got->fds.size() != 1) ::_exit(wrong_fd_count);
    if (!is_cloexec(got->fds[0].get())) ::_exit(not_cloexec);
    auto sent = fdbroker::try_sendfds(to_grandchild, got->payload.data(), got->payload.size(),
                                      fdbroker::test::raw_fds(got->fds).data(), 1);
    if (!sent.ok()) ::_exit(send_failed);
  }  // our copy of the fd is closed here, before waiting
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) ::_exit(grandchild_failed);
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : grandchild_failed);
}

TEST(ScmRightsChain, FdPassesThroughThreeProcesses) {
  auto [parent_end, child_end] = fdbroker::socketpair();
  auto [to_grandchild, grandchild_end] = fdbroker::socketpair();

  // The pipe is created after fork, so no process inherits it: the only way it
  // reaches the grandchild is through the two messages.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    parent_end.reset();
    child(child_end.get(), to_grandchild.get(), grandchild_end.get());
  }
  child_end.reset();
  to_grandchild.reset();
  grandchild_end.reset();

  auto pipe = pipe_pair();
  struct stat st {};
  ASSERT_EQ(::fstat(pipe.write.get(), &st), 0);
  Identity id{st.st_dev, st.st_ino};
  auto sent = fdbroker::try_sendfds(parent_end.get(), &id, sizeof id,
                                    std::vector<int>{pipe.write.get()}.data(), 1);
  ASSERT_TRUE(sent.ok()) << sent.error().message();
  pipe.write.reset();

  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "a child failed, see ChildFailure";

  char buf[128] = {};
  ssize_t got = ::read(pipe.read.get(), buf, sizeof buf - 1);
  ASSERT_GT(got, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(got)).rfind("from grandchild ", 0), 0u)
      << buf;
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

}  // namespace
