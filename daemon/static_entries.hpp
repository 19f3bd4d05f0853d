// SPDX-License-Identifier: LGPL-2.1-or-later
// Opening the entries declared in the configuration: files and listening sockets
// (TCP/UDP on IPv4/IPv6, UNIX stream/seqpacket with mode and owner).
#pragma once

#include <fdbroker/unique_fd.hpp>

#include "config.hpp"
#include "failure.hpp"

namespace fdbroker::daemon {

// Opens what `entry` declares and returns the owned descriptor (close-on-exec,
// blocking: the programs that receive it expect what systemd would give them).
// Sockets are made by lib's try_bind_listener. At a UNIX socket path, only a
// stale socket file (connect() refused: nobody has it bound) is replaced: a live
// socket of any type fails with EADDRINUSE, any other file with EEXIST.
// Failure.why names what failed: "bind 0.0.0.0:80: EACCES (Permission denied)".
[[nodiscard]] Outcome<unique_fd> open_static_entry(const StaticEntry& entry);

}  // namespace fdbroker::daemon
