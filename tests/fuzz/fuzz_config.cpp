// SPDX-License-Identifier: LGPL-2.1-or-later
// The configuration loader, as `fdbrokerd --check-config --config FILE` runs it
// (daemon/main.cpp load() → load_config_file): the input is the file's text.
//
// Invariants:
//  - either a config or at least one error, never both; the errors are bounded
//    (a few lines per problem, each naming the file);
//  - no fd is left open;
//  - an accepted config holds what config.hpp promises: valid entry names, no
//    duplicates, rules on valid names/prefixes, meta objects, a usable socket path,
//    limits in their ranges, a known log level; files and bind rules as their
//    headers promise (unique valid names, clean roots and globs, known rights,
//    modes without special bits, port ranges 1 <= lo <= hi, normalized hosts),
//    and valid unit names in every rule;
//  - a user or group name that is not exactly a name (a NUL inside) is never
//    resolved to an id;
//  - loading the same text twice gives the same outcome.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include <fdbroker/listen_url.hpp>

#include "config.hpp"
#include "entry_name.hpp"
#include "file_rules.hpp"
#include "fuzz_check.hpp"
#include "glob.hpp"
#include "principals_config.hpp"
#include "request_rule_config.hpp"

using fdbroker::daemon::Config;
using fdbroker::daemon::ConfigResult;
using nlohmann::json;

