// SPDX-License-Identifier: LGPL-2.1-or-later
#include "peer_unit.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fdbroker/unique_fd.hpp>

// Linux 6.5; glibc 2.36's headers predate it (as SCM_PIDFD in scm_rights.cpp).
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace fdbroker::daemon {

namespace {

// /proc/<pid>/cgroup is one line per hierarchy: a few hundred bytes at most on
// a hybrid system. A longer text is not what the kernel writes there.
constexpr std::size_t max_cgroup_file = 64 * 1024;

std::optional<std::string> read_cgroup_of(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/cgroup";
  unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return std::nullopt;
  std::string text;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_cgroup_file) return std::nullopt;
  }
  return cgroup_v2_path(text);
}

std::optional<std::string> unit_of(pid_t pid) {
  char* unit = nullptr;
  // ENODATA/ENXIO: in no unit (a process outside systemd's tree, or in a
  // slice only); anything else: unknown. Both mean no unit.
  if (sd_pid_get_unit(pid, &unit) < 0 || unit == nullptr) return std::nullopt;
  std::string name(unit);
  std::free(unit);
  return name;
}

// The pidfd's process has not exited: it still owns its pid, which therefore
// named it for every read made before this check.
bool still_running(int pidfd) {
  pollfd pfd{pidfd, POLLIN, 0};
  int r;
  do {
    r = ::poll(&pfd, 1, 0);
  } while (r < 0 && errno == EINTR);
  // POLLIN: it exited (a zombie, or reaped). An error: not provably alive.
  return r == 0;
}

}  // namespace

PidfdUse pidfd_use_from_environment() {
  static const PidfdUse use = [] {
    const char* v = std::getenv("FDBROKER_TEST_NO_PIDFD");
    return v != nullptr && std::strcmp(v, "1") == 0 ? PidfdUse::never : PidfdUse::when_available;
  }();
  return use;
}

std::optional<std::string> cgroup_v2_path(std::string_view text) {
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    // "hierarchy-ID:controller-list:cgroup-path"; cgroup v2's is "0::/path".
    if (line.substr(0, 3) != "0::") continue;
    std::string_view path = line.substr(3);
    if (path.empty() || path.front() != '/') return std::nullopt;
    // Names in a cgroup tree delegated to a user are the user's choice: no
    // control character of theirs reaches a reply or the log.
    for (unsigned char ch : path) {
      if (ch < 0x20 || ch == 0x7f) return std::nullopt;
    }
    return std::string(path);
  }
  return std::nullopt;
}

PeerUnit resolve_peer_unit(int sock, pid_t pid, PidfdUse use) {
  PeerUnit out;
  // No pid: the peer is in a PID namespace that cannot name it in ours.
  if (pid <= 0) return out;
  int err = ENOPROTOOPT;
  unique_fd pidfd;
  if (use == PidfdUse::when_available) {
    int fd = -1;
    socklen_t len = sizeof fd;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0) {
      pidfd.reset(fd);
    } else {
      err = errno;
    }
  }
  if (!pidfd.valid()) {
    if (err == ENOPROTOOPT) {
      // An older kernel: the pid may already name another process, so its
      // cgroup is shown for information and its unit never trusted.
      out.cgroup = read_cgroup_of(pid).value_or("");
    } else {
      // EMFILE/ENFILE, or the peer is gone (EINVAL before Linux 6.16):
      // nothing is known about it. (Not logged here: with no descriptor free,
      // the caller logs once it has one.)
      out.pidfd_error = err;
    }
    return out;
  }
  out.pidfd = true;
  auto cgroup = read_cgroup_of(pid);
  auto unit = unit_of(pid);
  if (!still_running(pidfd.get())) return out;  // its pid may name another process now
  out.cgroup = cgroup.value_or("");
  out.unit = std::move(unit);
  return out;
}

}  // namespace fdbroker::daemon
