// SPDX-License-Identifier: LGPL-2.1-or-later
// sendfds()/recvfds() delivering payloads and descriptors over real AF_UNIX
// sockets of every type. Identity is checked with fstat (st_dev, st_ino), closing
// with pipe EOF, leaks with /proc/self/fd.
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using fdbroker::io_flags;
using fdbroker::unique_fd;
using namespace fdbroker::test;

class ScmRightsAllTypes : public ::testing::TestWithParam<int> {};

INSTANTIATE_TEST_SUITE_P(AllTypes, ScmRightsAllTypes,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM),
                         socket_type_name);

TEST_P(ScmRightsAllTypes, SeveralFdsOfDifferentKindsInOneMessage) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto pipe = pipe_pair();
  unique_fd memfd(::memfd_create("scm-rights-test", MFD_CLOEXEC));
  ASSERT_TRUE(memfd.valid());
  unique_fd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  auto [s1, s2] = fdbroker::socketpair(SOCK_STREAM);
  const std::vector<int> sent = {pipe.write.get(), memfd.get(), devnull.get(), s1.get()};
  auto before = open_fd_count();

  ASSERT_EQ(fdbroker::sendfds(a.get(), "four fds", sent), 8u);
  auto message = fdbroker::recvfds(b.get(), 64, 8);

  EXPECT_EQ(message.payload, "four fds");
  EXPECT_FALSE(message.payload_truncated);
  EXPECT_FALSE(message.fds_truncated);
  ASSERT_EQ(message.fds.size(), sent.size());
  EXPECT_EQ(open_fd_count(), before + sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_NE(message.fds[i].get(), sent[i]) << "the receiver gets new descriptors";
    EXPECT_TRUE(same_file(message.fds[i].get(), sent[i])) << "fd #" << i;
  }
  // The received pipe end is a working copy: write through it, read here.
  pipe.write.reset();
  ASSERT_EQ(::write(message.fds[0].get(), "z", 1), 1);
  char byte = 0;
  ASSERT_EQ(::read(pipe.read.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'z');
  // And it is the only one left: dropping the message closes it.
  message = {};
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
  EXPECT_EQ(open_fd_count(), before - 1);  // minus the write end reset above
}

TEST_P(ScmRightsAllTypes, ReceivedFdsAreCloexecEvenWhenTheSentOnesAreNot) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto pipe = pipe_pair();
  ASSERT_EQ(::fcntl(pipe.write.get(), F_SETFD, 0), 0);
  ASSERT_EQ(::fcntl(pipe.read.get(), F_SETFD, 0), 0);
  fdbroker::sendfds(a.get(), "x", {pipe.write.get(), pipe.read.get()});
  auto message = fdbroker::recvfds(b.get(), 8, 2);
  ASSERT_EQ(message.fds.size(), 2u);
  for (const auto& fd : message.fds) EXPECT_TRUE(is_cloexec(fd.get())) << "fd " << fd.get();
}

TEST_P(ScmRightsAllTypes, PayloadBytesArriveIntactIncludingNuls) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto pipe = pipe_pair();
  // Sizes that fit one datagram on every type; bigger stream payloads below.
  for (std::size_t size :
       {std::size_t{1}, std::size_t{2}, std::size_t{255}, std::size_t{4096}, std::size_t{65536}}) {
    std::string payload = random_bytes(size, static_cast<std::uint32_t>(size));
    payload[0] = '\0';
    ASSERT_EQ(fdbroker::sendfds(a.get(), payload, {pipe.write.get()}), size);
    std::string got;
    std::vector<unique_fd> fds;
    // A stream may deliver the bytes in pieces; the fd comes with the first.
    while (got.size() < size) {
      auto message = fdbroker::recvfds(b.get(), size, 4);
      ASSERT_FALSE(message.empty());
      EXPECT_FALSE(message.payload_truncated);
      got += message.payload;
      for (auto& fd : message.fds) fds.push_back(std::move(fd));
    }
    EXPECT_EQ(got, payload) << size << " bytes";
    ASSERT_EQ(fds.size(), 1u);
    EXPECT_TRUE(same_file(fds[0].get(), pipe.write.get()));
  }
  EXPECT_TRUE(nothing_queued(b.get()));
}

TEST_P(ScmRightsAllTypes, MessageWithoutFdsHasNone) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto before = open_fd_count();
  EXPECT_EQ(fdbroker::sendfds(a.get(), "plain"), 5u);
  auto message = fdbroker::recvfds(b.get(), 16);
  EXPECT_EQ(message.payload, "plain");
  EXPECT_TRUE(message.fds.empty());
  EXPECT_EQ(open_fd_count(), before);
}

