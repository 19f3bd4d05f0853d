// SPDX-License-Identifier: LGPL-2.1-or-later
// The grammar of entry names, shared by the protocol (requests), the config
// (static entries, rules) and restore.
#pragma once

#include <string_view>

namespace fdbroker::daemon {

// Name rules: 1-255 bytes of [A-Za-z0-9._:@/-], no "." or ".." segment.
// Prefixes: the same alphabet, 0-255 bytes.
bool valid_name(std::string_view name) noexcept;
bool valid_prefix(std::string_view prefix) noexcept;

}  // namespace fdbroker::daemon
