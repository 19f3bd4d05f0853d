// SPDX-License-Identifier: LGPL-2.1-or-later
// Bringing a broker back from the descriptors it was started with: systemd's
// socket and fd store (LISTEN_FDS/LISTEN_FDNAMES), or a predecessor's upgrade
// (upgrade.hpp), which passes the very same names. "listen" is the listening
// socket, "state.<seq>" the state memfd (systemd_fd_store.hpp wrote it), and
// "e<serial>.<index>" the entries' descriptors.
#pragma once

#include <cstdint>
#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>
#include <map>
#include <string>
#include <vector>

#include "fd_store.hpp"

namespace fdbroker::daemon {

struct NamedFd {
  std::string name;
  unique_fd fd;
};

struct RestoredEntry {
  StoredEntry entry;  // fds, meta, owner, generation, expiry set; not yet rendered
  std::uint64_t serial = 0;
};

struct Restored {
  unique_fd listener;  // invalid: none was passed (the broker binds its own)
  std::vector<RestoredEntry> entries;
  std::map<std::string, std::string, std::less<>> static_openings;  // name → declaration
  std::uint64_t next_generation = 0;
  std::uint64_t next_serial = 0;
  // The socket file the previous broker created itself and removes at exit (an
  // upgrade without systemd); empty when the socket is systemd's.
  std::string socket_unlink;
  std::vector<std::uint64_t> state_seqs;  // the state memfds passed (newest used)
  std::vector<std::string> orphans;       // fdnames no entry claimed (closed here)
  std::vector<std::string> warnings;      // one line per thing that could not come back
};

// Everything passed through LISTEN_FDS, parsed by lib's parse_listen_fds (unsets
// LISTEN_*, marks the fds close-on-exec). Errors: EINVAL (malformed variables, or
// fds were passed but none is the listening socket); EBADF (a passed fd is not
// open); ENOTSOCK, EPROTOTYPE if "listen" is not a listening AF_UNIX
// SOCK_SEQPACKET socket.
[[nodiscard]] result<Restored> take_passed_fds();

// The same from fds in hand (owned: what is not restored is closed).
[[nodiscard]] result<Restored> restore_from(std::vector<NamedFd> fds);

}  // namespace fdbroker::daemon
