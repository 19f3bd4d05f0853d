// SPDX-License-Identifier: LGPL-2.1-or-later
// The little of libsystemd the broker needs today: socket activation and
// sd_notify. Every call is a no-op (and not an error) when not run by systemd.
#pragma once

#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <chrono>
#include <string>

namespace fdbroker::daemon::systemd {

// The listening socket passed by systemd (LISTEN_FDS): the fd named "listen",
// or the only one if there is just one. Returns an invalid unique_fd when not
// socket-activated. Other passed fds are closed. Unsets the LISTEN_* variables.
// Errors: EINVAL if fds were passed but none is usable; ENOTSOCK, EPROTOTYPE if
// it is not a listening AF_UNIX SOCK_SEQPACKET socket.
[[nodiscard]] result<unique_fd> listen_socket();

// sd_notify(0, state). Returns the error, if any; false "not under systemd" is fine.
std::error_code notify(const std::string& state);

// The watchdog interval if WatchdogSec= is set for us, else zero.
std::chrono::microseconds watchdog_interval();

}  // namespace fdbroker::daemon::systemd
