// SPDX-License-Identifier: LGPL-2.1-or-later
#include "client_protocol.hpp"

#include <fdbroker/error.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace fdbroker::detail {

using nlohmann::json;

namespace {

[[noreturn]] void protocol_error(const std::string& what) {
  throw std::system_error(EPROTO, std::system_category(), "malformed broker reply: " + what);
}

// The reply without the envelope fields, as text: what the public structs carry in
// their `json` member.
std::string body_text(json reply) {
  reply.erase("id");
  reply.erase("ok");
  return reply.dump();
}

// Parses and checks the envelope; throws BrokerError for a refusal.
json checked_reply(std::string_view text, std::int64_t id) {
  json reply = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) protocol_error("not a JSON object");
  auto ok = reply.find("ok");
  if (ok == reply.end() || !ok->is_boolean()) protocol_error("no boolean \"ok\"");
  // The broker omits the id only when it could not parse our request far enough to
  // find it, which for a well-formed request means a broker bug: still report its
  // error rather than hide it behind an id mismatch.
  auto rid = reply.find("id");
  bool id_matches =
      rid != reply.end() && rid->is_number_integer() && rid->get<std::int64_t>() == id;
  if (!ok->get<bool>()) {
    auto name = reply.find("error");
    if (name == reply.end() || !name->is_string()) protocol_error("error reply without \"error\"");
    auto message = reply.find("message");
    std::string text_message =
        message != reply.end() && message->is_string() ? message->get<std::string>() : "";
    std::string error_name = name->get<std::string>();
    int err = errno_from_name(error_name);
    if (text_message.empty()) text_message = error_name;
    // An errno this libc does not know still surfaces, as EPROTO with its name.
    if (err == 0) {
      err = EPROTO;
      text_message = error_name + ": " + text_message;
    }
    throw BrokerError(err, error_name, text_message);
  }
  if (!id_matches) protocol_error("reply id does not match the request");
  return reply;
}

// `v` as a T, or EPROTO. Numbers must be integers that fit T: nlohmann's get<T>()
// would convert 1e300 or -1 to an integer type (undefined, or a wrapped value).
template <class T>
T value_as(const json& v, const char* key) {
  auto wrong = [&]() { protocol_error(std::string("\"") + key + "\" has the wrong type"); };
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) wrong();
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned()) {
      auto u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) wrong();
      return static_cast<T>(u);
    }
    if (!v.is_number_integer()) wrong();
    auto i = v.get<std::int64_t>();
    if (i < 0 &&
        (std::is_unsigned_v<T> || i < static_cast<std::int64_t>(std::numeric_limits<T>::min())))
      wrong();
    if (i > 0 &&
        static_cast<std::uint64_t>(i) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
      wrong();
    return static_cast<T>(i);
  } else {
    if (!v.is_string()) wrong();
    return v.get<T>();
  }
}

template <class T>
T field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end()) protocol_error(std::string("missing \"") + key + "\"");
  return value_as<T>(*it, key);
}

template <class T>
T optional_field(const json& object, const char* key, T fallback) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  return value_as<T>(*it, key);
}

FdDescription parse_fd_description(const json& d) {
  if (!d.is_object()) protocol_error("an fd description is not an object");
  FdDescription out;
  out.kind = optional_field<std::string>(d, "kind", "");
  // Unknown families come as numbers (docs/protocol.md): keep them readable.
  if (auto family = d.find("family"); family != d.end()) {
    out.family = family->is_string() ? family->get<std::string>() : family->dump();
  }
  out.type = optional_field<std::string>(d, "type", "");
  out.listening = optional_field<bool>(d, "listening", false);
  out.local = optional_field<std::string>(d, "local", "");
  out.path = optional_field<std::string>(d, "path", "");
  out.access = optional_field<std::string>(d, "access", "");
  out.name = optional_field<std::string>(d, "name", "");
  out.json = d.dump();
  return out;
}

