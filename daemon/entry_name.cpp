// SPDX-License-Identifier: LGPL-2.1-or-later
#include "entry_name.hpp"

namespace fdbroker::daemon {

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

}  // namespace fdbroker::daemon
