// SPDX-License-Identifier: LGPL-2.1-or-later
// unique_fd: closing is proven with pipe EOF, not assumed.
#include <fdbroker/unique_fd.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <gtest/gtest.h>

#include "sys_override.hpp"
#include "test_util.hpp"

namespace {

using fdbroker::unique_fd;
using fdbroker::test::pipe_pair;
using fdbroker::test::reaches_eof;
using fdbroker::test::write_end_open;

TEST(UniqueFd, DefaultIsInvalid) {
  unique_fd fd;
  EXPECT_FALSE(fd.valid());
  EXPECT_EQ(fd.get(), -1);
}

TEST(UniqueFd, ClosesOnDestruction) {
  auto pipe = pipe_pair();
  {
    unique_fd owner(pipe.write.release());
    EXPECT_TRUE(write_end_open(pipe.read.get()));
  }
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

TEST(UniqueFd, MoveConstructorTransfersOwnership) {
  auto pipe = pipe_pair();
  int raw = pipe.write.get();
  unique_fd moved(std::move(pipe.write));
  EXPECT_FALSE(pipe.write.valid());  // NOLINT(bugprone-use-after-move): the point
  EXPECT_EQ(moved.get(), raw);
  pipe.write.reset();  // the moved-from object must not close the fd
  EXPECT_TRUE(write_end_open(pipe.read.get()));
  moved.reset();
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

TEST(UniqueFd, MoveAssignmentClosesPrevious) {
  auto first = pipe_pair();
  auto second = pipe_pair();
  unique_fd target(first.write.release());
  target = std::move(second.write);
  EXPECT_TRUE(reaches_eof(first.read.get()));
  EXPECT_TRUE(write_end_open(second.read.get()));
  EXPECT_FALSE(second.write.valid());  // NOLINT(bugprone-use-after-move)
  target.reset();
  EXPECT_TRUE(reaches_eof(second.read.get()));
}

TEST(UniqueFd, SelfMoveAssignmentKeepsTheFd) {
  auto pipe = pipe_pair();
  int raw = pipe.write.get();
  unique_fd& alias = pipe.write;  // through a reference: compilers warn on a literal self-move
  pipe.write = std::move(alias);
  EXPECT_EQ(pipe.write.get(), raw);
  EXPECT_TRUE(write_end_open(pipe.read.get()));
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
  auto pipe = pipe_pair();
  int raw;
  {
    unique_fd owner(pipe.write.release());
    raw = owner.release();
    EXPECT_FALSE(owner.valid());
  }
  EXPECT_TRUE(fdbroker::test::is_open(raw));
  EXPECT_TRUE(write_end_open(pipe.read.get()));
  ::close(raw);
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

TEST(UniqueFd, ResetClosesOldAndOwnsNew) {
  auto first = pipe_pair();
  auto second = pipe_pair();
  unique_fd owner(first.write.release());
  owner.reset(second.write.release());
  EXPECT_TRUE(reaches_eof(first.read.get()));
  EXPECT_TRUE(write_end_open(second.read.get()));
  owner.reset();
  EXPECT_FALSE(owner.valid());
  EXPECT_TRUE(reaches_eof(second.read.get()));
}

TEST(UniqueFd, ResetToTheSameFdDoesNotCloseIt) {
  auto pipe = pipe_pair();
  pipe.write.reset(pipe.write.get());
  EXPECT_TRUE(write_end_open(pipe.read.get()));
}

TEST(UniqueFd, ResetKeepsErrnoWhenCloseFails) {
  // A descriptor number that is not open: close() fails with EBADF inside reset().
  auto pipe = pipe_pair();
  int stale = pipe.write.release();
  ::close(stale);
  unique_fd owner(stale);
  errno = ENOENT;
  owner.reset();
  EXPECT_EQ(errno, ENOENT);
}

TEST(UniqueFd, ResetKeepsErrnoWhenCloseSucceeds) {
  auto pipe = pipe_pair();
  errno = EAGAIN;
  pipe.write.reset();
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

int close_calls = 0;
// Linux semantics: the fd is released even when close() reports EINTR.
int close_then_eintr(int fd) {
  ++close_calls;
  ::close(fd);
  errno = EINTR;
  return -1;
}

TEST(UniqueFd, CloseIsNotRetriedOnEintr) {
  auto pipe = pipe_pair();
  {
    fdbroker::test::SysOverride guard;
    fdbroker::detail::sys::calls.close = close_then_eintr;
    close_calls = 0;
    errno = 0;
    pipe.write.reset();
    EXPECT_EQ(close_calls, 1);
    EXPECT_EQ(errno, 0);
  }
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

TEST(UniqueFd, DupCloexecSetsCloexecOnANewFd) {
  auto pipe = pipe_pair();
  // Start from a descriptor without FD_CLOEXEC, to see that the copy gains it.
  ASSERT_EQ(::fcntl(pipe.write.get(), F_SETFD, 0), 0);
  unique_fd copy = fdbroker::dup_cloexec(pipe.write.get());
  ASSERT_TRUE(copy.valid());
  EXPECT_NE(copy.get(), pipe.write.get());
  EXPECT_GE(copy.get(), 3);
  EXPECT_TRUE(fdbroker::test::is_cloexec(copy.get()));
  EXPECT_FALSE(fdbroker::test::is_cloexec(pipe.write.get()));
  EXPECT_TRUE(fdbroker::test::same_file(copy.get(), pipe.write.get()));
  pipe.write.reset();
  EXPECT_TRUE(write_end_open(pipe.read.get()));  // the copy keeps it open
  copy.reset();
  EXPECT_TRUE(reaches_eof(pipe.read.get()));
}

TEST(UniqueFd, DupCloexecOfABadFdFailsWithEbadf) {
  errno = 0;
  unique_fd copy = fdbroker::dup_cloexec(-1);
  EXPECT_FALSE(copy.valid());
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
