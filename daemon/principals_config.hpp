// SPDX-License-Identifier: LGPL-2.1-or-later
// The config schema of "who a rule applies to" ("users", "groups", "units"), shared
// by every rule kind: today's "rules", static entries' "access" lists, and the
// "files" and "bind" sections.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "config.hpp"
#include "json_shape.hpp"

namespace fdbroker::daemon {

// Whether `name` can be the unit a process runs in, as the broker reads it from
// the process's cgroup: "nginx.service", "session-3.scope", "user@1000.service".
// Only .service and .scope units hold processes; a rule naming any other unit
// would never match, so it is refused.
[[nodiscard]] bool valid_unit_name(std::string_view name);

// Reads the "users", "groups" and "units" members of the rule `obj` declared at
// `where`, reporting each problem to `shape`. A rule must name at least one of
// the three; one naming only units matches any uid in them (Principals::any).
Principals read_principals(JsonShape& shape, const nlohmann::json& obj, const std::string& where);

}  // namespace fdbroker::daemon
