// SPDX-License-Identifier: LGPL-2.1-or-later
// The only file in libfdbroker that touches cmsghdr.
#include <fdbroker/error.hpp>
#include <fdbroker/scm_rights.hpp>

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <system_error>

#include "sys.hpp"

namespace fdbroker {

namespace {

// SCM_PIDFD (Linux 6.5, SO_PASSPIDFD) installs a descriptor too; glibc 2.36's
// headers predate it.
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

// Room for the headers that socket options add before SCM_RIGHTS on receive
// (SCM_CREDENTIALS with SO_PASSCRED, SCM_PIDFD, SCM_SECURITY, timestamps). Without
// it they would crowd out the descriptors and set MSG_CTRUNC.
constexpr std::size_t other_headers_room = 256;

// Ancillary buffer big enough for the kernel's maximum, aligned for cmsghdr.
// Sized once so that neither side allocates per message.
union control_buffer {
  char bytes[CMSG_SPACE(sizeof(int) * max_fds_per_message) + other_headers_room];
  cmsghdr align;
};

// Closes every descriptor carried by headers of `type` in a received message.
void close_all(msghdr& msg, int type) noexcept {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != type) continue;
    std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      unique_fd{fd};
    }
  }
}

int msg_flags_for(io_flags flags) noexcept {
  return has(flags, io_flags::dontwait) ? MSG_DONTWAIT : 0;
}

bool is_stream_socket(int sock) noexcept {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

}  // namespace

result<std::size_t> try_sendfds(int sock, const void* data, std::size_t size, const int* fds,
                                std::size_t nfds, io_flags flags) noexcept {
  if (nfds > max_fds_per_message) return errno_code(E2BIG);
  // The kernel's stream sendmsg loops over payload bytes only, so descriptors
  // sent with an empty payload would vanish without an error.
  if (nfds > 0 && size == 0 && is_stream_socket(sock)) return errno_code(EINVAL);

  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;

  control_buffer control;
  if (nfds > 0) {
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }

  int msg_flags = MSG_NOSIGNAL | msg_flags_for(flags);
  for (;;) {
    ssize_t sent = detail::sys::calls.sendmsg(sock, &msg, msg_flags);
    if (sent >= 0) return static_cast<std::size_t>(sent);
    if (errno != EINTR || has(flags, io_flags::no_retry_eintr)) return errno_code(errno);
  }
}

std::size_t sendfds(int sock, std::string_view payload, const std::vector<int>& fds,
                    io_flags flags) {
  return try_sendfds(sock, payload.data(), payload.size(), fds.data(), fds.size(), flags)
      .value_or_throw("sendfds");
}

