// SPDX-License-Identifier: LGPL-2.1-or-later
#include "request.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <optional>

using namespace fdbroker::daemon;

namespace {

struct Parsed {
  int err;
  Request req;
  std::string message;
};

Parsed parse(const std::string& text) {
  Parsed p{};
  if (std::optional<Failure> failure = parse_request(text, p.req)) {
    p.err = failure->err;
    p.message = failure->why;
  }
  return p;
}

}  // namespace

TEST(Request, SimpleGetTakesTheFastPath) {
  auto p = parse(R"({"op":"get","id":7,"name":"web/http","wait_ms":250})");
  ASSERT_EQ(p.err, 0) << p.message;
  EXPECT_TRUE(takes_fast_path(R"({"op":"get","id":7,"name":"web/http","wait_ms":250})"));
  EXPECT_EQ(p.req.op, Op::get);
  EXPECT_EQ(p.req.id, "7");
  EXPECT_EQ(p.req.name, "web/http");
  EXPECT_EQ(p.req.wait_ms, 250);
}

TEST(Request, BothPathsAgree) {
  // The same requests, once plain and once with an escape that forces the DOM path.
  const char* plain[] = {
      R"({"op":"put","name":"a","ttl_ms":5,"replace":true,"expect_generation":0,"id":"x"})",
      R"( { "op" : "list" , "prefix" : "a/" , "limit" : 3 , "cursor" : "a/b" } )",
      R"({"op":"take","name":"n","id":null,"unknown":[1,{"x":2}]})"};
  for (const char* text : plain) {
    auto fast = parse(text);
    std::string escaped = text;
    escaped.replace(escaped.find("\"op\""), 4, "\"\\u006fp\"");
    auto dom = parse(escaped);
    EXPECT_EQ(fast.err, 0) << text << fast.message;
    EXPECT_EQ(dom.err, 0) << escaped << dom.message;
    EXPECT_FALSE(takes_fast_path(escaped)) << escaped;
    EXPECT_EQ(fast.req.op, dom.req.op);
    EXPECT_EQ(fast.req.name, dom.req.name);
    EXPECT_EQ(fast.req.prefix, dom.req.prefix);
    EXPECT_EQ(fast.req.cursor, dom.req.cursor);
    EXPECT_EQ(fast.req.ttl_ms, dom.req.ttl_ms);
    EXPECT_EQ(fast.req.limit, dom.req.limit);
    EXPECT_EQ(fast.req.replace, dom.req.replace);
    EXPECT_EQ(fast.req.expect_generation, dom.req.expect_generation);
    EXPECT_EQ(fast.req.id, dom.req.id);
  }
}

TEST(Request, MetaIsKeptAsCompactJson) {
  auto p = parse(R"({"op":"put","name":"a","meta":{ "k" : [1, "é"] }})");
  ASSERT_EQ(p.err, 0);
  EXPECT_EQ(p.req.meta, R"({"k":[1,"é"]})");
  auto none = parse(R"({"op":"put","name":"a"})");
  EXPECT_EQ(none.req.meta, "{}");
}

TEST(Request, IdTextIsKeptVerbatimOnTheFastPath) {
  EXPECT_EQ(parse(R"({"op":"hello","id":1.50})").req.id, "1.50");
  EXPECT_EQ(parse(R"({"op":"hello","id":"a"})").req.id, "\"a\"");
  EXPECT_EQ(parse(R"({"op":"hello","id":false})").req.id, "false");
  EXPECT_EQ(parse(R"({"op":"hello"})").req.id, "");
}

TEST(Request, MalformedInputGivesTheDocumentedErrors) {
  struct Case {
    std::string text;
    int err;
  };
  const Case cases[] = {
      {"", EPROTO},
      {"nonsense", EPROTO},
      {"[1,2]", EPROTO},
      {"\"op\"", EPROTO},
      {R"({"op":"get","name":"a"} trailing)", EPROTO},
      {R"({"op":"get","name":"a",})", EPROTO},
      {std::string("{\"op\":\"get\",\"name\":\"\xff\"}"), EPROTO},
      {std::string("{\"op\":\"get\",\"name\":\"a\0\"}", 23), EPROTO},
      {R"({"op":"get","name":"a)", EPROTO},
      {R"({"op":01})", EPROTO},
      {R"({})", EINVAL},
      {R"({"name":"a"})", EINVAL},
      {R"({"op":"fly"})", EINVAL},
      {R"({"op":5})", EINVAL},
      {R"({"op":"get"})", EINVAL},
      {R"({"op":"get","name":5})", EINVAL},
      {R"({"op":"get","name":""})", EINVAL},
      {R"({"op":"get","name":"a/../b"})", EINVAL},
      {R"({"op":"get","name":"a","wait_ms":-1})", EINVAL},
      {R"({"op":"get","name":"a","wait_ms":1.5})", EINVAL},
      {R"({"op":"get","name":"a","wait_ms":"1"})", EINVAL},
      {R"({"op":"get","name":"a","wait_ms":99999999999999999999})", EINVAL},
      {R"({"op":"put","name":"a","ttl_ms":0})", EINVAL},
      {R"({"op":"put","name":"a","replace":1})", EINVAL},
      {R"({"op":"put","name":"a","meta":[]})", EINVAL},
      {R"({"op":"put","name":"a","meta":null})", EINVAL},
      {R"({"op":"put","name":"a","expect_generation":-2})", EINVAL},
      {R"({"op":"list","limit":0})", EINVAL},
      {R"({"op":"list","limit":1001})", EINVAL},
      {R"({"op":"list","prefix":"a b"})", EINVAL},
      {R"({"op":"list","cursor":""})", EINVAL},
      {R"({"op":"hello","id":{"a":1}})", EINVAL},
      {R"({"op":"hello","id":[1]})", EINVAL},
      {"{\"op\":\"hello\",\"id\":\"" + std::string(2000, 'x') + "\"}", EINVAL},
  };
  for (const auto& c : cases) {
    auto p = parse(c.text);
    EXPECT_EQ(p.err, c.err) << c.text << " → " << p.message;
    EXPECT_FALSE(p.message.empty()) << c.text;
  }
}

TEST(Request, ErrorsKeepTheIdWhenThereIsOne) {
  auto p = parse(R"({"op":"get","id":"q","name":5})");
  EXPECT_EQ(p.err, EINVAL);
  EXPECT_EQ(p.req.id, "\"q\"");
  auto unknown = parse(R"({"op":"fly","id":3})");
  EXPECT_EQ(unknown.req.id, "3");
  EXPECT_FALSE(unknown.req.has_op);
}

TEST(Request, DuplicateKeysLastWins) {
  auto p = parse(R"({"op":"get","name":"a","name":"b"})");
  ASSERT_EQ(p.err, 0);
  EXPECT_EQ(p.req.name, "b");
}
