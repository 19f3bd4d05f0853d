// SPDX-License-Identifier: LGPL-2.1-or-later
// Restoring entries from named descriptors (daemon/restore.hpp), and the sealed
// state memfd they are described by (daemon/systemd_fd_store.hpp), over real fds.
#include "restore.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "systemd_fd_store.hpp"
#include "test_util.hpp"

namespace fdbroker::daemon {
namespace {

using test::pipe_pair;
using test::reaches_eof;
using test::same_file;
using test::write_end_open;

unique_fd listening_seqpacket() {
  unique_fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // Autobind (an abstract address chosen by the kernel): nothing on disk.
  EXPECT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)), 0);
  EXPECT_EQ(::listen(sock.get(), 4), 0);
  return sock;
}

unique_fd dup_of(int fd) { return unique_fd(::fcntl(fd, F_DUPFD_CLOEXEC, 3)); }

NamedFd named(std::string name, unique_fd fd) { return NamedFd{std::move(name), std::move(fd)}; }

unique_fd state(const std::string& json) {
  auto fd = make_state_memfd(json);
  EXPECT_TRUE(fd.ok());
  return std::move(fd).value();
}

std::string two_entries_state() {
  return R"({"format":"fdbrokerd-state","version":1,"next_generation":500,"next_serial":9,
    "socket_unlink":"/tmp/x.sock","static_openings":{"s/file":"file 0 420 /etc/hostname"},
    "entries":[
      {"name":"a/pair","serial":3,"nfds":2,"meta":{"k": [1, 2]},
       "fds":[{"kind":"pipe"},{"kind":"pipe"}],"owner":1000,"static":false,"generation":42,
       "expiry_monotonic_ns":123456789},
      {"name":"b/lost","serial":4,"nfds":1,"meta":{},"fds":[{"kind":"pipe"}],"owner":0,
       "generation":43}]})";
}

TEST(StateMemfd, IsSealedAgainstEveryChange) {
  auto fd = make_state_memfd("{\"x\":1}");
  ASSERT_TRUE(fd.ok());
  int seals = ::fcntl(fd->get(), F_GET_SEALS);
  EXPECT_EQ(seals, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  EXPECT_LT(::pwrite(fd->get(), "y", 1, 0), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_LT(::ftruncate(fd->get(), 0), 0);
  char buf[16] = {};
  EXPECT_EQ(::pread(fd->get(), buf, sizeof buf, 0), 7);
  EXPECT_STREQ(buf, "{\"x\":1}");
}

TEST(Restore, EntriesGetTheirDescriptorsByFdname) {
  auto p1 = pipe_pair();
  auto p2 = pipe_pair();
  auto orphan = pipe_pair();
  auto lost_part = pipe_pair();
  std::vector<NamedFd> fds;
  fds.push_back(named("e3.1", dup_of(p2.write.get())));
  fds.push_back(named("listen", listening_seqpacket()));
  fds.push_back(named("state.7", state(two_entries_state())));
  fds.push_back(named("e3.0", dup_of(p1.read.get())));
  fds.push_back(named("e99.0", dup_of(orphan.write.get())));
  fds.push_back(named("e5.0", dup_of(lost_part.write.get())));  // no such entry either
  orphan.write.reset();
  lost_part.write.reset();

  auto restored = restore_from(std::move(fds));
  ASSERT_TRUE(restored.ok()) << restored.error().message();
  EXPECT_TRUE(restored->listener.valid());
  EXPECT_EQ(restored->next_generation, 500u);
  EXPECT_EQ(restored->next_serial, 9u);
  EXPECT_EQ(restored->socket_unlink, "/tmp/x.sock");
  EXPECT_EQ(restored->static_openings.at("s/file"), "file 0 420 /etc/hostname");
  EXPECT_EQ(restored->state_seqs, std::vector<std::uint64_t>{7});
  ASSERT_EQ(restored->entries.size(), 1u);  // b/lost had no descriptor passed back
  const RestoredEntry& r = restored->entries[0];
  EXPECT_EQ(r.serial, 3u);
  EXPECT_EQ(r.entry.name, "a/pair");
  EXPECT_EQ(r.entry.meta, "{\"k\":[1,2]}");
  EXPECT_EQ(r.entry.owner, 1000u);
  EXPECT_EQ(r.entry.generation, 42u);
  ASSERT_TRUE(r.entry.expiry.has_value());
  EXPECT_EQ(r.entry.expiry->time_since_epoch(), std::chrono::nanoseconds(123456789));
  ASSERT_EQ(r.entry.fds->size(), 2u);
  EXPECT_TRUE(
      same_file((*r.entry.fds)[0], p1.read.get()));  // in the entry's order, not LISTEN_FDS'
  EXPECT_TRUE(same_file((*r.entry.fds)[1], p2.write.get()));
  EXPECT_EQ(restored->orphans, (std::vector<std::string>{"e4.0", "e5.0", "e99.0"}));
  EXPECT_FALSE(restored->warnings.empty());
  // What nobody claimed was closed.
  EXPECT_TRUE(reaches_eof(orphan.read.get()));
  EXPECT_TRUE(reaches_eof(lost_part.read.get()));
}

TEST(Restore, TheNewestOfTwoStatesWins) {
  std::string older = R"({"format":"fdbrokerd-state","version":1,"entries":[]})";
  auto p = pipe_pair();
  std::vector<NamedFd> fds;
  fds.push_back(named("state.12", state(two_entries_state())));
  fds.push_back(named("listen", listening_seqpacket()));
  fds.push_back(named("state.11", state(older)));
  fds.push_back(named("e3.0", dup_of(p.read.get())));
  fds.push_back(named("e3.1", dup_of(p.write.get())));
  auto restored = restore_from(std::move(fds));
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored->state_seqs, (std::vector<std::uint64_t>{12, 11}));
  ASSERT_EQ(restored->entries.size(), 1u);
  EXPECT_EQ(restored->entries[0].entry.name, "a/pair");
}

TEST(Restore, DamagedStateClosesEveryEntryDescriptor) {
  auto p = pipe_pair();
  std::vector<NamedFd> fds;
  fds.push_back(named("listen", listening_seqpacket()));
  fds.push_back(
      named("state.1",
            state("{\"format\":\"fdbrokerd-state\",\"version\":1,\"entries\":[{\"name\":7}]}")));
  fds.push_back(named("e1.0", dup_of(p.write.get())));
  p.write.reset();
  auto restored = restore_from(std::move(fds));
  ASSERT_TRUE(restored.ok());
  EXPECT_TRUE(restored->entries.empty());
  EXPECT_FALSE(restored->warnings.empty());
  EXPECT_TRUE(reaches_eof(p.read.get()));
}

TEST(Restore, WithoutAListeningSocketIsEinval) {
  auto p = pipe_pair();
  std::vector<NamedFd> fds;
  fds.push_back(named("e1.0", dup_of(p.write.get())));
  fds.push_back(named("e1.1", dup_of(p.read.get())));
  auto restored = restore_from(std::move(fds));
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.error().value(), EINVAL);
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_FALSE(write_end_open(p.read.get()));
}

TEST(Restore, NothingPassedIsNotAnError) {
  auto restored = restore_from({});
  ASSERT_TRUE(restored.ok());
  EXPECT_FALSE(restored->listener.valid());
}

}  // namespace
}  // namespace fdbroker::daemon