result<recv_info> try_recvfds_into(int sock, void* buf, std::size_t bufsize,
                                   std::vector<unique_fd>& ret_fds, std::size_t maxfds,
                                   io_flags flags) noexcept {
  if (maxfds > max_fds_per_message) return errno_code(EINVAL);

  iovec iov{buf, bufsize};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // The kernel's limit is the buffer size, which cannot express maxfds exactly
  // (CMSG_SPACE rounds up: room for 2 ints when asked for 1) and must leave room
  // for other headers. So it may install a few more than maxfds; those are counted
  // and closed below, as a truncation.
  control_buffer control;
  msg.msg_control = control.bytes;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * maxfds) + other_headers_room;

  ssize_t got;
  int msg_flags = MSG_CMSG_CLOEXEC | msg_flags_for(flags);
  for (;;) {
    got = detail::sys::calls.recvmsg(sock, &msg, msg_flags);
    if (got >= 0) break;
    if (errno != EINTR || has(flags, io_flags::no_retry_eintr)) return errno_code(errno);
  }

  // WARNING: from here on, every descriptor the kernel installed in our table must
  // end up owned by a unique_fd before anything can fail, or it leaks. So count
  // first, make room for all of them at the end of ret_fds (the only step that can
  // fail), wrap them all there, and only then decide: on failure the appended ones
  // are erased again, which closes them and leaves ret_fds holding what it held.
  // Wrapping in place rather than in a local vector saves an allocation and a move
  // per descriptor on every call (bench/: this is the hot path of every receive).
  std::size_t count = 0;
  bool has_pidfd = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_RIGHTS) count += (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    if (c->cmsg_type == SCM_PIDFD) has_pidfd = true;
  }
  // The caller asked for the sender's fds, not for a pidfd of the sender.
  if (has_pidfd) close_all(msg, SCM_PIDFD);
  const std::size_t old_size = ret_fds.size();
  if (count > 0) {
    try {
      ret_fds.reserve(old_size + count);
    } catch (const std::bad_alloc&) {
      // Cannot own them in the vector: close them straight from the cmsg instead.
      close_all(msg, SCM_RIGHTS);
      return errno_code(ENOMEM);
    }
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int fd;
      // CMSG_DATA need not be int-aligned for every index: copy, don't cast.
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      ret_fds.emplace_back(fd);  // cannot throw: capacity reserved above
    }
  }

  recv_info info;
  info.size = static_cast<std::size_t>(got);
  info.payload_truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  if ((msg.msg_flags & MSG_CTRUNC) != 0 || count > maxfds) {
    // Erasing closes: all that arrived on failure, those beyond maxfds otherwise.
    const std::size_t keep =
        has(flags, io_flags::accept_truncated_fds) ? std::min(count, maxfds) : 0;
    ret_fds.erase(ret_fds.begin() + static_cast<std::ptrdiff_t>(old_size + keep), ret_fds.end());
    if (!has(flags, io_flags::accept_truncated_fds)) return errno_code(EMSGSIZE);
    info.fds_truncated = true;
  }
  return info;
}

recv_info recvfds_into(int sock, void* buf, std::size_t bufsize, std::vector<unique_fd>& ret_fds,
                       std::size_t maxfds, io_flags flags) {
  return try_recvfds_into(sock, buf, bufsize, ret_fds, maxfds, flags)
      .value_or_throw("recvfds_into");
}

namespace {

// Payloads of up to this many bytes are received on the stack and copied into the
// string at the size that arrived: no zero-filled `bufsize` buffer, and a short
// message fits in the string's own storage with no allocation at all.
constexpr std::size_t stack_payload_size = 256;

// The body of try_recvfds() and recvfds(): fills `message` (empty on entry), which
// each returns by value without a further move through result<>.
std::error_code receive_message(int sock, std::size_t bufsize, std::size_t maxfds, io_flags flags,
                                received_message& message) noexcept {
  try {
    char stack_buffer[stack_payload_size];
    const bool on_stack = bufsize <= sizeof stack_buffer;
    if (!on_stack) message.payload.resize(bufsize);
    char* buffer = on_stack ? stack_buffer : message.payload.data();
    auto info = try_recvfds_into(sock, buffer, bufsize, message.fds, maxfds, flags);
    if (!info) return info.error();
    if (on_stack) {
      message.payload.assign(stack_buffer, info->size);  // may throw: fds already owned
    } else {
      message.payload.resize(info->size);
    }
    message.payload_truncated = info->payload_truncated;
    message.fds_truncated = info->fds_truncated;
    return {};
  } catch (const std::bad_alloc&) {
    message.fds.clear();  // closes what arrived
    return errno_code(ENOMEM);
  }
}

}  // namespace

result<received_message> try_recvfds(int sock, std::size_t bufsize, std::size_t maxfds,
                                     io_flags flags) noexcept {
  received_message message;
  if (std::error_code error = receive_message(sock, bufsize, maxfds, flags, message)) {
    return error;
  }
  return message;
}

received_message recvfds(int sock, std::size_t bufsize, std::size_t maxfds, io_flags flags) {
  received_message message;
  if (std::error_code error = receive_message(sock, bufsize, maxfds, flags, message)) {
    throw std::system_error(error, "recvfds");
  }
  return message;  // NRVO: no move
}

}  // namespace fdbroker
