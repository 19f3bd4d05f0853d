// SPDX-License-Identifier: LGPL-2.1-or-later
// Listen URLs: parsing, and binding real sockets that real clients connect to.
#include <fdbroker/listen_url.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace fdbroker {
namespace {

ListenUrl parsed(const char* text) {
  auto url = try_parse_listen_url(text);
  EXPECT_TRUE(url.ok()) << text;
  return url.ok() ? std::move(url).value() : ListenUrl{};
}

// Connects a new stream socket to `url`; returns the errno of connect() (0 = ok).
int connect_errno(const ListenUrl& url) {
  unique_fd sock(::socket(url.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return errno;
  int r =
      ::connect(sock.get(), reinterpret_cast<const sockaddr*>(&url.address), url.address_length);
  return r == 0 ? 0 : errno;
}

// The URL of a bound socket, with the port the kernel chose.
ListenUrl bound_url(int sock) {
  auto url = try_socket_listen_url(sock);
  EXPECT_TRUE(url.ok());
  return url.ok() ? std::move(url).value() : ListenUrl{};
}

TEST(ListenUrl, ParsesTcpWithIpv4Address) {
  auto url = parsed("tcp://127.0.0.1:8080");
  EXPECT_EQ(url.family, AF_INET);
  EXPECT_EQ(url.host, "127.0.0.1");
  EXPECT_EQ(url.port, 8080);
  EXPECT_EQ(url.address_length, sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&url.address);
  EXPECT_EQ(ntohs(sin->sin_port), 8080);
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
  EXPECT_EQ(url.str(), "tcp://127.0.0.1:8080");
}

TEST(ListenUrl, WildcardAndLocalhostHosts) {
  EXPECT_EQ(parsed("tcp://*:80").host, "0.0.0.0");
  EXPECT_EQ(parsed("tcp://:80").host, "0.0.0.0");
  EXPECT_TRUE(parsed("tcp://0.0.0.0:80").wildcard_host());
  EXPECT_EQ(parsed("tcp://localhost:80").host, "127.0.0.1");
  EXPECT_EQ(parsed("tcp6://localhost:80").host, "::1");
  EXPECT_EQ(parsed("tcp6://[*]:80").host, "::");
  EXPECT_TRUE(parsed("tcp6://[::]:80").wildcard_host());
  EXPECT_FALSE(parsed("tcp://127.0.0.1:80").wildcard_host());
}

TEST(ListenUrl, BracketedIpv6IsDualStackUnderTcpAndV6OnlyUnderTcp6) {
  auto dual = parsed("tcp://[::1]:443");
  EXPECT_EQ(dual.family, AF_INET6);
  EXPECT_FALSE(dual.v6only);
  EXPECT_EQ(dual.str(), "tcp://[::1]:443");
  auto v6 = parsed("tcp6://[::]:443");
  EXPECT_EQ(v6.family, AF_INET6);
  EXPECT_TRUE(v6.v6only);
  EXPECT_EQ(v6.str(), "tcp6://[::]:443");
  EXPECT_EQ(parsed("tcp6://[0:0:0::1]:443").str(), "tcp6://[::1]:443");
}

TEST(ListenUrl, ParsesUnixPathsAndAbstractNames) {
  auto path = parsed("unix:/run/app.sock");
  EXPECT_EQ(path.family, AF_UNIX);
  EXPECT_EQ(path.path, "/run/app.sock");
  EXPECT_EQ(parsed("unix:///run/app.sock").path, "/run/app.sock");
  auto abstract = parsed("unix:@app");
  EXPECT_EQ(abstract.path, "@app");
  const auto* sun = reinterpret_cast<const sockaddr_un*>(&abstract.address);
  EXPECT_EQ(sun->sun_path[0], '\0');
  EXPECT_EQ(std::string(sun->sun_path + 1, 3), "app");
  EXPECT_EQ(abstract.str(), "unix:@app");
}

TEST(ListenUrl, RejectsMalformedUrlsWithEinval) {
  for (const char* bad :
       {"", "tcp://", "tcp://127.0.0.1", "tcp://127.0.0.1:", "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:-1", "tcp://127.0.0.1:80x", "tcp://256.0.0.1:80", "tcp://example.com:80",
        "tcp://::1:80", "tcp6://[nope]:80", "udp://127.0.0.1:53", "http://127.0.0.1:80",
        "unix:", "unix:relative.sock", "unix:@", "TCP://127.0.0.1:80"}) {
    auto url = try_parse_listen_url(bad);
    ASSERT_FALSE(url.ok()) << bad;
    EXPECT_EQ(url.error().value(), EINVAL) << bad;
  }
  std::string long_path = "unix:/" + std::string(sizeof(sockaddr_un::sun_path), 'x');
  EXPECT_EQ(try_parse_listen_url(long_path).error().value(), EINVAL);
}

TEST(ListenUrl, ThrowingParseNamesTheUrl) {
  try {
    (void)parse_listen_url("tcp://nowhere");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_NE(std::string(e.what()).find("tcp://nowhere"), std::string::npos);
  }
}

TEST(BindListener, TcpListenerAcceptsConnectionsAndIsCloexec) {
  auto sock = bind_listener(parsed("tcp://127.0.0.1:0"));
  EXPECT_TRUE(test::is_cloexec(sock.get()));
  int reuse = 0;
  socklen_t len = sizeof reuse;
  ASSERT_EQ(::getsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &reuse, &len), 0);
  EXPECT_EQ(reuse, 1);
  auto url = bound_url(sock.get());
  EXPECT_NE(url.port, 0);
  EXPECT_EQ(connect_errno(url), 0);
  unique_fd accepted(::accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
}

TEST(BindListener, SecondBindOfTheSamePortIsAddressInUse) {
  auto first = bind_listener(parsed("tcp://127.0.0.1:0"));
  auto url = bound_url(first.get());
  auto second = try_bind_listener(url);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().value(), EADDRINUSE);
}

TEST(BindListener, Tcp6SetsV6OnlyAndTcpBracketsDoNot) {
  auto v6 = try_bind_listener(parsed("tcp6://[::1]:0"));
  if (!v6.ok() && v6.error().value() == EADDRNOTAVAIL) {
    GTEST_FAIL() << "this machine has no ::1; the test needs loopback IPv6";
  }
  ASSERT_TRUE(v6.ok()) << v6.error().message();
  EXPECT_TRUE(bound_url(v6->get()).v6only);
  auto dual = bind_listener(parsed("tcp://[::]:0"));
  EXPECT_FALSE(bound_url(dual.get()).v6only);
  // Dual-stack: an IPv4 client reaches it.
  EXPECT_EQ(connect_errno(
                parsed(("tcp://127.0.0.1:" + std::to_string(bound_url(dual.get()).port)).c_str())),
            0);
}

TEST(BindListener, UnixPathGetsModeAndAcceptsConnections) {
  test::TempDir dir;
  auto url = parsed(("unix:" + dir.socket_path("app.sock")).c_str());
  BindOptions options;
  options.unix_mode = 0660;
  auto sock = bind_listener(url, options);
  struct stat st {};
  ASSERT_EQ(::stat(url.path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(connect_errno(url), 0);
  EXPECT_EQ(bound_url(sock.get()).path, url.path);
}

TEST(BindListener, StaleUnixSocketFileIsReplaced) {
  test::TempDir dir;
  auto url = parsed(("unix:" + dir.socket_path("stale.sock")).c_str());
  { auto dead = bind_listener(url); }  // closed: the file stays, nobody listens
  ASSERT_EQ(::access(url.path.c_str(), F_OK), 0);
  EXPECT_EQ(connect_errno(url), ECONNREFUSED);
  auto sock = bind_listener(url);
  EXPECT_EQ(connect_errno(url), 0);
}

TEST(BindListener, LiveUnixSocketIsNotStolen) {
  test::TempDir dir;
  auto url = parsed(("unix:" + dir.socket_path("live.sock")).c_str());
  auto live = bind_listener(url);
  auto second = try_bind_listener(url);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().value(), EADDRINUSE);
  EXPECT_EQ(connect_errno(url), 0);  // the first listener still owns the path
}

TEST(BindListener, ALiveUnixSocketWithAFullBacklogIsKeptWithoutWaiting) {
  test::TempDir dir;
  auto url = parsed(("unix:" + dir.socket_path("busy.sock")).c_str());
  BindOptions tiny;
  tiny.backlog = 0;
  auto live = bind_listener(url, tiny);
  // Fill its backlog: non-blocking connects until the kernel refuses with EAGAIN.
  std::vector<unique_fd> waiting;
  for (int i = 0; i < 64; ++i) {
    unique_fd c(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (::connect(c.get(), reinterpret_cast<const sockaddr*>(&url.address), url.address_length) <
        0) {
      ASSERT_EQ(errno, EAGAIN);
      break;
    }
    waiting.push_back(std::move(c));
  }
  ASSERT_LT(waiting.size(), 64u) << "the backlog never filled";
  // A blocking probe would wait here until the listener accepted.
  auto second = try_bind_listener(url);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().value(), EADDRINUSE);
}

TEST(BindListener, AbstractUnixSocket) {
  std::string name = "unix:@fdbroker-test-" + std::to_string(::getpid());
  auto url = parsed(name.c_str());
  auto sock = bind_listener(url);
  EXPECT_EQ(bound_url(sock.get()).path, url.path);
  EXPECT_EQ(connect_errno(url), 0);
}

TEST(BindListener, ClosesEverythingOnFailure) {
  auto held = bind_listener(parsed("tcp://127.0.0.1:0"));
  auto url = bound_url(held.get());
  auto before = test::open_fd_count();
  EXPECT_FALSE(try_bind_listener(url).ok());
  EXPECT_EQ(test::open_fd_count(), before);
}

// A live listener of another type answers the probe with EPROTOTYPE, not a
// refusal: it is live, and its path is not taken from it.
TEST(BindListener, LiveUnixSocketOfAnotherTypeIsNotStolen) {
  test::TempDir dir;
  auto url = parsed(("unix:" + dir.socket_path("live.sock")).c_str());
  BindOptions seqpacket;
  seqpacket.socket_type = SOCK_SEQPACKET;
  auto live = bind_listener(url, seqpacket);
  struct stat before {};
  ASSERT_EQ(::lstat(url.path.c_str(), &before), 0);
  auto second = try_bind_listener(url);  // SOCK_STREAM
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().value(), EADDRINUSE);
  struct stat after {};
  ASSERT_EQ(::lstat(url.path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  unique_fd client(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  EXPECT_EQ(
      ::connect(client.get(), reinterpret_cast<const sockaddr*>(&url.address), url.address_length),
      0);
}

TEST(BindListener, AFileThatIsNotASocketIsKeptAndRefusedWithEexist) {
  test::TempDir dir;
  std::string path = dir.socket_path("data");
  { unique_fd f(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600)); }
  auto sock = try_bind_listener(parsed(("unix:" + path).c_str()));
  ASSERT_FALSE(sock.ok());
  EXPECT_EQ(sock.error().value(), EEXIST);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST(BindListener, UnixOptionsTypeUmaskOwnerGroupAndParents) {
  test::TempDir dir;
  std::string path = dir.path() + "/a/b/app.sock";
  auto url = try_unix_listen_url(path);
  ASSERT_TRUE(url.ok());
  BindOptions options;
  options.socket_type = SOCK_SEQPACKET;
  options.unix_mode = 0640;
  options.bind_umask = 0137;
  options.unix_owner = ::getuid();
  options.unix_group = ::getgid();
  options.create_parent_directories = true;
  mode_t saved_umask = ::umask(022);
  auto sock = try_bind_listener(*url, options);
  ASSERT_TRUE(sock.ok()) << sock.error().message();
  int type = 0;
  socklen_t len = sizeof type;
  ASSERT_EQ(::getsockopt(sock->get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_SEQPACKET);
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(st.st_uid, ::getuid());
  EXPECT_EQ(st.st_gid, ::getgid());
  EXPECT_EQ(::umask(saved_umask), 022u) << "the umask was not restored";
  ::unlink(path.c_str());  // TempDir removes one level only
  ::rmdir((dir.path() + "/a/b").c_str());
  ::rmdir((dir.path() + "/a").c_str());
}

TEST(BindListener, DatagramIsBoundWithoutListenOrAddressSharing) {
  BindOptions udp;
  udp.socket_type = SOCK_DGRAM;
  auto sock = bind_listener(parsed("tcp://127.0.0.1:0"), udp);
  int type = 0;
  socklen_t len = sizeof type;
  ASSERT_EQ(::getsockopt(sock.get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_DGRAM);
  int reuse = 1;
  len = sizeof reuse;
  ASSERT_EQ(::getsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &reuse, &len), 0);
  EXPECT_EQ(reuse, 0);
  auto second = try_bind_listener(bound_url(sock.get()), udp);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().value(), EADDRINUSE);
}

TEST(UnixListenUrl, TakesRelativePathsUnlikeUrls) {
  auto relative = try_unix_listen_url("run/app.sock");
  ASSERT_TRUE(relative.ok());
  EXPECT_EQ(relative->family, AF_UNIX);
  EXPECT_EQ(relative->path, "run/app.sock");
  EXPECT_EQ(try_unix_listen_url("@name")->path, "@name");
  for (std::string bad :
       {std::string(), std::string("@"), std::string(108, 'x'), std::string("a\0b", 3)}) {
    EXPECT_EQ(try_unix_listen_url(bad).error().value(), EINVAL) << bad;
  }
}

TEST(SocketMatchesUrl, ComparesFamilyAddressPortAndListeningState) {
  auto sock = bind_listener(parsed("tcp://127.0.0.1:0"));
  auto port = std::to_string(bound_url(sock.get()).port);
  EXPECT_TRUE(socket_matches_url(sock.get(), parsed(("tcp://127.0.0.1:" + port).c_str())));
  EXPECT_TRUE(socket_matches_url(sock.get(), parsed("tcp://127.0.0.1:0")));
  EXPECT_FALSE(socket_matches_url(sock.get(), parsed("tcp://127.0.0.2:0")));
  EXPECT_FALSE(socket_matches_url(sock.get(), parsed("tcp://0.0.0.0:0")));
  EXPECT_FALSE(socket_matches_url(sock.get(), parsed("tcp://127.0.0.1:1")));
  EXPECT_FALSE(socket_matches_url(sock.get(), parsed("tcp6://[::1]:0")));
  EXPECT_FALSE(socket_matches_url(sock.get(), parsed("unix:/x")));

  unique_fd unbound(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_FALSE(socket_matches_url(unbound.get(), parsed("tcp://0.0.0.0:0")));
  auto pipe = test::pipe_pair();
  EXPECT_FALSE(socket_matches_url(pipe.read.get(), parsed("tcp://0.0.0.0:0")));
  EXPECT_FALSE(socket_matches_url(-1, parsed("tcp://0.0.0.0:0")));
}

}  // namespace
}  // namespace fdbroker

TEST(SocketUrl, UdpIsItsTcpTwinAsADatagramSocket) {
  auto udp = fdbroker::try_parse_socket_url("udp://127.0.0.1:53");
  ASSERT_TRUE(udp.ok());
  EXPECT_EQ(udp.value().socket_type, SOCK_DGRAM);
  EXPECT_EQ(udp.value().url.family, AF_INET);
  EXPECT_EQ(udp.value().url.host, "127.0.0.1");
  auto udp6 = fdbroker::try_parse_socket_url("udp6://[::1]:53");
  ASSERT_TRUE(udp6.ok());
  EXPECT_EQ(udp6.value().socket_type, SOCK_DGRAM);
  EXPECT_TRUE(udp6.value().url.v6only);
  auto tcp = fdbroker::try_parse_socket_url("tcp://[::]:80");
  ASSERT_TRUE(tcp.ok());
  EXPECT_EQ(tcp.value().socket_type, SOCK_STREAM);
  EXPECT_FALSE(tcp.value().url.v6only);
  EXPECT_EQ(fdbroker::try_parse_socket_url("udp:/x").error().value(), EINVAL);
  EXPECT_EQ(fdbroker::try_parse_socket_url("udp://x:1").error().value(), EINVAL);
  EXPECT_THROW((void)fdbroker::parse_socket_url("udp6://nope"), std::system_error);
}

TEST(SocketUrl, UdpUrlsBindDatagramSockets) {
  auto parsed = fdbroker::parse_socket_url("udp://127.0.0.1:0");
  fdbroker::BindOptions options;
  options.socket_type = parsed.socket_type;
  auto sock = fdbroker::try_bind_listener(parsed.url, options);
  ASSERT_TRUE(sock.ok()) << sock.error().message();
  int type = 0;
  socklen_t len = sizeof type;
  ASSERT_EQ(::getsockopt(sock.value().get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_DGRAM);
  try {
    (void)fdbroker::parse_socket_url("udp6://nope");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_NE(std::string(e.what()).find("bad socket URL 'udp6://nope'"), std::string::npos)
        << e.what();
  }
}
