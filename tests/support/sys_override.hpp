// SPDX-License-Identifier: LGPL-2.1-or-later
// Scoped replacement of libfdbroker's syscall seam (lib/src/sys.hpp) for failure
// injection. Needs the internal static target fdbroker_static.
#pragma once

#include "sys.hpp"

namespace fdbroker::test {

// Restores the real syscalls when it goes out of scope, so that one failing test
// cannot leave a fake in place for the next.
class SysOverride {
 public:
  SysOverride() : saved_(detail::sys::calls) {}
  SysOverride(const SysOverride&) = delete;
  SysOverride& operator=(const SysOverride&) = delete;
  ~SysOverride() { detail::sys::calls = saved_; }

  // The real functions, for fakes that forward after counting or failing once.
  [[nodiscard]] const detail::sys::table& real() const noexcept { return saved_; }

 private:
  detail::sys::table saved_;
};

}  // namespace fdbroker::test
