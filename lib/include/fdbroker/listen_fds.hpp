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
#include <system_error>
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

// ---- passing fds to a program: the other side of the convention

// The variables that describe fds 3..3+n-1 named `names` (one name per fd):
// {"LISTEN_FDS=<n>", "LISTEN_FDNAMES=<a:b:...>"}. LISTEN_PID is the receiving
// process's own pid: listen_pid_variable(), added by whoever knows it (the child
// after fork, or a process that exec()s in place).
[[nodiscard]] FDBROKER_API std::vector<std::string> listen_fds_variables(
    const std::vector<std::string>& names);
// "LISTEN_PID=<pid>".
[[nodiscard]] FDBROKER_API std::string listen_pid_variable(pid_t pid);

// A copy of `environment` (an environ-style array ending in nullptr) without
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES: for a child that must not take this
// process's inheritance for its own.
[[nodiscard]] FDBROKER_API std::vector<std::string> environment_without_listen_fds(
    const char* const* environment);

// Makes fds[i] descriptor 3+i, not close-on-exec, so that an exec() passes it:
// each is first moved above 3+n-1 (close-on-exec, the original closed), then
// dup2()ed into place. An fd already at its place is left as is (no dup, no
// close: only FD_CLOEXEC is cleared). On success fds[i].get() == 3+i; the vector
// still owns them. Other descriptors at 3..3+n-1 are replaced (closed).
// Errors: EMFILE, EBADF; on error some fds may have moved (still owned).
[[nodiscard]] FDBROKER_API std::error_code try_place_listen_fds(
    std::vector<unique_fd>& fds) noexcept;

// For a process that exec()s in place with fds placed by try_place_listen_fds():
// sets LISTEN_PID (this pid), LISTEN_FDS and LISTEN_FDNAMES. Not thread-safe
// against concurrent getenv.
FDBROKER_API void set_listen_environment(const std::vector<std::string>& names);

}  // namespace fdbroker
