// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/fdbroker.hpp>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

TEST(ScmRights, SendsPayloadAndOneFd) {
  auto [a, b] = fdbroker::socketpair();
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  fdbroker::unique_fd r(p[0]), w(p[1]);
  EXPECT_EQ(fdbroker::sendfds(a.get(), "hi", {w.get()}), 2u);
  auto m = fdbroker::recvfds(b.get(), 16, 4);
  EXPECT_EQ(m.payload, "hi");
  ASSERT_EQ(m.fds.size(), 1u);
}
