// SPDX-License-Identifier: LGPL-2.1-or-later
#include "open_beneath.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace fdbroker::daemon {
namespace {

// How often a resolution that raced with a rename (EAGAIN), or a create that raced
// with an unlink, is tried before giving up with EAGAIN.
constexpr int max_attempts = 8;

std::string quoted(std::string_view path) {
  std::string out = "'";
  out += path;
  out += '\'';
  return out;
}

Failure failure_at(std::string_view what, std::string_view path, int err) {
  std::string text(what);
  text += ' ';
  text += quoted(path);
  return os_failure(text, err);
}

Failure refusal(int err, std::string_view path, std::string_view why) {
  return {err, quoted(path) + ' ' + std::string(why)};
}

// Defence in depth: the walk would follow a '..' out of the root, and a NUL would
// cut the path short, so a malformed path is refused here too.
bool well_formed(std::string_view relative) {
  if (relative.empty() || relative.find('\0') != std::string_view::npos) return false;
  std::size_t start = 0;
  while (true) {
    std::size_t end = relative.find('/', start);
    std::string_view segment = relative.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

std::optional<Failure> malformed_spec(const OpenSpec& spec, std::string_view path) {
  bool access_ok = spec.access == O_RDONLY || spec.access == O_WRONLY || spec.access == O_RDWR;
  if (!access_ok) return refusal(EINVAL, path, "asks for an unknown access mode");
  if (spec.excl && !spec.create) return refusal(EINVAL, path, "asks for excl without create");
  if ((spec.trunc || spec.append) && spec.access == O_RDONLY)
    return refusal(EINVAL, path, "asks for trunc or append with rdonly");
  return std::nullopt;
}

// The mount a descriptor is on: its mount id where statx reports one (Linux 5.8+),
// else its st_dev. A bind mount of a directory of the same file system has the same
// st_dev, so only the mount id tells it apart.
struct MountRef {
  bool has_id = false;
  std::uint64_t id = 0;
  dev_t dev = 0;
  bool same_as(const MountRef& other) const {
    return has_id && other.has_id ? id == other.id : dev == other.dev;
  }
};

struct Identity {
  mode_t type = 0;  // S_IFMT bits
  MountRef mount;
};

std::optional<Identity> identify(int fd) {
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MNT_ID, &sx) < 0)
    return std::nullopt;
  Identity out;
  out.type = sx.stx_mode & S_IFMT;
  out.mount.has_id = (sx.stx_mask & STATX_MNT_ID) != 0;
  out.mount.id = sx.stx_mnt_id;
  out.mount.dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  return out;
}

// `relative` as one O_PATH descriptor beneath `base`, through openat2. A final
// symlink comes back as the link itself (O_PATH|O_NOFOLLOW): the caller refuses it.
// Failures name `shown`, the path as the client asked for it.
Outcome<unique_fd> resolve_openat2(int base, std::string_view relative, std::string_view shown,
                                   bool same_mount) {
  std::string path(relative);
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
  if (same_mount) how.resolve |= RESOLVE_NO_XDEV;
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    long fd = ::syscall(SYS_openat2, base, path.c_str(), &how, sizeof how);
    if (fd >= 0) return unique_fd(static_cast<int>(fd));
    // EAGAIN: a rename or mount elsewhere raced with the lookup; the kernel asks
    // for a retry. EINTR: a signal to this worker thread.
    if (errno != EAGAIN && errno != EINTR) return failure_at("resolve", shown, errno);
  }
  return refusal(EAGAIN, shown, "kept changing while it was resolved");
}

