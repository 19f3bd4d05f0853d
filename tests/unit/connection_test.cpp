// SPDX-License-Identifier: LGPL-2.1-or-later
// Connection's send path over a real socketpair: a reply the socket refuses as
// too large is reported as such (the broker answers a short error instead), and
// leaves the connection usable.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unique_fd.hpp>

#include "connection.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;

namespace {

struct Pair {
  std::unique_ptr<Connection> broker_side;
  unique_fd client;
};

Pair connected(int sndbuf = 0) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  if (sndbuf > 0) {
    EXPECT_EQ(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
  }
  return {std::make_unique<Connection>(unique_fd(sv[0]), ClientIdentity{}), unique_fd(sv[1])};
}

}  // namespace

TEST(Connection, AReplyLargerThanTheSendBufferIsTooLargeAndNothingIsQueued) {
  auto [conn, client] = connected(4096);  // the kernel doubles it and keeps a minimum
  std::string huge(200000, 'x');
  EXPECT_EQ(conn->send(huge, nullptr), Connection::Sent::too_large);
  EXPECT_FALSE(conn->has_queued());
  EXPECT_EQ(conn->send("{\"ok\":true}", nullptr), Connection::Sent::now);
  auto got = recvfds(client.get(), 64);
  EXPECT_EQ(got.payload, "{\"ok\":true}");
}

TEST(Connection, ABrokenConnectionFails) {
  auto [conn, client] = connected();
  client.reset();
  EXPECT_EQ(conn->send("{}", nullptr), Connection::Sent::failed);
}

TEST(Connection, AFullSocketQueuesInOrderAndFlushSendsThem) {
  auto [conn, client] = connected();
  std::string body(1000, 'y');
  int sent_now = 0;
  while (conn->send(body, nullptr) == Connection::Sent::now) ++sent_now;
  ASSERT_TRUE(conn->has_queued());
  ASSERT_EQ(conn->send("last", nullptr), Connection::Sent::queued);
  std::size_t queued = conn->queued();
  for (int i = 0; i < sent_now; ++i)
    ASSERT_EQ(recvfds(client.get(), 2000).payload.size(), body.size());
  auto flushed = conn->flush();
  EXPECT_FALSE(flushed.error);
  EXPECT_TRUE(flushed.progressed);
  EXPECT_FALSE(conn->has_queued());
  for (std::size_t i = 0; i + 1 < queued; ++i)
    ASSERT_EQ(recvfds(client.get(), 2000).payload.size(), body.size());
  EXPECT_EQ(recvfds(client.get(), 2000).payload, "last");
}
