// SPDX-License-Identifier: LGPL-2.1-or-later
// The errors of sendfds()/recvfds(): each one from a real socket in the state that
// causes it, with "nothing was sent" checked on the peer. The syscall seam only
// counts calls here, to show that EAGAIN is returned rather than spun on and that
// argument errors never reach sendmsg().
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "sys_override.hpp"
#include "test_util.hpp"

namespace {

using fdbroker::io_flags;
using fdbroker::unique_fd;
using namespace fdbroker::test;

int sendmsg_calls = 0;
int recvmsg_calls = 0;
ssize_t counting_sendmsg(int sock, const msghdr* msg, int flags) {
  ++sendmsg_calls;
  return ::sendmsg(sock, msg, flags);
}
ssize_t counting_recvmsg(int sock, msghdr* msg, int flags) {
  ++recvmsg_calls;
  return ::recvmsg(sock, msg, flags);
}

// Counts the library's sendmsg/recvmsg calls for the lifetime of the object.
class CountingCalls {
 public:
  CountingCalls() {
    sendmsg_calls = recvmsg_calls = 0;
    fdbroker::detail::sys::calls.sendmsg = counting_sendmsg;
    fdbroker::detail::sys::calls.recvmsg = counting_recvmsg;
  }

 private:
  SysOverride restore_;
};

template <class F>
std::error_code thrown_code(F&& call) {
  try {
    call();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

std::error_code sys(int err) { return {err, std::system_category()}; }

TEST(ScmRightsErrors, MoreThanMaxFdsIsE2bigBeforeAnythingIsSent) {
  auto [a, b] = fdbroker::socketpair();
  auto many = pipes(fdbroker::max_fds_per_message + 1);
  CountingCalls calls;
  auto sent = fdbroker::try_sendfds(a.get(), "x", 1, write_ends(many).data(), many.size());
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error(), sys(E2BIG));
  EXPECT_EQ(sendmsg_calls, 0);
  EXPECT_TRUE(nothing_queued(b.get()));
  EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(a.get(), "x", write_ends(many)); }), sys(E2BIG));
  EXPECT_TRUE(nothing_queued(b.get()));
}

TEST(ScmRightsErrors, NegativeFdIsEbadfAndNothingIsSent) {
  auto [a, b] = fdbroker::socketpair();
  auto pipe = pipe_pair();
  auto sent =
      fdbroker::try_sendfds(a.get(), "x", 1, std::vector<int>{pipe.write.get(), -1}.data(), 2);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error(), sys(EBADF));
  EXPECT_TRUE(nothing_queued(b.get()));
  EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(a.get(), "x", {-1}); }), sys(EBADF));
  EXPECT_TRUE(nothing_queued(b.get()));
}

TEST(ScmRightsErrors, ClosedFdIsEbadfAndNothingIsSent) {
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
    auto [a, b] = fdbroker::socketpair(type);
    auto pipe = pipe_pair();
    int closed = pipe.read.release();
    ::close(closed);
    EXPECT_EQ(thrown_code([&] {
                fdbroker::sendfds(a.get(), "x", {pipe.write.get(), closed});
              }),
              sys(EBADF))
        << "type " << type;
    EXPECT_TRUE(nothing_queued(b.get())) << "type " << type;
  }
}

TEST(ScmRightsErrors, BadSocketIsEbadf) {
  EXPECT_EQ(fdbroker::try_sendfds(-1, "x", 1, nullptr, 0).error(), sys(EBADF));
  EXPECT_EQ(fdbroker::try_recvfds(-1, 8).error(), sys(EBADF));
}

TEST(ScmRightsErrors, EmptyPayloadWithFdsOnAStreamIsEinval) {
  // The kernel would accept the call and silently drop the descriptors.
  auto [a, b] = fdbroker::socketpair(SOCK_STREAM);
  auto pipe = pipe_pair();
  CountingCalls calls;
  auto sent = fdbroker::try_sendfds(a.get(), "", 0, std::vector<int>{pipe.write.get()}.data(), 1);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error(), sys(EINVAL));
  EXPECT_EQ(sendmsg_calls, 0);
  EXPECT_TRUE(nothing_queued(b.get()));
  EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(a.get(), "", {pipe.write.get()}); }), sys(EINVAL));
}

TEST(ScmRightsErrors, RegularFileIsEnotsock) {
  TempDir dir;
  unique_fd file(::open(dir.socket_path("file").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(file.valid());
  auto pipe = pipe_pair();
  EXPECT_EQ(fdbroker::try_sendfds(file.get(), "x", 1, nullptr, 0).error(), sys(ENOTSOCK));
  EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(file.get(), "x", {pipe.write.get()}); }),
            sys(ENOTSOCK));
  EXPECT_EQ(fdbroker::try_recvfds(file.get(), 8).error(), sys(ENOTSOCK));
  EXPECT_EQ(thrown_code([&] { (void)fdbroker::recvfds(file.get(), 8); }), sys(ENOTSOCK));
}

TEST(ScmRightsErrors, ClosedPeerIsEpipeNotSigpipe) {
  // Without MSG_NOSIGNAL the default SIGPIPE action would kill this process.
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET}) {
    auto [a, b] = fdbroker::socketpair(type);
    b.reset();
    auto pipe = pipe_pair();
    EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(a.get(), "x", {pipe.write.get()}); }),
              sys(EPIPE));
  }
}

