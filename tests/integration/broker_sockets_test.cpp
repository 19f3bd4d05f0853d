// SPDX-License-Identifier: LGPL-2.1-or-later
// A real fdbrokerd and the files already at the paths it binds: its own broker
// socket and its static UNIX socket entries replace only a stale socket file (one
// that refuses connections); a live listener of any type is left alone and the
// broker or the entry fails with EADDRINUSE.
#include <poll.h>

#include <fstream>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

// The listener at `path` still serves: a client of its type connects and is accepted.
::testing::AssertionResult still_serves(int listener, const std::string& path, int type) {
  unique_fd client(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr = unix_address(path);
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return ::testing::AssertionFailure() << "connect " << path << ": " << std::strerror(errno);
  // A connection that reached `listener` makes it readable at once; one that reached
  // a socket someone bound over the path never does (the timeout bounds that failure).
  pollfd pfd{listener, POLLIN, 0};
  if (::poll(&pfd, 1, 2000) != 1)
    return ::testing::AssertionFailure() << "the connection went to another socket at " << path;
  unique_fd accepted(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  if (!accepted.valid()) return ::testing::AssertionFailure() << "accept: " << std::strerror(errno);
  return ::testing::AssertionSuccess();
}

struct Run {
  int status = -1;  // exit status; -1: still running at the deadline (then killed)
  std::string output;
};

// Runs fdbrokerd with `config` until it exits; stdout+stderr collected. A broker
// that does not exit (it started, where it should have refused) is killed at the
// deadline: the deadline only bounds how long a failing test waits.
Run run_broker_to_exit(const std::string& dir, const json& config, int timeout_ms = 10000) {
  std::string config_path = dir + "/c.json";
  std::ofstream(config_path) << config.dump();
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(p[1], 1);
    ::dup2(p[1], 2);
    ::unsetenv("NOTIFY_SOCKET");
    // $FDBROKERD wins, as in BrokerProcess (to test another binary).
    const char* binary = std::getenv("FDBROKERD");
    if (binary == nullptr) binary = FDBROKERD_PATH;
    ::execl(binary, binary, "--config", config_path.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(p[1]);
  unique_fd out(p[0]);
  Run run;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    pollfd pfd{out.get(), POLLIN, 0};
    if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) != 1) {
      ::kill(pid, SIGKILL);  // it kept running: what the test is about to report
      ::waitpid(pid, nullptr, 0);
      return run;
    }
    char buf[4096];
    ssize_t n = ::read(out.get(), buf, sizeof buf);
    if (n <= 0) break;
    run.output.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

}  // namespace

class LiveServiceAtTheBrokerSocket : public ::testing::TestWithParam<int> {};

// A live SOCK_STREAM service answers the broker's SOCK_SEQPACKET probe with
// EPROTOTYPE, not a connection: the broker used to take that for stale, unlink
// the service's socket and bind its own.
TEST_P(LiveServiceAtTheBrokerSocket, IsLeftAloneAndTheBrokerExitsWithEaddrinuse) {
  TempDir dir;
  std::string path = dir.socket_path("broker.sock");
  const int type = GetParam();
  auto live = raw_unix_listener(path, type);
  ino_t inode = inode_of(path);
  auto r = run_broker_to_exit(dir.path(), {{"socket", {{"path", path}}}, {"log_level", "warning"}});
  EXPECT_EQ(r.status, 1) << "the broker did not refuse the path; output: " << r.output;
  EXPECT_NE(r.output.find("EADDRINUSE"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("another process is listening there"), std::string::npos) << r.output;
  EXPECT_EQ(inode_of(path), inode);
  EXPECT_TRUE(still_serves(live.get(), path, type));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, LiveServiceAtTheBrokerSocket,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET), socket_type_name);

TEST(BrokerSocket, AStaleSocketFileIsReplaced) {
  // BrokerProcess's directory is made inside its constructor: use a config that
  // points the broker at a stale file of our own directory instead.
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  std::string path = dir.socket_path("broker.sock");
  { auto dead = raw_unix_listener(path, SOCK_STREAM); }  // closed: the file stays, nobody listens
  BrokerProcess broker(json{{"socket", {{"path", path}, {"mode", "0666"}}}});
  unique_fd c = connect_unix(path);
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
  EXPECT_EQ(broker.terminate(), 0);
}

class LiveServiceAtAStaticEntry : public ::testing::TestWithParam<int> {};

// The bug: a static UNIX socket entry unlinked whatever socket file was at its
// path, so a mistyped path or a second broker stole a running service's socket.
TEST_P(LiveServiceAtAStaticEntry, IsLeftAloneAndTheBrokerDoesNotStart) {
  TempDir dir;
  std::string path = dir.socket_path("service.sock");
  const int type = GetParam();
  auto live = raw_unix_listener(path, type);
  ino_t inode = inode_of(path);
  json config = {{"socket", {{"path", dir.socket_path("broker.sock")}}},
                 {"log_level", "warning"},
                 {"entries",
                  {{{"name", "svc"},
                    {"type", "unix"},
                    {"path", path},
                    {"socket_type", type == SOCK_STREAM ? "stream" : "seqpacket"}}}}};
  auto r = run_broker_to_exit(dir.path(), config);
  EXPECT_EQ(r.status, 1) << "the broker took the live socket; output: " << r.output;
  EXPECT_NE(r.output.find("entries[0] 'svc'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("EADDRINUSE"), std::string::npos) << r.output;
  EXPECT_EQ(inode_of(path), inode);
  EXPECT_TRUE(still_serves(live.get(), path, type));
}

TEST_P(LiveServiceAtAStaticEntry, IsLeftAloneByAReloadThatKeepsTheRunningConfiguration) {
  TempDir dir;
  std::string path = dir.socket_path("service.sock");
  const int type = GetParam();
  auto live = raw_unix_listener(path, type);
  ino_t inode = inode_of(path);
  json config = {{"entries", {{{"name", "file"}, {"type", "file"}, {"path", "/etc/hostname"}}}}};
  BrokerProcess broker(config);
  auto c = broker.connect();
  ASSERT_TRUE(call(c.get(), {{"op", "get"}, {"name", "file"}}).ok());  // the connection is set up
  std::size_t fds = broker.fd_count();
  config["socket"] = {{"path", broker.socket_path()}, {"mode", "0666"}};
  config["log_level"] = "warning";
  config["entries"].push_back({{"name", "svc"},
                               {"type", "unix"},
                               {"path", path},
                               {"socket_type", type == SOCK_STREAM ? "stream" : "seqpacket"}});
  broker.write_config(config);
  broker.reload();
  EXPECT_EQ(call(c.get(), {{"op", "get"}, {"name", "svc"}}).error(), "ENOENT");
  EXPECT_TRUE(call(c.get(), {{"op", "get"}, {"name", "file"}}).ok());
  EXPECT_TRUE(broker.settles_at(fds));
  EXPECT_EQ(inode_of(path), inode);
  EXPECT_TRUE(still_serves(live.get(), path, type));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, LiveServiceAtAStaticEntry,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET), socket_type_name);

TEST(StaticUnixEntry, AStaleSocketFileIsReplacedAtStart) {
  TempDir dir;
  std::string path = dir.socket_path("service.sock");
  { auto dead = raw_unix_listener(path, SOCK_STREAM); }
  BrokerProcess broker(json{{"entries", {{{"name", "svc"}, {"type", "unix"}, {"path", path}}}}});
  auto c = broker.connect();
  auto got = call(c.get(), {{"op", "get"}, {"name", "svc"}});
  ASSERT_TRUE(got.ok()) << got.raw;
  ASSERT_EQ(got.fds.size(), 1u);
  // The path reaches the entry's socket now (a freed inode number may be reused
  // at once, so the inode proves nothing here).
  EXPECT_TRUE(still_serves(got.fds[0].get(), path, SOCK_STREAM));
}
