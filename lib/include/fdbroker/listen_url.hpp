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
#include <optional>
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

// A listen URL or a datagram one: udp://HOST:PORT and udp6://[ADDR]:PORT have the
// address syntax of their tcp:// and tcp6:// twins (`url` holds that twin) and
// name a SOCK_DGRAM socket. One parser for fdbrokerctl's `put --listen` and the
// broker's `bind` rules and requests.
struct FDBROKER_API SocketUrl {
  ListenUrl url;
  int socket_type = SOCK_STREAM;  // SOCK_DGRAM for udp:// and udp6://

  // The canonical form: url.str(), with udp:// or udp6:// for a datagram socket.
  [[nodiscard]] std::string str() const;
};
// Errors: EINVAL, as try_parse_listen_url.
[[nodiscard]] FDBROKER_API result<SocketUrl> try_parse_socket_url(std::string_view url) noexcept;
// Throws std::system_error(EINVAL) whose what() names the URL and the problem.
FDBROKER_API SocketUrl parse_socket_url(std::string_view url);

// The URL of the unix socket at filesystem `path`, as configuration files write
// it: absolute or relative (unlike "unix:" URLs), "@name" for an abstract socket.
// Errors: EINVAL (empty, "@" alone, a NUL byte, longer than 107 bytes).
[[nodiscard]] FDBROKER_API result<ListenUrl> try_unix_listen_url(std::string_view path) noexcept;

struct BindOptions {
  int backlog = 4096;        // listen() backlog (the kernel caps it at somaxconn)
  bool reuse_port = false;   // SO_REUSEPORT (inet)
  bool nonblocking = false;  // SOCK_NONBLOCK on the listening socket
  mode_t unix_mode = 0;      // unix path: chmod() after bind if non-zero
  // Added after the first release: the fields above keep their places.
  // SOCK_STREAM, SOCK_SEQPACKET (unix) or SOCK_DGRAM (bound, no listen(), no
  // SO_REUSEADDR: on UDP it would let a second socket share the port).
  int socket_type = SOCK_STREAM;
  // Unix path: lchown() after bind; -1 leaves the owner or group as created.
  uid_t unix_owner = static_cast<uid_t>(-1);
  gid_t unix_group = static_cast<gid_t>(-1);
  // Unix path: the umask in effect during bind(), so that the socket file never
  // exists with a wider mode, even for an instant (e.g. ~0660 & 0777). The umask
  // is process-wide: set this only in a process that creates no files on other
  // threads meanwhile (the daemon's single thread), never from a library.
  std::optional<mode_t> bind_umask;
  // Unix path: create missing parent directories (mode 0755) first.
  bool create_parent_directories = false;
};

// socket(options.socket_type | SOCK_CLOEXEC) + bind + listen for `url`; the caller
// owns the result. Inet stream sockets get SO_REUSEADDR (so a restart is not
// refused by connections still in TIME_WAIT), and IPV6_V6ONLY as the URL says.
// A unix path that holds a socket file nobody listens on (connect() is refused
// with ECONNREFUSED: the process that bound it is gone) is removed and bind
// retried. Anything else there is left alone: a live listener of any socket type
// (even one that answers EPROTOTYPE or EAGAIN) gives EADDRINUSE, a file that is
// not a socket EEXIST.
// Errors: EADDRINUSE, EEXIST, EACCES, EADDRNOTAVAIL, EMFILE, ENFILE, ENOENT (unix:
// no directory), EINVAL (bad socket_type for the family), ...
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
