// SPDX-License-Identifier: LGPL-2.1-or-later
// sendfds()/recvfds(): one message with a payload and up to 253 descriptors
// (SCM_RIGHTS) over any AF_UNIX socket type: SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM.
//
// Each call comes in two forms: a throwing one (std::system_error carrying the
// errno) for ordinary callers, and a noexcept `try_` one returning result<T> for
// event loops, where EAGAIN is routine.
#pragma once

#include <fdbroker/export.hpp>
#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace fdbroker {

// The kernel's limit on descriptors in one message (SCM_MAX_FD).
inline constexpr std::size_t max_fds_per_message = 253;

// Options for one call; combine with |.
enum class io_flags : unsigned {
  none = 0,
  // recvfds: when the descriptors were truncated (more than maxfds sent, or
  // MSG_CTRUNC) keep the first maxfds that arrived instead of closing them and
  // failing with EMSGSIZE; fds_truncated is set in the result.
  accept_truncated_fds = 1u << 0,
  // Do not block for this call (MSG_DONTWAIT); EAGAIN if it would.
  dontwait = 1u << 1,
  // Report EINTR instead of retrying, so that the caller can run signal handlers
  // (Python's PEP 475 loop). By default EINTR is retried.
  no_retry_eintr = 1u << 2,
};
constexpr io_flags operator|(io_flags a, io_flags b) noexcept {
  return static_cast<io_flags>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(io_flags set, io_flags flag) noexcept {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(flag)) != 0;
}

// Sends `size` bytes from `data` and the descriptors `fds[0..nfds)` in one
// sendmsg(). The descriptors are borrowed: the caller still owns them, and the
// peer receives new descriptors for the same open file descriptions.
// MSG_NOSIGNAL is always added: a closed peer gives EPIPE, never SIGPIPE.
//
// Returns the number of payload bytes sent. On a SOCK_STREAM socket this may be
// less than `size` (a partial write, e.g. a full send buffer on a non-blocking
// socket): the descriptors went with the first byte, and the caller sends the rest
// without them. Datagram and seqpacket sockets send all or nothing.
//
// Errors (nothing was sent in any of these cases):
//   E2BIG      nfds > max_fds_per_message (checked before anything is sent)
//   EBADF      `sock` or one of `fds` is negative or not open
//   EINVAL     nfds > 0 with size == 0 on a SOCK_STREAM socket (the kernel would
//              silently drop the descriptors); bad `flags`
//   ENOTSOCK   `sock` is not a socket; EOPNOTSUPP: not an AF_UNIX socket
//   EAGAIN     non-blocking socket (or io_flags::dontwait) and the send would block
//   EPIPE, ECONNRESET, ENOTCONN, ECONNREFUSED, EDESTADDRREQ: peer state
//   EMSGSIZE   a datagram/seqpacket message larger than the socket can carry
//   ENOBUFS, ENOMEM, ETOOMANYREFS (too many fds in flight): kernel limits
//   EINTR      only with io_flags::no_retry_eintr; otherwise retried
[[nodiscard]] FDBROKER_API result<std::size_t> try_sendfds(
    int sock, const void* data, std::size_t size, const int* fds, std::size_t nfds,
    io_flags flags = io_flags::none) noexcept;

// Throwing form of try_sendfds(); returns the number of payload bytes sent.
FDBROKER_API std::size_t sendfds(int sock, std::string_view payload,
                                 const std::vector<int>& fds = {}, io_flags flags = io_flags::none);

// What one recvmsg() delivered into a caller's buffer.
struct recv_info {
  std::size_t size = 0;            // payload bytes stored in the buffer
  bool payload_truncated = false;  // MSG_TRUNC: a datagram/seqpacket message was longer
                                   // than the buffer; the rest of it is lost
  bool fds_truncated = false;      // MSG_CTRUNC, only with accept_truncated_fds
};

// Receives one message: up to `bufsize` payload bytes into `buf` and up to
// `maxfds` descriptors, which are appended to `ret_fds` as owned unique_fds,
// each already close-on-exec (MSG_CMSG_CLOEXEC). Descriptors from several
// SCM_RIGHTS headers in one message are all collected, in order.
// On failure `ret_fds` holds the same descriptors as before the call (its
// capacity may have grown).
//
// End of stream (peer closed) is size == 0 with no descriptors. On SOCK_SEQPACKET
// an empty message is indistinguishable from end of stream, as with recv(2).
//
// No received descriptor is ever leaked: every one is owned before any check, and
// on failure every one is closed. Other headers that socket options add
// (SCM_CREDENTIALS, SCM_SECURITY) are skipped; a pidfd (SO_PASSPIDFD) is closed.
//
// Errors:
//   EMSGSIZE  the ancillary data was truncated (more than `maxfds` descriptors
//             were sent, or the kernel could not install them all); the ones that
//             arrived are closed, and the message's payload is consumed with them
//             (on SOCK_STREAM: the bytes this call read). With
//             io_flags::accept_truncated_fds the call succeeds instead, with
//             fds_truncated set and the first `maxfds` descriptors returned.
//   EINVAL    maxfds > max_fds_per_message
//   EBADF, ENOTSOCK, ENOTCONN, ECONNRESET: the socket
//   EAGAIN    non-blocking socket (or io_flags::dontwait) and nothing to read
//   EMFILE    the caller's fd table is full (the kernel truncates: see EMSGSIZE)
//   ENOMEM    out of memory
//   EINTR     only with io_flags::no_retry_eintr; otherwise retried
[[nodiscard]] FDBROKER_API result<recv_info> try_recvfds_into(
    int sock, void* buf, std::size_t bufsize, std::vector<unique_fd>& ret_fds,
    std::size_t maxfds = max_fds_per_message, io_flags flags = io_flags::none) noexcept;

// Throwing form of try_recvfds_into(): receives into the caller's buffer and
// vector, which a loop can reuse so that no call allocates. On failure `ret_fds`
// holds what it held before, as with try_recvfds_into().
FDBROKER_API recv_info recvfds_into(int sock, void* buf, std::size_t bufsize,
                                    std::vector<unique_fd>& ret_fds,
                                    std::size_t maxfds = max_fds_per_message,
                                    io_flags flags = io_flags::none);

// One received message, owning its descriptors.
struct received_message {
  std::string payload;
  std::vector<unique_fd> fds;  // close-on-exec; closed when the message is destroyed
  bool payload_truncated = false;
  bool fds_truncated = false;
  // True for end of stream: nothing at all arrived (see try_recvfds_into).
  [[nodiscard]] bool empty() const noexcept { return payload.empty() && fds.empty(); }
};

// Allocating form of try_recvfds_into(): the payload is at most `bufsize` bytes.
[[nodiscard]] FDBROKER_API result<received_message> try_recvfds(
    int sock, std::size_t bufsize, std::size_t maxfds = max_fds_per_message,
    io_flags flags = io_flags::none) noexcept;

// Throwing form of try_recvfds().
FDBROKER_API received_message recvfds(int sock, std::size_t bufsize,
                                      std::size_t maxfds = max_fds_per_message,
                                      io_flags flags = io_flags::none);

}  // namespace fdbroker
