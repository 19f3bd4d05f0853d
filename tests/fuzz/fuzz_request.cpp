// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker's request parser (daemon/request.cpp parse_request), on any bytes a
// client can send in one message (up to 65536 bytes: -max_len=65536).
//
// Invariants (docs/protocol.md):
//  - the result is 0, EPROTO or EINVAL; the message is short, and the error reply
//    the broker builds from it (json_text.hpp) is valid JSON within 65536 bytes;
//  - an echoed id is at most 1024 bytes and is one JSON scalar;
//  - a parsed request's fields are valid for its op (names, prefix, ranges, meta
//    a JSON object, binary an absolute path);
//  - the fast scanner accepts only valid JSON, and agrees with the full parser
//    (the same text forced onto the DOM path gives the same request);
//  - a parsed request, written back as JSON, parses to the same request.
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "entry_name.hpp"
#include "fuzz_check.hpp"
#include "json_text.hpp"
#include "open_request.hpp"
#include "request.hpp"

using namespace fdbroker::daemon;
using nlohmann::json;

namespace {

constexpr std::size_t max_message = 65536;
// Longest human message: the broker's own words plus a bounded echo.
constexpr std::size_t max_error_message = 512;

// parse_request() as (errno, message): 0 on success.
int parse(std::string_view text, Request& req, std::string& ret_message) {
  std::optional<fdbroker::daemon::Failure> failure = fdbroker::daemon::parse_request(text, req);
  if (!failure) return 0;
  ret_message = std::move(failure->why);
  return failure->err;
}

bool same_request(const Request& a, const Request& b) {
  return a.op == b.op && a.has_op == b.has_op && a.name == b.name && a.prefix == b.prefix &&
         a.cursor == b.cursor && a.meta == b.meta && a.binary == b.binary &&
         a.wait_ms == b.wait_ms && a.ttl_ms == b.ttl_ms &&
         a.expect_generation == b.expect_generation && a.limit == b.limit &&
         a.replace == b.replace && a.path == b.path && a.open.access == b.open.access &&
         a.open.append == b.open.append && a.open.create == b.open.create &&
         a.open.excl == b.open.excl && a.open.trunc == b.open.trunc &&
         a.open.nonblock == b.open.nonblock && a.open.mode == b.open.mode &&
         a.address == b.address && a.backlog == b.backlog && a.reuseport == b.reuseport;
}

// The same JSON value, or both numbers that are not integers (a float id keeps its
// literal on the fast path and is re-printed by the DOM: "1.50" vs 1.5).
bool same_id(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty()) return a == b;
  json ja = json::parse(a, nullptr, false);
  json jb = json::parse(b, nullptr, false);
  if (ja.is_number_float() || jb.is_number_float()) return ja.is_number() && jb.is_number();
  return ja == jb;
}

void check_fields(const Request& req) {
  using fdbroker::daemon::valid_name;
  using fdbroker::daemon::valid_prefix;
  FUZZ_CHECK(req.has_op, "a parsed request has an op");
  switch (req.op) {
    case Op::get:
    case Op::take:
    case Op::del:
    case Op::put:
      FUZZ_CHECK(valid_name(req.name), "get/take/delete/put name is valid");
      break;
    default:
      FUZZ_CHECK(req.name.empty(), "no name on other ops");
  }
  FUZZ_CHECK(req.wait_ms >= -1, "wait_ms absent or >= 0");
  FUZZ_CHECK(req.wait_ms == -1 || req.op == Op::get || req.op == Op::take,
             "wait_ms only on get/take");
  FUZZ_CHECK(req.ttl_ms == -1 || req.ttl_ms >= 1, "ttl_ms absent or >= 1");
  FUZZ_CHECK(req.expect_generation >= -1, "expect_generation absent or >= 0");
  FUZZ_CHECK(req.limit >= 1 && req.limit <= 1000, "limit 1..1000");
  FUZZ_CHECK(valid_prefix(req.prefix), "prefix valid");
  FUZZ_CHECK(req.cursor.empty() || valid_name(req.cursor), "cursor empty or a valid name");
  FUZZ_CHECK(req.binary.empty() || req.binary.front() == '/', "binary absolute");
  if (req.op == Op::open) {
    FUZZ_CHECK(!fdbroker::daemon::check_open_path(req.path), "an open's path passes its grammar");
    const auto& o = req.open;
    FUZZ_CHECK(o.access == O_RDONLY || o.access == O_WRONLY || o.access == O_RDWR,
               "one access mode");
    FUZZ_CHECK(!o.excl || o.create, "excl only with create");
    FUZZ_CHECK(!o.trunc || o.access != O_RDONLY, "trunc never read-only");
    FUZZ_CHECK(!o.append || o.access != O_RDONLY, "append never read-only");
    FUZZ_CHECK(!o.mode || (o.create && *o.mode <= 0777), "mode only with create, at most 0777");
  } else {
    FUZZ_CHECK(req.path.empty(), "no path on other ops");
  }
  if (req.op == Op::bind) {
    FUZZ_CHECK(!req.address.empty() && req.address.size() <= fdbroker::daemon::max_address_bytes,
               "a bind's address is 1-256 bytes");
    FUZZ_CHECK(req.backlog >= 1 && req.backlog <= 65535, "backlog 1..65535");
  } else {
    FUZZ_CHECK(req.address.empty(), "no address on other ops");
  }
  json meta = json::parse(req.meta, nullptr, false);
  FUZZ_CHECK(meta.is_object(), "meta is a JSON object");
  FUZZ_CHECK(meta.dump() == req.meta, "meta is compact JSON");
}

