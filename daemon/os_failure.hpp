// SPDX-License-Identifier: LGPL-2.1-or-later
// One way to report a failed system call while opening sockets and files: the
// errno as an error_code for the caller, and a line for the log that names it.
#pragma once

#include <fdbroker/error.hpp>

#include <cstring>
#include <string>
#include <system_error>

namespace fdbroker::daemon {

// Sets `ret_why` to "WHAT: ENAME (description)" and returns `err` as an error_code.
inline std::error_code os_failure(std::string& ret_why, const std::string& what, int err) {
  const char* name = errno_name(err);
  ret_why = what + ": " + (name != nullptr ? name : std::to_string(err)) + " (" +
            std::strerror(err) + ")";
  return errno_code(err);
}

}  // namespace fdbroker::daemon
