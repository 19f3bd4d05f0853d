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

// The fallbacks for older kernels (no STATX_MNT_ID before 5.8, no statx before
// 4.11) describe every kind the same as statx does.
TEST(FdDescription, FallbacksDescribeTheSame) {
  fdbroker::test::TempDir dir;
  std::string path = dir.path() + "/f";
  unique_fd file(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  auto p = fdbroker::test::pipe_pair();
  unique_fd m(::memfd_create("state", MFD_CLOEXEC));
  unique_fd d(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  unique_fd o(::open("/etc", O_PATH | O_CLOEXEC));
  unique_fd ev(::eventfd(0, EFD_CLOEXEC));
  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  for (int fd :
       {file.get(), p.read.get(), p.write.get(), m.get(), d.get(), o.get(), ev.get(), sock.get()}) {
    auto expected = describe_fd(fd, Probe::statx);
    EXPECT_EQ(describe_fd(fd, Probe::statx_no_mnt_id), expected) << expected.dump();
    EXPECT_EQ(describe_fd(fd, Probe::no_statx), expected) << expected.dump();
  }
  EXPECT_EQ(describe_fd(file.get())["kind"], "file");
  EXPECT_EQ(describe_fd(o.get())["kind"], "directory");
}

TEST(FdDescription, MountIdFromStatxAndFromFdinfoAgree) {
  unique_fd fd(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
  auto with = probe_fd(fd.get(), Probe::statx);
  auto without = probe_fd(fd.get(), Probe::statx_no_mnt_id);
  ASSERT_TRUE(with.mount_id.has_value());
  EXPECT_EQ(with.mount_id, without.mount_id);
  EXPECT_EQ(mount_id_of(fd.get()), with.mount_id);
  EXPECT_FALSE(probe_fd(-1).has_mode);
  EXPECT_EQ(describe_fd(-1), (nlohmann::json{{"kind", "other"}}));
}

TEST(FdDescription, FuseTypes) {
  for (const char* fuse : {"fuse", "fuseblk", "fuse.sshfs"})
    EXPECT_TRUE(is_fuse_type(fuse)) << fuse;
  for (const char* other : {"fusectl", "ext4", "tmpfs"}) EXPECT_FALSE(is_fuse_type(other)) << other;
}

TEST(FdDescription, MountTableByIdThenByDevice) {
  MountTable t;
  t.load(
      "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n"
      "40 22 0:52 / /home/u/remote rw,nosuid,nodev master:1 - fuse.sshfs u@h:/ rw,user_id=1000\n"
      "41 22 8:17 / /media/usb rw - fuseblk /dev/sdb1 rw\n"
      "malformed line\n"
      "42 22 8:2 / / rw - ext4 /dev/sda2 rw");
  EXPECT_EQ(t.fstype(40, 0, 52), "fuse.sshfs");
  EXPECT_EQ(t.fstype(41, 8, 17), "fuseblk");
  EXPECT_EQ(t.fstype(42, 8, 2), "ext4");
  // Another namespace's mount id, a device this namespace mounts: by device.
  EXPECT_EQ(t.fstype(999999, 0, 52), "fuse.sshfs");
  EXPECT_EQ(t.fstype(std::nullopt, 8, 2), "ext4");
}

TEST(FdDescription, OrdinaryDescriptorsAreNotFuse) {
  MountTable& mounts = mount_table();
  unique_fd file(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
  auto p = fdbroker::test::pipe_pair();
  unique_fd m(::memfd_create("x", MFD_CLOEXEC));
  unique_fd ev(::eventfd(0, EFD_CLOEXEC));
  unique_fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  unique_fd dir(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (int fd : {file.get(), p.read.get(), m.get(), ev.get(), sock.get(), dir.get()}) {
    for (Probe how : {Probe::statx, Probe::statx_no_mnt_id, Probe::no_statx}) {
      EXPECT_EQ(fuse_reason(fd, mounts, how), "") << describe_fd(fd).dump();
    }
  }
}

TEST(FdDescription, AFileOnAnUnknownFileSystemWithoutBlockDeviceCountsAsFuse) {
  // The table knows nothing: as for a mount in another namespace.
  MountTable empty;
  empty.load("");
  unique_fd proc(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));  // proc: device 0:N
  auto facts = probe_fd(proc.get());
  ASSERT_EQ(facts.dev_major, 0u);
  // (A table that cannot see the mount re-reads /proc/self/mountinfo, at most once a
  // second: loaded just now, it keeps its empty view.)
  EXPECT_NE(fuse_reason(proc.get(), empty).find("unknown file system on device 0:"),
            std::string::npos);
  auto p = fdbroker::test::pipe_pair();
  EXPECT_EQ(fuse_reason(p.read.get(), empty), "");
}