// The request written back as a JSON object (what a client would send).
std::string rewrite(const Request& req) {
  json j;
  j["op"] = fdbroker::daemon::op_name(req.op);
  if (!req.name.empty()) j["name"] = req.name;
  if (!req.prefix.empty()) j["prefix"] = req.prefix;
  if (!req.cursor.empty()) j["cursor"] = req.cursor;
  if (!req.binary.empty()) j["binary"] = req.binary;
  if (req.op == Op::put) j["meta"] = json::parse(req.meta);
  if (req.wait_ms != -1) j["wait_ms"] = req.wait_ms;
  if (req.ttl_ms != -1) j["ttl_ms"] = req.ttl_ms;
  if (req.expect_generation != -1) j["expect_generation"] = req.expect_generation;
  if (req.op == Op::list) j["limit"] = req.limit;
  if (req.replace) j["replace"] = true;
  if (req.op == Op::open) {
    j["path"] = req.path;
    const std::string all = fdbroker::daemon::open_flags_text(req.open);  // "rdwr,create"
    json flags = json::array();
    for (std::size_t start = 0; start <= all.size();) {
      std::size_t comma = std::min(all.find(',', start), all.size());
      flags.push_back(all.substr(start, comma - start));
      start = comma + 1;
    }
    j["flags"] = flags;
    if (req.open.mode) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "0%o", static_cast<unsigned>(*req.open.mode));
      j["mode"] = mode;
    }
  }
  if (req.op == Op::bind) {
    j["address"] = req.address;
    j["backlog"] = req.backlog;
    j["reuseport"] = req.reuseport;
  }
  std::string text = j.dump();
  if (!req.id.empty()) text.insert(1, "\"id\":" + req.id + ",");
  return text;
}

// The error reply as broker.cpp sends it: {"id":..,"ok":false,"error":..,"message":..}.
void check_error_reply(const Request& req, int err, const std::string& message) {
  std::string reply = "{";
  if (!req.id.empty()) reply += "\"id\":" + req.id + ",";
  reply += "\"ok\":false,\"error\":";
  fdbroker::daemon::append_json_string(reply, err == EPROTO ? "EPROTO" : "EINVAL");
  reply += ",\"message\":";
  fdbroker::daemon::append_json_string(reply, message);
  reply += "}";
  FUZZ_CHECK(reply.size() <= max_message, "an error reply fits one message");
  json parsed = json::parse(reply, nullptr, false);
  FUZZ_CHECK(parsed.is_object(), "the error reply is a JSON object");
  FUZZ_CHECK(parsed["message"].is_string(), "the message is a JSON string");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > max_message) return -1;  // the broker refuses these before parsing (EMSGSIZE)
  std::string_view text = fuzz::as_text(data, size);
  static Request req;  // reused between messages, as the broker does
  std::string message;
  int err = parse(text, req, message);

  FUZZ_CHECK(err == 0 || err == EPROTO || err == EINVAL, "result is 0, EPROTO or EINVAL");
  FUZZ_CHECK(req.id.size() <= fdbroker::daemon::max_id_bytes, "an echoed id is at most 1024 bytes");
  if (!req.id.empty()) {
    json id = json::parse(req.id, nullptr, false);
    FUZZ_CHECK(!id.is_discarded() && id.is_primitive(), "an echoed id is one JSON scalar");
  }
  if (err != 0) {
    FUZZ_CHECK(!message.empty(), "an error has a message");
    FUZZ_CHECK(message.size() <= max_error_message, "an error message is bounded");
    check_error_reply(req, err, message);
  } else {
    check_fields(req);
  }

  // The fast scanner must not accept what JSON does not.
  bool fast = fdbroker::daemon::takes_fast_path(text);
  if (fast) FUZZ_CHECK(json::accept(text), "fast-path text is valid JSON");

  // Differential: the same object with a nested member first goes through the DOM.
  Request saved = req;
  std::size_t open = text.find_first_not_of(" \t\r\n");
  if (fast && open != std::string_view::npos && text[open] == '{') {
    std::size_t next = text.find_first_not_of(" \t\r\n", open + 1);
    bool empty_object = next != std::string_view::npos && text[next] == '}';
    std::string forced(text.substr(0, open + 1));
    forced += empty_object ? "\"~\":[]" : "\"~\":[],";
    forced += text.substr(open + 1);
    Request dom;
    std::string dom_message;
    int dom_err = parse(forced, dom, dom_message);
    FUZZ_CHECK(!fdbroker::daemon::takes_fast_path(forced), "a nested member takes the DOM path");
    FUZZ_CHECK(dom_err == err, "fast path and DOM agree on the result");
    if (err == 0) {
      FUZZ_CHECK(same_request(saved, dom), "fast path and DOM agree on the fields");
      FUZZ_CHECK(same_id(saved.id, dom.id), "fast path and DOM agree on the id");
    }
  }

  // Round trip: the parsed request, written back, parses to the same request.
  if (err == 0) {
    std::string again = rewrite(saved);
    Request re;
    std::string re_message;
    int re_err = parse(again, re, re_message);
    FUZZ_CHECK(re_err == 0, "a rewritten request parses");
    FUZZ_CHECK(same_request(saved, re), "a rewritten request parses to the same fields");
    FUZZ_CHECK(same_id(saved.id, re.id), "a rewritten request keeps its id");
  }
  return 0;
}
