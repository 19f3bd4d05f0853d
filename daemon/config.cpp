// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fdbroker/listen_url.hpp>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace fdbroker::daemon {

using nlohmann::json;

bool valid_prefix(std::string_view prefix) noexcept {
  if (prefix.size() > 255) return false;
  for (char c : prefix) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool valid_name(std::string_view name) noexcept {
  if (name.empty() || !valid_prefix(name)) return false;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = name.find('/', start);
    std::string_view segment =
        name.substr(start, end == std::string_view::npos ? name.npos : end - start);
    if (segment == "." || segment == "..") return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

const char* perm_name(unsigned perm) noexcept {
  switch (perm) {
    case perm_get:
      return "get";
    case perm_take:
      return "take";
    case perm_put:
      return "put";
    case perm_delete:
      return "delete";
    case perm_stats:
      return "stats";
    default:
      return "?";
  }
}

namespace {

// Walks the JSON document, collecting one message per problem, each naming the
// key path ("entries[1].address").
class Checker {
 public:
  std::vector<std::string> errors;

  void error(const std::string& key, const std::string& why) { errors.push_back(key + ": " + why); }

  // Reports keys of `obj` not in `known` (typos should not pass silently).
  void only_keys(const json& obj, const std::string& key,
                 std::initializer_list<const char*> known) {
    for (auto& item : obj.items()) {
      const std::string& k = item.key();  // not a structured binding: clang 14 cannot capture one
      bool found = std::any_of(known.begin(), known.end(), [&](const char* n) { return k == n; });
      if (!found) error(join(key, k), "unknown key");
    }
  }

  static std::string join(const std::string& parent, const std::string& k) {
    return parent.empty() ? k : parent + "." + k;
  }

  const json* field(const json& obj, const char* k) {
    auto it = obj.find(k);
    return it == obj.end() ? nullptr : &*it;
  }

  template <class T>
  void uint_field(const json& obj, const std::string& parent, const char* k, T& out,
                  std::uint64_t lo, std::uint64_t hi) {
    const json* v = field(obj, k);
    if (v == nullptr) return;
    if (!v->is_number_integer() ||
        (v->is_number_integer() && !v->is_number_unsigned() && v->get<std::int64_t>() < 0) ||
        v->get<std::uint64_t>() < lo || v->get<std::uint64_t>() > hi) {
      error(join(parent, k),
            "must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi));
      return;
    }
    out = static_cast<T>(v->get<std::uint64_t>());
  }

  void bool_field(const json& obj, const std::string& parent, const char* k, bool& out) {
    const json* v = field(obj, k);
    if (v == nullptr) return;
    if (!v->is_boolean()) {
      error(join(parent, k), "must be true or false");
      return;
    }
    out = v->get<bool>();
  }

  // Returns true if present and a string.
  bool string_field(const json& obj, const std::string& parent, const char* k, std::string& out,
                    bool required) {
    const json* v = field(obj, k);
    if (v == nullptr) {
      if (required) error(join(parent, k), "is required");
      return false;
    }
    if (!v->is_string()) {
      error(join(parent, k), "must be a string");
      return false;
    }
    out = v->get<std::string>();
    return true;
  }

  void mode_field(const json& obj, const std::string& parent, const char* k, mode_t& out) {
    const json* v = field(obj, k);
    if (v == nullptr) return;
    const std::string key = join(parent, k);
    if (!v->is_string()) {
      error(key, "must be an octal string such as \"0660\"");
      return;
    }
    const std::string& s = v->get_ref<const std::string&>();
    unsigned value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, 8);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || value > 07777) {
      error(key, "must be an octal string such as \"0660\", got \"" + s + "\"");
      return;
    }
    out = static_cast<mode_t>(value);
  }

  std::optional<uid_t> user(const json& v, const std::string& key) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() < 0xFFFFFFFFu)
      return static_cast<uid_t>(v.get<std::uint64_t>());
    if (!v.is_string()) {
      error(key, "must be a user name or a numeric uid");
      return std::nullopt;
    }
    const std::string& name = v.get_ref<const std::string&>();
    unsigned id = 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), id);
    if (!name.empty() && ec == std::errc{} && end == name.data() + name.size())
      return static_cast<uid_t>(id);
    if (name.find('\0') != std::string::npos) {  // getpw/grnam would read only what precedes it
      error(key, "a user name with a NUL byte");
      return std::nullopt;
    }
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    int r = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (r != 0 || found == nullptr) {
      error(key, "unknown user \"" + name + "\"");
      return std::nullopt;
    }
    return pw.pw_uid;
  }

  std::optional<gid_t> group(const json& v, const std::string& key) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() < 0xFFFFFFFFu)
      return static_cast<gid_t>(v.get<std::uint64_t>());
    if (!v.is_string()) {
      error(key, "must be a group name or a numeric gid");
      return std::nullopt;
    }
    const std::string& name = v.get_ref<const std::string&>();
    unsigned id = 0;
    auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), id);
    if (!name.empty() && ec == std::errc{} && end == name.data() + name.size())
      return static_cast<gid_t>(id);
    if (name.find('\0') != std::string::npos) {  // getpw/grnam would read only what precedes it
      error(key, "a group name with a NUL byte");
      return std::nullopt;
    }
    group_t gr{};
    group_t* found = nullptr;
    std::vector<char> buf(65536);
    int r = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (r != 0 || found == nullptr) {
      error(key, "unknown group \"" + name + "\"");
      return std::nullopt;
    }
    return gr.gr_gid;
  }

  using group_t = struct ::group;

  unsigned perms(const json& obj, const std::string& parent, const char* k) {
    const json* v = field(obj, k);
    if (v == nullptr) return 0;
    const std::string key = join(parent, k);
    if (!v->is_array()) {
      error(key, "must be an array of operations (get, take, put, delete, stats, *)");
      return 0;
    }
    unsigned set = 0;
    for (std::size_t i = 0; i < v->size(); ++i) {
      const json& op = (*v)[i];
      std::string item = key + "[" + std::to_string(i) + "]";
      if (!op.is_string()) {
        error(item, "must be a string");
        continue;
      }
      const std::string& s = op.get_ref<const std::string&>();
      if (s == "get")
        set |= perm_get;
      else if (s == "take")
        set |= perm_take;
      else if (s == "put")
        set |= perm_put;
      else if (s == "delete")
        set |= perm_delete;
      else if (s == "stats")
        set |= perm_stats;
      else if (s == "*")
        set |= perm_all;
      else
        error(item, "unknown operation \"" + s + "\" (get, take, put, delete, stats, *)");
    }
    return set;
  }

  Principals principals(const json& obj, const std::string& parent) {
    Principals who;
    if (const json* users = field(obj, "users")) {
      std::string key = join(parent, "users");
      if (!users->is_array()) {
        error(key, "must be an array of user names or uids");
      } else {
        for (std::size_t i = 0; i < users->size(); ++i) {
          const json& u = (*users)[i];
          if (u.is_string() && u.get_ref<const std::string&>() == "*") {
            who.any = true;
            continue;
          }
          if (auto uid = user(u, key + "[" + std::to_string(i) + "]")) who.users.push_back(*uid);
        }
      }
    }
    if (const json* groups = field(obj, "groups")) {
      std::string key = join(parent, "groups");
      if (!groups->is_array()) {
        error(key, "must be an array of group names or gids");
      } else {
        for (std::size_t i = 0; i < groups->size(); ++i) {
          if (auto gid = group((*groups)[i], key + "[" + std::to_string(i) + "]"))
            who.groups.push_back(*gid);
        }
      }
    }
    if (!who.any && who.users.empty() && who.groups.empty() && field(obj, "users") == nullptr &&
        field(obj, "groups") == nullptr) {
      error(parent, "needs \"users\" or \"groups\"");
    }
    return who;
  }

  // One access rule: {"prefix"|"name", "users", "groups", "allow", "deny"}.
  // `fixed_name` is set for an entry's own access list (no prefix/name there).
  std::optional<Rule> rule(const json& obj, const std::string& key, const std::string* fixed_name) {
    if (!obj.is_object()) {
      error(key, "must be an object");
      return std::nullopt;
    }
    Rule r;
    r.origin = key;
    if (fixed_name != nullptr) {
      only_keys(obj, key, {"users", "groups", "allow", "deny"});
      r.match = *fixed_name;
      r.prefix = false;
    } else {
      only_keys(obj, key, {"prefix", "name", "users", "groups", "allow", "deny"});
      bool has_prefix = string_field(obj, key, "prefix", r.match, false);
      std::string name;
      bool has_name = string_field(obj, key, "name", name, false);
      if (has_prefix && has_name) {
        error(key, "has both \"prefix\" and \"name\"; use one");
      } else if (has_name) {
        if (!valid_name(name)) error(join(key, "name"), "invalid entry name \"" + name + "\"");
        r.match = name;
        r.prefix = false;
      } else if (has_prefix) {
        if (!valid_prefix(r.match))
          error(join(key, "prefix"), "invalid prefix \"" + r.match + "\"");
      } else if (field(obj, "prefix") == nullptr && field(obj, "name") == nullptr) {
        error(key, "needs \"prefix\" or \"name\" (use \"prefix\": \"\" for every entry)");
      }
    }
    r.who = principals(obj, key);
    r.allow = perms(obj, key, "allow");
    r.deny = perms(obj, key, "deny");
    if (r.allow == 0 && r.deny == 0 && field(obj, "allow") == nullptr &&
        field(obj, "deny") == nullptr) {
      error(key, "needs \"allow\" or \"deny\"");
    }
    return r;
  }

  void file_entry(const json& obj, const std::string& key, StaticEntry& e) {
    only_keys(obj, key, {"name", "type", "meta", "access", "path", "flags", "mode"});
    string_field(obj, key, "path", e.path, true);
    if (field(obj, "path") != nullptr && e.path.empty())
      error(join(key, "path"), "must not be empty");
    int access = -1;
    int flags = 0;
    if (const json* v = field(obj, "flags")) {
      std::string fkey = join(key, "flags");
      if (!v->is_array()) {
        error(fkey,
              "must be an array of open flags (rdonly, wronly, rdwr, append, create, trunc, excl, "
              "nonblock, noatime, sync, directory)");
      } else {
        for (std::size_t i = 0; i < v->size(); ++i) {
          std::string item = fkey + "[" + std::to_string(i) + "]";
          const json& f = (*v)[i];
          if (!f.is_string()) {
            error(item, "must be a string");
            continue;
          }
          const std::string& s = f.get_ref<const std::string&>();
          auto set_access = [&](int a) {
            if (access != -1 && access != a) error(fkey, "more than one of rdonly, wronly, rdwr");
            access = a;
          };
          if (s == "rdonly")
            set_access(O_RDONLY);
          else if (s == "wronly")
            set_access(O_WRONLY);
          else if (s == "rdwr")
            set_access(O_RDWR);
          else if (s == "append")
            flags |= O_APPEND;
          else if (s == "create")
            flags |= O_CREAT;
          else if (s == "trunc")
            flags |= O_TRUNC;
          else if (s == "excl")
            flags |= O_EXCL;
          else if (s == "nonblock")
            flags |= O_NONBLOCK;
          else if (s == "noatime")
            flags |= O_NOATIME;
          else if (s == "sync")
            flags |= O_SYNC;
          else if (s == "directory")
            flags |= O_DIRECTORY;
          else
            error(item, "unknown open flag \"" + s + "\"");
        }
      }
    }
    e.open_flags = flags | (access == -1 ? O_RDONLY : access);
    e.mode = 0644;
    mode_field(obj, key, "mode", e.mode);
    e.opening =
        "file " + std::to_string(e.open_flags) + " " + std::to_string(e.mode) + " " + e.path;
  }

  void inet_entry(const json& obj, const std::string& key, StaticEntry& e) {
    bool tcp = e.kind == StaticKind::tcp;
    if (tcp) {
      only_keys(obj, key,
                {"name", "type", "meta", "access", "address", "backlog", "reuseport", "v6only"});
    } else {
      only_keys(obj, key, {"name", "type", "meta", "access", "address", "reuseport", "v6only"});
    }
    if (string_field(obj, key, "address", e.address, true)) {
      std::string why = check_inet_address(e.address);
      if (!why.empty()) error(join(key, "address"), why);
    }
    if (tcp) uint_field(obj, key, "backlog", e.backlog, 1, 65535);
    bool_field(obj, key, "reuseport", e.reuseport);
    bool_field(obj, key, "v6only", e.v6only);
    e.opening = std::string(tcp ? "tcp " : "udp ") + e.address + " " + std::to_string(e.backlog) +
                " " + (e.reuseport ? "1" : "0") + (e.v6only ? "1" : "0");
  }

  // "IPv4:PORT" or "[IPv6]:PORT", parsed by lib's listen-URL parser as the
  // address of a tcp:// URL, numeric only: the URL's spellings of the wildcard
  // and of localhost ("*", "", "localhost") are not config syntax.
  static std::string check_inet_address(const std::string& address) {
    std::size_t colon = address.rfind(':');
    if (colon == std::string::npos || colon + 1 == address.size()) {
      return "must be \"IPv4:PORT\" or \"[IPv6]:PORT\", got \"" + address + "\"";
    }
    if (!try_parse_listen_url("tcp://0.0.0.0" + address.substr(colon))) {
      return "bad port in \"" + address + "\"";
    }
    std::string_view host(address.data(), colon);
    bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    if (host.empty() || host == "*" || host == "localhost" ||
        !try_parse_listen_url("tcp://" + address)) {
      if (bracketed) return "bad IPv6 address in \"" + address + "\"";
      return "bad IPv4 address in \"" + address + "\" (numeric only; IPv6 goes in brackets)";
    }
    return {};
  }

  void unix_entry(const json& obj, const std::string& key, StaticEntry& e) {
    only_keys(obj, key,
              {"name", "type", "meta", "access", "path", "socket_type", "backlog", "mode", "owner",
               "group"});
    string_field(obj, key, "path", e.path, true);
    if (field(obj, "path") != nullptr) {
      if (e.path.empty()) error(join(key, "path"), "must not be empty");
      if (e.path.size() >= 108)
        error(join(key, "path"), "too long for a UNIX socket (at most 107 bytes)");
    }
    std::string type = "stream";
    string_field(obj, key, "socket_type", type, false);
    if (type == "stream")
      e.socket_type = SOCK_STREAM;
    else if (type == "seqpacket")
      e.socket_type = SOCK_SEQPACKET;
    else
      error(join(key, "socket_type"), "must be \"stream\" or \"seqpacket\"");
    uint_field(obj, key, "backlog", e.backlog, 1, 65535);
    e.mode = 0666;
    mode_field(obj, key, "mode", e.mode);
    if (const json* v = field(obj, "owner")) e.owner = user(*v, join(key, "owner"));
    if (const json* v = field(obj, "group")) e.group = group(*v, join(key, "group"));
    e.opening = "unix " + type + " " + std::to_string(e.backlog) + " " + std::to_string(e.mode) +
                " " + (e.owner ? std::to_string(*e.owner) : "-") + " " +
                (e.group ? std::to_string(*e.group) : "-") + " " + e.path;
  }

  void entry(const json& obj, const std::string& key, Config& config) {
    if (!obj.is_object()) {
      error(key, "must be an object");
      return;
    }
    StaticEntry e;
    if (string_field(obj, key, "name", e.name, true) && !valid_name(e.name)) {
      error(join(key, "name"), "invalid entry name \"" + e.name +
                                   "\" (1-255 bytes of A-Za-z0-9._:@/-, no . or .. segment)");
    }
    for (const auto& other : config.entries) {
      if (!e.name.empty() && other.name == e.name) {
        error(join(key, "name"), "duplicate entry name \"" + e.name + "\"");
        break;  // one error per entry: n copies of a name must not make n² lines
      }
    }
    std::string type;
    if (string_field(obj, key, "type", type, true)) {
      if (type == "file") {
        e.kind = StaticKind::file;
        file_entry(obj, key, e);
      } else if (type == "tcp" || type == "udp") {
        e.kind = type == "tcp" ? StaticKind::tcp : StaticKind::udp;
        inet_entry(obj, key, e);
      } else if (type == "unix") {
        e.kind = StaticKind::unix_socket;
        unix_entry(obj, key, e);
      } else {
        error(join(key, "type"),
              "must be \"file\", \"tcp\", \"udp\" or \"unix\", got \"" + type + "\"");
      }
    }
    if (const json* meta = field(obj, "meta")) {
      if (!meta->is_object()) {
        error(join(key, "meta"), "must be an object");
      } else {
        e.meta = meta->dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }
    if (const json* access = field(obj, "access")) {
      std::string akey = join(key, "access");
      if (!access->is_array()) {
        error(akey, "must be an array of rules");
      } else {
        for (std::size_t i = 0; i < access->size(); ++i) {
          if (auto r = rule((*access)[i], akey + "[" + std::to_string(i) + "]", &e.name)) {
            config.rules.push_back(std::move(*r));
          }
        }
      }
    }
    config.entries.push_back(std::move(e));
  }

  void top(const json& doc, Config& config) {
    if (!doc.is_object()) {
      error("(top level)", "must be a JSON object");
      return;
    }
    only_keys(
        doc, "",
        {"socket", "log_level", "limits", "owner_rights", "rules", "entries", "accept_fuse_fds"});
    bool_field(doc, "", "accept_fuse_fds", config.accept_fuse_fds);
    if (const json* socket = field(doc, "socket")) {
      if (!socket->is_object()) {
        error("socket", "must be an object");
      } else {
        only_keys(*socket, "socket", {"path", "mode", "group"});
        if (string_field(*socket, "socket", "path", config.socket_path, false)) {
          if (config.socket_path.empty()) error("socket.path", "must not be empty");
          if (config.socket_path.size() >= 108)
            error("socket.path", "too long for a UNIX socket (at most 107 bytes)");
        }
        mode_field(*socket, "socket", "mode", config.socket_mode);
        if (const json* g = field(*socket, "group"); g != nullptr && !g->is_null()) {
          config.socket_group = group(*g, "socket.group");
        }
      }
    }
    if (string_field(doc, "", "log_level", config.log_level, false)) {
      static constexpr const char* levels[] = {"trace", "debug",    "info", "warning",
                                               "error", "critical", "off"};
      if (std::none_of(std::begin(levels), std::end(levels),
                       [&](const char* l) { return config.log_level == l; })) {
        error("log_level", "must be one of trace, debug, info, warning, error, critical, off");
      }
    }
    if (const json* limits = field(doc, "limits")) {
      if (!limits->is_object()) {
        error("limits", "must be an object");
      } else {
        Limits& l = config.limits;
        only_keys(*limits, "limits",
                  {"max_connections", "max_connections_per_uid", "max_fds", "max_entries_per_uid",
                   "max_fds_per_uid", "max_wait_ms", "client_timeout_ms", "max_queued_replies",
                   "shutdown_timeout_ms"});
        uint_field(*limits, "limits", "max_connections", l.max_connections, 1, 1000000);
        // null (or absent): derived from max_connections; 0: no limit.
        if (const json* v = field(*limits, "max_connections_per_uid");
            v != nullptr && !v->is_null()) {
          std::uint32_t per_uid = 0;
          std::size_t before = errors.size();
          uint_field(*limits, "limits", "max_connections_per_uid", per_uid, 0, 1000000);
          if (errors.size() == before) l.max_connections_per_uid = per_uid;
        }
        uint_field(*limits, "limits", "max_fds", l.max_fds, 0, 100000000);
        uint_field(*limits, "limits", "max_entries_per_uid", l.max_entries_per_uid, 0, 100000000);
        uint_field(*limits, "limits", "max_fds_per_uid", l.max_fds_per_uid, 0, 100000000);
        uint_field(*limits, "limits", "max_wait_ms", l.max_wait_ms, 0, 86400000);
        uint_field(*limits, "limits", "client_timeout_ms", l.client_timeout_ms, 1, 86400000);
        uint_field(*limits, "limits", "max_queued_replies", l.max_queued_replies, 1, 1000000);
        uint_field(*limits, "limits", "shutdown_timeout_ms", l.shutdown_timeout_ms, 0, 600000);
      }
    }
    if (field(doc, "owner_rights") != nullptr) {
      config.owner_rights = perms(doc, "", "owner_rights");
      if (config.owner_rights & (perm_put | perm_stats)) {
        error("owner_rights", "may only contain get, take and delete");
      }
    }
    if (const json* rules = field(doc, "rules")) {
      if (!rules->is_array()) {
        error("rules", "must be an array");
      } else {
        for (std::size_t i = 0; i < rules->size(); ++i) {
          if (auto r = rule((*rules)[i], "rules[" + std::to_string(i) + "]", nullptr)) {
            config.rules.push_back(std::move(*r));
          }
        }
      }
    }
    if (const json* entries = field(doc, "entries")) {
      if (!entries->is_array()) {
        error("entries", "must be an array");
      } else {
        for (std::size_t i = 0; i < entries->size(); ++i) {
          entry((*entries)[i], "entries[" + std::to_string(i) + "]", config);
        }
      }
    }
  }
};

}  // namespace

ConfigResult parse_config(std::string_view text) {
  ConfigResult result;
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false,
                         /*ignore_comments=*/true);
  if (doc.is_discarded()) {
    // The non-throwing parse says nothing about where; parse again with
    // exceptions for the position (only on this error path).
    std::string why = "not valid JSON";
    try {
      json ignored = json::parse(text.begin(), text.end(), nullptr, true, true);
      (void)ignored;
    } catch (const json::parse_error& e) {
      why = e.what();
    }
    result.errors.push_back("(top level): " + why);
    return result;
  }
  Config config;
  Checker checker;
  checker.top(doc, config);
  if (!checker.errors.empty()) {
    result.errors = std::move(checker.errors);
    return result;
  }
  result.config = std::move(config);
  return result;
}

ConfigResult load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ConfigResult result;
    result.errors.push_back(path + ": cannot open: " + std::strerror(errno));
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  ConfigResult result = parse_config(text.str());
  for (auto& e : result.errors) e = path + ": " + e;
  return result;
}

}  // namespace fdbroker::daemon
