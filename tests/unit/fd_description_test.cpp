// SPDX-License-Identifier: LGPL-2.1-or-later
#include "fd_description.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fdbroker/unix_socket.hpp>

#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;

TEST(FdDescription, RegularFileHasPathAndAccess) {
  unique_fd fd(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
  auto d = describe_fd(fd.get());
  EXPECT_EQ(d["kind"], "file");
  EXPECT_EQ(d["path"], "/etc/hostname");
  EXPECT_EQ(d["access"], "r");
  fdbroker::test::TempDir dir;
  std::string path = dir.path() + "/w";
  unique_fd w(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  EXPECT_EQ(describe_fd(w.get())["access"], "w");
  unique_fd rw(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_EQ(describe_fd(rw.get())["access"], "rw");
}

TEST(FdDescription, PipeMemfdDirectoryAndOther) {
  auto p = fdbroker::test::pipe_pair();
  EXPECT_EQ(describe_fd(p.read.get()), (nlohmann::json{{"kind", "pipe"}, {"access", "r"}}));
  EXPECT_EQ(describe_fd(p.write.get())["access"], "w");
  unique_fd m(::memfd_create("handoff state", MFD_CLOEXEC));
  auto md = describe_fd(m.get());
  EXPECT_EQ(md["kind"], "memfd");
  EXPECT_EQ(md["name"], "handoff state");
  unique_fd dir(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_EQ(describe_fd(dir.get()), (nlohmann::json{{"kind", "directory"}, {"path", "/"}}));
  unique_fd ev(::eventfd(0, EFD_CLOEXEC));
  auto ed = describe_fd(ev.get());
  EXPECT_EQ(ed["kind"], "other");
  EXPECT_EQ(ed["path"], "anon_inode:[eventfd]");
}

TEST(FdDescription, SocketsHaveFamilyTypeListeningAndAddress) {
  unique_fd tcp(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 a6{};
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  ASSERT_EQ(::bind(tcp.get(), reinterpret_cast<sockaddr*>(&a6), sizeof a6), 0);
  ASSERT_EQ(::listen(tcp.get(), 1), 0);
  socklen_t len = sizeof a6;
  ::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&a6), &len);
  auto d = describe_fd(tcp.get());
  EXPECT_EQ(d["kind"], "socket");
  EXPECT_EQ(d["family"], "inet6");
  EXPECT_EQ(d["type"], "stream");
  EXPECT_EQ(d["listening"], true);
  EXPECT_EQ(d["local"], "[::1]:" + std::to_string(ntohs(a6.sin6_port)));

  unique_fd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto u = describe_fd(udp.get());
  EXPECT_EQ(u["type"], "dgram");
  EXPECT_EQ(u["listening"], false);
  EXPECT_EQ(u["local"], "0.0.0.0:0");

  unique_fd abstract(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, "\0fdbroker-test", 14);
  ASSERT_EQ(::bind(abstract.get(), reinterpret_cast<sockaddr*>(&un),
                   offsetof(sockaddr_un, sun_path) + 14),
            0);
  EXPECT_EQ(describe_fd(abstract.get())["local"], "@fdbroker-test");
  auto [a, b] = fdbroker::socketpair();
  EXPECT_EQ(describe_fd(a.get())["local"], "");
  EXPECT_EQ(describe_fd(a.get())["family"], "unix");
}
