// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker's configuration: JSON (comments allowed) → a validated, defaulted
// Config. User and group names are resolved to ids here, at load time, so that
// a reload either fully succeeds or changes nothing.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bind_rules.hpp"
#include "file_rules.hpp"
#include "operation.hpp"
#include "principals.hpp"

namespace fdbroker::daemon {

// "Peers matching `who` may (allow) / may not (deny) do these operations on the
// entry named `match` (or on every entry whose name starts with it, if prefix)".
struct Rule {
  std::string match;
  bool prefix = true;
  Principals who;
  unsigned allow = 0;
  unsigned deny = 0;
  std::string origin;  // where it was declared, for logs: "rules[2]", "entries[0].access[1]"
};

struct Limits {
  std::uint32_t max_connections = 4096;
  // Connections one uid may hold at once (root and the broker's own uid are
  // exempt); unset: the larger of 64 and a quarter of the effective
  // max_connections (derive_limits); 0: no limit.
  std::optional<std::uint32_t> max_connections_per_uid;
  std::uint64_t max_fds = 0;  // 0: derived from RLIMIT_NOFILE at start
  std::uint32_t max_entries_per_uid = 1024;
  std::uint32_t max_fds_per_uid = 4096;
  std::uint64_t max_wait_ms = 300000;
  std::uint64_t client_timeout_ms = 10000;
  std::uint32_t max_queued_replies = 256;
  std::uint64_t shutdown_timeout_ms = 2000;
};

enum class StaticKind { file, tcp, udp, unix_socket };

// An entry the broker opens itself. `opening` is a canonical text of every field
// that decides how the fds are opened: a reload keeps the existing fds of an entry
// whose name and opening did not change.
struct StaticEntry {
  std::string name;
  StaticKind kind = StaticKind::file;
  std::string path;            // file, unix
  int open_flags = 0;          // file (O_* without O_CLOEXEC)
  mode_t mode = 0644;          // file (with create), unix socket file
  std::string address;         // tcp, udp: as written
  int backlog = 128;           // tcp, unix stream/seqpacket
  bool reuseport = false;      // tcp, udp
  bool v6only = false;         // tcp, udp on IPv6
  int socket_type = 0;         // unix: SOCK_STREAM or SOCK_SEQPACKET
  std::optional<uid_t> owner;  // unix socket file
  std::optional<gid_t> group;  // unix socket file
  std::string meta = "{}";     // compact JSON object
  std::string opening;
};

struct Config {
  std::string socket_path = "/run/fdbroker/fdbroker.sock";
  mode_t socket_mode = 0660;
  std::optional<gid_t> socket_group;
  std::string log_level = "info";
  Limits limits;
  unsigned owner_rights = perm_get | perm_take | perm_delete;
  std::vector<Rule> rules;  // global rules, then each static entry's access rules
  std::vector<StaticEntry> entries;
  // Who may have the broker open files and bind sockets on request (file_rules.hpp,
  // bind_rules.hpp). The roots are opened by FilePolicy::open, not here.
  std::vector<FileRule> files;
  std::vector<BindRule> binds;
  // Whether put keeps descriptors on FUSE file systems (EOPNOTSUPP if not): a
  // FUSE daemon that stops answering makes every close of its files hang.
  bool accept_fuse_fds = false;
};

inline constexpr std::string_view default_config_path = "/etc/fdbroker/fdbroker.json";

// Outcome of loading: a config, or every problem found, each naming its key
// ("limits.max_connections: must be an integer between 1 and 1000000").
// Warnings do not refuse the config: --check-config prints them and the broker
// logs them (FilePolicy::open adds those about the roots on the file system).
struct ConfigResult {
  std::optional<Config> config;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

// Parses and validates configuration text (JSON, comments allowed).
ConfigResult parse_config(std::string_view text);

// Reads and parses a file. A missing file is an error here; whether to fall back
// to defaults is the caller's decision (main does so for the default path only).
ConfigResult load_config_file(const std::string& path);

}  // namespace fdbroker::daemon
