// SPDX-License-Identifier: LGPL-2.1-or-later
// The client side of wire protocol v1 (docs/protocol.md): requests as JSON text,
// replies parsed into the public structs of client.hpp. Pure functions, no I/O,
// so that they are tested on their own; the JSON library stays inside the .cpp.
#pragma once

#include <fdbroker/client.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fdbroker::detail {

// The largest message either side may send (bytes of JSON).
inline constexpr std::size_t max_message_size = 65536;

// Requests. `id` is echoed by the broker and checked by the parsers below.
std::string simple_request(std::string_view op, std::int64_t id);  // hello, stats
std::string name_request(std::string_view op, std::int64_t id, std::string_view name,
                         std::optional<std::int64_t> wait_ms = std::nullopt);
// Throws std::invalid_argument if options.meta_json is not a JSON object.
std::string put_request(std::int64_t id, std::string_view name, const PutOptions& options);
std::string list_request(std::int64_t id, std::string_view prefix, unsigned limit,
                         const std::optional<std::string>& cursor);
// `binary`: the absolute path of the new fdbrokerd; empty for the broker's own.
std::string upgrade_request(std::int64_t id, std::string_view binary);

// open: `flags` by their protocol names; `mode` as an octal string ("0640").
// Throws std::invalid_argument for a mode above 0777.
std::string open_request(std::int64_t id, std::string_view path, const OpenFlags& flags,
                         std::optional<unsigned> mode);
// Throws std::invalid_argument for a negative backlog.
std::string bind_request(std::int64_t id, std::string_view url, const BrokerBindOptions& options);

// Reply parsers. Each checks that `text` is a JSON object with "ok" and the id
// `id`; throws BrokerError if "ok" is false (errno from the "error" name, EPROTO if
// the name is unknown), std::system_error(EPROTO) if the reply is malformed.
void parse_empty_reply(std::string_view text, std::int64_t id);  // delete
Hello parse_hello_reply(std::string_view text, std::int64_t id);
EntryInfo parse_entry_reply(std::string_view text, std::int64_t id);  // get, take
std::uint64_t parse_put_reply(std::string_view text, std::int64_t id);
ListPage parse_list_reply(std::string_view text, std::int64_t id);
Stats parse_stats_reply(std::string_view text, std::int64_t id);
std::int64_t parse_upgrade_reply(std::string_view text, std::int64_t id);  // the new pid
// open and bind: everything but the descriptor, which the caller attaches. The reply
// must describe exactly one descriptor (EPROTO otherwise). `bind`'s address defaults
// to `url` if the broker does not report one.
Opened parse_open_reply(std::string_view text, std::int64_t id);
Bound parse_bind_reply(std::string_view text, std::int64_t id, std::string_view url);

}  // namespace fdbroker::detail
