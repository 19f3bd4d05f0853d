// SPDX-License-Identifier: LGPL-2.1-or-later
#include "request.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "entry_name.hpp"
#include "open_request.hpp"

namespace fdbroker::daemon {

namespace {

using nlohmann::json;

// One field's value, from either parser.
struct Value {
  enum Kind : std::uint8_t { absent, string, integer, number, boolean, null, object, array };
  Kind kind = absent;
  std::string_view text;  // string: its contents; number/integer: the literal
  std::string_view raw;   // the value's JSON text (fast path), for echoing ids
  std::int64_t integer_value = 0;
  bool fits = false;  // integer: fits in int64
  bool boolean_value = false;
  const json* dom = nullptr;  // DOM path only
};

enum Key : std::uint8_t {
  k_op,
  k_id,
  k_name,
  k_wait_ms,
  k_ttl_ms,
  k_replace,
  k_expect_generation,
  k_meta,
  k_prefix,
  k_limit,
  k_cursor,
  k_binary,
  k_path,
  k_flags,
  k_mode,
  k_address,
  k_backlog,
  k_reuseport,
  k_count,
  k_unknown = 255
};

Key key_of(std::string_view k) {
  switch (k.size()) {
    case 2:
      if (k == "op") return k_op;
      if (k == "id") return k_id;
      break;
    case 4:
      if (k == "name") return k_name;
      if (k == "meta") return k_meta;
      if (k == "path") return k_path;
      if (k == "mode") return k_mode;
      break;
    case 5:
      if (k == "limit") return k_limit;
      if (k == "flags") return k_flags;
      break;
    case 6:
      if (k == "ttl_ms") return k_ttl_ms;
      if (k == "prefix") return k_prefix;
      if (k == "cursor") return k_cursor;
      if (k == "binary") return k_binary;
      break;
    case 7:
      if (k == "wait_ms") return k_wait_ms;
      if (k == "replace") return k_replace;
      if (k == "address") return k_address;
      if (k == "backlog") return k_backlog;
      break;
    case 9:
      if (k == "reuseport") return k_reuseport;
      break;
    case 17:
      if (k == "expect_generation") return k_expect_generation;
      break;
    default:
      break;
  }
  return k_unknown;
}

using Fields = Value[k_count];

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void set_integer(Value& v, std::string_view literal) {
  v.kind = Value::integer;
  v.text = literal;
  auto [end, ec] =
      std::from_chars(literal.data(), literal.data() + literal.size(), v.integer_value);
  v.fits = ec == std::errc{} && end == literal.data() + literal.size();
}

// Whether a JSON number literal is finite as a double (what nlohmann requires of
// every number that is not an integer of 64 bits). Without an exponent, fewer than
// 300 digits always are (DBL_MAX is about 1.8e308).
bool fits_double(std::string_view literal) {
  if (literal.size() < 300 && literal.find_first_of("eE") == std::string_view::npos) return true;
  std::string copy(literal);  // strtod needs a terminator; the daemon keeps the "C" locale
  return std::isfinite(std::strtod(copy.c_str(), nullptr));
}

// The fast scanner. Returns false if the text is not of the simple shape (or not
// valid); the caller then lets nlohmann decide.
bool scan_simple(std::string_view s, Fields& fields) {
  std::size_t i = 0, n = s.size();
  auto skip_ws = [&] {
    while (i < n && is_ws(s[i])) ++i;
  };
  // A string without escapes, control characters or non-ASCII bytes.
  auto plain_string = [&](std::string_view& out) {
    if (i >= n || s[i] != '"') return false;
    std::size_t start = ++i;
    while (i < n) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        out = s.substr(start, i - start);
        ++i;
        return true;
      }
      if (c == '\\' || c < 0x20 || c >= 0x80) return false;
      ++i;
    }
    return false;
  };
  auto digits = [&] {
    std::size_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  auto literal = [&](std::string_view word) {
    if (s.substr(i, word.size()) != word) return false;
    i += word.size();
    return true;
  };

  skip_ws();
  if (i >= n || s[i] != '{') return false;
  ++i;
  skip_ws();
  if (i < n && s[i] == '}') {
    ++i;
  } else {
    for (;;) {
      skip_ws();
      std::string_view key;
      if (!plain_string(key)) return false;
      skip_ws();
      if (i >= n || s[i] != ':') return false;
      ++i;
      skip_ws();
      if (i >= n) return false;
      Value v;
      std::size_t start = i;
      char c = s[i];
      if (c == '"') {
        if (!plain_string(v.text)) return false;
        v.kind = Value::string;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (c == '-') ++i;
        if (i < n && s[i] == '0') {
          ++i;
        } else if (!digits()) {
          return false;
        }
        bool integral = true;
        if (i < n && s[i] == '.') {
          ++i;
          if (!digits()) return false;
          integral = false;
        }
        if (i < n && (s[i] == 'e' || s[i] == 'E')) {
          ++i;
          if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
          if (!digits()) return false;
          integral = false;
        }
        // A number no double holds (1e400) is not JSON to nlohmann ("number
        // overflow"): let it decide, so that the fast path never accepts (and
        // echoes, as an id) what the full parser refuses.
        if (!fits_double(s.substr(start, i - start))) return false;
        if (integral) {
          set_integer(v, s.substr(start, i - start));
        } else {
          v.kind = Value::number;
          v.text = s.substr(start, i - start);
        }
      } else if (literal("true")) {
        v.kind = Value::boolean;
        v.boolean_value = true;
      } else if (literal("false")) {
        v.kind = Value::boolean;
      } else if (literal("null")) {
        v.kind = Value::null;
      } else {
        return false;  // objects, arrays, garbage: the DOM parser's business
      }
      v.raw = s.substr(start, i - start);
      Key k = key_of(key);
      if (k != k_unknown) fields[k] = v;  // duplicate keys: the last wins, as in nlohmann
      skip_ws();
      if (i < n && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < n && s[i] == '}') {
        ++i;
        break;
      }
      return false;
    }
  }
  skip_ws();
  return i == n;
}

Value from_dom(const json& j) {
  Value v;
  v.dom = &j;
  switch (j.type()) {
    case json::value_t::string:
      v.kind = Value::string;
      v.text = j.get_ref<const std::string&>();
      break;
    case json::value_t::number_integer:
      v.kind = Value::integer;
      v.integer_value = j.get<std::int64_t>();
      v.fits = true;
      break;
    case json::value_t::number_unsigned:
      v.kind = Value::integer;
      v.fits = j.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX);
      v.integer_value = v.fits ? static_cast<std::int64_t>(j.get<std::uint64_t>()) : 0;
      break;
    case json::value_t::number_float:
      v.kind = Value::number;
      break;
    case json::value_t::boolean:
      v.kind = Value::boolean;
      v.boolean_value = j.get<bool>();
      break;
    case json::value_t::null:
      v.kind = Value::null;
      break;
    case json::value_t::object:
      v.kind = Value::object;
      break;
    default:
      v.kind = Value::array;
      break;
  }
  return v;
}

