// SPDX-License-Identifier: LGPL-2.1-or-later
// The baseline the library is measured against: one ping-pong round trip with fd
// passing written by hand (raw_wire.hpp: sendmsg()/recvmsg(), refusing MSG_CTRUNC
// without leaking). Shared by the C++ benchmark and the Python benchmark's raw C
// loop, so that both compare against the very same code.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "raw_wire.hpp"

namespace fdbroker_bench {

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
