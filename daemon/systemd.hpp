// SPDX-License-Identifier: LGPL-2.1-or-later
// Every call into libsystemd: sd_notify and its fd-passing form, the watchdog,
// and sd_is_socket_unix. Each is a no-op (and not an error) when not run by systemd.
// The inherited fds themselves (LISTEN_FDS) are parsed by lib's listen_fds.hpp.
#pragma once

#include <fdbroker/result.hpp>

#include <chrono>
#include <string>
#include <system_error>

namespace fdbroker::daemon::systemd {

// sd_notify(0, state). Returns the error, if any; false "not under systemd" is fine.
std::error_code notify(const std::string& state);

// sd_pid_notify_with_fds(0, 0, state, &fd, 1): `fd` stays ours (systemd gets a copy).
std::error_code notify_with_fd(const std::string& state, int fd);

// The watchdog interval if WatchdogSec= is set for us, else zero.
std::chrono::microseconds watchdog_interval();

// Whether `fd` is an AF_UNIX socket of `type` in listening state (sd_is_socket_unix).
// Errors: EBADF and those of fstat/getsockopt; another kind of file is `false`.
[[nodiscard]] result<bool> is_listening_unix_socket(int fd, int type);

}  // namespace fdbroker::daemon::systemd