// How deep `root` nests objects and arrays (a scalar: 0), counted without recursion
// and no further than `limit` + 1.
std::size_t nesting_depth(const json& root, std::size_t limit) {
  std::size_t deepest = 0;
  std::vector<std::pair<const json*, std::size_t>> todo;
  if (root.is_structured()) todo.emplace_back(&root, 1);
  while (!todo.empty()) {
    auto [j, depth] = todo.back();
    todo.pop_back();
    deepest = std::max(deepest, depth);
    if (deepest > limit) break;
    for (const json& child : *j) {
      if (child.is_structured()) todo.emplace_back(&child, depth + 1);
    }
  }
  return deepest;
}

Failure bad(std::string message) { return {EINVAL, std::move(message)}; }

std::optional<Failure> want_name(const Value& v, const char* key, std::string& out) {
  if (v.kind == Value::absent) return bad(std::string("missing field '") + key + "'");
  if (v.kind != Value::string) return bad(std::string("field '") + key + "' must be a string");
  if (!valid_name(v.text)) {
    return bad(std::string("invalid ") + key +
               " (1-255 bytes of A-Za-z0-9._:@/-, no '.' or '..' segment)");
  }
  out.assign(v.text);
  return std::nullopt;
}

std::optional<Failure> want_int(const Value& v, const char* key, std::int64_t lo, std::int64_t hi,
                                std::int64_t& out) {
  if (v.kind == Value::absent) return std::nullopt;
  if (v.kind != Value::integer || !v.fits || v.integer_value < lo || v.integer_value > hi) {
    return bad(std::string("field '") + key + "' must be an integer from " + std::to_string(lo) +
               " to " + std::to_string(hi));
  }
  out = v.integer_value;
  return std::nullopt;
}

