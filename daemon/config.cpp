// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "entry_name.hpp"
#include "json_shape.hpp"
#include "principals_config.hpp"
#include "request_rule_config.hpp"
#include "static_entry_config.hpp"

namespace fdbroker::daemon {

using nlohmann::json;

namespace {

// Walks the JSON document, collecting one message per problem, each naming the
// key path ("entries[1].address"). Static entries' own keys: static_entry_config.cpp.
class Checker : public JsonShape {
 public:
  unsigned perms(const json& obj, const std::string& parent, const char* k) {
    const json* v = field(obj, k);
    if (v == nullptr) return 0;
    const std::string key = join(parent, k);
    if (!v->is_array()) {
      error(key, "must be an array of operations (" + perm_names() + ")");
      return 0;
    }
    unsigned set = 0;
    for (std::size_t i = 0; i < v->size(); ++i) {
      const json& op = (*v)[i];
      std::string item = index(key, i);
      if (!op.is_string()) {
        error(item, "must be a string");
        continue;
      }
      const std::string& s = op.get_ref<const std::string&>();
      if (auto perm = perm_named(s)) {
        set |= *perm;
      } else {
        error(item, "unknown operation \"" + s + "\" (" + perm_names() + ")");
      }
    }
    return set;
  }

  // One access rule: {"prefix"|"name", "users", "groups", "units", "allow", "deny"}.
  // `fixed_name` is set for an entry's own access list (no prefix/name there).
  std::optional<Rule> rule(const json& obj, const std::string& key, const std::string* fixed_name) {
    if (!obj.is_object()) {
      error(key, "must be an object");
      return std::nullopt;
    }
    Rule r;
    r.origin = key;
    if (fixed_name != nullptr) {
      only_keys(obj, key, {"users", "groups", "units", "allow", "deny"});
      r.match = *fixed_name;
      r.prefix = false;
    } else {
      only_keys(obj, key, {"prefix", "name", "users", "groups", "units", "allow", "deny"});
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
    r.who = read_principals(*this, obj, key);
    r.allow = perms(obj, key, "allow");
    r.deny = perms(obj, key, "deny");
    if (r.allow == 0 && r.deny == 0 && field(obj, "allow") == nullptr &&
        field(obj, "deny") == nullptr) {
      error(key, "needs \"allow\" or \"deny\"");
    }
    return r;
  }

  void entry(const json& obj, const std::string& key, Config& config) {
    if (!obj.is_object()) {
      error(key, "must be an object");
      return;
    }
    StaticEntry e = read_static_entry(*this, obj, key, config.entries);
    if (const json* access = field(obj, "access")) {
      std::string akey = join(key, "access");
      if (!access->is_array()) {
        error(akey, "must be an array of rules");
      } else {
        for (std::size_t i = 0; i < access->size(); ++i) {
          if (auto r = rule((*access)[i], index(akey, i), &e.name)) {
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
    only_keys(doc, "",
              {"socket", "log_level", "limits", "owner_rights", "rules", "entries",
               "accept_fuse_fds", "files", "bind"});
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
          std::size_t before = errors().size();
          uint_field(*limits, "limits", "max_connections_per_uid", per_uid, 0, 1000000);
          if (errors().size() == before) l.max_connections_per_uid = per_uid;
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
          if (auto r = rule((*rules)[i], index("rules", i), nullptr)) {
            config.rules.push_back(std::move(*r));
          }
        }
      }
    }
    if (const json* files = field(doc, "files")) config.files = read_file_rules(*this, *files);
    if (const json* bind = field(doc, "bind")) config.binds = read_bind_rules(*this, *bind);
    if (const json* entries = field(doc, "entries")) {
      if (!entries->is_array()) {
        error("entries", "must be an array");
      } else {
        for (std::size_t i = 0; i < entries->size(); ++i) {
          entry((*entries)[i], index("entries", i), config);
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
    } catch (const json::exception& e) {  // parse_error, or out_of_range: a number overflow
      why = e.what();
    }
    result.errors.push_back("(top level): " + why);
    return result;
  }
  Config config;
  Checker checker;
  checker.top(doc, config);
  if (!checker.errors().empty()) {
    result.errors = checker.take_errors();
    return result;
  }
  // What a rule sets that can never apply.
  for (const FileRule& rule : config.files) {
    if ((rule.allow & right_create) == 0 && (rule.containment.owner || rule.containment.group)) {
      result.warnings.push_back(rule.origin +
                                ": \"owner\" and \"group\" apply to created files, and this rule "
                                "does not allow create");
    }
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
  for (auto& w : result.warnings) w = path + ": " + w;
  return result;
}

}  // namespace fdbroker::daemon
