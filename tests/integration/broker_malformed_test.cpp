// SPDX-License-Identifier: LGPL-2.1-or-later
// Malformed input of every kind: an error reply, any fds it carried closed by the
// broker, and the connection still usable afterwards.
#include <sys/resource.h>
#include <sys/socket.h>

#include <csignal>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

// Sends `payload` with a pipe's write end attached, expects `error`, and proves
// the broker closed the fd (EOF on the read end once ours is closed) and that the
// connection still answers.
void expect_rejected(BrokerProcess& broker, int sock, const std::string& payload,
                     const std::string& error) {
  auto p = pipe_pair();
  auto r = call_raw(sock, payload, {p.write.get()});
  EXPECT_FALSE(r.ok()) << payload;
  EXPECT_EQ(r.error(), error) << payload.substr(0, 200) << " → " << r.raw;
  EXPECT_FALSE(r.body.value("message", "").empty());
  EXPECT_TRUE(r.fds.empty());
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get())) << payload.substr(0, 200);
  EXPECT_TRUE(call(sock, {{"op", "hello"}}).ok())
      << "connection unusable after " << payload.substr(0, 200);
  (void)broker;
}

// The broker ends the stream on `c` (end of file: nothing else comes) and, once we
// close our end, is back to the `baseline` count of descriptors.
void expect_stream_ends(const BrokerProcess& broker, unique_fd& c, std::size_t baseline) {
  EXPECT_TRUE(reaches_eof(c.get()));
  c.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

// Lowers the broker's soft RLIMIT_NOFILE to `soft` for the scope: the kernel
// installs only the descriptors of a message that fit under it and truncates the
// rest (MSG_CTRUNC). Restored at the end of the scope.
class FdLimit {
 public:
  FdLimit(pid_t pid, rlim_t soft) : pid_(pid) {
    if (::prlimit(pid_, RLIMIT_NOFILE, nullptr, &old_) != 0)
      throw std::system_error(errno, std::system_category(), "prlimit");
    rlimit tight = old_;
    tight.rlim_cur = soft;
    if (::prlimit(pid_, RLIMIT_NOFILE, &tight, nullptr) != 0)
      throw std::system_error(errno, std::system_category(), "prlimit");
  }
  ~FdLimit() { ::prlimit(pid_, RLIMIT_NOFILE, &old_, nullptr); }
  FdLimit(const FdLimit&) = delete;
  FdLimit& operator=(const FdLimit&) = delete;

 private:
  pid_t pid_;
  rlimit old_{};
};

}  // namespace

TEST(BrokerMalformed, EveryKindGetsAnErrorAndTheFdsAreClosed) {
  BrokerProcess broker;
  auto c = connect_answered(broker);
  std::size_t baseline = broker.fd_count();
  const std::pair<std::string, std::string> cases[] = {
      {"not json", "EPROTO"},
      {"", "EPROTO"},  // an empty payload carrying fds is a message, not end of stream
      {"[1,2,3]", "EPROTO"},
      {"42", "EPROTO"},
      {"{\"op\":\"get\",\"name\":\"a\"", "EPROTO"},
      {"{\"op\":\"get\",\"name\":\"\xc3\x28\"}", "EPROTO"},
      {std::string("{\"op\":\"hello\"}\0", 15), "EPROTO"},
      {"{}", "EINVAL"},
      {"{\"op\":\"explode\"}", "EINVAL"},
      {"{\"op\":null}", "EINVAL"},
      {"{\"op\":\"get\",\"name\":7}", "EINVAL"},
      {"{\"op\":\"get\",\"name\":\"../etc\"}", "EINVAL"},
      {"{\"op\":\"get\",\"name\":\"" + std::string(256, 'n') + "\"}", "EINVAL"},
      {"{\"op\":\"get\",\"name\":\"a b\"}", "EINVAL"},
      {"{\"op\":\"get\",\"name\":\"a\",\"wait_ms\":-5}", "EINVAL"},
      {"{\"op\":\"put\",\"name\":\"a\",\"ttl_ms\":\"10\"}", "EINVAL"},
      {"{\"op\":\"put\",\"name\":\"a\",\"meta\":\"x\"}", "EINVAL"},
      {"{\"op\":\"put\",\"name\":\"a\",\"replace\":\"yes\"}", "EINVAL"},
      {"{\"op\":\"list\",\"limit\":-1}", "EINVAL"},
      {"{\"op\":\"hello\",\"id\":{}}", "EINVAL"},
      // Descriptors on operations that take none.
      {"{\"op\":\"hello\"}", "EINVAL"},
      {"{\"op\":\"get\",\"name\":\"a\"}", "EINVAL"},
      {"{\"op\":\"delete\",\"name\":\"a\"}", "EINVAL"},
      {"{\"op\":\"list\"}", "EINVAL"},
      {"{\"op\":\"stats\"}", "EINVAL"},
      // Too large: over 64 KiB.
      {"{\"op\":\"hello\",\"pad\":\"" + std::string(70000, 'p') + "\"}", "EMSGSIZE"},
  };
  for (const auto& [payload, error] : cases) expect_rejected(broker, c.get(), payload, error);
  EXPECT_TRUE(broker.settles_at(baseline));
}

