// SPDX-License-Identifier: LGPL-2.1-or-later
// Static entries: the opening text that decides whether a reload or restart keeps
// an entry's socket, and what opening a UNIX socket entry does to the file that is
// already at its path (only a stale socket file is replaced).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "config.hpp"
#include "static_entries.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;

namespace {

// connect() to `path` with a socket of `type`: 0 or the errno.
int connect_errno(const std::string& path, int type, unique_fd* ret_sock = nullptr) {
  unique_fd sock(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  int r = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ? errno : 0;
  if (r == 0 && ret_sock != nullptr) *ret_sock = std::move(sock);
  return r;
}

StaticEntry unix_entry(const std::string& path, int type) {
  StaticEntry e;
  e.name = "svc";
  e.kind = StaticKind::unix_socket;
  e.path = path;
  e.socket_type = type;
  e.mode = 0660;
  return e;
}

int socket_type_of(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  return type;
}

}  // namespace

// A change in these strings makes every static socket re-bound on the first
// reload or upgrade after an update (the old broker's openings come through the
// state memfd): they are pinned to what the released code produced.
TEST(StaticEntryOpening, IsByteIdenticalToWhatEarlierVersionsWrote) {
  auto r = parse_config(R"({"entries": [
    {"name": "f", "type": "file", "path": "/etc/hostname"},
    {"name": "log", "type": "file", "path": "/var/log/app.log",
     "flags": ["wronly", "append", "create"], "mode": "0640"},
    {"name": "t4", "type": "tcp", "address": "127.0.0.1:8080"},
    {"name": "t6", "type": "tcp", "address": "[::]:443", "backlog": 64, "reuseport": true,
     "v6only": true},
    {"name": "t6b", "type": "tcp", "address": "[::1]:8443"},
    {"name": "u", "type": "udp", "address": "0.0.0.0:53", "reuseport": true},
    {"name": "u6", "type": "udp", "address": "[::]:5353", "v6only": true},
    {"name": "s", "type": "unix", "path": "/run/app.sock"},
    {"name": "sp", "type": "unix", "path": "/run/app/seq.sock", "socket_type": "seqpacket",
     "backlog": 16, "mode": "0660", "owner": 0, "group": 0}
  ]})");
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors.front());
  std::vector<std::pair<std::string, std::string>> expected = {
      {"f", "file 0 420 /etc/hostname"},
      {"log", "file 1089 416 /var/log/app.log"},
      {"t4", "tcp 127.0.0.1:8080 128 00"},
      {"t6", "tcp [::]:443 64 11"},
      {"t6b", "tcp [::1]:8443 128 00"},
      {"u", "udp 0.0.0.0:53 128 10"},
      {"u6", "udp [::]:5353 128 01"},
      {"s", "unix stream 128 438 - - /run/app.sock"},
      {"sp", "unix seqpacket 16 432 0 0 /run/app/seq.sock"},
  };
  ASSERT_EQ(r.config->entries.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(r.config->entries[i].name, expected[i].first);
    EXPECT_EQ(r.config->entries[i].opening, expected[i].second) << expected[i].first;
  }
}

TEST(StaticEntryAddress, ConfigTakesNumericAddressesOnly) {
  for (const char* good : {"127.0.0.1:0", "0.0.0.0:65535", "[::]:80", "[::ffff:1.2.3.4]:80"}) {
    auto r = parse_config(std::string(R"({"entries": [{"name": "t", "type": "tcp", "address": ")") +
                          good + "\"}]}");
    EXPECT_TRUE(r.config) << good << ": " << (r.errors.empty() ? "" : r.errors.front());
  }
  // The listen-URL parser's spellings of the wildcard and of localhost are not config syntax.
  for (const char* bad : {"*:80", ":80", "localhost:80", "[*]:80", "[]:80", "[localhost]:80",
                          "[1.2.3.4]:80", "::1:80", "1.2.3.4:65536", "1.2.3.4:x"}) {
    auto r = parse_config(std::string(R"({"entries": [{"name": "t", "type": "tcp", "address": ")") +
                          bad + "\"}]}");
    EXPECT_FALSE(r.config) << bad;
  }
}