EntryInfo parse_entry(const json& e) {
  if (!e.is_object()) protocol_error("an entry is not an object");
  EntryInfo out;
  out.name = field<std::string>(e, "name");
  out.generation = field<std::uint64_t>(e, "generation");
  if (auto meta = e.find("meta"); meta != e.end() && !meta->is_null()) out.meta_json = meta->dump();
  if (auto owner = e.find("owner"); owner != e.end() && owner->is_object()) {
    out.owner_uid = optional_field<uid_t>(*owner, "uid", 0);
    out.is_static = optional_field<bool>(*owner, "static", false);
  }
  out.is_static = optional_field<bool>(e, "static", out.is_static);
  if (auto expires = e.find("expires_ms"); expires != e.end() && !expires->is_null()) {
    out.expires_ms = field<std::int64_t>(e, "expires_ms");
  }
  auto fds = e.find("fds");
  if (fds == e.end() || !fds->is_array()) protocol_error("missing \"fds\" array");
  for (const auto& d : *fds) out.fd_descriptions.push_back(parse_fd_description(d));
  out.json = body_text(e);
  return out;
}

// The one description an open or bind reply carries.
FdDescription single_description(const json& reply) {
  auto fds = reply.find("fds");
  if (fds == reply.end() || !fds->is_array()) protocol_error("missing \"fds\" array");
  if (fds->size() != 1) protocol_error("\"fds\" does not describe exactly one descriptor");
  return parse_fd_description(fds->front());
}

}  // namespace

std::string simple_request(std::string_view op, std::int64_t id) {
  return json{{"op", op}, {"id", id}}.dump();
}