// The same policy, one component at a time: each is opened O_PATH|O_NOFOLLOW
// (never following a symlink, never running a driver's open) and examined on the
// descriptor it gave, not by name, so what is checked is what the next step uses.
// Not O_DIRECTORY for the intermediates: reading the type from the descriptor makes
// a symlink in the middle ELOOP, as openat2 answers, where O_DIRECTORY would give
// ENOTDIR and a second look by name (fstatat) could race with a rename.
Outcome<unique_fd> resolve_walk(int base, std::string_view relative, std::string_view shown,
                                bool same_mount) {
  std::optional<Identity> base_identity;
  if (same_mount && !(base_identity = identify(base)))
    return failure_at("statx of the root of", shown, errno);
  unique_fd current;
  int dir = base;
  std::size_t start = 0;
  while (true) {
    std::size_t end = relative.find('/', start);
    bool last = end == std::string_view::npos;
    std::string segment(relative.substr(start, last ? std::string_view::npos : end - start));
    unique_fd next(::openat(dir, segment.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return failure_at("resolve", shown, errno);
    std::optional<Identity> id = identify(next.get());
    if (!id) return failure_at("statx in", shown, errno);
    if (same_mount && !id->mount.same_as(base_identity->mount))
      return refusal(EXDEV, shown, "crosses a mount point, which the rule does not allow");
    if (!last) {
      // openat2's answers for the same paths.
      if (id->type == S_IFLNK) return refusal(ELOOP, shown, "has a symlink in it");
      if (id->type != S_IFDIR) return refusal(ENOTDIR, shown, "has a non-directory in it");
    }
    current = std::move(next);
    dir = current.get();
    if (last) return current;
    start = end + 1;
  }
}

Outcome<unique_fd> resolve(int base, std::string_view relative, std::string_view shown,
                           bool same_mount, Resolver resolver) {
  return resolver == Resolver::walk ? resolve_walk(base, relative, shown, same_mount)
                                    : resolve_openat2(base, relative, shown, same_mount);
}

// Refuses what the rule does not allow, on the O_PATH descriptor's stat.
std::optional<Failure> check_type(const struct stat& st, unsigned types, std::string_view path) {
  switch (st.st_mode & S_IFMT) {
    case S_IFLNK:
      return refusal(ELOOP, path, "is a symlink");
    case S_IFDIR:
      return refusal(EISDIR, path, "is a directory");
    case S_IFREG:
      if ((types & type_file) != 0) return std::nullopt;
      return refusal(EOPNOTSUPP, path, "is a regular file, which the rule does not allow");
    case S_IFIFO:
      if ((types & type_fifo) != 0) return std::nullopt;
      return refusal(EOPNOTSUPP, path, "is a FIFO, which the rule does not allow");
    case S_IFSOCK:
      if ((types & type_socket) != 0) return std::nullopt;
      return refusal(EOPNOTSUPP, path, "is a socket, which the rule does not allow");
    case S_IFCHR:
    case S_IFBLK:
      if ((types & type_device) != 0) return std::nullopt;
      return refusal(EOPNOTSUPP, path, "is a device, which the rule does not allow");
    default:
      return refusal(EOPNOTSUPP, path, "is of an unknown file type");
  }
}

// procfs and sysfs files are kernel interfaces, not files (the reason a rule's root
// may not be on either): refused wherever they are mounted below the root.
std::optional<Failure> check_file_system(int fd, std::string_view path) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) < 0) return failure_at("fstatfs", path, errno);
  if (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC)
    return refusal(EOPNOTSUPP, path, "is on procfs or sysfs, a kernel interface");
  return std::nullopt;
}

// A second name for a file elsewhere (a hard link to /etc/shadow planted in a
// writable directory) must not be written through the rule's root.
std::optional<Failure> check_links(const struct stat& st, const OpenSpec& spec,
                                   std::string_view path) {
  if (spec.access != O_RDONLY && st.st_nlink > 1)
    return refusal(EACCES, path, "has more than one hard link, so it is not opened for writing");
  return std::nullopt;
}

int real_flags(const OpenSpec& spec) {
  // O_NONBLOCK until the descriptor is handed over: neither a FIFO nor a device's
  // open may block the worker. Never O_PATH, O_TMPFILE, O_ASYNC or O_DIRECT.
  int flags = spec.access | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  if (spec.append) flags |= O_APPEND;
  return flags;
}