class LiveSocketAtThePath : public ::testing::TestWithParam<int> {};

// The bug this guards against: the path was unlinked whatever was there, so a
// second broker, or a mistyped path, stole a running service's socket.
TEST_P(LiveSocketAtThePath, IsLeftAloneAndTheEntryFailsWithEaddrinuse) {
  test::TempDir dir;
  std::string path = dir.socket_path("live.sock");
  const int live_type = GetParam();
  auto live = test::raw_unix_listener(path, live_type);
  ino_t inode = test::inode_of(path);
  auto before = test::open_fd_count();
  for (int entry_type : {SOCK_STREAM, SOCK_SEQPACKET}) {
    auto opened = open_static_entry(unix_entry(path, entry_type));
    ASSERT_FALSE(opened.ok()) << "entry type " << entry_type;
    EXPECT_EQ(opened.failure().err, EADDRINUSE) << opened.failure().why;
    EXPECT_NE(opened.failure().why.find(path), std::string::npos) << opened.failure().why;
  }
  EXPECT_EQ(test::open_fd_count(), before);
  EXPECT_EQ(test::inode_of(path), inode);
  unique_fd client;
  ASSERT_EQ(connect_errno(path, live_type, &client), 0);
  unique_fd accepted(::accept4(live.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
}

INSTANTIATE_TEST_SUITE_P(AllTypes, LiveSocketAtThePath,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET), test::socket_type_name);

TEST(StaticUnixEntry, AStaleSocketFileIsReplaced) {
  test::TempDir dir;
  std::string path = dir.socket_path("stale.sock");
  {
    auto dead = test::raw_unix_listener(path, SOCK_STREAM);
  }  // closed: the file stays, nobody listens
  ASSERT_EQ(connect_errno(path, SOCK_STREAM), ECONNREFUSED);
  auto opened = open_static_entry(unix_entry(path, SOCK_SEQPACKET));
  ASSERT_TRUE(opened.ok()) << opened.failure().why;
  EXPECT_EQ(socket_type_of(opened->get()), SOCK_SEQPACKET);
  EXPECT_TRUE(test::is_cloexec(opened->get()));
  struct stat st {};
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  unique_fd client;
  ASSERT_EQ(connect_errno(path, SOCK_SEQPACKET, &client), 0);
  unique_fd accepted(::accept4(opened->get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
}

TEST(StaticUnixEntry, AFileThatIsNotASocketIsKeptAndRefusedWithEexist) {
  test::TempDir dir;
  std::string path = dir.socket_path("data");
  std::ofstream(path) << "precious";
  auto opened = open_static_entry(unix_entry(path, SOCK_STREAM));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.failure().err, EEXIST) << opened.failure().why;
  std::ifstream in(path);
  std::string text;
  in >> text;
  EXPECT_EQ(text, "precious");
}

TEST(StaticInetEntry, TcpListensAndUdpIsBound) {
  StaticEntry tcp;
  tcp.kind = StaticKind::tcp;
  tcp.address = "127.0.0.1:0";
  auto t = open_static_entry(tcp);
  ASSERT_TRUE(t.ok()) << t.failure().why;
  EXPECT_EQ(socket_type_of(t->get()), SOCK_STREAM);
  int listening = 0;
  socklen_t len = sizeof listening;
  ASSERT_EQ(::getsockopt(t->get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0);
  EXPECT_EQ(listening, 1);

  StaticEntry udp;
  udp.kind = StaticKind::udp;
  udp.address = "127.0.0.1:0";
  auto u = open_static_entry(udp);
  ASSERT_TRUE(u.ok()) << u.failure().why;
  EXPECT_EQ(socket_type_of(u->get()), SOCK_DGRAM);
  sockaddr_in bound{};
  len = sizeof bound;
  ASSERT_EQ(::getsockname(u->get(), reinterpret_cast<sockaddr*>(&bound), &len), 0);
  EXPECT_NE(bound.sin_port, 0);
  // A second UDP entry on the same port is refused (no SO_REUSEADDR sharing).
  udp.address = "127.0.0.1:" + std::to_string(ntohs(bound.sin_port));
  auto again = open_static_entry(udp);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.failure().err, EADDRINUSE);
}
