// SPDX-License-Identifier: LGPL-2.1-or-later
// Parsing one request message (docs/protocol.md) into a Request.
//
// Two paths, one result: a small scanner handles the common shape (a flat object
// of plain ASCII strings, integers, booleans and null) without allocating a DOM;
// anything else (nested values such as `meta`, escapes, non-ASCII, errors) goes to
// nlohmann::json, which decides what is valid. The scanner only ever accepts text
// that is valid JSON, so the fast path cannot widen what the broker accepts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "failure.hpp"
#include "open_beneath.hpp"
#include "operation.hpp"

namespace fdbroker::daemon {

// Longest `id` echoed (its JSON text): keeps every reply within the message limit.
inline constexpr std::size_t max_id_bytes = 1024;
// Longest part of an unknown `op` that its error message repeats.
inline constexpr std::size_t max_echoed_op = 64;
// Longest `address` of a bind.
inline constexpr std::size_t max_address_bytes = 256;
// Longest `binary` path (PATH_MAX).
inline constexpr std::size_t max_path_bytes = 4096;

// A put's `ttl_ms` above this (100 years) counts as this: the entry's deadline is a
// steady_clock time point in nanoseconds, which cannot reach much further (292
// years from boot), and converting a larger ttl into one overflows.
inline constexpr std::int64_t max_ttl_ms = 36525LL * 24 * 3600 * 1000;  // 100 years of 365.25 days

// How deep a put's `meta` may nest objects and arrays (meta itself is level 1):
// meta is written out again (nlohmann's dump(), the state memfd), recursively,
// and a request of 64 KiB can nest 32000 levels deep, which overflows the stack.
inline constexpr std::size_t max_meta_depth = 128;

// A parsed request. Reused between messages: parse_request() resets every field.
struct Request {
  Op op = Op::hello;
  bool has_op = false;  // false: the request had no valid op
  std::string id;       // the id's JSON text, echoed verbatim; empty: none
  std::string name;
  std::string prefix;
  std::string cursor;          // empty: none
  std::string meta = "{}";     // compact JSON object
  std::string binary;          // upgrade: the fdbrokerd to run (empty: the running one's)
  std::string path;            // open: an absolute path (open_request.hpp)
  OpenSpec open;               // open: flags and mode
  std::string address;         // bind: a tcp://, tcp6://, udp:// or udp6:// URL
  std::int64_t backlog = 128;  // bind
  bool reuseport = false;      // bind
  std::int64_t wait_ms = -1;   // -1: absent
  std::int64_t ttl_ms = -1;
  std::int64_t expect_generation = -1;
  std::int64_t limit = 100;
  bool replace = false;
};

// Parses `text` into `req`. Returns nothing, or the Failure to answer with (err
// EPROTO: not a JSON object; EINVAL: a missing/unknown op, a field of the wrong
// type or out of range, a bad name; why: the message for humans). On failure
// `req.id` holds the id if the text got far enough to have one, and
// `req.has_op`/`req.op` the op.
[[nodiscard]] std::optional<Failure> parse_request(std::string_view text, Request& req);

// Whether parse_request() reads `text` with the fast scanner (true) or lets
// nlohmann decide (false). For tests and fuzzers, which check that both paths agree.
[[nodiscard]] bool takes_fast_path(std::string_view text);

}  // namespace fdbroker::daemon