TEST(BrokerMalformed, ExactlyTheLimitIsAccepted) {
  BrokerProcess broker;
  auto c = broker.connect();
  std::string prefix = "{\"op\":\"hello\",\"id\":1,\"pad\":\"";
  std::string payload = prefix + std::string(65536 - prefix.size() - 2, 'p') + "\"}";
  ASSERT_EQ(payload.size(), 65536u);
  auto r = call_raw(c.get(), payload);
  EXPECT_TRUE(r.ok()) << r.raw;
  payload.insert(prefix.size(), "p");
  EXPECT_EQ(call_raw(c.get(), payload).error(), "EMSGSIZE");
}

TEST(BrokerMalformed, PutWithoutFdsIsEinval) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto r = call(c.get(), {{"op", "put"}, {"name", "a"}, {"id", 9}});
  EXPECT_EQ(r.error(), "EINVAL");
  EXPECT_EQ(r.body["id"], 9);
}

TEST(BrokerMalformed, ErrorsEchoTheIdWhenItCouldBeRead) {
  BrokerProcess broker;
  auto c = broker.connect();
  auto r = call_raw(c.get(), R"({"op":"get","name":5,"id":"mine"})");
  EXPECT_EQ(r.error(), "EINVAL");
  EXPECT_EQ(r.body["id"], "mine");
  auto unknown = call_raw(c.get(), R"({"op":"nope","id":12})");
  EXPECT_EQ(unknown.body["id"], 12);
}

TEST(BrokerMalformed, TruncatedAncillaryDataIsEmsgsizeAndNothingLeaks) {
  BrokerProcess broker;
  auto c = connect_answered(broker);
  std::size_t baseline = broker.fd_count();
  auto p = pipe_pair();
  std::vector<int> fds(10, p.write.get());
  Reply r;
  {
    // Room for only some of the descriptors of the next message.
    FdLimit nearly_full(broker.pid(), broker.lowest_free_fd() + 3);
    r = call(c.get(), {{"op", "put"}, {"name", "trunc"}, {"id", 1}}, fds);
  }
  EXPECT_EQ(r.error(), "EMSGSIZE") << r.raw;
  EXPECT_EQ(r.body["id"], 1);
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_TRUE(broker.settles_at(baseline));
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
}

// A zero-byte message whose descriptors the kernel could not install at all
// (the broker's table is full) is neither the end of the stream nor an empty
// record: EMSGSIZE, as for any truncated ancillary data.
TEST(BrokerMalformed, AZeroByteMessageWithEveryFdTruncatedIsEmsgsize) {
  BrokerProcess broker;
  auto c = connect_answered(broker);
  std::size_t baseline = broker.fd_count();
  auto p = pipe_pair();
  Reply r;
  {
    FdLimit full(broker.pid(), broker.lowest_free_fd());  // room for none of them
    send_raw(c.get(), "", {p.write.get(), p.write.get()});
    r = receive(c.get());
  }
  EXPECT_EQ(r.error(), "EMSGSIZE") << r.raw;
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
  EXPECT_TRUE(broker.settles_at(baseline));
}

// The same right before a shutdown: descriptors were sent with the record (the
// kernel dropped them), so it is not the end of the stream either.
TEST(BrokerMalformed, AZeroByteMessageWithEveryFdTruncatedBeforeAShutdownIsEmsgsize) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = connect_answered(broker);
  auto p = pipe_pair();
  Reply r;
  {
    FdLimit full(broker.pid(), broker.lowest_free_fd());  // room for none of them
    // Stopped, so that the record and the shutdown are both queued when it reads.
    ASSERT_EQ(::kill(broker.pid(), SIGSTOP), 0);
    send_raw(c.get(), "", {p.write.get(), p.write.get()});
    ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
    ASSERT_EQ(::kill(broker.pid(), SIGCONT), 0);
    r = receive(c.get());
  }
  EXPECT_EQ(r.error(), "EMSGSIZE") << r.raw;
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  expect_stream_ends(broker, c, baseline);
}

