// SPDX-License-Identifier: LGPL-2.1-or-later
// The client's reply parsers (lib/src/client_protocol.cpp), on any bytes a broker
// (or whatever listens on the socket) can answer. The first byte picks the parser
// (hello, get/take, put, delete, list, stats, open, bind), the rest is the reply
// text; the request's id is 7.
//
// Invariants:
//  - a reply is accepted, or refused with BrokerError (the broker said no) or
//    std::system_error(EPROTO) (malformed): no other exception, no crash, no UB
//    (an out-of-range number is EPROTO, not a wrapped value);
//  - an accepted reply, rebuilt from what the parser kept (the `json` members),
//    parses to the same result.
#include <fdbroker/client.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "client_protocol.hpp"
#include "fuzz_check.hpp"

using namespace fdbroker;
using nlohmann::json;

namespace {

constexpr std::int64_t id = 7;

// {"ok":true,"id":7} plus the members of `body` (a JSON object's text).
std::string envelope(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  FUZZ_CHECK(j.is_object(), "a kept body is a JSON object");
  j["ok"] = true;
  j["id"] = id;
  return j.dump();
}

bool same_entry(const EntryInfo& a, const EntryInfo& b) {
  if (a.name != b.name || a.generation != b.generation || a.meta_json != b.meta_json ||
      a.owner_uid != b.owner_uid || a.is_static != b.is_static || a.expires_ms != b.expires_ms ||
      a.fd_descriptions.size() != b.fd_descriptions.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.fd_descriptions.size(); ++i) {
    const auto& x = a.fd_descriptions[i];
    const auto& y = b.fd_descriptions[i];
    if (x.kind != y.kind || x.family != y.family || x.type != y.type ||
        x.listening != y.listening || x.local != y.local || x.path != y.path ||
        x.access != y.access || x.name != y.name || x.json != y.json) {
      return false;
    }
  }
  return true;
}

// An accepted number was an integer of the text that fits, not a converted float.
void check_integer(const json& object, const char* key, std::uint64_t value) {
  const json& raw = object.at(key);
  bool same = raw.is_number_unsigned()
                  ? raw.get<std::uint64_t>() == value
                  : raw.is_number_integer() && raw.get<std::int64_t>() >= 0 &&
                        static_cast<std::uint64_t>(raw.get<std::int64_t>()) == value;
  FUZZ_CHECK(same, "an accepted number is the text's integer");  // -0 is 0
}

void check_entry(const EntryInfo& e) {
  json body = json::parse(e.json, nullptr, false);
  FUZZ_CHECK(body.is_object(), "an entry's json is an object");
  check_integer(body, "generation", e.generation);
  FUZZ_CHECK(json::accept(e.meta_json), "meta_json is JSON text");
  for (const auto& d : e.fd_descriptions) {
    FUZZ_CHECK(json::parse(d.json, nullptr, false).is_object(),
               "a description's json is an object");
  }
}

void parse(unsigned which, std::string_view text) {
  switch (which % 8) {
    case 0: {
      Hello h = detail::parse_hello_reply(text, id);
      const json body = json::parse(h.json);
      const json& protocol = body.at("protocol");
      FUZZ_CHECK(protocol.is_number_integer() && protocol.get<std::int64_t>() == h.protocol,
                 "the protocol is the text's integer");
      Hello again = detail::parse_hello_reply(envelope(h.json), id);
      FUZZ_CHECK(h.server == again.server && h.version == again.version &&
                     h.protocol == again.protocol && h.peer.uid == again.peer.uid &&
                     h.peer.gid == again.peer.gid && h.peer.pid == again.peer.pid &&
                     h.json == again.json,
                 "a hello reply round-trips");
      break;
    }
    case 1: {
      EntryInfo e = detail::parse_entry_reply(text, id);
      check_entry(e);
      EntryInfo again = detail::parse_entry_reply(envelope(e.json), id);
      FUZZ_CHECK(same_entry(e, again) && e.json == again.json, "an entry reply round-trips");
      break;
    }
    case 2: {
      std::uint64_t generation = detail::parse_put_reply(text, id);
      check_integer(json::parse(text), "generation", generation);
      json j{{"ok", true}, {"id", id}, {"generation", generation}};
      FUZZ_CHECK(detail::parse_put_reply(j.dump(), id) == generation, "a put reply round-trips");
      break;
    }
    case 3:
      detail::parse_empty_reply(text, id);
      break;
    case 4: {
      ListPage page = detail::parse_list_reply(text, id);
      json j{{"ok", true}, {"id", id}, {"entries", json::array()}};
      for (const auto& e : page.entries) {
        check_entry(e);
        j["entries"].push_back(json::parse(e.json));
      }
      if (page.cursor) j["cursor"] = *page.cursor;
      ListPage again = detail::parse_list_reply(j.dump(), id);
      FUZZ_CHECK(again.entries.size() == page.entries.size() && again.cursor == page.cursor,
                 "a list reply round-trips");
      for (std::size_t i = 0; i < page.entries.size(); ++i) {
        FUZZ_CHECK(same_entry(page.entries[i], again.entries[i]), "a listed entry round-trips");
      }
      break;
    }
    case 6: {
      Opened o = detail::parse_open_reply(text, id);
      FUZZ_CHECK(json::parse(o.description.json, nullptr, false).is_object(),
                 "the description's json is an object");
      Opened again = detail::parse_open_reply(envelope(o.json), id);
      FUZZ_CHECK(o.path == again.path && o.rule == again.rule && o.created == again.created &&
                     o.description.json == again.description.json && o.json == again.json,
                 "an open reply round-trips");
      break;
    }
    case 7: {
      Bound b = detail::parse_bind_reply(text, id, "tcp://127.0.0.1:1");
      Bound again = detail::parse_bind_reply(envelope(b.json), id, "tcp://127.0.0.1:1");
      FUZZ_CHECK(b.rule == again.rule && b.description.json == again.description.json &&
                     b.json == again.json,
                 "a bind reply round-trips");
      FUZZ_CHECK(b.address == again.address || !json::parse(b.json).contains("address"),
                 "the address round-trips");
      break;
    }
    default: {
      Stats s = detail::parse_stats_reply(text, id);
      Stats again = detail::parse_stats_reply(envelope(s.json), id);
      FUZZ_CHECK(s.uptime_ms == again.uptime_ms && s.entries == again.entries &&
                     s.fds_held == again.fds_held && s.fds_limit == again.fds_limit &&
                     s.connections_current == again.connections_current &&
                     s.connections_total == again.connections_total &&
                     s.connections_dropped == again.connections_dropped &&
                     s.requests == again.requests && s.json == again.json,
                 "a stats reply round-trips");
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return -1;
  std::string_view text = fuzz::as_text(data + 1, size - 1);
  try {
    parse(data[0], text);
  } catch (const BrokerError& e) {
    FUZZ_CHECK(e.code().value() != 0, "a refusal has an errno");
  } catch (const std::system_error& e) {
    FUZZ_CHECK(e.code().value() == EPROTO, "a malformed reply is EPROTO");
  }
  // Any other exception escapes: libFuzzer reports it as a crash (a finding).
  return 0;
}