std::optional<Failure> interpret_open(Fields& f, Request& req) {
  const Value& path = f[k_path];
  if (path.kind == Value::absent) return bad("missing field 'path'");
  if (path.kind != Value::string) return bad("field 'path' must be a string");
  if (auto failure = check_open_path(path.text)) return failure;
  req.path.assign(path.text);
  const Value& flags = f[k_flags];
  if (flags.kind != Value::absent) {
    if (flags.kind != Value::array) return bad("field 'flags' must be an array of strings");
    if (auto failure = parse_open_flags(*flags.dom, req.open)) return failure;
  }
  const Value& mode = f[k_mode];
  if (mode.kind != Value::absent) {
    if (mode.kind != Value::string) return bad("field 'mode' must be an octal string");
    if (!req.open.create) return bad("field 'mode' needs the flag 'create'");
    mode_t bits = 0;
    if (auto failure = parse_create_mode(mode.text, bits)) return failure;
    req.open.mode = bits;
  }
  return std::nullopt;
}

std::optional<Failure> interpret_bind(Fields& f, Request& req) {
  const Value& address = f[k_address];
  if (address.kind == Value::absent) return bad("missing field 'address'");
  if (address.kind != Value::string || address.text.empty() ||
      address.text.size() > max_address_bytes) {
    return bad("field 'address' must be a URL of at most " + std::to_string(max_address_bytes) +
               " bytes");
  }
  req.address.assign(address.text);
  if (auto failure = want_int(f[k_backlog], "backlog", 1, 65535, req.backlog)) return failure;
  const Value& reuseport = f[k_reuseport];
  if (reuseport.kind != Value::absent) {
    if (reuseport.kind != Value::boolean) return bad("field 'reuseport' must be a boolean");
    req.reuseport = reuseport.boolean_value;
  }
  return std::nullopt;
}

