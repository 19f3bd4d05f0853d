// SPDX-License-Identifier: LGPL-2.1-or-later
#include "nss.hpp"

#include <grp.h>
#include <pwd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <string>
#include <vector>

namespace fdbroker::daemon {

namespace {

// A group with many members needs a large buffer; past this, give up.
constexpr std::size_t max_buffer = std::size_t{1} << 20;

std::optional<unsigned> decimal_id(std::string_view text) {
  unsigned id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return id;
}

// Calls lookup(name, entry, buffer, size, result) (getpwnam_r or getgrnam_r),
// growing the buffer while it answers ERANGE. Returns 0 with *ret_found set (or
// nullptr: no such name), or the errno of the lookup.
template <class Entry, class Lookup>
int lookup_name(Lookup lookup, const std::string& name, std::size_t size, Entry& ret_entry,
                Entry** ret_found) {
  for (;;) {
    std::vector<char> buf(size);
    int r = lookup(name.c_str(), &ret_entry, buf.data(), buf.size(), ret_found);
    if (r != ERANGE || size >= max_buffer) return r;
    size *= 2;
  }
}

}  // namespace

Outcome<uid_t> lookup_user(std::string_view name) {
  if (auto id = decimal_id(name)) return static_cast<uid_t>(*id);
  if (name.find('\0') != std::string_view::npos) {  // getpwnam would read only what precedes it
    return Failure{EINVAL, "a user name with a NUL byte"};
  }
  std::string copy(name);
  passwd pw{};
  passwd* found = nullptr;
  int r = lookup_name(::getpwnam_r, copy, 16384, pw, &found);
  if (r != 0 || found == nullptr)
    return Failure{r != 0 ? r : ENOENT, "unknown user \"" + copy + "\""};
  return pw.pw_uid;
}

Outcome<gid_t> lookup_group(std::string_view name) {
  if (auto id = decimal_id(name)) return static_cast<gid_t>(*id);
  if (name.find('\0') != std::string_view::npos) {  // getgrnam would read only what precedes it
    return Failure{EINVAL, "a group name with a NUL byte"};
  }
  std::string copy(name);
  struct group gr {};
  struct group* found = nullptr;
  int r = lookup_name(::getgrnam_r, copy, 65536, gr, &found);
  if (r != 0 || found == nullptr) {
    return Failure{r != 0 ? r : ENOENT, "unknown group \"" + copy + "\""};
  }
  return gr.gr_gid;
}

}  // namespace fdbroker::daemon
