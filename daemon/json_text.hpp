// SPDX-License-Identifier: LGPL-2.1-or-later
// Appending JSON text to a std::string without building a DOM: the reply path
// splices precomputed fragments, so it needs only strings and integers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fdbroker::daemon {

// Appends `s` as a JSON string literal (quotes included). Control characters are
// escaped; bytes that are not valid UTF-8 become U+FFFD, so the output is always
// valid JSON whatever the input (paths and peer-supplied text can be anything).
void append_json_string(std::string& out, std::string_view s);

// Appends the decimal form of `v`.
void append_int(std::string& out, std::int64_t v);
void append_uint(std::string& out, std::uint64_t v);

}  // namespace fdbroker::daemon