// A zero-length record is a malformed request, not the end of the stream: the
// broker tells them apart by whether the peer shut down its sending side.
TEST(BrokerMalformed, AnEmptyMessageIsEprotoAndTheConnectionStays) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = broker.connect();
  send_raw(c.get(), R"({"op":"hello","id":1})");
  ASSERT_EQ(::send(c.get(), "", 0, 0), 0);
  send_raw(c.get(), R"({"op":"hello","id":2})");
  auto first = receive(c.get());
  EXPECT_EQ(first.body["id"], 1);
  auto empty = receive(c.get());
  EXPECT_EQ(empty.error(), "EPROTO") << empty.raw;
  EXPECT_FALSE(empty.body.contains("id"));
  auto second = receive(c.get());
  EXPECT_TRUE(second.ok()) << second.raw;
  EXPECT_EQ(second.body["id"], 2);
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
  c.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

// Requests queued behind an empty record are answered even when the peer shuts
// down its sending side right after them; then the stream ends.
TEST(BrokerMalformed, AnEmptyMessageBeforeRequestsAndAShutdownIsEproto) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = broker.connect();
  ASSERT_EQ(::send(c.get(), "", 0, 0), 0);
  send_raw(c.get(), R"({"op":"hello","id":3})");
  ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
  auto empty = receive(c.get());
  EXPECT_EQ(empty.error(), "EPROTO") << empty.raw;
  auto hello = receive(c.get());
  EXPECT_EQ(hello.body["id"], 3) << hello.raw;
  expect_stream_ends(broker, c, baseline);
}

TEST(BrokerMalformed, ShuttingDownTheSendingSideEndsTheRequests) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = broker.connect();
  send_raw(c.get(), R"({"op":"hello","id":1})");
  ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
  EXPECT_EQ(receive(c.get()).body["id"], 1);
  expect_stream_ends(broker, c, baseline);
}

// Whatever a request within 65536 bytes holds, its reply fits 65536 bytes: text
// echoed from the request is bounded. A raw DEL (valid unescaped in a JSON string)
// becomes \u007f, six bytes, in a reply that echoes it.
TEST(BrokerMalformed, RepliesFitTheMessageLimitWhateverTheRequestEchoes) {
  BrokerProcess broker;
  auto c = connect_answered(broker);
  std::size_t baseline = broker.fd_count();
  std::string id = "\"" + std::string(1022, 'i') + "\"";  // 1024 bytes: the longest allowed
  auto fill = [](const std::string& head, const std::string& tail, char with) {
    return head + std::string(65536 - head.size() - tail.size(), with) + tail;
  };
  const std::pair<std::string, std::string> cases[] = {
      {fill("{\"id\":" + id + ",\"op\":\"", "\"}", '\x7f'), "EINVAL"},  // unknown op
      {fill("{\"id\":" + id + ",\"op\":\"", "\"}", 'x'), "EINVAL"},     // a long unknown op
      {fill("{\"id\":" + id + ",\"op\":\"upgrade\",\"binary\":\"/", "\"}", '\x7f'), "EINVAL"},
      {fill("{\"id\":" + id + ",\"op\":\"get\",\"name\":\"", "\"}", '\x7f'), "EINVAL"},
      {fill("{\"id\":" + id + ",\"op\":\"list\",\"prefix\":\"", "\"}", '\x7f'), "EINVAL"},
      {fill("{\"id\":" + id + ",\"op\":\"get\",\"name\":\"a\",\"wait_ms\":\"", "\"}", '\x7f'),
       "EINVAL"},
  };
  for (const auto& [payload, error] : cases) {
    ASSERT_EQ(payload.size(), 65536u);
    send_raw(c.get(), payload);
    send_raw(c.get(), R"({"op":"hello","id":"behind"})");  // pipelined: must not be lost
    auto r = receive(c.get());
    EXPECT_LE(r.raw.size(), 65536u);
    EXPECT_EQ(r.error(), error) << r.raw.substr(0, 200);
    EXPECT_EQ(r.body["id"], json::parse(id));
    EXPECT_LE(r.body.value("message", "").size(), 1024u);
    EXPECT_EQ(receive(c.get()).body["id"], "behind");
  }
  EXPECT_TRUE(broker.settles_at(baseline));
}
