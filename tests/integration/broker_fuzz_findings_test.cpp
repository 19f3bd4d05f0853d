// SPDX-License-Identifier: LGPL-2.1-or-later
// What the black-box protocol fuzzer (tests/fuzz/protocol_fuzz.py) found, each kept
// as a regression test against the real daemon: the broker answers, survives, and
// its descriptor count comes back.
#include <sys/socket.h>

#include <csignal>
#include <cstdint>
#include <limits>

#include "broker_harness.hpp"
#include "test_util.hpp"

using namespace fdbroker;
using namespace fdbroker::test;

namespace {

constexpr std::int64_t hundred_years_ms = 36525LL * 24 * 3600 * 1000;

// {"a":[[[...0...]]]}: `depth` levels in all, the outer object included.
std::string nested_meta(std::size_t depth) {
  return "{\"a\":" + std::string(depth - 1, '[') + "0" + std::string(depth - 1, ']') + "}";
}

}  // namespace

// seed 1 (and most seeds) within a second: a put with ttl_ms near INT64_MAX made
// the broker convert it to nanoseconds in 64 bits (signed overflow: UBSan aborts
// the broker; without it the deadline wraps). Any ttl is accepted; past 100 years
// it counts as 100 years.
TEST(BrokerFuzzFindings, HugeTtlCountsAsOneHundredYears) {
  BrokerProcess broker;
  auto c = connect_answered(broker);
  std::size_t baseline = broker.fd_count();
  const std::int64_t ttls[] = {std::numeric_limits<std::int64_t>::max(),
                               9223372036855,  // * 10^6 overflows
                               hundred_years_ms + 1, hundred_years_ms};
  for (std::int64_t ttl : ttls) {
    auto p = pipe_pair();
    auto put = call(c.get(), {{"op", "put"}, {"name", "t/x"}, {"ttl_ms", ttl}}, {p.write.get()});
    ASSERT_TRUE(put.ok()) << ttl << ": " << put.raw;
    // Another connection, so that a broker that died shows as a failed connect.
    auto other = broker.connect();
    auto got = call(other.get(), {{"op", "get"}, {"name", "t/x"}});
    ASSERT_TRUE(got.ok()) << ttl << ": " << got.raw;
    ASSERT_EQ(got.fds.size(), 1u);
    std::int64_t left = got.body.at("expires_ms").get<std::int64_t>();
    EXPECT_LE(left, hundred_years_ms) << ttl;
    EXPECT_GT(left, hundred_years_ms - 60000) << ttl;
    auto listed = call(other.get(), {{"op", "list"}, {"prefix", "t/"}});
    ASSERT_EQ(listed.body.at("entries").size(), 1u) << listed.raw;
    std::int64_t listed_left = listed.body["entries"][0].at("expires_ms").get<std::int64_t>();
    EXPECT_LE(listed_left, left) << ttl;  // listed after the get
    EXPECT_GT(listed_left, left - 60000) << ttl;
    ASSERT_TRUE(call(c.get(), {{"op", "delete"}, {"name", "t/x"}}).ok());
    got.fds.clear();
    p.write.reset();
    EXPECT_TRUE(reaches_eof(p.read.get())) << "the broker still holds the write end, ttl " << ttl;
  }
  EXPECT_TRUE(broker.settles_at(baseline));
  EXPECT_EQ(broker.terminate(), 0);
}

// A put whose meta nested ~20000 arrays (40 KB, well within a message) overflowed
// the broker's stack in nlohmann's recursive dump() (ASan: stack-overflow). meta
// may nest 128 levels; deeper is EINVAL, and the descriptors are closed.
TEST(BrokerFuzzFindings, MetaNestedTooDeepIsRefused) {
  BrokerProcess broker;
  auto c = connect_answered(broker);
  std::size_t baseline = broker.fd_count();

  auto p = pipe_pair();
  std::string deepest_allowed = nested_meta(128);
  auto put =
      call_raw(c.get(), "{\"op\":\"put\",\"name\":\"m/ok\",\"meta\":" + deepest_allowed + "}",
               {p.write.get()});
  ASSERT_TRUE(put.ok()) << put.raw;
  auto got = call(c.get(), {{"op", "get"}, {"name", "m/ok"}});
  ASSERT_TRUE(got.ok()) << got.raw.substr(0, 200);
  EXPECT_EQ(got.body.at("meta"), json::parse(deepest_allowed));
  got.fds.clear();
  ASSERT_TRUE(call(c.get(), {{"op", "delete"}, {"name", "m/ok"}}).ok());

  for (std::size_t depth : {129u, 1000u, 20000u, 32000u}) {
    auto q = pipe_pair();
    std::string payload =
        "{\"op\":\"put\",\"id\":7,\"name\":\"m/deep\",\"meta\":" + nested_meta(depth) + "}";
    ASSERT_LE(payload.size(), 65536u);
    auto r = call_raw(c.get(), payload, {q.write.get()});
    EXPECT_EQ(r.error(), "EINVAL") << depth << ": " << r.raw;
    EXPECT_EQ(r.body.value("id", 0), 7) << depth;
    q.write.reset();
    EXPECT_TRUE(reaches_eof(q.read.get())) << depth;
    auto other = broker.connect();
    EXPECT_TRUE(call(other.get(), {{"op", "hello"}}).ok()) << "after depth " << depth;
  }
  // Deep nesting elsewhere (an unknown field) is parsed and ignored, not dumped.
  std::string ignored =
      "{\"op\":\"hello\",\"x\":" + std::string(30000, '[') + std::string(30000, ']') + "}";
  EXPECT_TRUE(call_raw(c.get(), ignored).ok());
  EXPECT_EQ(call(c.get(), {{"op", "list"}}).body.at("entries").size(), 0u);
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get()));
  EXPECT_TRUE(broker.settles_at(baseline));
  EXPECT_EQ(broker.terminate(), 0);
}

