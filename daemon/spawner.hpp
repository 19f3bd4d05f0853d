// SPDX-License-Identifier: LGPL-2.1-or-later
// The spawner: a small process fdbrokerd forks at its start, before the event
// loop, the closer's threads or any client's descriptor exist, that forks and
// execs the successor on an upgrade (upgrade.hpp).
//
// Why: a descriptor queued on the closer behind a close that hangs (a FUSE
// daemon that stopped answering, closer.hpp) is still in the broker's fd table.
// A child forked by the broker would inherit it, and its exec (close-on-exec)
// or close_range would hang on it. The spawner's table holds only its end of a
// SOCK_SEQPACKET socketpair, so its children start clean.
//
// (In a broker started by an upgrade, the entries passed to it are open at that
// moment; the spawner closes its copies on a thread, see close_inherited().)
//
// An upgrade: the broker makes a socketpair for it and sends the spawner a
// request (binary, argv, envp, the number m of descriptors) with one end
// attached. The spawner forks; the child moves that end above 3 + m, closes
// everything else (all safe: sockets only), then receives the m descriptors
// from the broker on it, which the kernel installs at the lowest free numbers:
// exactly 3 .. 3 + m - 1, with no dup2 or close of any of them. It then execs.
// The spawner answers with the child's pid and, later, its wait status.
//
// Lifetime: the spawner dies with the broker (PR_SET_PDEATHSIG, and EOF on its
// socket). The successor does not: it is the spawner's child, and
// PR_SET_PDEATHSIG is not inherited; when the spawner ends it is reparented.
#pragma once

#include <sys/types.h>

#include <fdbroker/unique_fd.hpp>
#include <string>
#include <vector>

namespace fdbroker::daemon {

// One message from the spawner (fixed size).
struct SpawnerReport {
  // 'P': started `pid`. 'F': the fork failed, `value` is the errno.
  // 'E': `pid` ended, `value` is its wait status.
  char kind = 0;
  pid_t pid = -1;
  int value = 0;
};

// Forks the spawner. Call while this process runs one thread, before the event
// loop and the closer; descriptors it inherits (the entries an upgrade passed)
// are closed on a thread of the spawner (spawner.cpp). Returns the broker's end of the socket
// (close-on-exec), or an invalid unique_fd with errno set. Never returns in the spawner.
unique_fd start_spawner();

// Sends a spawn request on `spawner` (the broker's end): run `path` with `argv`
// and `envp`, and `m` descriptors to come on `channel`'s peer, which is
// attached. 0 or an errno.
int send_spawn_request(int spawner, int channel_peer, const std::string& path,
                       const std::vector<std::string>& argv, const std::vector<std::string>& envp,
                       int m);

}  // namespace fdbroker::daemon
