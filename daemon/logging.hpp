// SPDX-License-Identifier: LGPL-2.1-or-later
// Logging setup: spdlog to stderr; under journald ($JOURNAL_STREAM) spdlog's
// systemd sink, so that each line carries its priority.
#pragma once

#include <optional>
#include <string_view>

#include <spdlog/common.h>

namespace fdbroker::daemon {

// Installs the default logger (call once, early).
void setup_logging();

// "debug" → spdlog::level::debug; nullopt for an unknown name. Accepts
// "warning" and "warn".
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

}  // namespace fdbroker::daemon
