// SPDX-License-Identifier: LGPL-2.1-or-later
// Appending JSON text to a std::string without building a DOM: the reply path
// splices precomputed fragments, so it needs only strings and integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fdbroker::daemon {

// Appends `s` as a JSON string literal (quotes included). Control characters are
// escaped; bytes that are not valid UTF-8 become U+FFFD, so the output is always
// valid JSON whatever the input (paths and peer-supplied text can be anything).
void append_json_string(std::string& out, std::string_view s);

// Longest message text in an error reply, before JSON escaping (which at most
// sextuples it: a DEL becomes \u007f). With an id of at most max_id_bytes, every
// error reply stays far below the message limit whatever the client sent.
inline constexpr std::size_t max_error_text = 512;

// Appends the fields of an error reply and its closing brace:
// "ok":false,"error":"<errno name, EIO if unknown>","message":"<message>"}
// with `message` cut to max_error_text bytes (and "..." added) if longer.
void append_error(std::string& out, int err, std::string_view message);

// The errno's name ("ENOENT"), or "EIO" for a value without one: what the wire
// protocol, the stats and the log say for `err`.
const char* errno_name_or_eio(int err);

// Appends the decimal form of `v`.
void append_int(std::string& out, std::int64_t v);
void append_uint(std::string& out, std::uint64_t v);

}  // namespace fdbroker::daemon