std::string name_request(std::string_view op, std::int64_t id, std::string_view name,
                         std::optional<std::int64_t> wait_ms) {
  json request{{"op", op}, {"id", id}, {"name", name}};
  if (wait_ms) request["wait_ms"] = *wait_ms;
  // error_handler::replace: a name that is not UTF-8 is refused by the broker (EINVAL)
  // instead of throwing a JSON exception here.
  return request.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string put_request(std::int64_t id, std::string_view name, const PutOptions& options) {
  json request{{"op", "put"}, {"id", id}, {"name", name}};
  if (!options.meta_json.empty()) {
    json meta = json::parse(options.meta_json, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded() || !meta.is_object()) {
      throw std::invalid_argument("meta is not a JSON object: " + options.meta_json);
    }
    request["meta"] = std::move(meta);
  }
  if (options.ttl_ms) request["ttl_ms"] = *options.ttl_ms;
  if (options.replace) request["replace"] = true;
  if (options.expect_generation) request["expect_generation"] = *options.expect_generation;
  return request.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string list_request(std::int64_t id, std::string_view prefix, unsigned limit,
                         const std::optional<std::string>& cursor) {
  json request{{"op", "list"}, {"id", id}};
  if (!prefix.empty()) request["prefix"] = prefix;
  if (limit != 0) request["limit"] = limit;
  if (cursor) request["cursor"] = *cursor;
  return request.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string upgrade_request(std::int64_t id, std::string_view binary) {
  json request{{"op", "upgrade"}, {"id", id}};
  if (!binary.empty()) request["binary"] = binary;
  return request.dump();
}

std::string open_request(std::int64_t id, std::string_view path, const OpenFlags& flags,
                         std::optional<unsigned> mode) {
  json request{{"op", "open"}, {"id", id}, {"path", path}, {"flags", open_flag_names(flags)}};
  if (mode) {
    if (*mode > 0777) {
      throw std::invalid_argument("open mode above 0777: " + std::to_string(*mode));
    }
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", *mode);
    request["mode"] = octal;
  }
  // A path that is not UTF-8 is refused by the broker (EINVAL), as a name is.
  return request.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string bind_request(std::int64_t id, std::string_view url, const BrokerBindOptions& options) {
  json request{{"op", "bind"}, {"id", id}, {"address", url}};
  if (options.backlog) {
    if (*options.backlog < 0) {
      throw std::invalid_argument("bind backlog below 0: " + std::to_string(*options.backlog));
    }
    request["backlog"] = *options.backlog;
  }
  if (options.reuseport) request["reuseport"] = true;
  return request.dump(-1, ' ', false, json::error_handler_t::replace);
}

void parse_empty_reply(std::string_view text, std::int64_t id) { checked_reply(text, id); }

Hello parse_hello_reply(std::string_view text, std::int64_t id) {
  json reply = checked_reply(text, id);
  Hello out;
  out.server = optional_field<std::string>(reply, "server", "");
  out.version = optional_field<std::string>(reply, "version", "");
  out.protocol = field<int>(reply, "protocol");
  if (auto peer = reply.find("peer"); peer != reply.end() && peer->is_object()) {
    out.peer.uid = field<uid_t>(*peer, "uid");
    out.peer.gid = field<gid_t>(*peer, "gid");
    out.peer.pid = field<pid_t>(*peer, "pid");
    if (auto unit = peer->find("unit"); unit != peer->end() && !unit->is_null()) {
      out.peer.unit = value_as<std::string>(*unit, "unit");
    }
    out.peer.cgroup = optional_field<std::string>(*peer, "cgroup", "");
  }
  out.json = body_text(std::move(reply));
  return out;
}

EntryInfo parse_entry_reply(std::string_view text, std::int64_t id) {
  return parse_entry(checked_reply(text, id));
}

std::uint64_t parse_put_reply(std::string_view text, std::int64_t id) {
  return field<std::uint64_t>(checked_reply(text, id), "generation");
}

ListPage parse_list_reply(std::string_view text, std::int64_t id) {
  json reply = checked_reply(text, id);
  ListPage out;
  auto entries = reply.find("entries");
  if (entries == reply.end() || !entries->is_array()) protocol_error("missing \"entries\" array");
  for (const auto& e : *entries) out.entries.push_back(parse_entry(e));
  if (auto cursor = reply.find("cursor"); cursor != reply.end() && !cursor->is_null()) {
    out.cursor = field<std::string>(reply, "cursor");
  }
  return out;
}

Stats parse_stats_reply(std::string_view text, std::int64_t id) {
  json reply = checked_reply(text, id);
  Stats out;
  out.uptime_ms = optional_field<std::int64_t>(reply, "uptime_ms", 0);
  if (auto c = reply.find("connections"); c != reply.end() && c->is_object()) {
    out.connections_current = optional_field<std::int64_t>(*c, "current", 0);
    out.connections_total = optional_field<std::int64_t>(*c, "total", 0);
    out.connections_dropped = optional_field<std::int64_t>(*c, "dropped", 0);
  }
  out.entries = optional_field<std::int64_t>(reply, "entries", 0);
  out.fds_held = optional_field<std::int64_t>(reply, "fds_held", 0);
  out.fds_limit = optional_field<std::int64_t>(reply, "fds_limit", 0);
  if (auto requests = reply.find("requests"); requests != reply.end() && requests->is_object()) {
    for (const auto& [op, outcomes] : requests->items()) {
      if (!outcomes.is_object()) protocol_error("\"requests." + op + "\" is not an object");
      for (const auto& [outcome, count] : outcomes.items()) {
        out.requests[op][outcome] = value_as<std::int64_t>(count, "requests");
      }
    }
  }
  out.json = body_text(std::move(reply));
  return out;
}

std::int64_t parse_upgrade_reply(std::string_view text, std::int64_t id) {
  return field<std::int64_t>(checked_reply(text, id), "pid");
}

Opened parse_open_reply(std::string_view text, std::int64_t id) {
  json reply = checked_reply(text, id);
  Opened out;
  out.description = single_description(reply);
  out.path = field<std::string>(reply, "path");
  out.rule = field<std::string>(reply, "rule");
  out.created = optional_field<bool>(reply, "created", false);
  out.json = body_text(std::move(reply));
  return out;
}

Bound parse_bind_reply(std::string_view text, std::int64_t id, std::string_view url) {
  json reply = checked_reply(text, id);
  Bound out;
  out.description = single_description(reply);
  out.address = optional_field<std::string>(reply, "address", std::string(url));
  out.rule = field<std::string>(reply, "rule");
  out.json = body_text(std::move(reply));
  return out;
}

}  // namespace fdbroker::detail
