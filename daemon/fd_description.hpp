// SPDX-License-Identifier: LGPL-2.1-or-later
// What an fd is, as the `fds` array of the protocol describes it: kind (socket,
// file, directory, pipe, memfd, other) and the details that matter for each.
// Computed once when an entry is stored, never per request.
#pragma once

#include <sys/socket.h>

#include <nlohmann/json.hpp>
#include <string>

namespace fdbroker::daemon {

// Describes `fd` (borrowed) with fstat, fcntl(F_GETFL), getsockopt, getsockname
// and readlink(/proc/self/fd/N). Never fails: what cannot be found out is left
// out (a descriptor we hold is always describable as at least "other").
nlohmann::json describe_fd(int fd);

// "127.0.0.1:8080", "[::1]:443", "/run/x.sock", "@abstract", "" (unbound).
std::string format_sockaddr(const sockaddr_storage& addr, socklen_t len);

}  // namespace fdbroker::daemon
