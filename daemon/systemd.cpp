// SPDX-License-Identifier: LGPL-2.1-or-later
#include "systemd.hpp"

#include <fdbroker/error.hpp>

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace fdbroker::daemon::systemd {

result<unique_fd> listen_socket() {
  char** names = nullptr;
  int n = ::sd_listen_fds_with_names(/*unset_environment=*/1, &names);
  if (n < 0) return errno_code(-n);
  if (n == 0) return unique_fd{};
  // Own every passed fd first, so that the ones we do not use are closed.
  std::vector<unique_fd> fds;
  int chosen = -1;
  for (int i = 0; i < n; ++i) {
    fds.emplace_back(SD_LISTEN_FDS_START + i);
    if (names != nullptr && names[i] != nullptr && std::strcmp(names[i], "listen") == 0) chosen = i;
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  if (chosen < 0 && n == 1) chosen = 0;
  if (chosen < 0) return errno_code(EINVAL);
  int fd = fds[static_cast<std::size_t>(chosen)].get();
  int r = ::sd_is_socket_unix(fd, SOCK_SEQPACKET, /*listening=*/1, nullptr, 0);
  if (r < 0) return errno_code(-r);
  if (r == 0) return errno_code(EPROTOTYPE);
  return std::move(fds[static_cast<std::size_t>(chosen)]);
}

std::error_code notify(const std::string& state) {
  int r = ::sd_notify(0, state.c_str());
  if (r < 0) return errno_code(-r);
  return {};
}

std::chrono::microseconds watchdog_interval() {
  std::uint64_t usec = 0;
  if (::sd_watchdog_enabled(0, &usec) > 0) return std::chrono::microseconds(usec);
  return std::chrono::microseconds(0);
}

}  // namespace fdbroker::daemon::systemd
