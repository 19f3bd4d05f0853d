// SPDX-License-Identifier: LGPL-2.1-or-later
// The baseline the library is measured against: fd passing written by hand with
// sendmsg()/recvmsg(), doing the same work libfdbroker does (build the cmsg, retry
// EINTR, MSG_NOSIGNAL, MSG_CMSG_CLOEXEC, walk every SCM_RIGHTS header, refuse
// MSG_CTRUNC without leaking) and nothing more: no allocation, no error objects.
// Shared by the C++ benchmark and the Python benchmark's raw C loop, so that both
// compare against the very same code.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fdbroker_bench {

inline constexpr std::size_t raw_max_fds = 253;  // SCM_MAX_FD

union raw_control {
  char bytes[CMSG_SPACE(sizeof(int) * raw_max_fds)];
  cmsghdr align;
};

// Returns bytes sent, or -1 with errno set.
inline ssize_t raw_send(int sock, const void* data, std::size_t size, const int* fds,
                        std::size_t nfds) noexcept {
  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  raw_control control;
  if (nfds > 0) {
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  ssize_t sent;
  do {
    sent = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  return sent;
}

// Receives one message into buf and up to maxfds descriptors into ret_fds
// (*ret_nfds of them, all close-on-exec, owned by the caller). Returns the payload
// size, or -1 with errno set; on MSG_CTRUNC the descriptors that arrived are
// closed and errno is EMSGSIZE.
inline ssize_t raw_recv(int sock, void* buf, std::size_t bufsize, int* ret_fds, std::size_t maxfds,
                        std::size_t* ret_nfds) noexcept {
  iovec iov{buf, bufsize};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  raw_control control;
  if (maxfds > 0) {
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * maxfds);
  }
  ssize_t got;
  do {
    got = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return -1;

  std::size_t n = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    std::memcpy(ret_fds + n, CMSG_DATA(c), count * sizeof(int));
    n += count;
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    for (std::size_t i = 0; i < n; ++i) ::close(ret_fds[i]);
    errno = EMSGSIZE;
    return -1;
  }
  *ret_nfds = n;
  return got;
}

[[noreturn]] inline void raw_fail(const char* what) {
  throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

// One round trip on a connected pair: `a` sends `payload` and `fds` to `b`; `b`
// receives and sends the same payload and the descriptors it received back, then
// closes them; `a` receives and closes what came back.
inline void raw_round_trip(int a, int b, const void* payload, std::size_t size, const int* fds,
                           std::size_t nfds) {
  char buf[64];
  int got_fds[raw_max_fds];
  std::size_t got_n = 0;

  if (raw_send(a, payload, size, fds, nfds) < 0) raw_fail("raw_send a");
  ssize_t got = raw_recv(b, buf, sizeof buf, got_fds, raw_max_fds, &got_n);
  if (got < 0) raw_fail("raw_recv b");
  if (raw_send(b, buf, static_cast<std::size_t>(got), got_fds, got_n) < 0) raw_fail("raw_send b");
  for (std::size_t i = 0; i < got_n; ++i) ::close(got_fds[i]);
  got = raw_recv(a, buf, sizeof buf, got_fds, raw_max_fds, &got_n);
  if (got < 0) raw_fail("raw_recv a");
  for (std::size_t i = 0; i < got_n; ++i) ::close(got_fds[i]);
  if (got_n != nfds || static_cast<std::size_t>(got) != size) {
    errno = EPROTO;
    raw_fail("raw round trip lost data");
  }
}

}  // namespace fdbroker_bench
