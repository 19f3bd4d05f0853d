// SPDX-License-Identifier: LGPL-2.1-or-later
// Descriptors inherited through the socket-activation convention of systemd (and of
// `fdbrokerctl exec`): LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, fds from 3 on. Parsed
// with the standard library alone: libfdbroker does not link libsystemd.
//
// Differences from sd_listen_fds_with_names(), on purpose:
//  - The fds are claimed one by one, by name (take()); unclaimed ones stay available
//    for later calls, so several fdbroker::listen() calls can share one inheritance.
//  - The environment is left alone unless unset_environment() is called: getenv and
//    unsetenv are not thread-safe, and the variables are harmless to children anyway
//    (their LISTEN_PID is not their pid). Only a process that exec()s itself in place
//    (same pid) must unset them first; the handoff API's upgrade() spawns a new
//    process with them removed.
#pragma once

#include <fdbroker/export.hpp>
#include <fdbroker/result.hpp>
#include <fdbroker/unique_fd.hpp>

#include <sys/types.h>

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fdbroker {

// The first inherited descriptor number (SD_LISTEN_FDS_START).
inline constexpr int listen_fds_start = 3;

struct InheritedFd {
  int fd = -1;       // borrowed: owned by the InheritedFds set until taken
  std::string name;  // from LISTEN_FDNAMES, "unknown" when that is unset
};

// What the three variables say for process `self`, without touching any fd:
//  - listen_pid unset (nullptr) or not `self`: nothing was passed to us: empty.
//  - listen_fds unset: empty; otherwise a decimal count n (0..INT_MAX-3), such
//    that fds 3..3+n-1 stay under the hard RLIMIT_NOFILE.
//  - listen_fdnames unset: every name "unknown" (systemd's default); otherwise
//    exactly n colon-separated names.
// Errors: EINVAL for malformed numbers or a name count that differs from n.
[[nodiscard]] FDBROKER_API result<std::vector<InheritedFd>> parse_listen_fds(
    const char* listen_pid, const char* listen_fds, const char* listen_fdnames,
    pid_t self) noexcept;

// A set of inherited descriptors that owns the fds until they are taken. Thread-safe.
class FDBROKER_API InheritedFds {
 public:
  InheritedFds() = default;
  // Owns `fds` (closed by the destructor unless taken).
  explicit InheritedFds(std::vector<InheritedFd> fds);
  InheritedFds(const InheritedFds&) = delete;
  InheritedFds& operator=(const InheritedFds&) = delete;
  ~InheritedFds();

  // Reads this process's environment (not unsetting it) and takes ownership of the
  // fds it names, marking each close-on-exec so that they do not leak into children.
  // Errors (thrown as std::system_error): EINVAL (malformed variables), EBADF (a
  // named fd is not open).
  static InheritedFds from_environment();

  // The first not yet taken fd named `name`, now owned by the caller; nullopt if none.
  std::optional<unique_fd> take(std::string_view name);
  // The fds not yet taken, still owned by this set.
  [[nodiscard]] std::vector<InheritedFd> remaining() const;

 private:
  mutable std::mutex mutex_;
  std::vector<InheritedFd> fds_;
};

// The process-wide set, read from the environment on first use (thread-safe).
// Throws like InheritedFds::from_environment() on that first use.
FDBROKER_API InheritedFds& inherited_fds();

// Unsets LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (after reading them into
// inherited_fds(), so nothing is lost). Not thread-safe against concurrent getenv.
FDBROKER_API void unset_listen_environment();

}  // namespace fdbroker
