// SPDX-License-Identifier: LGPL-2.1-or-later
// The broker socket (the one clients connect to), when systemd did not pass one.
#pragma once

#include <fdbroker/unique_fd.hpp>

#include <sys/types.h>

#include <optional>
#include <string>

#include "failure.hpp"

namespace fdbroker::daemon {

// Creates a non-blocking, close-on-exec AF_UNIX SOCK_SEQPACKET socket listening
// at `path` with file mode `mode` (never wider, even for an instant) and group
// `group`, through lib's try_bind_listener. Creates missing parent directories
// (0755). A stale socket file (connect() refused: nobody has it bound) is
// replaced; a live socket of any type is left alone. Errors: EADDRINUSE (a
// process listens there), EEXIST (a file that is not a socket is there),
// ENAMETOOLONG, and those of socket/bind/chmod/chown/listen.
[[nodiscard]] Outcome<unique_fd> open_broker_socket(const std::string& path, mode_t mode,
                                                    std::optional<gid_t> group);

}  // namespace fdbroker::daemon