std::optional<Failure> finish_flags(int fd, const OpenSpec& spec, std::string_view path) {
  if (spec.nonblock) return std::nullopt;
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
    return failure_at("clear O_NONBLOCK of", path, errno);
  return std::nullopt;
}

// Opens an existing `relative` beneath `base`: resolve, check, re-open, verify.
// ENOENT tells open_or_create that the name vanished.
Outcome<Opened> open_existing(int base, std::string_view relative, std::string_view path,
                              const OpenSpec& spec, const Containment& rule, Resolver resolver) {
  Outcome<unique_fd> resolved = resolve(base, relative, path, rule.same_mount, resolver);
  if (!resolved) return std::move(resolved).failure();
  int handle = resolved->get();
  struct stat st {};
  if (::fstat(handle, &st) < 0) return failure_at("fstat", path, errno);
  if (auto refused = check_type(st, rule.types, path)) return std::move(*refused);
  if (auto refused = check_file_system(handle, path)) return std::move(*refused);
  if (auto refused = check_links(st, spec, path)) return std::move(*refused);

  // Only now is the file opened for real, through the descriptor that was checked.
  std::string proc_path = "/proc/self/fd/" + std::to_string(handle);
  unique_fd fd(::open(proc_path.c_str(), real_flags(spec)));
  if (!fd.valid()) return failure_at("open (through " + proc_path + ")", path, errno);
  struct stat opened {};
  if (::fstat(fd.get(), &opened) < 0) return failure_at("fstat", path, errno);
  // The same inode, or /proc is not what it should be. The link count again: a
  // link made between the check and the open counts too.
  if (opened.st_dev != st.st_dev || opened.st_ino != st.st_ino)
    return refusal(EAGAIN, path, "changed between its check and its open");
  if (auto refused = check_links(opened, spec, path)) return std::move(*refused);
  if (auto failed = finish_flags(fd.get(), spec, path)) return std::move(*failed);
  // Last, once nothing can refuse the open any more (O_TRUNC would have cut the
  // file at the open). FIFOs and devices ignore O_TRUNC; so does this.
  if (spec.trunc && S_ISREG(opened.st_mode) && ::ftruncate(fd.get(), 0) < 0)
    return failure_at("truncate", path, errno);
  return Opened{std::move(fd), false};
}

