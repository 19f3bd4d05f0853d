// SPDX-License-Identifier: LGPL-2.1-or-later
// The config schema of a static entry (one element of "entries"): which keys each
// type takes, their defaults, and the `opening` text that decides whether a reload
// keeps the entry's open fds. Opening them is static_entries.hpp's job.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config.hpp"
#include "json_shape.hpp"

namespace fdbroker::daemon {

// Reads the static entry `obj` (a JSON object) declared at `where` ("entries[1]"),
// reporting each problem to `shape`; `earlier` are the entries declared before
// it (a name used twice is an error). Returns the entry even if it has problems:
// later entries are checked against its name. Its "access" rules are the
// caller's to read.
StaticEntry read_static_entry(JsonShape& shape, const nlohmann::json& obj, const std::string& where,
                              const std::vector<StaticEntry>& earlier);

}  // namespace fdbroker::daemon
