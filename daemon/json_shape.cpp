// SPDX-License-Identifier: LGPL-2.1-or-later
#include "json_shape.hpp"

#include <algorithm>
#include <charconv>

#include "nss.hpp"

namespace fdbroker::daemon {

void JsonShape::error(std::string_view where, std::string_view what) {
  std::string line(where);
  line += ": ";
  line += what;
  errors_.push_back(std::move(line));
}

std::string JsonShape::join(const std::string& parent, std::string_view key) {
  std::string path = parent;
  if (!path.empty()) path += '.';
  path += key;
  return path;
}

std::string JsonShape::index(const std::string& parent, std::size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

const JsonShape::json* JsonShape::field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

void JsonShape::only_keys(const json& obj, const std::string& where,
                          std::initializer_list<const char*> known) {
  for (auto& item : obj.items()) {
    const std::string& k = item.key();  // not a structured binding: clang 14 cannot capture one
    bool found = std::any_of(known.begin(), known.end(), [&](const char* n) { return k == n; });
    if (!found) error(join(where, k), "unknown key");
  }
}

std::optional<std::uint64_t> JsonShape::uint_value(const json& obj, const std::string& parent,
                                                   const char* key, std::uint64_t lo,
                                                   std::uint64_t hi) {
  const json* v = field(obj, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer() ||
      (v->is_number_integer() && !v->is_number_unsigned() && v->get<std::int64_t>() < 0) ||
      v->get<std::uint64_t>() < lo || v->get<std::uint64_t>() > hi) {
    error(join(parent, key),
          "must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi));
    return std::nullopt;
  }
  return v->get<std::uint64_t>();
}

void JsonShape::bool_field(const json& obj, const std::string& parent, const char* key, bool& out) {
  const json* v = field(obj, key);
  if (v == nullptr) return;
  if (!v->is_boolean()) {
    error(join(parent, key), "must be true or false");
    return;
  }
  out = v->get<bool>();
}

bool JsonShape::string_field(const json& obj, const std::string& parent, const char* key,
                             std::string& out, bool required) {
  const json* v = field(obj, key);
  if (v == nullptr) {
    if (required) error(join(parent, key), "is required");
    return false;
  }
  if (!v->is_string()) {
    error(join(parent, key), "must be a string");
    return false;
  }
  out = v->get<std::string>();
  return true;
}

void JsonShape::mode_field(const json& obj, const std::string& parent, const char* key,
                           mode_t& out) {
  const json* v = field(obj, key);
  if (v == nullptr) return;
  const std::string where = join(parent, key);
  if (!v->is_string()) {
    error(where, "must be an octal string such as \"0660\"");
    return;
  }
  const std::string& s = v->get_ref<const std::string&>();
  unsigned value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, 8);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || value > 07777) {
    error(where, "must be an octal string such as \"0660\", got \"" + s + "\"");
    return;
  }
  out = static_cast<mode_t>(value);
}

std::optional<uid_t> JsonShape::user(const json& v, const std::string& where) {
  if (v.is_number_unsigned() && v.get<std::uint64_t>() < 0xFFFFFFFFu)
    return static_cast<uid_t>(v.get<std::uint64_t>());
  if (!v.is_string()) {
    error(where, "must be a user name or a numeric uid");
    return std::nullopt;
  }
  Outcome<uid_t> uid = lookup_user(v.get_ref<const std::string&>());
  if (!uid) {
    error(where, uid.failure().why);
    return std::nullopt;
  }
  return *uid;
}

std::optional<gid_t> JsonShape::group(const json& v, const std::string& where) {
  if (v.is_number_unsigned() && v.get<std::uint64_t>() < 0xFFFFFFFFu)
    return static_cast<gid_t>(v.get<std::uint64_t>());
  if (!v.is_string()) {
    error(where, "must be a group name or a numeric gid");
    return std::nullopt;
  }
  Outcome<gid_t> gid = lookup_group(v.get_ref<const std::string&>());
  if (!gid) {
    error(where, gid.failure().why);
    return std::nullopt;
  }
  return *gid;
}

}  // namespace fdbroker::daemon