namespace {

std::string config_path;

void write_file(std::string_view text) {
  int fd = ::open(config_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FUZZ_CHECK(fd >= 0, "the scratch config file opens");
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    FUZZ_CHECK(n > 0, "the scratch config file is written");
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

bool has_nul(const json& v) {
  return v.is_string() && v.get_ref<const std::string&>().find('\0') != std::string::npos;
}

// Every user or group name the text gives (users, groups, owner, group, socket.group),
// in every rule section.
bool names_with_nul(const json& doc) {
  if (!doc.is_object()) return false;
  auto principals = [](const json& rule) {
    if (!rule.is_object()) return false;
    for (const char* k : {"users", "groups"}) {
      auto it = rule.find(k);
      if (it != rule.end() && it->is_array() &&
          std::any_of(it->begin(), it->end(), [](const json& v) { return has_nul(v); })) {
        return true;
      }
    }
    return false;
  };
  if (auto s = doc.find("socket"); s != doc.end() && s->is_object()) {
    if (auto g = s->find("group"); g != s->end() && has_nul(*g)) return true;
  }
  for (const char* section : {"rules", "files", "bind"}) {
    if (auto rules = doc.find(section); rules != doc.end() && rules->is_array()) {
      for (const auto& r : *rules) {
        if (principals(r)) return true;
        if (!r.is_object() || std::string_view(section) != "files") continue;
        for (const char* k : {"owner", "group"}) {
          if (auto v = r.find(k); v != r.end() && has_nul(*v)) return true;
        }
      }
    }
  }
  if (auto entries = doc.find("entries"); entries != doc.end() && entries->is_array()) {
    for (const auto& e : *entries) {
      if (!e.is_object()) continue;
      for (const char* k : {"owner", "group"}) {
        if (auto v = e.find(k); v != e.end() && has_nul(*v)) return true;
      }
      if (auto access = e.find("access"); access != e.end() && access->is_array()) {
        for (const auto& r : *access) {
          if (principals(r)) return true;
        }
      }
    }
  }
  return false;
}

void check_config(const Config& c) {
  using fdbroker::daemon::valid_name;
  using fdbroker::daemon::valid_prefix;
  FUZZ_CHECK(!c.socket_path.empty() && c.socket_path.size() < 108, "socket path fits sun_path");
  FUZZ_CHECK(c.socket_mode <= 07777, "socket mode is a mode");
  static const char* const levels[] = {"trace", "debug",    "info", "warning",
                                       "error", "critical", "off"};
  FUZZ_CHECK(std::any_of(std::begin(levels), std::end(levels),
                         [&](const char* l) { return c.log_level == l; }),
             "log level is known");
  const auto& l = c.limits;
  FUZZ_CHECK(l.max_connections >= 1 && l.max_connections <= 1000000, "max_connections in range");
  FUZZ_CHECK(l.client_timeout_ms >= 1 && l.max_queued_replies >= 1, "limits in range");
  FUZZ_CHECK(l.max_wait_ms <= 86400000 && l.shutdown_timeout_ms <= 600000, "limits in range");
  FUZZ_CHECK((c.owner_rights & ~(fdbroker::daemon::perm_get | fdbroker::daemon::perm_take |
                                 fdbroker::daemon::perm_delete)) == 0,
             "owner_rights only get, take, delete");
  for (const auto& r : c.rules) {
    FUZZ_CHECK(r.prefix ? valid_prefix(r.match) : valid_name(r.match),
               "a rule matches a valid name/prefix");
    FUZZ_CHECK(((r.allow | r.deny) & ~fdbroker::daemon::perm_all) == 0, "a rule's perms are known");
  }
  auto units_valid = [](const fdbroker::daemon::Principals& who) {
    return std::all_of(who.units.begin(), who.units.end(), fdbroker::daemon::valid_unit_name);
  };
  for (const auto& r : c.rules) FUZZ_CHECK(units_valid(r.who), "a rule's units are unit names");
  using namespace fdbroker::daemon;
  for (std::size_t i = 0; i < c.files.size(); ++i) {
    const auto& f = c.files[i];
    FUZZ_CHECK(valid_rule_name(f.name), "a files rule's name is valid");
    for (std::size_t j = 0; j < i; ++j)
      FUZZ_CHECK(c.files[j].name != f.name, "files rule names are unique");
    FUZZ_CHECK(root_syntax_problem(f.root).empty(), "a files root is absolute and clean");
    FUZZ_CHECK(!f.match.empty(), "a files rule has a glob");
    for (const auto& g : f.match) FUZZ_CHECK(glob_problem(g).empty(), "its globs are clean");
    FUZZ_CHECK(((f.allow | f.deny) & ~7u) == 0, "a files rule's rights are known");
    FUZZ_CHECK(f.containment.types != 0 && (f.containment.types & ~15u) == 0,
               "a files rule's types are known");
    FUZZ_CHECK(f.containment.mode <= 0777, "a files rule's mode has no special bits");
    FUZZ_CHECK(units_valid(f.who), "a files rule's units are unit names");
  }
  for (std::size_t i = 0; i < c.binds.size(); ++i) {
    const auto& b = c.binds[i];
    FUZZ_CHECK(valid_rule_name(b.name), "a bind rule's name is valid");
    for (std::size_t j = 0; j < i; ++j)
      FUZZ_CHECK(c.binds[j].name != b.name, "bind rule names are unique");
    FUZZ_CHECK(b.port_lo >= 1 && b.port_lo <= b.port_hi, "a bind rule's ports are a range");
    FUZZ_CHECK(b.socket_type == SOCK_STREAM || b.socket_type == SOCK_DGRAM, "tcp or udp");
    if (b.host) {
      auto again = fdbroker::try_parse_listen_url(
          (b.family == AF_INET ? "tcp://" + *b.host : "tcp://[" + *b.host + "]") + ":1");
      FUZZ_CHECK(again.ok() && again.value().host == *b.host && again.value().family == b.family,
                 "a bind rule's host is a normalized numeric address of its family");
    } else {
      FUZZ_CHECK(b.family == AF_UNSPEC || b.family == AF_INET6, "a * host is any family or IPv6");
    }
    FUZZ_CHECK(b.allow || b.deny, "a bind rule allows or denies");
    FUZZ_CHECK(units_valid(b.who), "a bind rule's units are unit names");
  }
  for (std::size_t i = 0; i < c.entries.size(); ++i) {
    const auto& e = c.entries[i];
    FUZZ_CHECK(valid_name(e.name), "an entry name is valid");
    for (std::size_t j = 0; j < i; ++j)
      FUZZ_CHECK(c.entries[j].name != e.name, "entry names are unique");
    FUZZ_CHECK(json::parse(e.meta, nullptr, false).is_object(), "an entry's meta is an object");
    FUZZ_CHECK(!e.opening.empty(), "an entry has an opening");
    if (e.kind == fdbroker::daemon::StaticKind::file ||
        e.kind == fdbroker::daemon::StaticKind::unix_socket) {
      FUZZ_CHECK(!e.path.empty() && e.path.find('\0') == std::string::npos,
                 "an entry's path is a path");
    }
    if (e.kind == fdbroker::daemon::StaticKind::unix_socket)
      FUZZ_CHECK(e.path.size() < 108, "unix path fits");
    FUZZ_CHECK(e.backlog >= 1 && e.backlog <= 65535, "backlog in range");
  }
}

std::size_t error_bytes(const ConfigResult& r) {
  std::size_t n = 0;
  for (const auto& e : r.errors) n += e.size();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char dir[] = "/tmp/fdbroker-fuzz-config.XXXXXX";
  FUZZ_CHECK(::mkdtemp(dir) != nullptr, "a scratch directory");
  config_path = std::string(dir) + "/fdbroker.json";
  static std::string cleanup_dir = dir;
  std::atexit([] {
    ::unlink(config_path.c_str());
    ::rmdir(cleanup_dir.c_str());
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text = fuzz::as_text(data, size);
  write_file(text);
  fuzz::FdCheck fds;
  ConfigResult result = fdbroker::daemon::load_config_file(config_path);
  fds.same("load_config_file");

  FUZZ_CHECK(result.config.has_value() != !result.errors.empty(), "a config or errors, not both");
  // Each problem is one line naming its key; a line echoes at most a value of the
  // text. So the report grows with the text, not faster.
  FUZZ_CHECK(result.errors.size() <= size + 1, "at most one error per byte");
  FUZZ_CHECK(error_bytes(result) <= 64 * size + 4096, "the errors are bounded by the text");
  for (const auto& e : result.errors) {
    FUZZ_CHECK(e.compare(0, config_path.size(), config_path) == 0, "an error names the file");
  }
  if (result.config) {
    check_config(*result.config);
    json doc = json::parse(text.begin(), text.end(), nullptr, false, /*ignore_comments=*/true);
    FUZZ_CHECK(!names_with_nul(doc), "a user/group name with a NUL is refused");
  }

  ConfigResult again = fdbroker::daemon::parse_config(text);
  FUZZ_CHECK(again.config.has_value() == result.config.has_value() &&
                 again.errors.size() == result.errors.size(),
             "the same text, the same outcome");
  return 0;
}
