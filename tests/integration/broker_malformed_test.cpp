// SPDX-License-Identifier: LGPL-2.1-or-later
// Malformed input of every kind: an error reply, any fds it carried closed by the
// broker, and the connection still usable afterwards.
#include <sys/resource.h>

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

}  // namespace

TEST(BrokerMalformed, EveryKindGetsAnErrorAndTheFdsAreClosed) {
  BrokerProcess broker;
  auto c = broker.connect();
  ASSERT_TRUE(call(c.get(), {{"op", "hello"}}).ok());  // accepted: counted in the baseline
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
  EXPECT_EQ(broker.fd_count(), baseline);
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
  auto c = broker.connect();
  ASSERT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
  std::size_t baseline = broker.fd_count();
  // Make the broker's fd table nearly full, so the kernel can install only some
  // of the descriptors of the next message and truncates the rest (MSG_CTRUNC).
  rlimit old{};
  ASSERT_EQ(::prlimit(broker.pid(), RLIMIT_NOFILE, nullptr, &old), 0);
  rlimit tight = old;
  tight.rlim_cur = broker.lowest_free_fd() + 3;
  ASSERT_EQ(::prlimit(broker.pid(), RLIMIT_NOFILE, &tight, nullptr), 0);
  auto p = pipe_pair();
  std::vector<int> fds(10, p.write.get());
  auto r = call(c.get(), {{"op", "put"}, {"name", "trunc"}, {"id", 1}}, fds);
  ASSERT_EQ(::prlimit(broker.pid(), RLIMIT_NOFILE, &old, nullptr), 0);
  EXPECT_EQ(r.error(), "EMSGSIZE") << r.raw;
  EXPECT_EQ(r.body["id"], 1);
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_EQ(broker.fd_count(), baseline);
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
}

TEST(BrokerMalformed, AnEmptyMessageIsTheEndOfRequests) {
  // On SOCK_SEQPACKET a zero-length message reads as end of stream: the broker
  // closes the connection (after answering what came before).
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = broker.connect();
  send_raw(c.get(), R"({"op":"hello","id":1})");
  ASSERT_EQ(::send(c.get(), "", 0, 0), 0);
  auto r = receive(c.get());
  EXPECT_EQ(r.body["id"], 1);
  char buf[16];
  pollfd pfd{c.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 2000), 1);
  EXPECT_EQ(::recv(c.get(), buf, sizeof buf, 0), 0);
  c.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}
