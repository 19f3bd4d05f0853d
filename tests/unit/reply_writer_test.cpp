// SPDX-License-Identifier: LGPL-2.1-or-later
// ReplyWriter over a real socketpair: an ok reply arrives with its fds, an error
// reply carries the id, the errno's name and the message, a reply that would not
// fit becomes a short EMSGSIZE error with the same id (and no fds), held replies
// wait for their release, and no descriptor is left open by any of it.
#include "reply_writer.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unique_fd.hpp>

#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::daemon;
using fdbroker::test::open_fd_count;

namespace {

struct Pair {
  std::unique_ptr<Connection> broker_side;
  unique_fd client;
};

Pair connected(ConnectionId id = 1, int sndbuf = 0) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  if (sndbuf > 0) {
    EXPECT_EQ(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
  }
  return {std::make_unique<Connection>(unique_fd(sv[0]), ClientIdentity{}, id), unique_fd(sv[1])};
}

std::shared_ptr<const FdSet> pipe_set(test::Pipe& p) {
  std::vector<unique_fd> fds;
  fds.emplace_back(::fcntl(p.write.get(), F_DUPFD_CLOEXEC, 3));
  fds.emplace_back(::fcntl(p.read.get(), F_DUPFD_CLOEXEC, 3));
  return std::make_shared<const FdSet>(std::move(fds));
}

nlohmann::json parse(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << text;
  return j;
}

}  // namespace

