// SPDX-License-Identifier: LGPL-2.1-or-later
#include "spawner.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fdbroker/scm_rights.hpp>
#include <fstream>
#include <set>
#include <string>

namespace fdbroker::daemon {
namespace {

SpawnerReport next_report(int sock) {
  pollfd pfd{sock, POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 10000), 1);
  SpawnerReport r;
  EXPECT_EQ(::recv(sock, &r, sizeof r, 0), static_cast<ssize_t>(sizeof r));
  return r;
}

// True if `fd` reads EOF within `ms` (every writer closed).
bool eof_within(int fd, int ms) {
  pollfd pfd{fd, POLLIN, 0};
  if (::poll(&pfd, 1, ms) != 1) return false;
  char c;
  return ::read(fd, &c, 1) == 0;
}

TEST(Spawner, PlacesDescriptorsPassesNoOtherAndReportsPidAndExit) {
  unique_fd spawner = start_spawner();
  ASSERT_TRUE(spawner.valid()) << std::strerror(errno);
  // Opened after the spawner started, without close-on-exec: a child forked by
  // this process would keep it.
  int other[2];
  ASSERT_EQ(::pipe(other), 0);
  unique_fd other_read(other[0]), other_write(other[1]);
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  unique_fd out_read(out[0]), out_write(out[1]);
  int extra[2];
  ASSERT_EQ(::pipe2(extra, O_CLOEXEC), 0);
  unique_fd extra_read(extra[0]), extra_write(extra[1]);

  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  unique_fd channel(pair[0]), channel_peer(pair[1]);
  // fd 3: `out`, where the child writes LISTEN_PID; fd 4: `extra`. It then
  // sleeps, so that `other` is checked while it lives.
  std::vector<std::string> argv = {"sh", "-c", "echo \"$LISTEN_PID\" >&3; exec sleep 30"};
  ASSERT_EQ(send_spawn_request(spawner.get(), channel_peer.get(), "/bin/sh", argv,
                               {"PATH=/usr/bin:/bin"}, 2),
            0);
  channel_peer.reset();
  SpawnerReport started = next_report(spawner.get());
  ASSERT_EQ(started.kind, 'P');
  ASSERT_GT(started.pid, 0);
  int fds[2] = {out_write.get(), extra_write.get()};
  ASSERT_TRUE(try_sendfds(channel.get(), "F", 1, fds, 2));
  channel.reset();
  out_write.reset();
  extra_write.reset();

  char buf[32] = {};
  pollfd pfd{out_read.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 10000), 1);
  ASSERT_GT(::read(out_read.get(), buf, sizeof buf - 1), 0);
  EXPECT_EQ(std::stol(buf), started.pid);           // at fd 3, and LISTEN_PID is its pid
  EXPECT_FALSE(eof_within(extra_read.get(), 100));  // fd 4 is open in the child
  other_write.reset();
  EXPECT_TRUE(eof_within(other_read.get(), 1000));  // the child never had `other`

  ASSERT_EQ(::kill(started.pid, SIGTERM), 0);
  SpawnerReport ended = next_report(spawner.get());
  EXPECT_EQ(ended.kind, 'E');
  EXPECT_EQ(ended.pid, started.pid);
  EXPECT_TRUE(WIFSIGNALED(ended.value) && WTERMSIG(ended.value) == SIGTERM);
  EXPECT_TRUE(eof_within(extra_read.get(), 1000));
}

TEST(Spawner, ExecFailureIsWrittenToTheLastDescriptor) {
  unique_fd spawner = start_spawner();
  ASSERT_TRUE(spawner.valid());
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  unique_fd ready_read(ready[0]), ready_write(ready[1]);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  unique_fd channel(pair[0]), channel_peer(pair[1]);
  ASSERT_EQ(
      send_spawn_request(spawner.get(), channel_peer.get(), "/nonexistent/fdbrokerd", {"x"}, {}, 1),
      0);
  channel_peer.reset();
  SpawnerReport started = next_report(spawner.get());
  ASSERT_EQ(started.kind, 'P');
  int fd = ready_write.get();
  ASSERT_TRUE(try_sendfds(channel.get(), "F", 1, &fd, 1));
  ready_write.reset();
  char msg[1 + sizeof(int)] = {};
  pollfd pfd{ready_read.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 10000), 1);
  ASSERT_EQ(::read(ready_read.get(), msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  int err = 0;
  std::memcpy(&err, msg + 1, sizeof err);
  EXPECT_EQ(msg[0], 'X');
  EXPECT_EQ(err, ENOENT);
  SpawnerReport ended = next_report(spawner.get());
  EXPECT_EQ(ended.kind, 'E');
  EXPECT_TRUE(WIFEXITED(ended.value) && WEXITSTATUS(ended.value) == 127);
}

// This process's children (those of its main thread), as listed by the kernel.
std::set<pid_t> children() {
  std::ifstream in("/proc/self/task/" + std::to_string(::getpid()) + "/children");
  std::set<pid_t> out;
  for (pid_t p; in >> p;) out.insert(p);
  return out;
}

TEST(Spawner, EndsWhenTheBrokerClosesItsSocket) {
  std::set<pid_t> before = children();
  unique_fd spawner = start_spawner();
  ASSERT_TRUE(spawner.valid());
  pid_t pid = -1;
  for (pid_t p : children())
    if (before.count(p) == 0) pid = p;
  ASSERT_GT(pid, 0);
  spawner.reset();
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace fdbroker::daemon