// Removes what create_new made, unless the name no longer is that inode.
void remove_created(int parent, const std::string& name, const struct stat& created) {
  struct stat now {};
  // A small window remains between this check and the unlink; the name is in a
  // directory beneath the root, and the worst outcome is removing a file that was
  // put in its place in that window.
  if (::fstatat(parent, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
      now.st_dev == created.st_dev && now.st_ino == created.st_ino) {
    ::unlinkat(parent, name.c_str(), 0);
  }
}

// Permissions and ownership of a file create_new just made (mode 0 until now).
std::optional<Failure> adopt_created(int fd, const OpenSpec& spec, const Containment& rule,
                                     std::string_view path) {
  mode_t permissions = (spec.mode ? *spec.mode & rule.mode : rule.mode) & 0777;
  if (::fchmod(fd, permissions) < 0) return failure_at("chmod", path, errno);
  if (rule.owner || rule.group) {
    uid_t owner = rule.owner.value_or(static_cast<uid_t>(-1));
    gid_t group = rule.group.value_or(static_cast<gid_t>(-1));
    if (::fchown(fd, owner, group) < 0) return failure_at("chown", path, errno);
  }
  return finish_flags(fd, spec, path);
}

// Creates `name` in `parent`: O_EXCL, so only a file this call made is adopted,
// and O_NOFOLLOW, so a symlink in its place (dangling or not) is EEXIST. Mode 0
// until fchmod: nobody else opens it in between, and the umask plays no part.
Outcome<Opened> create_new(int parent, const std::string& name, std::string_view path,
                           const OpenSpec& spec, const Containment& rule) {
  int flags = real_flags(spec) | O_CREAT | O_EXCL | O_NOFOLLOW;
  unique_fd fd(::openat(parent, name.c_str(), flags, 0));
  if (!fd.valid()) return failure_at("create", path, errno);
  struct stat created {};
  if (::fstat(fd.get(), &created) < 0) {
    // Unreachable in practice; without the inode the name cannot be removed safely.
    return failure_at("fstat of the created", path, errno);
  }
  if (auto failed = adopt_created(fd.get(), spec, rule, path)) {
    fd.reset();
    remove_created(parent, name, created);
    return std::move(*failed);
  }
  return Opened{std::move(fd), true};
}

Outcome<Opened> open_or_create(int root, std::string_view relative, const OpenSpec& spec,
                               const Containment& rule, Resolver resolver) {
  if ((rule.types & type_file) == 0)
    return refusal(EOPNOTSUPP, relative, "would be a regular file, which the rule does not allow");
  std::size_t slash = relative.rfind('/');
  std::string name(slash == std::string_view::npos ? relative : relative.substr(slash + 1));
  unique_fd parent_fd;
  int parent = root;
  if (slash != std::string_view::npos) {
    Outcome<unique_fd> resolved =
        resolve(root, relative.substr(0, slash), relative, rule.same_mount, resolver);
    if (!resolved) return std::move(resolved).failure();
    parent_fd = std::move(resolved).value();
    struct stat st {};
    if (::fstat(parent_fd.get(), &st) < 0) return failure_at("fstat", relative, errno);
    if (S_ISLNK(st.st_mode)) return refusal(ELOOP, relative, "has a symlink in it");
    if (!S_ISDIR(st.st_mode)) return refusal(ENOTDIR, relative, "has a non-directory in it");
    parent = parent_fd.get();
  }
  for (int attempt = 0; attempt < max_attempts; ++attempt) {
    Outcome<Opened> created = create_new(parent, name, relative, spec, rule);
    if (created || created.failure().err != EEXIST || spec.excl) return created;
    // It exists: open it as any existing file, resolved beneath the parent the
    // same way (one component, on the root's mount when same_mount).
    Outcome<Opened> existing = open_existing(parent, name, relative, spec, rule, resolver);
    if (existing || existing.failure().err != ENOENT) return existing;
    // Removed between the two steps: create it after all.
  }
  return refusal(EAGAIN, relative, "kept appearing and disappearing while it was created");
}

}  // namespace

std::optional<Resolver> probe_resolver() {
  // Read at the probe only; nothing sets it while the broker runs.
  const char* forced = std::getenv("FDBROKER_RESOLVER");  // NOLINT(concurrency-mt-unsafe)
  if (forced != nullptr && std::string_view(forced) == "walk") return Resolver::walk;
  if (forced != nullptr && std::string_view(forced) == "openat2") return Resolver::openat2;
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV;
  long fd = ::syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return Resolver::openat2;
  }
  if (errno == ENOSYS || errno == EPERM) return Resolver::walk;
  return std::nullopt;
}

Resolver default_resolver() {
  // 0: not probed yet; else the Resolver + 1. Two threads may both probe: same answer.
  static std::atomic<int> cached{0};
  int known = cached.load(std::memory_order_relaxed);
  if (known != 0) return static_cast<Resolver>(known - 1);
  std::optional<Resolver> probed = probe_resolver();
  if (!probed) return Resolver::openat2;
  cached.store(static_cast<int>(*probed) + 1, std::memory_order_relaxed);
  return *probed;
}

Outcome<Opened> open_beneath(int root, std::string_view relative, const OpenSpec& spec,
                             const Containment& rule, Resolver resolver) {
  if (!well_formed(relative)) return refusal(EINVAL, relative, "is not a relative path");
  if (auto malformed = malformed_spec(spec, relative)) return std::move(*malformed);
  if (spec.create) return open_or_create(root, relative, spec, rule, resolver);
  return open_existing(root, relative, relative, spec, rule, resolver);
}

}  // namespace fdbroker::daemon
