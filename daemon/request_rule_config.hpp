// SPDX-License-Identifier: LGPL-2.1-or-later
// The config schema of the rules for `open` and `bind` requests (the "files" and
// "bind" sections): each rule's keys, their defaults and checks. Pure: roots are opened and checked
// on the file system by FilePolicy::open (file_rules.hpp), not here.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "bind_rules.hpp"
#include "file_rules.hpp"
#include "json_shape.hpp"

namespace fdbroker::daemon {

// Reads the "files" section `section` (its key path is "files"), reporting each
// problem to `shape`. Rules with problems are left out.
std::vector<FileRule> read_file_rules(JsonShape& shape, const nlohmann::json& section);

// Reads the "bind" section the same way.
std::vector<BindRule> read_bind_rules(JsonShape& shape, const nlohmann::json& section);

// Whether `name` can name a files or bind rule: 1-64 bytes of A-Za-z0-9._:@-
// (it is reported in replies and logs as is).
[[nodiscard]] bool valid_rule_name(std::string_view name);

}  // namespace fdbroker::daemon
