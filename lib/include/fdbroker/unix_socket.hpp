// SPDX-License-Identifier: LGPL-2.1-or-later
// AF_UNIX helpers: socketpair() and the peer's kernel-verified credentials.
#pragma once

#include <fdbroker/export.hpp>
#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <sys/socket.h>
#include <sys/types.h>

#include <utility>
#include <vector>

namespace fdbroker {

// A connected pair of AF_UNIX sockets, both close-on-exec (SOCK_CLOEXEC is always
// added; SOCK_NONBLOCK may be or-ed into `type`).
// Errors: EINVAL/EPROTONOSUPPORT (bad type), EMFILE, ENFILE.
[[nodiscard]] FDBROKER_API result<std::pair<unique_fd, unique_fd>> try_socketpair(
    int type = SOCK_SEQPACKET) noexcept;
FDBROKER_API std::pair<unique_fd, unique_fd> socketpair(int type = SOCK_SEQPACKET);

// The credentials the kernel recorded for the peer of a connected AF_UNIX socket
// (SO_PEERCRED): taken at connect()/socketpair() time, so they cannot be forged.
struct credentials {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};

// Errors: EBADF, ENOTSOCK, ENOTCONN (no peer: not connected, or a listening socket).
[[nodiscard]] FDBROKER_API result<credentials> try_peer_credentials(int sock) noexcept;
FDBROKER_API credentials peer_credentials(int sock);

// The peer's supplementary groups (SO_PEERGROUPS, Linux 4.13+), as recorded at
// connect() time. Errors: EBADF, ENOTSOCK, ENOTCONN (no peer, as above),
// ENOPROTOOPT (kernel too old), ENOMEM.
[[nodiscard]] FDBROKER_API result<std::vector<gid_t>> try_peer_groups(int sock) noexcept;
FDBROKER_API std::vector<gid_t> peer_groups(int sock);

}  // namespace fdbroker