TEST_P(ScmRightsAllTypes, ExactlyMaxFdsPerMessageWork) {
  ASSERT_EQ(fdbroker::max_fds_per_message, 253u);
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto many = pipes(fdbroker::max_fds_per_message);
  auto before = open_fd_count();

  ASSERT_EQ(fdbroker::sendfds(a.get(), "253", write_ends(many)), 3u);
  auto message = fdbroker::recvfds(b.get(), 16, fdbroker::max_fds_per_message);

  EXPECT_FALSE(message.fds_truncated);
  ASSERT_EQ(message.fds.size(), 253u);
  EXPECT_EQ(open_fd_count(), before + 253);
  for (std::size_t i = 0; i < many.size(); ++i) {
    ASSERT_TRUE(same_file(message.fds[i].get(), many[i].write.get()))
        << "fd #" << i << " out of order";
    EXPECT_TRUE(is_cloexec(message.fds[i].get()));
  }
  for (auto& p : many) p.write.reset();
  message = {};
  for (auto& p : many) ASSERT_TRUE(reaches_eof(p.read.get()));
}

TEST_P(ScmRightsAllTypes, FdsFromSeveralCmsgHeadersArriveAllInOrder) {
  // Built by hand: the library itself always sends one SCM_RIGHTS header, but a
  // peer may send several in one message, and the kernel accepts that.
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto five = pipes(5);
  const int first[2] = {five[0].write.get(), five[1].write.get()};
  const int second[3] = {five[2].write.get(), five[3].write.get(), five[4].write.get()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof first) + CMSG_SPACE(sizeof second)] = {};
  char data[] = "split";
  iovec iov{data, 5};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof first);
  std::memcpy(CMSG_DATA(c), first, sizeof first);
  c = CMSG_NXTHDR(&msg, c);
  ASSERT_NE(c, nullptr);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof second);
  std::memcpy(CMSG_DATA(c), second, sizeof second);
  ASSERT_EQ(::sendmsg(a.get(), &msg, 0), 5) << std::strerror(errno);

  auto before = open_fd_count();
  auto message = fdbroker::recvfds(b.get(), 16, 8);
  EXPECT_EQ(message.payload, "split");
  ASSERT_EQ(message.fds.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i)
    EXPECT_TRUE(same_file(message.fds[i].get(), five[i].write.get()));
  message = {};
  EXPECT_EQ(open_fd_count(), before);
}

