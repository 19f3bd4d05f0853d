// SPDX-License-Identifier: LGPL-2.1-or-later
#include <fdbroker/error.hpp>
#include <fdbroker/unix_socket.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <new>

namespace fdbroker {

result<std::pair<unique_fd, unique_fd>> try_socketpair(int type) noexcept {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) < 0) return errno_code(errno);
  return std::pair{unique_fd(fds[0]), unique_fd(fds[1])};
}

std::pair<unique_fd, unique_fd> socketpair(int type) {
  return try_socketpair(type).value_or_throw("socketpair");
}

namespace {

// Linux records a listening socket's own credentials as its "peer" (so that
// connect() can copy them); that is not a peer, so report it as one would expect.
bool is_listening(int sock) noexcept {
  int listening = 0;
  socklen_t len = sizeof listening;
  return ::getsockopt(sock, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0;
}

}  // namespace

result<credentials> try_peer_credentials(int sock) noexcept {
  if (is_listening(sock)) return errno_code(ENOTCONN);
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return errno_code(errno);
  // An unconnected socket reports "no peer" as uid/gid -1 rather than failing.
  if (cred.uid == static_cast<uid_t>(-1) && cred.pid == 0) return errno_code(ENOTCONN);
  return credentials{cred.pid, cred.uid, cred.gid};
}

credentials peer_credentials(int sock) {
  return try_peer_credentials(sock).value_or_throw("peer_credentials");
}

result<std::vector<gid_t>> try_peer_groups(int sock) noexcept {
  if (is_listening(sock)) return errno_code(ENOTCONN);
  try {
    std::vector<gid_t> groups(16);
    for (;;) {
      auto len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
      if (::getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
        groups.resize(len / sizeof(gid_t));
        return groups;
      }
      // The kernel says ENODATA for "no peer"; match try_peer_credentials().
      if (errno == ENODATA) return errno_code(ENOTCONN);
      // ERANGE tells the size needed in `len`.
      if (errno != ERANGE) return errno_code(errno);
      groups.resize(len / sizeof(gid_t) + 1);
    }
  } catch (const std::bad_alloc&) {
    return errno_code(ENOMEM);
  }
}

std::vector<gid_t> peer_groups(int sock) {
  return try_peer_groups(sock).value_or_throw("peer_groups");
}

}  // namespace fdbroker