std::optional<Failure> interpret(Fields& f, Request& req) {
  // The id first, so that every later error can echo it.
  const Value& id = f[k_id];
  if (id.kind == Value::object || id.kind == Value::array) {
    return bad("field 'id' must be a scalar (number, string, boolean or null)");
  }
  if (id.kind != Value::absent) {
    if (id.dom != nullptr) {
      req.id = id.dom->dump();
    } else {
      req.id.assign(id.raw);
    }
    if (req.id.size() > max_id_bytes) {
      req.id.clear();
      return bad("field 'id' longer than " + std::to_string(max_id_bytes) + " bytes");
    }
  }

  const Value& op = f[k_op];
  if (op.kind == Value::absent) return bad("missing field 'op'");
  if (op.kind != Value::string) return bad("field 'op' must be a string");
  std::optional<Op> named = op_named(op.text);
  if (!named) {
    return bad("unknown op '" + std::string(op.text.substr(0, max_echoed_op)) +
               (op.text.size() > max_echoed_op ? "...'" : "'"));
  }
  req.op = *named;
  req.has_op = true;

  constexpr std::int64_t max = INT64_MAX;
  std::optional<Failure> failure;
  switch (req.op) {
    case Op::hello:
    case Op::stats:
      break;
    case Op::upgrade: {
      const Value& binary = f[k_binary];
      if (binary.kind != Value::absent) {
        // An absolute path: the broker must not resolve it against its own cwd.
        if (binary.kind != Value::string || binary.text.empty() || binary.text.front() != '/' ||
            binary.text.size() > max_path_bytes) {
          return bad("field 'binary' must be an absolute path of at most " +
                     std::to_string(max_path_bytes) + " bytes");
        }
        req.binary.assign(binary.text);
      }
      break;
    }
    case Op::get:
    case Op::take:
      if ((failure = want_name(f[k_name], "name", req.name))) return failure;
      if ((failure = want_int(f[k_wait_ms], "wait_ms", 0, max, req.wait_ms))) return failure;
      break;
    case Op::del:
      if ((failure = want_name(f[k_name], "name", req.name))) return failure;
      break;
    case Op::put: {
      if ((failure = want_name(f[k_name], "name", req.name))) return failure;
      if ((failure = want_int(f[k_ttl_ms], "ttl_ms", 1, max, req.ttl_ms))) return failure;
      req.ttl_ms = std::min(req.ttl_ms, max_ttl_ms);
      failure =
          want_int(f[k_expect_generation], "expect_generation", 0, max, req.expect_generation);
      if (failure) return failure;
      const Value& replace = f[k_replace];
      if (replace.kind != Value::absent) {
        if (replace.kind != Value::boolean) return bad("field 'replace' must be a boolean");
        req.replace = replace.boolean_value;
      }
      const Value& meta = f[k_meta];
      if (meta.kind != Value::absent) {
        if (meta.kind != Value::object) return bad("field 'meta' must be an object");
        if (nesting_depth(*meta.dom, max_meta_depth) > max_meta_depth) {
          return bad("field 'meta' nests deeper than " + std::to_string(max_meta_depth) +
                     " levels");
        }
        req.meta = meta.dom->dump();
      }
      break;
    }
    case Op::open:
      return interpret_open(f, req);
    case Op::bind:
      return interpret_bind(f, req);
    case Op::list: {
      const Value& prefix = f[k_prefix];
      if (prefix.kind != Value::absent) {
        if (prefix.kind != Value::string) return bad("field 'prefix' must be a string");
        if (!valid_prefix(prefix.text)) {
          return bad("invalid prefix (0-255 bytes of A-Za-z0-9._:@/-)");
        }
        req.prefix.assign(prefix.text);
      }
      if ((failure = want_int(f[k_limit], "limit", 1, 1000, req.limit))) return failure;
      if (f[k_cursor].kind != Value::absent) {
        if ((failure = want_name(f[k_cursor], "cursor", req.cursor))) return failure;
      }
      break;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Failure> parse_request(std::string_view text, Request& req) {
  req.has_op = false;
  req.id.clear();
  req.name.clear();
  req.prefix.clear();
  req.cursor.clear();
  req.meta = "{}";
  req.binary.clear();
  req.path.clear();
  req.open = OpenSpec{};
  req.address.clear();
  req.backlog = 128;
  req.reuseport = false;
  req.wait_ms = req.ttl_ms = req.expect_generation = -1;
  req.limit = 100;
  req.replace = false;

  Fields fields{};
  if (scan_simple(text, fields)) return interpret(fields, req);

  // nlohmann stops at a NUL byte as if the input ended there; JSON text never
  // contains one, so whatever follows it would be silently ignored.
  if (text.find('\0') != std::string_view::npos) {
    return Failure{EPROTO, "not valid JSON (NUL byte)"};
  }
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Failure{EPROTO, "not valid JSON"};
  if (!doc.is_object()) return Failure{EPROTO, "not a JSON object"};
  Fields dom_fields{};
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    Key k = key_of(it.key());
    if (k != k_unknown) dom_fields[k] = from_dom(*it);
  }
  return interpret(dom_fields, req);
}

bool takes_fast_path(std::string_view text) {
  Fields fields{};
  return scan_simple(text, fields);
}

}  // namespace fdbroker::daemon