TEST_P(ScmRightsAllTypes, CredentialsHeaderBesideTheFdsIsSkipped) {
  // With SO_PASSCRED the kernel puts an SCM_CREDENTIALS header before the
  // SCM_RIGHTS one: two headers in one received message, and neither may crowd
  // the other out, whatever maxfds is.
  auto [a, b] = fdbroker::socketpair(GetParam());
  int on = 1;
  ASSERT_EQ(::setsockopt(b.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
  auto three = pipes(3);
  const auto ends = write_ends(three);
  for (std::size_t maxfds : {std::size_t{1}, std::size_t{3}, std::size_t{253}}) {
    std::vector<int> sent(ends.begin(), ends.begin() + (maxfds < 3 ? 1 : 3));
    fdbroker::sendfds(a.get(), "creds", sent);
    auto got = fdbroker::try_recvfds(b.get(), 16, maxfds);
    ASSERT_TRUE(got.ok()) << "maxfds " << maxfds << ": " << got.error().message();
    EXPECT_EQ(got->payload, "creds");
    EXPECT_FALSE(got->fds_truncated);
    ASSERT_EQ(got->fds.size(), sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i)
      EXPECT_TRUE(same_file(got->fds[i].get(), sent[i]));
  }
}

TEST_P(ScmRightsAllTypes, PidfdHeaderIsClosedNotLeaked) {
  // SO_PASSPIDFD (Linux 6.5) makes the kernel install a pidfd of the sender with
  // every message; the caller asked for the sender's fds only.
  constexpr int so_passpidfd = 76;
  auto [a, b] = fdbroker::socketpair(GetParam());
  int on = 1;
  ASSERT_EQ(::setsockopt(b.get(), SOL_SOCKET, so_passpidfd, &on, sizeof on), 0)
      << std::strerror(errno);
  auto pipe = pipe_pair();
  auto before = open_fd_count();
  fdbroker::sendfds(a.get(), "pidfd", {pipe.write.get()});
  {
    auto message = fdbroker::recvfds(b.get(), 16, 4);
    ASSERT_EQ(message.fds.size(), 1u);
    EXPECT_TRUE(same_file(message.fds[0].get(), pipe.write.get()));
    EXPECT_EQ(open_fd_count(), before + 1);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ScmRightsStream, LargePayloadArrivesIntactWithTheFdsOnTheFirstRead) {
  auto [a, b] = fdbroker::socketpair(SOCK_STREAM);
  auto pipe = pipe_pair();
  const std::string payload = random_bytes(4 << 20, 7);  // far beyond the socket buffer
  std::size_t sent = 0;
  std::thread sender(
      [&, sock = a.get()] { sent = fdbroker::sendfds(sock, payload, {pipe.write.get()}); });

  std::string got;
  std::vector<unique_fd> fds;
  std::size_t reads = 0;
  while (got.size() < payload.size()) {
    auto message = fdbroker::recvfds(b.get(), 65536, 4);
    if (message.empty()) break;
    if (reads++ == 0) {
      EXPECT_EQ(message.fds.size(), 1u) << "the fd travels with the first byte";
    } else {
      EXPECT_TRUE(message.fds.empty()) << "read #" << reads;
    }
    got += message.payload;
    for (auto& fd : message.fds) fds.push_back(std::move(fd));
  }
  sender.join();
  EXPECT_EQ(sent, payload.size()) << "a blocking stream send is complete";
  EXPECT_TRUE(got == payload) << "payload differs (" << got.size() << " bytes received)";
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(same_file(fds[0].get(), pipe.write.get()));
}

TEST_P(ScmRightsAllTypes, EndOfStreamIsAnEmptyMessage) {
  if (GetParam() == SOCK_DGRAM) {
    // A datagram socket has no end of stream: closing the peer leaves a
    // receiver that would block. Shown as such, not skipped.
    auto [a, b] = fdbroker::socketpair(SOCK_DGRAM);
    a.reset();
    auto got = fdbroker::try_recvfds(b.get(), 16, 4, io_flags::dontwait);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().value(), EAGAIN);
    return;
  }
  auto [a, b] = fdbroker::socketpair(GetParam());
  a.reset();
  auto message = fdbroker::recvfds(b.get(), 16, 4);
  EXPECT_TRUE(message.empty());
  EXPECT_EQ(message.payload, "");
  EXPECT_TRUE(message.fds.empty());
  EXPECT_FALSE(message.payload_truncated);
  EXPECT_FALSE(message.fds_truncated);
}

TEST(ScmRightsSeqpacket, EmptyPayloadWithFdsIsAMessageNotEndOfStream) {
  auto [a, b] = fdbroker::socketpair(SOCK_SEQPACKET);
  auto pipe = pipe_pair();
  EXPECT_EQ(fdbroker::sendfds(a.get(), "", {pipe.write.get()}), 0u);
  auto message = fdbroker::recvfds(b.get(), 16, 4);
  EXPECT_FALSE(message.empty());
  EXPECT_EQ(message.payload, "");
  ASSERT_EQ(message.fds.size(), 1u);
  EXPECT_TRUE(same_file(message.fds[0].get(), pipe.write.get()));
}

TEST(ScmRightsDgram, EmptyPayloadWithFdsIsAMessage) {
  auto [a, b] = fdbroker::socketpair(SOCK_DGRAM);
  auto pipe = pipe_pair();
  EXPECT_EQ(fdbroker::sendfds(a.get(), "", {pipe.write.get()}), 0u);
  auto message = fdbroker::recvfds(b.get(), 16, 4);
  ASSERT_EQ(message.fds.size(), 1u);
  EXPECT_TRUE(same_file(message.fds[0].get(), pipe.write.get()));
}

TEST(ScmRights, TryRecvfdsIntoAppendsToTheCallersVector) {
  auto [a, b] = fdbroker::socketpair();
  auto two = pipes(2);
  std::vector<unique_fd> kept;
  kept.push_back(fdbroker::dup_cloexec(two[0].write.get()));
  fdbroker::sendfds(a.get(), "abc", {two[1].write.get()});
  char buf[8];
  auto info = fdbroker::try_recvfds_into(b.get(), buf, sizeof buf, kept, 4);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(info->size, 3u);
  EXPECT_EQ(std::string(buf, 3), "abc");
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_TRUE(same_file(kept[0].get(), two[0].write.get()));
  EXPECT_TRUE(same_file(kept[1].get(), two[1].write.get()));
}

TEST(ScmRights, RecvfdsIntoReusesTheCallersBufferAndVectorAcrossMessages) {
  auto [a, b] = fdbroker::socketpair();
  auto two = pipes(2);
  std::vector<unique_fd> got;
  char buf[8];
  const auto before = open_fd_count();
  fdbroker::sendfds(a.get(), "one", {two[0].write.get()});
  fdbroker::sendfds(a.get(), "two", {two[1].write.get()});

  fdbroker::recv_info info = fdbroker::recvfds_into(b.get(), buf, sizeof buf, got);
  EXPECT_EQ(std::string(buf, info.size), "one");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(same_file(got[0].get(), two[0].write.get()));

  got.clear();  // closes the first message's fd; the capacity stays for the next
  info = fdbroker::recvfds_into(b.get(), buf, sizeof buf, got);
  EXPECT_EQ(std::string(buf, info.size), "two");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(same_file(got[0].get(), two[1].write.get()));
  got.clear();
  EXPECT_EQ(open_fd_count(), before);
}

}  // namespace
