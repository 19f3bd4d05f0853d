// SPDX-License-Identifier: LGPL-2.1-or-later
#include "logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace fdbroker::daemon {

void setup_logging() {
  std::shared_ptr<spdlog::logger> logger;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    // The journal adds its own timestamp and the unit; the sink maps levels to
    // syslog priorities.
    auto sink = std::make_shared<spdlog::sinks::systemd_sink_mt>("fdbrokerd");
    logger = std::make_shared<spdlog::logger>("fdbrokerd", sink);
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>("fdbrokerd",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e fdbrokerd[%P] %l: %v");
  }
  // Errors and warnings reach stderr at once even if the process is killed.
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warning" || name == "warn") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  if (name == "critical") return spdlog::level::critical;
  if (name == "off") return spdlog::level::off;
  return std::nullopt;
}

}  // namespace fdbroker::daemon
