// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker's own listening socket, when systemd did not pass one.
#pragma once

#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <sys/types.h>

#include <optional>
#include <string>

namespace fdbroker::daemon {

// Creates a non-blocking, close-on-exec AF_UNIX SOCK_SEQPACKET socket listening
// at `path` with file mode `mode` (never wider, even for an instant) and group
// `group`. Creates missing parent directories (0755). A stale socket file (no
// one accepting) is replaced. Errors, with `ret_why` for the log: EADDRINUSE
// (another broker is listening there), EEXIST (a non-socket file is there),
// ENAMETOOLONG, and those of mkdir/socket/bind/chown/listen.
[[nodiscard]] result<unique_fd> bind_listener(const std::string& path, mode_t mode,
                                              std::optional<gid_t> group, std::string& ret_why);

}  // namespace fdbroker::daemon
