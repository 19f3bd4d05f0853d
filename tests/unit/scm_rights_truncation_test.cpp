// SPDX-License-Identifier: LGPL-2.1-or-later
// Truncation of the payload (MSG_TRUNC) and of the descriptors (MSG_CTRUNC, or
// more than maxfds): the caller learns it, and no descriptor leaks. That the
// kernel and the library closed what the caller does not get is proven with pipe
// EOF; that nothing else stayed open, with /proc/self/fd.
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace {

using namespace fdbroker;
using namespace fdbroker::test;

class TruncationAllTypes : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(AllTypes, TruncationAllTypes,
                         ::testing::Values(SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM),
                         socket_type_name);

class MessageTypes : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(MessageTypes, MessageTypes, ::testing::Values(SOCK_SEQPACKET, SOCK_DGRAM),
                         socket_type_name);

// Sends `n` pipe write ends, then closes our copies: afterwards each pipe's only
// write end is the one in flight, so EOF on its read end means it was closed.
std::vector<Pipe> send_pipes_and_close(int sock, std::size_t n, const std::string& payload) {
  auto sent = pipes(n);
  EXPECT_EQ(fdbroker::sendfds(sock, payload, write_ends(sent)), payload.size());
  for (auto& p : sent) p.write.reset();
  return sent;
}

// A receive refused with EMSGSIZE: nothing is left open here (`before` was counted
// before the call) and every pipe of `sent` reaches EOF: its write end, in flight,
// was closed by the library or by the kernel.
void expect_emsgsize_closing_all(fdbroker::result<fdbroker::received_message>& got,
                                 std::size_t before, const std::vector<Pipe>& sent) {
  ASSERT_FALSE(got.ok()) << "accepted " << got->fds.size() << " fds";
  EXPECT_EQ(got.error().value(), EMSGSIZE);
  EXPECT_EQ(open_fd_count(), before);
  for (const auto& p : sent) EXPECT_TRUE(reaches_eof(p.read.get()));
}

// A caller's vector already holding one descriptor (a pipe's write end): a failed
// receive into it must leave it as it was.
struct KeptVector {
  Pipe mine = pipe_pair();
  std::vector<unique_fd> fds;
  KeptVector() { fds.push_back(std::move(mine.write)); }
  void expect_as_it_was() const {
    ASSERT_EQ(fds.size(), 1u);
    EXPECT_TRUE(write_end_open(mine.read.get()));
  }
};

// Sends `count` pipes' write ends over a fresh pair of `type` and receives them with
// room for only `maxfds`, expecting the refusal above.
void expect_too_many_refused(int type, std::size_t count, std::size_t maxfds) {
  auto [a, b] = fdbroker::socketpair(type);
  auto sent = send_pipes_and_close(a.get(), count, "too many");
  auto before = open_fd_count();
  auto got = fdbroker::try_recvfds(b.get(), 16, maxfds);
  expect_emsgsize_closing_all(got, before, sent);
}

TEST_P(MessageTypes, PayloadTruncationIsReportedAndTheFdsStillArrive) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto pipe = pipe_pair();
  const std::string payload = random_bytes(100);
  fdbroker::sendfds(a.get(), payload, {pipe.write.get()});
  fdbroker::sendfds(a.get(), "next");

  auto message = fdbroker::recvfds(b.get(), 10, 4);
  EXPECT_TRUE(message.payload_truncated);
  EXPECT_FALSE(message.fds_truncated);
  EXPECT_EQ(message.payload, payload.substr(0, 10));
  ASSERT_EQ(message.fds.size(), 1u);
  EXPECT_TRUE(same_file(message.fds[0].get(), pipe.write.get()));

  // The rest of the truncated message is gone; the next one is whole.
  auto next = fdbroker::recvfds(b.get(), 10, 4);
  EXPECT_EQ(next.payload, "next");
  EXPECT_FALSE(next.payload_truncated);
}

TEST(TruncationStream, AShortBufferIsNotTruncationTheRestStaysQueued) {
  auto [a, b] = fdbroker::socketpair(SOCK_STREAM);
  auto pipe = pipe_pair();
  fdbroker::sendfds(a.get(), "0123456789", {pipe.write.get()});
  auto first = fdbroker::recvfds(b.get(), 4, 4);
  EXPECT_EQ(first.payload, "0123");
  EXPECT_FALSE(first.payload_truncated);
  EXPECT_EQ(first.fds.size(), 1u);
  auto rest = fdbroker::recvfds(b.get(), 64, 4);
  EXPECT_EQ(rest.payload, "456789");
  EXPECT_TRUE(rest.fds.empty());
}

TEST_P(TruncationAllTypes, MoreFdsThanMaxfdsFailWithEmsgsizeAndNoneLeaks) {
  // The two that arrive are closed by the library, the two that do not fit by the
  // kernel.
  expect_too_many_refused(GetParam(), 4, 2);
}

TEST_P(TruncationAllTypes, OddMaxfdsIsAnExactLimit) {
  // CMSG_SPACE rounds up to 8 bytes, so a control buffer for an odd number of
  // ints has room for one more; the limit must still be maxfds.
  for (std::size_t maxfds : {std::size_t{1}, std::size_t{3}, std::size_t{5}}) {
    ASSERT_NO_FATAL_FAILURE(expect_too_many_refused(GetParam(), maxfds + 1, maxfds))
        << "maxfds " << maxfds;
  }
}

