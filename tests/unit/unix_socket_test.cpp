// SPDX-License-Identifier: LGPL-2.1-or-later
// socketpair() and the peer's credentials, checked against real processes
// (the tests run as root, so a child can become nobody).
#include <fdbroker/error.hpp>
#include <fdbroker/unix_socket.hpp>

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using fdbroker::unique_fd;

int socket_option(int sock, int option) {
  int value = -1;
  socklen_t len = sizeof value;
  if (::getsockopt(sock, SOL_SOCKET, option, &value, &len) < 0) return -errno;
  return value;
}

class SocketpairTypes : public ::testing::TestWithParam<int> {};

TEST_P(SocketpairTypes, GivesAConnectedCloexecPairOfThatType) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  for (int fd : {a.get(), b.get()}) {
    EXPECT_EQ(socket_option(fd, SO_TYPE), GetParam());
    EXPECT_EQ(socket_option(fd, SO_DOMAIN), AF_UNIX);
    EXPECT_TRUE(fdbroker::test::is_cloexec(fd));
    EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  }
  ASSERT_EQ(::send(a.get(), "x", 1, 0), 1);
  char byte = 0;
  ASSERT_EQ(::recv(b.get(), &byte, 1, 0), 1);
  EXPECT_EQ(byte, 'x');
}

INSTANTIATE_TEST_SUITE_P(AllTypes, SocketpairTypes,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM),
                         fdbroker::test::socket_type_name);

TEST(Socketpair, DefaultsToSeqpacket) {
  auto [a, b] = fdbroker::socketpair();
  EXPECT_EQ(socket_option(a.get(), SO_TYPE), SOCK_SEQPACKET);
  EXPECT_EQ(socket_option(b.get(), SO_TYPE), SOCK_SEQPACKET);
}

TEST(Socketpair, NonblockCanBeOredIn) {
  auto [a, b] = fdbroker::socketpair(SOCK_STREAM | SOCK_NONBLOCK);
  for (int fd : {a.get(), b.get()}) {
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_TRUE(fdbroker::test::is_cloexec(fd));
  }
  char byte;
  EXPECT_EQ(::recv(b.get(), &byte, 1, 0), -1);
  EXPECT_EQ(errno, EAGAIN);
}

TEST(Socketpair, BadTypeIsAnErrorNotAnFd) {
  auto before = fdbroker::test::open_fd_count();
  auto pair = fdbroker::try_socketpair(SOCK_RDM);
  ASSERT_FALSE(pair.ok());
  EXPECT_TRUE(pair.error().value() == EPROTONOSUPPORT || pair.error().value() == ESOCKTNOSUPPORT)
      << pair.error().message();
  EXPECT_THROW((void)fdbroker::socketpair(12345), std::system_error);
  EXPECT_EQ(fdbroker::test::open_fd_count(), before);
}

TEST(PeerCredentials, OfASocketpairAreOurOwn) {
  auto [a, b] = fdbroker::socketpair();
  for (int fd : {a.get(), b.get()}) {
    auto cred = fdbroker::peer_credentials(fd);
    EXPECT_EQ(cred.pid, ::getpid());
    EXPECT_EQ(cred.uid, ::getuid());
    EXPECT_EQ(cred.gid, ::getgid());
  }
}

TEST(PeerCredentials, UnconnectedSocketIsEnotconn) {
  unique_fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock.valid());
  auto cred = fdbroker::try_peer_credentials(sock.get());
  ASSERT_FALSE(cred.ok());
  EXPECT_EQ(cred.error().value(), ENOTCONN);
  try {
    (void)fdbroker::peer_credentials(sock.get());
    FAIL() << "did not throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::error_code(ENOTCONN, std::system_category()));
  }
}

TEST(PeerCredentials, ListeningSocketIsEnotconn) {
  // Linux records the listener's own credentials on a listening socket; that is
  // not a peer.
  fdbroker::test::TempDir dir;
  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = dir.socket_path();
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(sock.get(), 1), 0);
  EXPECT_EQ(fdbroker::try_peer_credentials(sock.get()).error().value(), ENOTCONN);
  EXPECT_EQ(fdbroker::try_peer_groups(sock.get()).error().value(), ENOTCONN);
}

