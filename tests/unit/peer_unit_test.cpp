// SPDX-License-Identifier: LGPL-2.1-or-later
// The peer's unit and cgroup: parsing /proc/<pid>/cgroup, and resolve_peer_unit on
// real sockets, with a pidfd and without one (the old-kernel path), for a peer
// that is alive, one that has exited (a zombie whose pid could be reused), and
// when the fd table has no room for the pidfd.
#include "peer_unit.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <fdbroker/unix_socket.hpp>

#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using fdbroker::test::open_fd_count;

namespace {

#define REQUIRE_PEER_PIDFD()                                                         \
  if (!test::kernel_has_peer_pidfd())                                                \
  GTEST_SKIP() << "this kernel has no SO_PEERPIDFD (Linux 6.5+): the unit is never " \
                  "known, which the PidfdUse::never tests cover"

std::optional<std::string> own_unit() {
  char* unit = nullptr;
  if (sd_pid_get_unit(0, &unit) < 0) return std::nullopt;
  std::string name(unit);
  std::free(unit);
  return name;
}

// A connection from a child that exits at once and stays a zombie (not reaped)
// until the returned pid is waited for: its pid is not reused yet, but the
// process is gone.
struct ExitedPeer {
  unique_fd sock;  // our end
  pid_t pid = -1;
};

ExitedPeer connection_from_exited_child(const std::string& path) {
  unique_fd listener = test::raw_unix_listener(path, SOCK_SEQPACKET);
  pid_t pid = ::fork();
  if (pid == 0) {
    unique_fd c = test::connect_unix(path);
    ::_exit(c.valid() ? 0 : 1);
  }
  siginfo_t info{};
  // WNOWAIT: it has exited, and stays a zombie.
  EXPECT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);
  unique_fd sock(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(sock.valid());
  return {std::move(sock), pid};
}

void reap(pid_t pid) { ::waitpid(pid, nullptr, 0); }

}  // namespace

TEST(CgroupV2Path, TakesTheUnifiedLineOfAHybridSystem) {
  EXPECT_EQ(cgroup_v2_path("12:pids:/system.slice/a.service\n"
                           "1:name=systemd:/system.slice/a.service\n"
                           "0::/system.slice/a.service\n"),
            "/system.slice/a.service");
}

TEST(CgroupV2Path, TakesTheOnlyLineOfAUnifiedSystem) {
  EXPECT_EQ(cgroup_v2_path("0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.service"),
            "/user.slice/user-1000.slice/user@1000.service/app.slice/x.service");
  EXPECT_EQ(cgroup_v2_path("0::/\n"), "/");
}

TEST(CgroupV2Path, KeepsColonsAndSpacesInThePath) {
  EXPECT_EQ(cgroup_v2_path("0::/a:b/c d\n"), "/a:b/c d");
}

TEST(CgroupV2Path, NoUnifiedLineIsNone) {
  EXPECT_EQ(cgroup_v2_path(""), std::nullopt);
  EXPECT_EQ(cgroup_v2_path("\n\n"), std::nullopt);
  EXPECT_EQ(cgroup_v2_path("1:name=systemd:/system.slice/a.service\n4:memory:/x\n"), std::nullopt);
  // A v1 hierarchy with id 10 is not the unified one.
  EXPECT_EQ(cgroup_v2_path("10::/x\n"), std::nullopt);
}

TEST(CgroupV2Path, AMalformedUnifiedLineIsNone) {
  EXPECT_EQ(cgroup_v2_path("0::\n"), std::nullopt);
  EXPECT_EQ(cgroup_v2_path("0::relative\n"), std::nullopt);
}

TEST(CgroupV2Path, APathWithAControlCharacterIsNone) {
  // A user names cgroups in a tree delegated to it; logs and replies get none.
  EXPECT_EQ(cgroup_v2_path("0::/user.slice/a\tb\n"), std::nullopt);
  EXPECT_EQ(cgroup_v2_path("0::/user.slice/a\x1b[31m\n"), std::nullopt);
  EXPECT_EQ(cgroup_v2_path("0::/user.slice/a\x7f\n"), std::nullopt);
  EXPECT_EQ(cgroup_v2_path("0::/user.slice/caf\xc3\xa9\n"), "/user.slice/caf\xc3\xa9");
}

