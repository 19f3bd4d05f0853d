// SPDX-License-Identifier: LGPL-2.1-or-later
// Who a connected peer is beyond its uid: its cgroup and the systemd unit it runs
// in, read once per connection, the first time they are needed (Broker::identify:
// hello, a rule that names units, open and bind). Reading them at every accept
// tripled what a connect-get-close costs the broker (about 45 µs more per
// connection: sd_pid_get_unit reads /proc twice); a client that never needs its
// unit does not pay for it. The process is the one that connected whenever it is
// read: SO_PEERPIDFD names the connecting process, not whoever has its pid now,
// and a peer that exited meanwhile has no unit. The unit is only trusted
// when the kernel hands out a pidfd for the peer (SO_PEERPIDFD, Linux 6.5+): the
// pidfd proves the pid still named that process after its cgroup was read, so a
// pid reused meanwhile cannot lend its unit to a caller that has exited.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace fdbroker::daemon {

struct PeerUnit {
  // "nginx.service", "user@1000.service"; nullopt when the peer runs in no unit,
  // had exited by the time it was read, or there is no pidfd to prove it.
  std::optional<std::string> unit;
  // The cgroup v2 path ("/system.slice/nginx.service"); "" if unknown. Without a
  // pidfd it comes from the SO_PEERCRED pid unverified: for information only.
  std::string cgroup;
  // Whether the kernel gave a pidfd for the peer; if not, why (0: not asked, or
  // an old kernel: ENOPROTOOPT is not an error).
  bool pidfd = false;
  int pidfd_error = 0;
};

// Whether SO_PEERPIDFD is asked for. `never` is for tests only: it takes the
// path of a kernel without SO_PEERPIDFD (ENOPROTOOPT) on a kernel that has it.
enum class PidfdUse { when_available, never };

// `never` if the environment variable FDBROKER_TEST_NO_PIDFD is "1" (tests of the
// old-kernel fallback set it for a broker they start), else `when_available`.
// Read once per process.
PidfdUse pidfd_use_from_environment();

// The path of the cgroup v2 line ("0::/a/b") in the text of /proc/<pid>/cgroup,
// or nullopt if there is none (a cgroup v1-only system), the text is not of
// that shape, or the path has a control character (a name made in a cgroup
// tree delegated to a user).
std::optional<std::string> cgroup_v2_path(std::string_view proc_pid_cgroup);

// The unit and cgroup of the peer of the connected AF_UNIX socket `sock` (borrowed)
// whose SO_PEERCRED pid is `pid`. Costs one getsockopt, one small /proc read and
// libsystemd's sd_pid_get_unit(); the pidfd is closed before it returns. Never
// fails: what cannot be known is left unknown (no pidfd for lack of descriptors,
// EMFILE, gives no unit either, so that rules naming units do not match).
PeerUnit resolve_peer_unit(int sock, pid_t pid, PidfdUse use);

}  // namespace fdbroker::daemon
