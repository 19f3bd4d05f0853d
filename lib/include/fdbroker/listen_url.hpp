// SPDX-License-Identifier: LGPL-2.1-or-later
// Listen URLs ("tcp://127.0.0.1:8080", "tcp6://[::]:443", "unix:/run/app.sock") and
// the socket()+bind()+listen() they describe. One parser for the library, fdbrokerctl
// (`put --listen`) and the handoff API, so that all three accept the same strings.
//
// Accepted forms (docs/handoff.md has the table):
//   tcp://HOST:PORT     HOST is a dotted IPv4 address, `*` or empty (0.0.0.0), `localhost`
//                       (127.0.0.1), or a bracketed IPv6 address `[::1]` (then dual-stack:
//                       IPV6_V6ONLY off, like systemd's default BindIPv6Only=both)
//   tcp6://[ADDR]:PORT  IPv6 only (IPV6_V6ONLY on); `[*]`/`*`/empty mean `::`,
//                       `localhost` means ::1
//   unix:/PATH          a filesystem socket (also written unix:///PATH)
//   unix:@NAME          a Linux abstract socket
// PORT is 0..65535; 0 asks the kernel for a free port. Host names other than
// `localhost` are refused (EINVAL): resolving would block and be ambiguous.
#pragma once

#include <fdbroker/export.hpp>
#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace fdbroker {

struct FDBROKER_API ListenUrl {
  int family = AF_UNSPEC;      // AF_INET, AF_INET6 or AF_UNIX
  std::string host;            // inet: the numeric address ("0.0.0.0", "::1"), no brackets
  std::uint16_t port = 0;      // inet
  bool v6only = false;         // inet6: IPV6_V6ONLY (tcp6:// sets it)
  std::string path;            // unix: the path, or "@name" for an abstract socket
  sockaddr_storage address{};  // ready for bind()/connect()
  socklen_t address_length = 0;

  // The canonical form, e.g. "tcp://127.0.0.1:8080", "tcp6://[::]:443", "unix:/x".
  [[nodiscard]] std::string str() const;
  // True for inet addresses 0.0.0.0 and ::.
  [[nodiscard]] bool wildcard_host() const noexcept;
};

// Parses a listen URL. Errors: EINVAL (unknown scheme, bad address or port, empty or
// too long path: sun_path holds 107 bytes).
[[nodiscard]] FDBROKER_API result<ListenUrl> try_parse_listen_url(std::string_view url) noexcept;
// Throws std::system_error(EINVAL) whose what() names the URL and the problem.
FDBROKER_API ListenUrl parse_listen_url(std::string_view url);

struct BindOptions {
  int backlog = 4096;        // listen() backlog (the kernel caps it at somaxconn)
  bool reuse_port = false;   // SO_REUSEPORT (inet)
  bool nonblocking = false;  // SOCK_NONBLOCK on the listening socket
  mode_t unix_mode = 0;      // unix path: chmod() after bind if non-zero
};

// socket(SOCK_STREAM | SOCK_CLOEXEC) + bind + listen for `url`; the caller owns the
// result. Inet sockets get SO_REUSEADDR (so a restart is not refused by connections
// still in TIME_WAIT), and IPV6_V6ONLY as the URL says. For a unix path left behind
// by a dead process (connect() is refused), the file is removed and bind retried;
// a path a live process listens on gives EADDRINUSE.
// Errors: EADDRINUSE, EACCES, EADDRNOTAVAIL, EMFILE, ENFILE, ENOENT (unix: no
// directory), ...
[[nodiscard]] FDBROKER_API result<unique_fd> try_bind_listener(
    const ListenUrl& url, const BindOptions& options = {}) noexcept;
FDBROKER_API unique_fd bind_listener(const ListenUrl& url, const BindOptions& options = {});

// The address a socket is bound to (getsockname) in listen URL form, with its
// family, for comparing an inherited or received socket against a wanted URL.
// Errors: EBADF, ENOTSOCK, EAFNOSUPPORT (not inet/inet6/unix).
[[nodiscard]] FDBROKER_API result<ListenUrl> try_socket_listen_url(int sock) noexcept;

// Whether the listening socket `sock` serves `wanted`: a SOCK_STREAM socket of the
// same family, in listening state, bound to the same address and port (any port if
// wanted.port is 0), or to the same unix path.
// Returns false (never throws) for anything else, including a bad fd.
[[nodiscard]] FDBROKER_API bool socket_matches_url(int sock, const ListenUrl& wanted) noexcept;

}  // namespace fdbroker