TEST(ScmRightsErrors, NonBlockingRecvIsEagainWithOneCall) {
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
    auto [a, b] = fdbroker::socketpair(type | SOCK_NONBLOCK);
    CountingCalls calls;
    auto got = fdbroker::try_recvfds(b.get(), 16, 4);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error(), sys(EAGAIN));
    EXPECT_EQ(recvmsg_calls, 1) << "EAGAIN must be returned, not retried";
    EXPECT_EQ(thrown_code([&] { (void)fdbroker::recvfds(b.get(), 16); }), sys(EAGAIN));
  }
}

TEST(ScmRightsErrors, DontwaitOnABlockingSocketIsEagain) {
  auto [a, b] = fdbroker::socketpair();
  CountingCalls calls;
  auto got = fdbroker::try_recvfds(b.get(), 16, 4, io_flags::dontwait);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error(), sys(EAGAIN));
  EXPECT_EQ(recvmsg_calls, 1);
}

// Fills `sock`'s path to its peer until a non-blocking send would block.
std::size_t fill(int sock, std::size_t chunk) {
  std::string bytes(chunk, 'f');
  std::size_t messages = 0;
  while (::send(sock, bytes.data(), bytes.size(), MSG_DONTWAIT) >= 0) ++messages;
  EXPECT_EQ(errno, EAGAIN);
  return messages;
}

TEST(ScmRightsErrors, NonBlockingSendToAFullSocketIsEagainWithOneCallAndNoLeak) {
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM}) {
    auto [a, b] = fdbroker::socketpair(type | SOCK_NONBLOCK);
    std::size_t queued = fill(a.get(), 1024);
    ASSERT_GT(queued, 0u);
    auto pipe = pipe_pair();
    auto before = open_fd_count();
    {
      CountingCalls calls;
      auto sent =
          fdbroker::try_sendfds(a.get(), "x", 1, std::vector<int>{pipe.write.get()}.data(), 1);
      ASSERT_FALSE(sent.ok()) << "type " << type;
      EXPECT_EQ(sent.error(), sys(EAGAIN));
      EXPECT_EQ(sendmsg_calls, 1) << "EAGAIN must be returned, not retried";
    }
    EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(a.get(), "x", {pipe.write.get()}); }),
              sys(EAGAIN));
    // Nothing of ours is in flight: closing our write end gives EOF.
    pipe.write.reset();
    EXPECT_TRUE(reaches_eof(pipe.read.get()));
    EXPECT_EQ(open_fd_count(), before - 1);
  }
}

TEST(ScmRightsErrors, DontwaitSendOnABlockingSocketIsEagain) {
  auto [a, b] = fdbroker::socketpair(SOCK_SEQPACKET);
  ASSERT_EQ(::fcntl(a.get(), F_SETFL, O_NONBLOCK), 0);
  fill(a.get(), 1024);
  ASSERT_EQ(::fcntl(a.get(), F_SETFL, 0), 0);  // blocking again
  auto sent = fdbroker::try_sendfds(a.get(), "x", 1, nullptr, 0, io_flags::dontwait);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error(), sys(EAGAIN));
}

TEST(ScmRightsErrors, PartialWriteOnANonBlockingStreamIsAShortCount) {
  auto [a, b] = fdbroker::socketpair(SOCK_STREAM | SOCK_NONBLOCK);
  auto pipe = pipe_pair();
  const std::string payload = random_bytes(8 << 20, 3);  // more than any socket buffer

  auto sent = fdbroker::try_sendfds(a.get(), payload.data(), payload.size(),
                                    std::vector<int>{pipe.write.get()}.data(), 1);
  ASSERT_TRUE(sent.ok()) << sent.error().message();
  ASSERT_GT(*sent, 0u);
  ASSERT_LT(*sent, payload.size()) << "the short write must be reported, not hidden";

  // Exactly the first *sent bytes arrived, and the fd with them.
  std::string got;
  std::vector<unique_fd> fds;
  for (;;) {
    auto message = fdbroker::try_recvfds(b.get(), 1 << 16, 4);
    if (!message.ok()) {
      EXPECT_EQ(message.error(), sys(EAGAIN));
      break;
    }
    got += message->payload;
    for (auto& fd : message->fds) fds.push_back(std::move(fd));
  }
  EXPECT_EQ(got.size(), *sent);
  EXPECT_TRUE(got == payload.substr(0, *sent));
  ASSERT_EQ(fds.size(), 1u);
  EXPECT_TRUE(same_file(fds[0].get(), pipe.write.get()));
}

TEST(ScmRightsErrors, TooBigDatagramIsEmsgsizeAndTheFdsStayOurs) {
  auto [a, b] = fdbroker::socketpair(SOCK_SEQPACKET);
  auto pipe = pipe_pair();
  const std::string payload(8 << 20, 'x');
  EXPECT_EQ(thrown_code([&] { fdbroker::sendfds(a.get(), payload, {pipe.write.get()}); }),
            sys(EMSGSIZE));
  EXPECT_TRUE(nothing_queued(b.get()));
  pipe.write.reset();
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

}  // namespace