TEST(ResolvePeerUnit, WithAPidfdGivesTheLivePeersCgroupAndUnit) {
  REQUIRE_PEER_PIDFD();
  std::size_t before = open_fd_count();
  {
    auto [a, b] = fdbroker::socketpair();
    PeerUnit got = resolve_peer_unit(a.get(), ::getpid(), PidfdUse::when_available);
    EXPECT_TRUE(got.pidfd);
    EXPECT_EQ(got.cgroup, test::own_cgroup());
    EXPECT_FALSE(got.cgroup.empty());
    // Null where this test runs outside any unit (a container without systemd).
    EXPECT_EQ(got.unit, own_unit());
  }
  EXPECT_EQ(open_fd_count(), before);  // the pidfd is closed again
}

TEST(ResolvePeerUnit, WithoutAPidfdTheUnitIsUnknownAndTheCgroupInformative) {
  std::size_t before = open_fd_count();
  {
    auto [a, b] = fdbroker::socketpair();
    PeerUnit got = resolve_peer_unit(a.get(), ::getpid(), PidfdUse::never);
    EXPECT_FALSE(got.pidfd);
    EXPECT_EQ(got.unit, std::nullopt);
    EXPECT_EQ(got.cgroup, test::own_cgroup());
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ResolvePeerUnit, APeerThatExitedHasNoUnitNorCgroup) {
  REQUIRE_PEER_PIDFD();
  test::TempDir dir;
  std::size_t before = open_fd_count();
  {
    ExitedPeer peer = connection_from_exited_child(dir.socket_path());
    // Its /proc entry still reads (a zombie): only the pidfd tells it is gone.
    EXPECT_EQ(resolve_peer_unit(peer.sock.get(), peer.pid, PidfdUse::never).cgroup,
              test::own_cgroup());
    PeerUnit got = resolve_peer_unit(peer.sock.get(), peer.pid, PidfdUse::when_available);
    EXPECT_TRUE(got.pidfd);
    EXPECT_EQ(got.unit, std::nullopt);
    EXPECT_EQ(got.cgroup, "");
    reap(peer.pid);
    // Reaped: its pid is free for another process. No pidfd on Linux < 6.16
    // (EINVAL), an exited one after; unknown either way.
    got = resolve_peer_unit(peer.sock.get(), peer.pid, PidfdUse::when_available);
    EXPECT_EQ(got.unit, std::nullopt);
    EXPECT_EQ(got.cgroup, "");
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ResolvePeerUnit, NoRoomForThePidfdLeavesTheUnitUnknown) {
  REQUIRE_PEER_PIDFD();
  auto [a, b] = fdbroker::socketpair();
  std::size_t before = open_fd_count();
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Every descriptor below the limit in use: the pidfd cannot be installed (EMFILE).
  int lowest_free = ::fcntl(0, F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(lowest_free, 0);
  ::close(lowest_free);
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  PeerUnit got = resolve_peer_unit(a.get(), ::getpid(), PidfdUse::when_available);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_FALSE(got.pidfd);
  EXPECT_EQ(got.pidfd_error, EMFILE);
  EXPECT_EQ(got.unit, std::nullopt);
  EXPECT_EQ(got.cgroup, "");
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ResolvePeerUnit, APeerWithoutAPidInOurNamespaceIsUnknown) {
  auto [a, b] = fdbroker::socketpair();
  PeerUnit got = resolve_peer_unit(a.get(), 0, PidfdUse::when_available);
  EXPECT_FALSE(got.pidfd);
  EXPECT_EQ(got.unit, std::nullopt);
  EXPECT_EQ(got.cgroup, "");
}

TEST(PidfdUse, TheTestSwitchIsReadFromTheEnvironment) {
  // This test binary is not run with FDBROKER_TEST_NO_PIDFD.
  if (std::getenv("FDBROKER_TEST_NO_PIDFD") != nullptr) GTEST_SKIP() << "set by the caller";
  EXPECT_EQ(pidfd_use_from_environment(), PidfdUse::when_available);
}
