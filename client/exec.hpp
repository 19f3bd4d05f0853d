// SPDX-License-Identifier: LGPL-2.1-or-later
// `fdbrokerctl exec`: run a program with broker-held descriptors the way systemd's
// socket activation passes them (sd_listen_fds(3)), so unmodified socket-activatable
// programs can use them.
#pragma once

#include "cli_options.hpp"

#include <fdbroker/client.hpp>

#include <string>
#include <string_view>

namespace fdbrokerctl {

// Asks for o.exec_entries in order over `client` (get, take, open, bind), then
// replaces this process with o.program: their descriptors at 3, 4, ... (every fd of
// each entry, in order), LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set, and no other
// descriptor above 2 left open. Returns only on failure, by throwing (BrokerError
// for a refused request, std::system_error otherwise, errno ENOENT/EACCES... from
// execvp).
[[noreturn]] void exec_with_entries(const Options& o, fdbroker::Client& client);

// An entry name as a systemd fd name: ':' separates names in LISTEN_FDNAMES and is
// not allowed in one, so it becomes '_'. Entry names allow no other character that
// systemd rejects, and are at most 255 bytes like fd names.
std::string fd_name_for(std::string_view entry_name);

// The fd name of a file opened by path (--open): its last component, as above.
std::string fd_name_for_path(std::string_view path);

}  // namespace fdbrokerctl