TEST(PeerCredentials, RegularFileIsEnotsock) {
  unique_fd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(fdbroker::try_peer_credentials(file.get()).error().value(), ENOTSOCK);
  EXPECT_EQ(fdbroker::try_peer_groups(file.get()).error().value(), ENOTSOCK);
}

TEST(PeerCredentials, ClosedFdIsEbadf) {
  int stale = ::dup(0);
  ::close(stale);
  EXPECT_EQ(fdbroker::try_peer_credentials(stale).error().value(), EBADF);
  EXPECT_EQ(fdbroker::try_peer_groups(stale).error().value(), EBADF);
}

std::vector<gid_t> sorted(std::vector<gid_t> groups) {
  std::sort(groups.begin(), groups.end());
  return groups;
}

TEST(PeerGroups, OfASocketpairAreOurSupplementaryGroups) {
  auto [a, b] = fdbroker::socketpair();
  int n = ::getgroups(0, nullptr);
  ASSERT_GE(n, 0);
  std::vector<gid_t> mine(static_cast<std::size_t>(n));
  ASSERT_EQ(::getgroups(n, mine.data()), n);
  auto groups = fdbroker::try_peer_groups(a.get());
  ASSERT_TRUE(groups.ok()) << groups.error().message();
  EXPECT_EQ(sorted(*groups), sorted(mine));
  EXPECT_EQ(sorted(fdbroker::peer_groups(b.get())), sorted(mine));
}

TEST(PeerGroups, UnconnectedSocketIsEnotconn) {
  unique_fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(fdbroker::try_peer_groups(sock.get()).error().value(), ENOTCONN);
  EXPECT_THROW((void)fdbroker::peer_groups(sock.get()), std::system_error);
}

// More groups than try_peer_groups' first guess, to exercise its ERANGE path.
std::vector<gid_t> many_groups() {
  std::vector<gid_t> groups;
  for (gid_t g = 60000; g < 60040; ++g) groups.push_back(g);
  return groups;
}

// A child that drops to uid/gid 65534 with its own group list connects to us; the
// kernel must report the child, not the parent that forked it.
TEST(PeerCredentials, OfAForkedChildThatChangedUid) {
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root to change uid";
  fdbroker::test::TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  std::string path = dir.socket_path();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);

  unique_fd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0777), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  const std::vector<gid_t> child_groups = many_groups();

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls and _exit() from here: report by exit code.
    if (::setgroups(child_groups.size(), child_groups.data()) < 0) ::_exit(10);
    if (::setresgid(65534, 65534, 65534) < 0) ::_exit(11);
    if (::setresuid(65534, 65534, 65534) < 0) ::_exit(12);
    int sock = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0) ::_exit(13);
    if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) ::_exit(14);
    // Our peer is the parent, still root.
    ucred parent{};
    socklen_t len = sizeof parent;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &parent, &len) < 0) ::_exit(15);
    if (parent.pid != ::getppid() || parent.uid != 0) ::_exit(16);
    char byte;
    if (::recv(sock, &byte, 1, 0) != 1) ::_exit(17);  // wait until the parent has looked
    ::_exit(0);
  }

  unique_fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid()) << std::strerror(errno);
  auto cred = fdbroker::try_peer_credentials(conn.get());
  auto groups = fdbroker::try_peer_groups(conn.get());
  EXPECT_EQ(::send(conn.get(), "k", 1, 0), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;

  ASSERT_TRUE(cred.ok()) << cred.error().message();
  EXPECT_EQ(cred->pid, child);
  EXPECT_EQ(cred->uid, 65534u);
  EXPECT_EQ(cred->gid, 65534u);
  ASSERT_TRUE(groups.ok()) << groups.error().message();
  EXPECT_EQ(sorted(*groups), sorted(child_groups));
}

}  // namespace
