// SPDX-License-Identifier: LGPL-2.1-or-later
#include "request_rule_config.hpp"

#include <algorithm>
#include <functional>
#include <optional>

#include "glob.hpp"
#include "principals_config.hpp"

namespace fdbroker::daemon {

namespace {

using nlohmann::json;
using Shape = JsonShape;

struct Word {
  const char* name;
  unsigned bit;
};

constexpr Word file_rights[] = {
    {"read", right_read}, {"write", right_write}, {"create", right_create}};
constexpr Word file_types[] = {
    {"file", type_file}, {"fifo", type_fifo}, {"socket", type_socket}, {"device", type_device}};
constexpr Word bind_rights[] = {{"bind", 1}};

template <std::size_t N>
std::string word_list(const Word (&words)[N]) {
  std::string out;
  for (const Word& w : words) {
    if (!out.empty()) out += ", ";
    out += w.name;
  }
  return out;
}

// An array of words from `words` → their bits; nullopt if absent. Reports
// anything else; an empty array is an error when `non_empty`.
template <std::size_t N>
std::optional<unsigned> word_set(Shape& shape, const json& obj, const std::string& where,
                                 const char* key, const Word (&words)[N], bool non_empty) {
  const json* v = Shape::field(obj, key);
  if (v == nullptr) return std::nullopt;
  const std::string k = Shape::join(where, key);
  if (!v->is_array()) {
    shape.error(k, "must be an array of " + word_list(words));
    return 0u;
  }
  if (non_empty && v->empty()) shape.error(k, "must not be empty (" + word_list(words) + ")");
  unsigned set = 0;
  for (std::size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    const std::string at = Shape::index(k, i);
    if (!item.is_string()) {
      shape.error(at, "must be a string");
      continue;
    }
    const std::string& s = item.get_ref<const std::string&>();
    auto w = std::find_if(std::begin(words), std::end(words),
                          [&](const Word& word) { return s == word.name; });
    if (w == std::end(words)) {
      shape.error(at, "unknown word \"" + s + "\" (" + word_list(words) + ")");
    } else {
      set |= w->bit;
    }
  }
  return set;
}

// "name": required, valid, unique within its section (`earlier` holds the
// names before it).
std::string rule_name(Shape& shape, const json& obj, const std::string& where,
                      std::vector<std::string>& earlier) {
  std::string name;
  if (!shape.string_field(obj, where, "name", name, true)) return name;
  if (!valid_rule_name(name)) {
    shape.error(Shape::join(where, "name"),
                "invalid rule name \"" + name + "\" (1-64 bytes of A-Za-z0-9._:@-)");
  } else if (std::find(earlier.begin(), earlier.end(), name) != earlier.end()) {
    shape.error(Shape::join(where, "name"), "duplicate rule name \"" + name + "\"");
  }
  earlier.push_back(name);
  return name;
}

std::optional<FileRule> file_rule(Shape& shape, const json& obj, const std::string& where,
                                  std::vector<std::string>& names) {
  if (!obj.is_object()) {
    shape.error(where, "must be an object");
    return std::nullopt;
  }
  const std::size_t before = shape.errors().size();
  shape.only_keys(obj, where,
                  {"name", "root", "match", "users", "groups", "units", "allow", "deny", "types",
                   "mode", "owner", "group", "same_mount"});
  FileRule r;
  r.origin = where;
  r.name = rule_name(shape, obj, where, names);
  if (shape.string_field(obj, where, "root", r.root, true)) {
    if (std::string why = root_syntax_problem(r.root); !why.empty())
      shape.error(Shape::join(where, "root"), why);
  }
  if (const json* match = Shape::field(obj, "match")) {
    const std::string k = Shape::join(where, "match");
    if (!match->is_array() || match->empty()) {
      shape.error(k, "must be a non-empty array of globs (\"*.key\", \"**\")");
    } else {
      for (std::size_t i = 0; i < match->size(); ++i) {
        const json& g = (*match)[i];
        if (!g.is_string()) {
          shape.error(Shape::index(k, i), "must be a string");
        } else if (std::string why = glob_problem(g.get_ref<const std::string&>()); !why.empty()) {
          shape.error(Shape::index(k, i), why);
        } else {
          r.match.push_back(g.get<std::string>());
        }
      }
    }
  } else {
    shape.error(Shape::join(where, "match"), "is required");
  }
  r.who = read_principals(shape, obj, where);
  auto allow = word_set(shape, obj, where, "allow", file_rights, true);
  auto deny = word_set(shape, obj, where, "deny", file_rights, true);
  if (!allow && !deny) shape.error(where, "needs \"allow\" or \"deny\"");
  r.allow = allow.value_or(0);
  r.deny = deny.value_or(0);
  if (auto types = word_set(shape, obj, where, "types", file_types, true))
    r.containment.types = *types;
  if (Shape::field(obj, "mode") != nullptr) {
    const std::size_t mode_before = shape.errors().size();
    mode_t mode = r.containment.mode;
    shape.mode_field(obj, where, "mode", mode);
    if (shape.errors().size() == mode_before && mode > 0777) {
      shape.error(Shape::join(where, "mode"),
                  "must be at most \"0777\" (no setuid, setgid or sticky bit)");
    }
    r.containment.mode = mode;
  }
  if (const json* v = Shape::field(obj, "owner"))
    r.containment.owner = shape.user(*v, Shape::join(where, "owner"));
  if (const json* v = Shape::field(obj, "group"))
    r.containment.group = shape.group(*v, Shape::join(where, "group"));
  shape.bool_field(obj, where, "same_mount", r.containment.same_mount);
  if (shape.errors().size() != before) return std::nullopt;
  return r;
}

std::optional<BindRule> bind_rule(Shape& shape, const json& obj, const std::string& where,
                                  std::vector<std::string>& names) {
  if (!obj.is_object()) {
    shape.error(where, "must be an object");
    return std::nullopt;
  }
  const std::size_t before = shape.errors().size();
  shape.only_keys(obj, where,
                  {"name", "address", "users", "groups", "units", "allow", "deny", "reuseport"});
  BindRule r;
  r.origin = where;
  r.name = rule_name(shape, obj, where, names);
  std::string address;
  if (shape.string_field(obj, where, "address", address, true)) {
    if (std::string why = read_bind_address(address, r); !why.empty())
      shape.error(Shape::join(where, "address"), why);
  }
  r.who = read_principals(shape, obj, where);
  auto allow = word_set(shape, obj, where, "allow", bind_rights, true);
  auto deny = word_set(shape, obj, where, "deny", bind_rights, true);
  if (!allow && !deny) shape.error(where, "needs \"allow\" or \"deny\"");
  r.allow = allow.value_or(0) != 0;
  r.deny = deny.value_or(0) != 0;
  shape.bool_field(obj, where, "reuseport", r.reuseport);
  if (shape.errors().size() != before) return std::nullopt;
  return r;
}

template <class Rule>
std::vector<Rule> read_section(
    Shape& shape, const json& section, const char* key,
    const std::function<std::optional<Rule>(Shape&, const json&, const std::string&,
                                            std::vector<std::string>&)>& read) {
  std::vector<Rule> rules;
  if (!section.is_array()) {
    shape.error(key, "must be an array");
    return rules;
  }
  std::vector<std::string> names;
  for (std::size_t i = 0; i < section.size(); ++i) {
    if (auto r = read(shape, section[i], Shape::index(key, i), names))
      rules.push_back(std::move(*r));
  }
  return rules;
}

}  // namespace

bool valid_rule_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '@' || c == '-';
  });
}

std::vector<FileRule> read_file_rules(JsonShape& shape, const json& section) {
  return read_section<FileRule>(shape, section, "files", file_rule);
}

std::vector<BindRule> read_bind_rules(JsonShape& shape, const json& section) {
  return read_section<BindRule>(shape, section, "bind", bind_rule);
}

}  // namespace fdbroker::daemon