TEST(ReplyWriter, AnOkReplyArrivesWithItsFds) {
  std::size_t before = open_fd_count();
  {
    auto [conn, client] = connected();
    auto p = test::pipe_pair();
    auto fds = pipe_set(p);
    ReplyWriter writer;
    writer.begin("7") += "\"ok\":true,\"name\":\"db\"}";
    auto d = writer.send(*conn, fds);
    EXPECT_EQ(d.sent, Connection::Sent::now);
    EXPECT_FALSE(d.replaced);
    auto got = recvfds(client.get(), max_message_bytes);
    EXPECT_EQ(got.payload, "{\"id\":7,\"ok\":true,\"name\":\"db\"}");
    ASSERT_EQ(got.fds.size(), 2u);
    EXPECT_TRUE(test::same_file(got.fds[0].get(), p.write.get()));
    EXPECT_TRUE(test::same_file(got.fds[1].get(), p.read.get()));
    // A reply without an id has none.
    writer.begin("") += "\"ok\":true}";
    EXPECT_EQ(writer.send(*conn).sent, Connection::Sent::now);
    EXPECT_EQ(recvfds(client.get(), 64).payload, "{\"ok\":true}");
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ReplyWriter, AnErrorReplyCarriesTheIdTheErrnoNameAndTheMessage) {
  auto [conn, client] = connected();
  ReplyWriter writer;
  EXPECT_EQ(writer.send_error(*conn, "\"a\"", ENOENT, "no entry named 'x'").sent,
            Connection::Sent::now);
  auto j = parse(recvfds(client.get(), 4096).payload);
  EXPECT_EQ(j["id"], "a");
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"], "ENOENT");
  EXPECT_EQ(j["message"], "no entry named 'x'");
  // The daemon's failure shape goes out the same way.
  EXPECT_EQ(writer.send_error(*conn, "12", Failure{EBUSY, "an upgrade is already under way"}).sent,
            Connection::Sent::now);
  j = parse(recvfds(client.get(), 4096).payload);
  EXPECT_EQ(j["id"], 12);
  EXPECT_EQ(j["error"], "EBUSY");
  EXPECT_EQ(j["message"], "an upgrade is already under way");
  // An errno without a name is EIO on the wire.
  EXPECT_EQ(writer.send_error(*conn, "", 4000, "odd").sent, Connection::Sent::now);
  j = parse(recvfds(client.get(), 4096).payload);
  EXPECT_FALSE(j.contains("id"));
  EXPECT_EQ(j["error"], "EIO");
}

TEST(ReplyWriter, AReplyOverTheProtocolLimitBecomesEmsgsizeWithTheIdAndNoFds) {
  std::size_t before = open_fd_count();
  {
    auto [conn, client] = connected();
    auto p = test::pipe_pair();
    auto fds = pipe_set(p);
    ReplyWriter writer;
    std::string& reply = writer.begin("42");
    reply += "\"ok\":true,\"meta\":\"";
    reply.append(max_message_bytes, 'x');
    reply += "\"}";
    auto d = writer.send(*conn, fds);
    EXPECT_TRUE(d.replaced);
    EXPECT_EQ(d.sent, Connection::Sent::now);
    auto got = recvfds(client.get(), 2 * max_message_bytes);
    EXPECT_TRUE(got.fds.empty());
    auto j = parse(got.payload);
    EXPECT_EQ(j["id"], 42);
    EXPECT_EQ(j["ok"], false);
    EXPECT_EQ(j["error"], "EMSGSIZE");
    EXPECT_TRUE(test::nothing_queued(client.get()));
    // The connection goes on.
    writer.begin("43") += "\"ok\":true}";
    EXPECT_EQ(writer.send(*conn).sent, Connection::Sent::now);
    EXPECT_EQ(recvfds(client.get(), 64).payload, "{\"id\":43,\"ok\":true}");
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ReplyWriter, AReplyTheSocketRefusesAsTooLargeBecomesEmsgsizeWithTheId) {
  std::size_t before = open_fd_count();
  {
    auto [conn, client] = connected(1, 4096);  // within the limit, larger than the buffer
    auto p = test::pipe_pair();
    auto fds = pipe_set(p);
    ReplyWriter writer;
    std::string& reply = writer.begin("\"big\"");
    reply += "\"ok\":true,\"meta\":\"";
    reply.append(60000, 'y');
    reply += "\"}";
    auto d = writer.send(*conn, fds);
    EXPECT_TRUE(d.replaced);
    EXPECT_EQ(d.sent, Connection::Sent::now);
    auto got = recvfds(client.get(), 2 * max_message_bytes);
    EXPECT_TRUE(got.fds.empty());
    auto j = parse(got.payload);
    EXPECT_EQ(j["id"], "big");
    EXPECT_EQ(j["error"], "EMSGSIZE");
    EXPECT_FALSE(conn->has_queued());
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST(ReplyWriter, ABrokenConnectionIsReportedFailed) {
  auto [conn, client] = connected();
  client.reset();
  ReplyWriter writer;
  EXPECT_EQ(writer.send_error(*conn, "1", EPERM, "no").sent, Connection::Sent::failed);
}

TEST(ReplyWriter, HeldRepliesWaitForTheirReleaseAndNameTheirConnections) {
  auto [a, client_a] = connected(101);
  auto [b, client_b] = connected(102);
  ReplyWriter writer;
  writer.begin("1") += "\"ok\":true}";
  writer.hold(*a);
  writer.begin("2") += "\"ok\":true}";
  writer.hold(*b);
  EXPECT_TRUE(writer.has_held());
  EXPECT_TRUE(test::nothing_queued(client_a.get()));
  EXPECT_FALSE(a->sendable());
  // Behind a held reply, the next one waits too (in order).
  writer.begin("3") += "\"ok\":true}";
  EXPECT_EQ(writer.send(*a).sent, Connection::Sent::queued);
  EXPECT_EQ(writer.take_held(), (std::vector<ConnectionId>{101, 102}));
  EXPECT_FALSE(writer.has_held());
  a->release();
  EXPECT_FALSE(a->flush().error);
  EXPECT_EQ(recvfds(client_a.get(), 64).payload, "{\"id\":1,\"ok\":true}");
  EXPECT_EQ(recvfds(client_a.get(), 64).payload, "{\"id\":3,\"ok\":true}");
  EXPECT_TRUE(test::nothing_queued(client_b.get()));
}
