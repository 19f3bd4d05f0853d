// SPDX-License-Identifier: LGPL-2.1-or-later
// The kernel-contained open of the `open` operation (issue 11, §3): a path is
// resolved beneath a rule's root directory without following any symlink, its type
// and link count are checked on an O_PATH descriptor, and only then is it opened for
// real. Creating resolves the parent the same way and removes the file again if a
// later step fails. No global state but the cached resolver probe, no umask: safe to
// call from several worker threads at once.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include <fdbroker/unique_fd.hpp>

#include "failure.hpp"

namespace fdbroker::daemon {

// The file types a rule may allow (a bit set). Directories are never opened.
enum FileType : unsigned { type_file = 1, type_fifo = 2, type_socket = 4, type_device = 8 };

// What the client asked for, already validated for shape by the request parser
// (open_beneath refuses a malformed one with EINVAL all the same).
struct OpenSpec {
  int access = O_RDONLY;  // O_RDONLY, O_WRONLY or O_RDWR
  bool append = false;    // needs O_WRONLY or O_RDWR
  bool create = false;
  bool excl = false;   // only with create
  bool trunc = false;  // not with O_RDONLY; applied after every check passed
  bool nonblock = false;
  std::optional<mode_t> mode;  // requested permission bits for a created file
};

// What the matching rule says about the file it grants.
struct Containment {
  unsigned types = type_file;  // FileType bits
  bool same_mount = false;     // refuse paths that cross a mount point below the root
  // A created file gets (requested mode & this), or this if none was requested;
  // permission bits only (& 0777), whatever the umask.
  mode_t mode = 0600;
  std::optional<uid_t> owner;  // fchown of a created file
  std::optional<gid_t> group;
};

// How a path is resolved beneath the root. Both enforce the same policy.
enum class Resolver : std::uint8_t {
  openat2,  // one openat2() with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS
  walk,     // component by component openat(O_PATH|O_NOFOLLOW), where openat2 is refused
};

// openat2 unless the kernel refuses it (ENOSYS; EPERM from a seccomp filter, as
// container runtimes answer). FDBROKER_RESOLVER=walk (or =openat2) in the
// environment forces one (the tests). Empty when the probe itself failed (EMFILE).
std::optional<Resolver> probe_resolver();

// probe_resolver() once, cached (openat2 until a probe was conclusive).
Resolver default_resolver();

struct Opened {
  unique_fd fd;          // the caller owns it: O_CLOEXEC, O_NONBLOCK only if asked
  bool created = false;  // open_beneath made the file
};

// Opens `relative` beneath the directory `root` (an O_PATH|O_DIRECTORY descriptor,
// borrowed) as `spec` asks and `rule` allows.
//
// `relative`: already validated by the caller: non-empty segments separated by '/',
// none '.' or '..', no leading or trailing '/', no NUL or control character.
//
// Nothing is opened for real (no device's open, no FIFO's) before its type and link
// count were checked, nothing blocks, a refused trunc leaves the file as it was, a
// file this call created is removed again when a later step fails, and every
// descriptor it opened but does not return is closed. Failures (Failure::why names
// `relative`):
//   EINVAL      `relative` or `spec` malformed (the caller should have refused it)
//   ENOENT      a component is missing (or the parent, with create)
//   ENOTDIR     an intermediate component is not a directory
//   ELOOP       a symlink or /proc magic link anywhere in the path (never followed)
//   EEXIST      create+excl and the name exists (a final symlink, dangling or not, too)
//   EXDEV       rule.same_mount and the path crosses a mount point below root
//   EISDIR      the path names a directory
//   EOPNOTSUPP  a file type not in rule.types (create: type_file not in it), or a
//               file on procfs or sysfs (a kernel interface) mounted below the root
//   EACCES      a writable open of a file with more than one hard link
//   ENXIO       a socket file (open(2) cannot open one), or a FIFO opened
//               write-only with no reader
//   EAGAIN      the path kept changing under a rename race after a few retries
//   EMFILE, ENFILE, and what the file system says (EROFS, ENOSPC, EACCES, ...).
Outcome<Opened> open_beneath(int root, std::string_view relative, const OpenSpec& spec,
                             const Containment& rule, Resolver resolver);

}  // namespace fdbroker::daemon
