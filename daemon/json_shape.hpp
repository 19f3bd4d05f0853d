// SPDX-License-Identifier: LGPL-2.1-or-later
// Checking the shape of a JSON document (which keys an object has, of which
// types and ranges) while reading it: every problem becomes one "where: what"
// message naming the key path ("limits.max_connections: must be an integer
// between 1 and 1000000"), and reading goes on, so one pass reports them all.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fdbroker::daemon {

class JsonShape {
 public:
  using json = nlohmann::json;

  // The problems found so far, in the order found.
  [[nodiscard]] const std::vector<std::string>& errors() const noexcept { return errors_; }
  std::vector<std::string> take_errors() noexcept { return std::move(errors_); }

  // Records "WHERE: WHAT".
  void error(std::string_view where, std::string_view what);

  // "parent.key" (or "key" at the top level) and "parent[i]": key paths.
  static std::string join(const std::string& parent, std::string_view key);
  static std::string index(const std::string& parent, std::size_t i);

  // The member `key` of `obj`, or nullptr.
  static const json* field(const json& obj, const char* key);

  // Reports each key of `obj` not in `known` (a typo must not pass silently).
  void only_keys(const json& obj, const std::string& where,
                 std::initializer_list<const char*> known);

  // Each reads the member `key` of `obj` into `out` if it is there and of the
  // right type and range; otherwise reports it and leaves `out` alone. An absent
  // member is no error (string_field: unless `required`).
  template <class T>
  void uint_field(const json& obj, const std::string& parent, const char* key, T& out,
                  std::uint64_t lo, std::uint64_t hi) {
    if (auto v = uint_value(obj, parent, key, lo, hi)) out = static_cast<T>(*v);
  }
  void bool_field(const json& obj, const std::string& parent, const char* key, bool& out);
  // Returns true if the member is there and a string.
  bool string_field(const json& obj, const std::string& parent, const char* key, std::string& out,
                    bool required);
  // An octal permission string such as "0660".
  void mode_field(const json& obj, const std::string& parent, const char* key, mode_t& out);

  // A user or group, as a name or a numeric id (a JSON number or a decimal
  // string), resolved through NSS (nss.hpp). `where` names `v`.
  std::optional<uid_t> user(const json& v, const std::string& where);
  std::optional<gid_t> group(const json& v, const std::string& where);

 private:
  std::optional<std::uint64_t> uint_value(const json& obj, const std::string& parent,
                                          const char* key, std::uint64_t lo, std::uint64_t hi);

  std::vector<std::string> errors_;
};

}  // namespace fdbroker::daemon
