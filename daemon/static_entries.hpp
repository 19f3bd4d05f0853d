// SPDX-License-Identifier: LGPL-2.1-or-later
// Opening the entries declared in the configuration: files and listening sockets
// (TCP/UDP on IPv4/IPv6, UNIX stream/seqpacket with mode and owner).
#pragma once

#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <string>

#include "config.hpp"

namespace fdbroker::daemon {

// Opens what `entry` declares and returns the owned descriptor (close-on-exec,
// blocking: the programs that receive it expect what systemd would give them).
// On failure returns the errno and sets `ret_why` ("bind 0.0.0.0:80: EACCES").
// A UNIX socket path that holds a stale socket is unlinked first; any other file
// there is an error (EEXIST).
[[nodiscard]] result<unique_fd> open_static_entry(const StaticEntry& entry, std::string& ret_why);

}  // namespace fdbroker::daemon
