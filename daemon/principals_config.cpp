// SPDX-License-Identifier: LGPL-2.1-or-later
#include "principals_config.hpp"

#include <algorithm>

namespace fdbroker::daemon {

using nlohmann::json;

bool valid_unit_name(std::string_view name) {
  // systemd's limit (UNIT_NAME_MAX - 1) and its character set, plus '@' for
  // template instances.
  if (name.size() > 255) return false;
  std::string_view base;
  for (std::string_view suffix : {std::string_view(".service"), std::string_view(".scope")}) {
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix)
      base = name.substr(0, name.size() - suffix.size());
  }
  if (base.empty()) return false;
  bool chars_ok = std::all_of(base.begin(), base.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
           c == '_' || c == '.' || c == '\\' || c == '-' || c == '@';
  });
  if (!chars_ok) return false;
  // "foo@bar.service": one '@', a prefix and an instance; a process never runs
  // in the template itself ("foo@.service").
  std::size_t at = base.find('@');
  if (at == std::string_view::npos) return true;
  return at > 0 && at + 1 < base.size() && base.find('@', at + 1) == std::string_view::npos;
}

Principals read_principals(JsonShape& shape, const json& obj, const std::string& where) {
  Principals who;
  const json* users = JsonShape::field(obj, "users");
  const json* groups = JsonShape::field(obj, "groups");
  const json* units = JsonShape::field(obj, "units");
  if (users != nullptr) {
    std::string key = JsonShape::join(where, "users");
    if (!users->is_array()) {
      shape.error(key, "must be an array of user names or uids");
    } else {
      for (std::size_t i = 0; i < users->size(); ++i) {
        const json& u = (*users)[i];
        if (u.is_string() && u.get_ref<const std::string&>() == "*") {
          who.any = true;
          continue;
        }
        if (auto uid = shape.user(u, JsonShape::index(key, i))) who.users.push_back(*uid);
      }
    }
  }
  if (groups != nullptr) {
    std::string key = JsonShape::join(where, "groups");
    if (!groups->is_array()) {
      shape.error(key, "must be an array of group names or gids");
    } else {
      for (std::size_t i = 0; i < groups->size(); ++i) {
        if (auto gid = shape.group((*groups)[i], JsonShape::index(key, i)))
          who.groups.push_back(*gid);
      }
    }
  }
  if (units != nullptr) {
    std::string key = JsonShape::join(where, "units");
    if (!units->is_array()) {
      shape.error(key, "must be an array of unit names such as \"nginx.service\"");
    } else if (units->empty()) {
      // An empty list would mean "any unit": not what anyone writing it meant.
      shape.error(key, "must name at least one unit");
    } else {
      for (std::size_t i = 0; i < units->size(); ++i) {
        const json& u = (*units)[i];
        std::string item = JsonShape::index(key, i);
        if (!u.is_string()) {
          shape.error(item, "must be a string");
        } else if (!valid_unit_name(u.get_ref<const std::string&>())) {
          shape.error(item, "not a .service or .scope unit name: \"" +
                                u.get_ref<const std::string&>() + "\"");
        } else {
          who.units.push_back(u.get<std::string>());
        }
      }
    }
    // Units alone: any uid in them.
    if (users == nullptr && groups == nullptr) who.any = true;
  }
  if (users == nullptr && groups == nullptr && units == nullptr) {
    shape.error(where, "needs \"users\", \"groups\" or \"units\"");
  }
  return who;
}

}  // namespace fdbroker::daemon
