// SPDX-License-Identifier: LGPL-2.1-or-later
#include "request.hpp"

#include <fcntl.h>
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

TEST(Request, OpenReadsPathFlagsAndModeOnEitherPath) {
  auto plain = parse(R"({"op":"open","id":1,"path":"/srv/a b/c.key"})");
  ASSERT_EQ(plain.err, 0) << plain.message;
  EXPECT_TRUE(takes_fast_path(R"({"op":"open","id":1,"path":"/srv/a b/c.key"})"));
  EXPECT_EQ(plain.req.op, Op::open);
  EXPECT_EQ(plain.req.path, "/srv/a b/c.key");
  EXPECT_EQ(plain.req.open.access, O_RDONLY);  // the default
  EXPECT_FALSE(plain.req.open.create);

  auto full = parse(
      R"({"op":"open","path":"/srv/j\u00e9b","flags":["rdwr","create","excl","append","nonblock"],"mode":"0640"})");
  ASSERT_EQ(full.err, 0) << full.message;
  EXPECT_EQ(full.req.path,
            "/srv/j\xc3\xa9"
            "b");
  EXPECT_EQ(full.req.open.access, O_RDWR);
  EXPECT_TRUE(full.req.open.create && full.req.open.excl && full.req.open.append &&
              full.req.open.nonblock);
  EXPECT_FALSE(full.req.open.trunc);
  ASSERT_TRUE(full.req.open.mode.has_value());
  EXPECT_EQ(*full.req.open.mode, 0640u);

  // A reused Request forgets the previous open's fields.
  Request req;
  ASSERT_FALSE(parse_request(R"({"op":"open","path":"/a","flags":["wronly","trunc"]})", req));
  EXPECT_TRUE(req.open.trunc);
  ASSERT_FALSE(parse_request(R"({"op":"hello"})", req));
  EXPECT_TRUE(req.path.empty());
  EXPECT_FALSE(req.open.trunc);
  EXPECT_EQ(req.open.access, O_RDONLY);
}

TEST(Request, MalformedOpensAreEinvalWithAMessage) {
  const char* bad[] = {
      R"({"op":"open"})",
      R"({"op":"open","path":"rel"})",
      R"({"op":"open","path":"/"})",
      R"({"op":"open","path":"/a/"})",
      R"({"op":"open","path":"/a//b"})",
      R"({"op":"open","path":"/a/./b"})",
      R"({"op":"open","path":"/a/.."})",
      R"({"op":"open","path":"/a\tb"})",
      R"({"op":"open","path":"/a\u007fb"})",
      R"({"op":"open","path":"/a\u0000b"})",
      R"({"op":"open","path":"/a","flags":[]})",
      R"({"op":"open","path":"/a","flags":["rdonly","rdwr"]})",
      R"({"op":"open","path":"/a","flags":["path"]})",
      R"({"op":"open","path":"/a","flags":["tmpfile"]})",
      R"({"op":"open","path":"/a","flags":["wronly","excl"]})",
      R"({"op":"open","path":"/a","flags":["trunc","rdonly"]})",
      R"({"op":"open","path":"/a","flags":["append","rdonly"]})",
      R"({"op":"open","path":"/a","flags":"rdonly"})",
      R"({"op":"open","path":"/a","mode":"0600"})",
      R"({"op":"open","path":"/a","flags":["wronly","create"],"mode":"1000"})",
      R"({"op":"open","path":"/a","flags":["wronly","create"],"mode":"08"})",
      R"({"op":"open","path":"/a","flags":["wronly","create"],"mode":""})",
      R"({"op":"open","path":"/a","flags":["wronly","create"],"mode":"00600"})",
  };
  for (const char* text : bad) {
    auto p = parse(text);
    EXPECT_EQ(p.err, EINVAL) << text;
    EXPECT_FALSE(p.message.empty()) << text;
  }
  auto p = parse(R"({"op":"open","path":"/)" + std::string(4096, 'a') + R"("})");
  EXPECT_EQ(p.err, EINVAL);
  auto longest = parse(R"({"op":"open","path":"/)" + std::string(4095, 'a') + R"("})");
  EXPECT_EQ(longest.err, 0) << longest.message;
}

TEST(Request, BindReadsAddressBacklogAndReuseport) {
  auto p = parse(R"({"op":"bind","address":"tcp://[::]:443","backlog":5,"reuseport":true})");
  ASSERT_EQ(p.err, 0) << p.message;
  EXPECT_EQ(p.req.op, Op::bind);
  EXPECT_EQ(p.req.address, "tcp://[::]:443");
  EXPECT_EQ(p.req.backlog, 5);
  EXPECT_TRUE(p.req.reuseport);
  auto defaults = parse(R"({"op":"bind","address":"udp://127.0.0.1:53"})");
  ASSERT_EQ(defaults.err, 0);
  EXPECT_EQ(defaults.req.backlog, 128);
  EXPECT_FALSE(defaults.req.reuseport);
  for (const char* text :
       {R"({"op":"bind"})", R"({"op":"bind","address":""})", R"({"op":"bind","address":5})",
        R"({"op":"bind","address":"tcp://*:1","backlog":0})",
        R"({"op":"bind","address":"tcp://*:1","backlog":65536})",
        R"({"op":"bind","address":"tcp://*:1","reuseport":1})"}) {
    EXPECT_EQ(parse(text).err, EINVAL) << text;
  }
  EXPECT_EQ(parse(R"({"op":"bind","address":")" + std::string(257, 'a') + R"("})").err, EINVAL);
}
