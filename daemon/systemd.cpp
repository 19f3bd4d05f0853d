// SPDX-License-Identifier: LGPL-2.1-or-later
#include "systemd.hpp"

#include <fdbroker/error.hpp>

#include <systemd/sd-daemon.h>

#include <cstdint>

namespace fdbroker::daemon::systemd {

std::error_code notify(const std::string& state) {
  int r = ::sd_notify(0, state.c_str());
  if (r < 0) return errno_code(-r);
  return {};
}

std::error_code notify_with_fd(const std::string& state, int fd) {
  int r = ::sd_pid_notify_with_fds(0, 0, state.c_str(), &fd, 1);
  if (r < 0) return errno_code(-r);
  return {};
}

std::chrono::microseconds watchdog_interval() {
  std::uint64_t usec = 0;
  if (::sd_watchdog_enabled(0, &usec) > 0) return std::chrono::microseconds(usec);
  return std::chrono::microseconds(0);
}

result<bool> is_listening_unix_socket(int fd, int type) {
  int r = ::sd_is_socket_unix(fd, type, /*listening=*/1, nullptr, 0);
  if (r < 0) return errno_code(-r);
  return r > 0;
}

}  // namespace fdbroker::daemon::systemd