// `{"op":"hello","id":1e400}` was answered `{"id":1e400,"ok":true,...}`: the fast
// scanner took any number literal, and echoed the id, while nlohmann (the full
// parser, and the client library's reply parser) refuses a number no double holds.
// The same request with an escape anywhere (the full parser's path) was EPROTO.
// Now it is EPROTO on either path, and every reply parses.
TEST(BrokerFuzzFindings, NumberNoDoubleHoldsIsRefusedOnEitherPath) {
  BrokerProcess broker;
  auto c = broker.connect();
  const std::string huge_integer = "1" + std::string(400, '0');
  for (const std::string& number :
       {std::string("1e400"), std::string("-1E+400"), std::string("2.5e309"), huge_integer}) {
    for (const std::string& rest : {std::string(), std::string(",\"x\":\"\\u0041\"")}) {
      for (const std::string& payload :
           {"{\"op\":\"hello\",\"id\":" + number + rest + "}",
            "{\"op\":\"get\",\"id\":3,\"name\":\"a\",\"wait_ms\":" + number + rest + "}"}) {
        auto r = call_raw(c.get(), payload);  // throws if the reply is not JSON to nlohmann
        EXPECT_EQ(r.error(), "EPROTO") << payload.substr(0, 80) << " -> " << r.raw.substr(0, 120);
        EXPECT_FALSE(r.body.contains("id")) << r.raw.substr(0, 120);
      }
    }
  }
  // Numbers a double holds stay accepted and echoed as they were written.
  for (const std::string& number :
       {std::string("1e308"), std::string("1e-400"), std::string("-0.0"), std::string(299, '9'),
        std::string("123456789012345678901234567890")}) {
    auto r = call_raw(c.get(), "{\"op\":\"hello\",\"id\":" + number + "}");
    EXPECT_TRUE(r.ok()) << number.substr(0, 40) << " -> " << r.raw.substr(0, 120);
    EXPECT_NE(r.raw.find("\"id\":" + number + ","), std::string::npos) << r.raw.substr(0, 120);
  }
  EXPECT_TRUE(call(c.get(), {{"op", "hello"}}).ok());
}

// seed 1918499676 (about a minute in): an empty record, another empty record, then
// shutdown(SHUT_WR), all queued before the broker read the first. The broker asked
// SIOCINQ whether anything was left after it; SIOCINQ counts bytes, and the second
// record has none: the first was taken for the end of the stream, unanswered. Only
// the last empty record before the shutdown may read as the end (docs/protocol.md).
TEST(BrokerFuzzFindings, AnEmptyRecordWithAnotherBehindItIsAnsweredDespiteTheShutdown) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = connect_answered(broker);
  // Stopped, so that the records and the shutdown are all queued when it reads.
  ASSERT_EQ(::kill(broker.pid(), SIGSTOP), 0);
  ASSERT_EQ(::send(c.get(), "", 0, 0), 0);
  ASSERT_EQ(::send(c.get(), "", 0, 0), 0);
  ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
  ASSERT_EQ(::kill(broker.pid(), SIGCONT), 0);
  auto first = receive(c.get());
  EXPECT_EQ(first.error(), "EPROTO") << first.raw;
  EXPECT_FALSE(first.body.contains("id"));
  EXPECT_TRUE(reaches_eof(c.get()));  // the last one is the ambiguous one: no reply
  c.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}

// The same with descriptors on the second empty record: SIOCINQ is 0 as well, but
// descriptors arrived, so it is a request, never the end: both get EPROTO and the
// broker closes the descriptor.
TEST(BrokerFuzzFindings, AnEmptyRecordWithDescriptorsBeforeAShutdownIsAnswered) {
  BrokerProcess broker;
  std::size_t baseline = broker.fd_count();
  auto c = connect_answered(broker);
  auto p = pipe_pair();
  ASSERT_EQ(::kill(broker.pid(), SIGSTOP), 0);
  ASSERT_EQ(::send(c.get(), "", 0, 0), 0);
  send_raw(c.get(), "", {p.write.get()});
  ASSERT_EQ(::shutdown(c.get(), SHUT_WR), 0);
  ASSERT_EQ(::kill(broker.pid(), SIGCONT), 0);
  auto first = receive(c.get());
  EXPECT_EQ(first.error(), "EPROTO") << first.raw;
  auto second = receive(c.get());
  EXPECT_EQ(second.error(), "EPROTO") << second.raw;
  EXPECT_TRUE(second.fds.empty());
  EXPECT_TRUE(reaches_eof(c.get()));
  p.write.reset();
  EXPECT_TRUE(reaches_eof(p.read.get())) << "the broker still holds the descriptor";
  c.reset();
  EXPECT_TRUE(broker.settles_at(baseline));
}
