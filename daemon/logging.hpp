// SPDX-License-Identifier: LGPL-2.1-or-later
// Logging setup: spdlog to stderr; when stderr is the journal ($JOURNAL_STREAM
// names its device and inode) spdlog's systemd sink, so that each line carries
// its priority, and audit events (audit) carry FDBROKER_* fields too.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/common.h>
#include <spdlog/spdlog.h>

namespace fdbroker::daemon {

struct ClientIdentity;  // policy.hpp

// Installs the default logger (call once, early).
void setup_logging();

// "debug" → spdlog::level::debug; nullopt for an unknown name. Accepts
// "warning" and "warn".
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Whether $JOURNAL_STREAM's value ("DEV:INODE", in decimal, as systemd sets it)
// names the file `stderr_stat` describes: only then is stderr the journal (a
// child of a service may inherit the variable with stderr redirected).
[[nodiscard]] bool journal_stream_matches(std::string_view value, const struct stat& stderr_stat);

// One decision of the broker about a client's request: the grant and deny
// lines of the access rules, and the on-request opens and binds. Empty fields
// are left out of the journal record.
struct AuditEvent {
  spdlog::level::level_enum level = spdlog::level::info;
  std::string_view op;                   // "get", "put", "open", "bind", ...
  const ClientIdentity* peer = nullptr;  // who asked
  std::string_view name;                 // the entry
  std::string_view path;                 // an open's path
  std::string_view address;              // a bind's address
  std::string_view result;               // "ok" or an errno name ("EACCES")
  std::string_view rule;                 // the rule that decided ("rules[2]", "keys")
};

// The journal record of `event` with `message`: "MESSAGE=...", "PRIORITY=6",
// "SYSLOG_IDENTIFIER=fdbrokerd", then the FDBROKER_* fields that apply. Each
// string is one field, sent as one iovec (sd_journal_sendv): a value may hold
// anything, newlines included, and never starts another field.
[[nodiscard]] std::vector<std::string> journal_fields(const AuditEvent& event,
                                                      std::string_view message);

// Logs `message` (the same text either way) at event.level: under the journal
// as a record with journal_fields(), elsewhere as a line of the default logger.
void audit_message(const AuditEvent& event, std::string_view message);

// The same, formatting the message only if event.level is logged (the grants
// of gets are on the hot path and only logged at debug).
template <typename... Args>
void audit(const AuditEvent& event, spdlog::format_string_t<Args...> format, Args&&... args) {
  if (!spdlog::default_logger_raw()->should_log(event.level)) return;
  audit_message(event, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace fdbroker::daemon
