// SPDX-License-Identifier: LGPL-2.1-or-later
// What the bench programs (loadgen, scale, durability_load, baseline_server) share:
// the clock, AF_UNIX addresses, SOCK_SEQPACKET connects, one message out with fds
// attached, one reply in with every fd it carried closed (both through
// ../raw_wire.hpp), and percentiles. Raw syscalls, no libfdbroker: the broker and
// the baseline face the very same code.
//
// Each program defines bench::die(what): print "<program>: what: strerror(errno)"
// and exit with its own status. The helpers here call it on the failures a bench
// cannot go on from (socket(), an over-long path) and return the others.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "../raw_wire.hpp"

namespace bench {

constexpr std::size_t max_message = 65536;  // the protocol's message limit
constexpr std::size_t max_fds = fdbroker_bench::raw_max_fds;

// Defined by each program (see above). Never returns.
[[noreturn]] void die(const char* what);

inline std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// Watches `sock` for input on `epoll`, the events carrying `tag`; die("epoll_ctl")
// if it cannot.
inline void watch_input(int epoll, int sock, std::uint64_t tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, sock, &ev) < 0) die("epoll_ctl");
}

// epoll_wait(): the number of ready events, 0 if a signal interrupted the wait;
// die("epoll_wait") on any other failure.
inline int wait_events(int epoll, epoll_event* events, int max_events, int timeout_ms) {
  int n = ::epoll_wait(epoll, events, max_events, timeout_ms);
  if (n < 0 && errno != EINTR) die("epoll_wait");
  return n < 0 ? 0 : n;
}

// The address of a socket path; die("socket path") with ENAMETOOLONG if it does not fit.
inline sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    die("socket path");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// A connected SOCK_SEQPACKET socket (the caller owns it), or -1 with errno set
// (EAGAIN: the listen backlog is full, try again later).
inline int try_connect(const sockaddr_un& addr, bool nonblocking) {
  int sock =
      ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (sock < 0) die("socket");
  if (::connect(sock, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
    int saved = errno;
    ::close(sock);
    errno = saved;
    return -1;
  }
  return sock;
}

// Sends one message with `nfds` fds attached (borrowed: the kernel duplicates them
// into the peer). Returns false with errno set.
inline bool send_message(int sock, std::string_view data, const int* fds, std::size_t nfds) {
  return fdbroker_bench::raw_send(sock, data.data(), data.size(), fds, nfds) ==
         static_cast<ssize_t>(data.size());
}

// The same with one fd attached, or none if `fd` is -1.
inline bool send_message(int sock, std::string_view data, int fd) {
  return fd >= 0 ? send_message(sock, data, &fd, 1) : send_message(sock, data, nullptr, 0);
}

// One received reply. Every fd it carried has already been closed (the benches
// only count them), so no path here can leak one.
struct Reply {
  ssize_t size = -1;  // -1: error (errno), 0: peer closed
  std::size_t fds = 0;
  bool truncated = false;
};

inline Reply receive_reply(int sock, char* buffer, std::size_t capacity) {
  Reply reply;
  int flags = 0;
  reply.size = fdbroker_bench::raw_recv_each(
      sock, buffer, capacity, max_fds, &flags, [&](const unsigned char* fds, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
          int fd;
          std::memcpy(&fd, fds + i * sizeof(int), sizeof(int));
          ::close(fd);
        }
        reply.fds += n;
      });
  reply.truncated = reply.size >= 0 && (flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  return reply;
}

// True if the JSON object says "ok": true. Not a parser: both servers write compact
// JSON and "ok" is a key only at the top level of a reply, so a search is enough to
// tell a successful reply from an error reply, which is all the benches need.
inline bool reply_ok(std::string_view reply) {
  std::size_t key = reply.find("\"ok\"");
  if (key == std::string_view::npos) return false;
  std::size_t pos = key + 4;
  while (pos < reply.size() && (reply[pos] == ' ' || reply[pos] == ':')) ++pos;
  return reply.substr(pos, 4) == "true";
}

// The p-th percentile (0..1) of latencies in ns, in µs; 0 if there are none.
// Reorders `v` (nth_element), which keeps it valid for the next call.
inline double percentile_us(std::vector<std::uint64_t>& v, double p) {
  if (v.empty()) return 0;
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

}  // namespace bench
