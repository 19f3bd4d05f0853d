// SPDX-License-Identifier: LGPL-2.1-or-later
// What an fd is, as the `fds` array of the protocol describes it: kind (socket,
// file, directory, pipe, memfd, other) and the details that matter for each.
// Computed once when an entry is stored, never per request.
//
// Nothing here calls into the file system behind a descriptor: the descriptors
// come from clients, and a FUSE file system whose daemon stopped answering
// blocks fstat() (GETATTR) until it answers, forever by default (issue 9).
// statx(AT_EMPTY_PATH | AT_STATX_DONT_SYNC), fcntl(F_GETFL), getsockopt,
// getsockname, readlink(/proc/self/fd/N) and /proc/self/{fdinfo,mountinfo} are
// answered by the kernel from what it already has.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace fdbroker::daemon {

// How probe_fd() learns about a descriptor. `statx` is what runs; the others
// are the fallbacks for older kernels, selectable so that tests exercise them:
// `statx_no_mnt_id` (before 5.8, no STATX_MNT_ID: the mount id from
// /proc/self/fdinfo/N), `no_statx` (before 4.11: fstat, but only for
// descriptors the mount table shows are not on a FUSE file system).
enum class Probe { statx, statx_no_mnt_id, no_statx };

// What the kernel says about a descriptor without asking its file system.
struct FdFacts {
  bool has_mode = false;  // false: the kind cannot be told (kind "other")
  mode_t mode = 0;
  std::optional<std::uint64_t> mount_id;
  std::uint32_t dev_major = 0, dev_minor = 0;
  std::string link;  // readlink(/proc/self/fd/N): a path, "socket:[…]", "anon_inode:[…]", …
};

FdFacts probe_fd(int fd, Probe how = Probe::statx);

// The id of the mount `fd` is on (statx's STATX_MNT_ID, else /proc/self/fdinfo),
// or nullopt. Cheap, never blocks; any thread.
std::optional<std::uint64_t> mount_id_of(int fd);

// The file system type of each mount, from /proc/self/mountinfo, cached and
// re-read when a mount (or device) is not in the cache (at most once a second).
class MountTable {
 public:
  // The fstype of mount `mount_id`, else of a mount of the same device
  // (`major`:`minor`), or nullopt if neither is in this mount namespace (a
  // broker in its own namespace, as the shipped unit runs it, sees the host's
  // file systems under other mount ids: the device still matches).
  std::optional<std::string> fstype(std::optional<std::uint64_t> mount_id, std::uint32_t major,
                                    std::uint32_t minor);
  // Replaces the cache with `mountinfo` (its text), as a read of
  // /proc/self/mountinfo would (the next re-read is a second away); for tests.
  void load(std::string_view mountinfo);

 private:
  void reread();
  std::unordered_map<std::uint64_t, std::string> by_id_;
  std::unordered_map<std::uint64_t, std::string> by_dev_;  // major << 32 | minor
  std::chrono::steady_clock::time_point read_at_{};
  bool read_ = false;
};

// The process's table. The event loop's thread only.
MountTable& mount_table();

// fuse, fuse.<subtype>, fuseblk.
bool is_fuse_type(std::string_view fstype) noexcept;

// Whether `fd` may be on a FUSE file system, found out without calling into it:
// its mount's type in `mounts`. A descriptor whose file system the broker cannot
// see (a mount in another namespace, on no block device) and that is not a
// socket, pipe, memfd or anonymous inode counts as FUSE: it could be one.
// Returns the reason ("fuse.sshfs", "unknown file system on device 0:52"), or
// "" if it is not FUSE.
std::string fuse_reason(int fd, MountTable& mounts, Probe how = Probe::statx);
// The same from facts already probed (a put probes each descriptor once).
std::string fuse_reason(const FdFacts& facts, MountTable& mounts);

// Describes `fd` (borrowed) with probe_fd(), fcntl(F_GETFL), getsockopt and
// getsockname. Never fails: what cannot be found out is left out (a descriptor
// we hold is always describable as at least "other").
nlohmann::json describe_fd(int fd, Probe how = Probe::statx);
// The same from `facts`, probe_fd(fd)'s result.
nlohmann::json describe_fd(int fd, const FdFacts& facts);

// "127.0.0.1:8080", "[::1]:443", "/run/x.sock", "@abstract", "" (unbound).
std::string format_sockaddr(const sockaddr_storage& addr, socklen_t len);

}  // namespace fdbroker::daemon
