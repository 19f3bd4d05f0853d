// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/error.hpp>

#include <string.h>

#include <cerrno>

namespace fdbroker {

namespace {
// glibc knows the names (strerrorname_np, 2.32+); errno values on Linux stay
// below 134, so the reverse map is a linear scan of a small range.
constexpr int max_errno = 200;
}  // namespace

void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

const char* errno_name(int err) noexcept {
  if (err <= 0 || err >= max_errno) return nullptr;
  return ::strerrorname_np(err);
}

int errno_from_name(std::string_view name) noexcept {
  // strerrorname_np() gives one name per value; accept the other Linux spellings
  // of shared values too, as peers written for other systems may use them.
  if (name == "EWOULDBLOCK") return EWOULDBLOCK;
  if (name == "EDEADLOCK") return EDEADLOCK;
  if (name == "ENOTSUP") return ENOTSUP;
  for (int err = 1; err < max_errno; ++err) {
    const char* candidate = ::strerrorname_np(err);
    if (candidate != nullptr && name == candidate) return err;
  }
  return 0;
}

}  // namespace fdbroker
