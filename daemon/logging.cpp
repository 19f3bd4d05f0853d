// SPDX-License-Identifier: LGPL-2.1-or-later
#include "logging.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>

#include "policy.hpp"

namespace fdbroker::daemon {

namespace {

constexpr std::string_view identifier = "fdbrokerd";

// Set by setup_logging(): stderr is the journal.
bool to_journal = false;

// The syslog priority of a level, as spdlog's systemd sink maps it.
int priority_of(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return LOG_DEBUG;
    case spdlog::level::warn:
      return LOG_WARNING;
    case spdlog::level::err:
      return LOG_ERR;
    case spdlog::level::critical:
      return LOG_CRIT;
    default:
      return LOG_INFO;
  }
}

template <typename T>
bool parse_decimal(std::string_view text, T& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && !text.empty();
}

void add(std::vector<std::string>& fields, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  std::string field(key);
  field += '=';
  field += value;
  fields.push_back(std::move(field));
}

}  // namespace

bool journal_stream_matches(std::string_view value, const struct stat& stderr_stat) {
  auto colon = value.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  return parse_decimal(value.substr(0, colon), dev) &&
         parse_decimal(value.substr(colon + 1), ino) &&
         dev == static_cast<unsigned long long>(stderr_stat.st_dev) &&
         ino == static_cast<unsigned long long>(stderr_stat.st_ino);
}

void setup_logging() {
  std::shared_ptr<spdlog::logger> logger;
  const char* stream = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  to_journal =
      stream != nullptr && ::fstat(STDERR_FILENO, &st) == 0 && journal_stream_matches(stream, st);
  if (to_journal) {
    // The journal adds its own timestamp and the unit; the sink maps levels to
    // syslog priorities.
    auto sink = std::make_shared<spdlog::sinks::systemd_sink_mt>(std::string(identifier));
    logger = std::make_shared<spdlog::logger>(std::string(identifier), sink);
    logger->set_pattern("%v");
  } else {
    logger = std::make_shared<spdlog::logger>(std::string(identifier),
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

std::vector<std::string> journal_fields(const AuditEvent& event, std::string_view message) {
  std::vector<std::string> fields;
  fields.reserve(14);
  add(fields, "MESSAGE", message);
  add(fields, "PRIORITY", std::to_string(priority_of(event.level)));
  add(fields, "SYSLOG_IDENTIFIER", identifier);
  add(fields, "FDBROKER_OP", event.op);
  add(fields, "FDBROKER_NAME", event.name);
  if (event.peer != nullptr) {
    add(fields, "FDBROKER_PEER_PID", std::to_string(event.peer->pid));
    add(fields, "FDBROKER_PEER_UID", std::to_string(event.peer->uid));
    add(fields, "FDBROKER_PEER_GID", std::to_string(event.peer->gid));
    if (event.peer->unit) add(fields, "FDBROKER_PEER_UNIT", *event.peer->unit);
  }
  add(fields, "FDBROKER_PATH", event.path);
  add(fields, "FDBROKER_ADDRESS", event.address);
  add(fields, "FDBROKER_RESULT", event.result);
  add(fields, "FDBROKER_RULE", event.rule);
  return fields;
}

void audit_message(const AuditEvent& event, std::string_view message) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(event.level)) return;
  if (!to_journal) {
    logger->log(event.level, "{}", message);
    return;
  }
  std::vector<std::string> fields = journal_fields(event, message);
  std::vector<struct iovec> iov;
  iov.reserve(fields.size());
  for (std::string& f : fields) iov.push_back({f.data(), f.size()});
  // A record the journal does not take is lost, as a line to a full pipe would
  // be; the broker goes on.
  (void)sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
}

}  // namespace fdbroker::daemon
