// SPDX-License-Identifier: LGPL-2.1-or-later
// The fields of an `open` request (docs/protocol.md): the path's grammar, the
// flags and the mode of a created file. Checked before any rule is consulted, so
// that a malformed request is EINVAL for everyone.
#pragma once

#include <sys/types.h>

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "failure.hpp"
#include "open_beneath.hpp"

namespace fdbroker::daemon {

// An absolute path of at most 4096 bytes, with no control character (below 0x20,
// 0x7f), no empty, "." or ".." segment and no trailing '/'. Else EINVAL.
[[nodiscard]] std::optional<Failure> check_open_path(std::string_view path);

// `flags`: an array of "rdonly" | "wronly" | "rdwr" (exactly one) and any of
// "append", "create", "excl", "trunc", "nonblock". Sets the access and flags of
// `spec` (its mode is left alone). EINVAL for anything else, two access modes,
// excl without create, trunc with rdonly.
[[nodiscard]] std::optional<Failure> parse_open_flags(const nlohmann::json& flags, OpenSpec& spec);

// `text`: an octal string of permission bits, "0" to "0777". Else EINVAL.
[[nodiscard]] std::optional<Failure> parse_create_mode(std::string_view text, mode_t& mode);

// "rdwr,create,excl": the flags as a request names them, for logs and replies.
[[nodiscard]] std::string open_flags_text(const OpenSpec& spec);

}  // namespace fdbroker::daemon
