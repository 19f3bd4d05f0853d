// SPDX-License-Identifier: LGPL-2.1-or-later
// The seam between libfdbroker and the syscalls it makes: tests swap these
// pointers to inject EINTR, short writes and failures (fmt's FMT_POSIX_CALL idea).
// Internal: not installed.
#pragma once

#include <fdbroker/export.hpp>

#include <sys/socket.h>
#include <sys/types.h>

namespace fdbroker::detail::sys {

struct table {
  ssize_t (*sendmsg)(int, const msghdr*, int);
  ssize_t (*recvmsg)(int, msghdr*, int);
  int (*close)(int);
};

// The live table; defaults to the real libc functions.
FDBROKER_API extern table calls;

}  // namespace fdbroker::detail::sys