TEST_P(TruncationAllTypes, AcceptTruncatedFdsReturnsTheOnesThatArrived) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto sent = pipes(4);
  fdbroker::sendfds(a.get(), "four", write_ends(sent));
  auto before = open_fd_count();

  auto message = fdbroker::recvfds(b.get(), 16, 2, io_flags::accept_truncated_fds);

  EXPECT_TRUE(message.fds_truncated);
  EXPECT_EQ(message.payload, "four");
  ASSERT_EQ(message.fds.size(), 2u);
  EXPECT_EQ(open_fd_count(), before + 2);
  EXPECT_TRUE(same_file(message.fds[0].get(), sent[0].write.get()));
  EXPECT_TRUE(same_file(message.fds[1].get(), sent[1].write.get()));
  for (auto& p : sent) p.write.reset();
  // Ours keep the first two pipes open; the two that did not fit are closed.
  EXPECT_TRUE(write_end_open(sent[0].read.get()));
  EXPECT_TRUE(write_end_open(sent[1].read.get()));
  EXPECT_TRUE(reaches_eof(sent[2].read.get()));
  EXPECT_TRUE(reaches_eof(sent[3].read.get()));
  message = {};
  EXPECT_TRUE(reaches_eof(sent[0].read.get()));
  EXPECT_TRUE(reaches_eof(sent[1].read.get()));
}

TEST_P(TruncationAllTypes, MaxfdsZeroWithFdsSentFailsAndClosesThem) {
  expect_too_many_refused(GetParam(), 3, 0);
}

TEST_P(TruncationAllTypes, MaxfdsZeroAcceptingTruncationGivesThePayloadOnly) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  auto sent = send_pipes_and_close(a.get(), 3, "zero");
  auto before = open_fd_count();
  auto message = fdbroker::recvfds(b.get(), 16, 0, io_flags::accept_truncated_fds);
  EXPECT_EQ(message.payload, "zero");
  EXPECT_TRUE(message.fds.empty());
  EXPECT_TRUE(message.fds_truncated);
  EXPECT_EQ(open_fd_count(), before);
  for (auto& p : sent) EXPECT_TRUE(reaches_eof(p.read.get()));
}

TEST_P(TruncationAllTypes, MaxfdsZeroWithoutFdsIsFine) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  fdbroker::sendfds(a.get(), "none");
  auto message = fdbroker::recvfds(b.get(), 16, 0);
  EXPECT_EQ(message.payload, "none");
  EXPECT_FALSE(message.fds_truncated);
}

TEST_P(TruncationAllTypes, FailureLeavesTheCallersVectorAsItWas) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  KeptVector kept;
  auto sent = send_pipes_and_close(a.get(), 3, "three");
  char buf[16];
  auto got = fdbroker::try_recvfds_into(b.get(), buf, sizeof buf, kept.fds, 1);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().value(), EMSGSIZE);
  kept.expect_as_it_was();
  for (auto& p : sent) EXPECT_TRUE(reaches_eof(p.read.get()));
}

TEST_P(TruncationAllTypes, RecvfdsIntoThrowsEmsgsizeAndLeavesTheCallersVectorAsItWas) {
  auto [a, b] = fdbroker::socketpair(GetParam());
  KeptVector kept;
  auto sent = send_pipes_and_close(a.get(), 3, "three");
  const auto before = open_fd_count();
  char buf[16];
  try {
    fdbroker::recvfds_into(b.get(), buf, sizeof buf, kept.fds, 1);
    ADD_FAILURE() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EMSGSIZE) << e.what();
  }
  kept.expect_as_it_was();
  EXPECT_EQ(open_fd_count(), before);
  for (auto& p : sent) EXPECT_TRUE(reaches_eof(p.read.get()));
}

TEST(Truncation, MaxfdsAboveTheKernelLimitIsEinvalAndConsumesNothing) {
  auto [a, b] = fdbroker::socketpair();
  fdbroker::sendfds(a.get(), "kept");
  auto got = fdbroker::try_recvfds(b.get(), 16, fdbroker::max_fds_per_message + 1);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().value(), EINVAL);
  EXPECT_EQ(fdbroker::recvfds(b.get(), 16).payload, "kept");
}

// When our descriptor table is full, the kernel installs what fits, drops the
// rest and sets MSG_CTRUNC: the library must close the ones installed.
TEST(Truncation, FullFdTableIsReportedAsEmsgsizeWithNoLeak) {
  auto [a, b] = fdbroker::socketpair();
  auto sent = send_pipes_and_close(a.get(), 5, "full");
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // The limit bounds descriptor numbers, not their count: fill every hole below
  // the highest open descriptor, then allow exactly two numbers above it.
  int limit = 0;
  for (int fd = 0; fd < 65536; ++fd)
    if (is_open(fd)) limit = fd + 1;
  std::vector<unique_fd> fillers;
  for (;;) {
    unique_fd filler(::fcntl(sent[0].read.get(), F_DUPFD_CLOEXEC, 0));
    ASSERT_TRUE(filler.valid());
    if (filler.get() >= limit) break;
    fillers.push_back(std::move(filler));
  }
  auto before = open_fd_count();
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(limit + 2);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  auto got = fdbroker::try_recvfds(b.get(), 16, 8);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);

  expect_emsgsize_closing_all(got, before, sent);
}

}  // namespace
