// SPDX-License-Identifier: LGPL-2.1-or-later
// Fd passing written by hand with sendmsg()/recvmsg(): one message out with
// descriptors attached, one message in with every SCM_RIGHTS header walked. It does
// the work libfdbroker does (build the cmsg, retry EINTR, MSG_NOSIGNAL,
// MSG_CMSG_CLOEXEC) and nothing more: no allocation, no error objects, no
// libfdbroker. The one copy of this code in bench/: the library benchmark's baseline
// (raw_pingpong.hpp) and the broker benchmark's clients and baseline server
// (broker/bench_wire.hpp) both send and receive through it.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace fdbroker_bench {

inline constexpr std::size_t raw_max_fds = 253;  // SCM_MAX_FD

// One msghdr over one buffer, with room for `nfds` descriptors (0: no control
// buffer). The control buffer is not zeroed: only its first CMSG_SPACE(nfds) bytes
// are used, and zeroing 1 KiB per message would be measured too. Not copyable:
// `msg` points into the object itself.
struct raw_message {
  raw_message(void* data, std::size_t size, std::size_t nfds) noexcept : iov{data, size} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    }
  }
  raw_message(const raw_message&) = delete;
  raw_message& operator=(const raw_message&) = delete;

  iovec iov;
  msghdr msg{};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * raw_max_fds)];
};

// Sends one message with `nfds` (at most raw_max_fds) descriptors attached, borrowed:
// the kernel duplicates them into the peer. Returns bytes sent, or -1 with errno set.
inline ssize_t raw_send(int sock, const void* data, std::size_t size, const int* fds,
                        std::size_t nfds) noexcept {
  raw_message m(const_cast<void*>(data), size, nfds);
  if (nfds > 0) {
    cmsghdr* cmsg = CMSG_FIRSTHDR(&m.msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  ssize_t sent;
  do {
    sent = ::sendmsg(sock, &m.msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  return sent;
}

// Receives one message into buf, with room for `maxfds` descriptors (close-on-exec),
// and calls on_rights(const unsigned char* fds, std::size_t count) for every
// SCM_RIGHTS header, even after a truncation: the caller takes or closes each fd
// that arrived, so nothing can stay open. Returns the payload size (0: the peer
// closed) and sets *ret_flags to msg_flags (MSG_TRUNC, MSG_CTRUNC), or returns -1
// with errno set.
template <class OnRights>
inline ssize_t raw_recv_each(int sock, void* buf, std::size_t bufsize, std::size_t maxfds,
                             int* ret_flags, OnRights&& on_rights) noexcept {
  raw_message m(buf, bufsize, maxfds);
  ssize_t got;
  do {
    got = ::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c != nullptr; c = CMSG_NXTHDR(&m.msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    on_rights(CMSG_DATA(c), (c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
  }
  *ret_flags = m.msg.msg_flags;
  return got;
}

// Receives one message into buf and up to maxfds descriptors into ret_fds
// (*ret_nfds of them, all close-on-exec, owned by the caller). Returns the payload
// size, or -1 with errno set; on MSG_CTRUNC the descriptors that arrived are
// closed and errno is EMSGSIZE.
inline ssize_t raw_recv(int sock, void* buf, std::size_t bufsize, int* ret_fds, std::size_t maxfds,
                        std::size_t* ret_nfds) noexcept {
  std::size_t n = 0;
  int flags = 0;
  ssize_t got = raw_recv_each(sock, buf, bufsize, maxfds, &flags,
                              [&](const unsigned char* fds, std::size_t count) {
                                std::memcpy(ret_fds + n, fds, count * sizeof(int));
                                n += count;
                              });
  if (got < 0) return -1;
  if ((flags & MSG_CTRUNC) != 0) {
    for (std::size_t i = 0; i < n; ++i) ::close(ret_fds[i]);
    errno = EMSGSIZE;
    return -1;
  }
  *ret_nfds = n;
  return got;
}

}  // namespace fdbroker_bench
