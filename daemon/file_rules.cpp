// SPDX-License-Identifier: LGPL-2.1-or-later
#include "file_rules.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <optional>

#include "glob.hpp"
#include "policy.hpp"

namespace fdbroker::daemon {

unsigned rights_needed(int access, bool create, bool trunc, bool append) {
  unsigned rights = 0;
  if (access == O_RDONLY || access == O_RDWR) rights |= right_read;
  if (access == O_WRONLY || access == O_RDWR || trunc || append) rights |= right_write;
  if (create) rights |= right_create;
  return rights;
}

std::string root_syntax_problem(std::string_view root) {
  if (root.empty() || root.front() != '/') return "must be an absolute path";
  if (root.find('\0') != std::string_view::npos) return "must not contain a NUL byte";
  if (root == "/") return {};
  if (root.back() == '/') return "must not end in '/'";
  std::size_t start = 1;
  while (start <= root.size()) {
    std::size_t slash = root.find('/', start);
    if (slash == std::string_view::npos) slash = root.size();
    std::string_view segment = root.substr(start, slash - start);
    if (segment.empty()) return "must not contain \"//\"";
    if (segment == "." || segment == "..") return "must not contain a \".\" or \"..\" segment";
    start = slash + 1;
  }
  return {};
}

namespace {

// File systems whose regular files are kernel interfaces: opening or writing
// one does something (/proc/sys, /sys/power/state, cgroup.procs...).
std::optional<std::string_view> kernel_interface_fs(int fd) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) < 0) return std::nullopt;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case PROC_SUPER_MAGIC:
      return "procfs";
    case SYSFS_MAGIC:
      return "sysfs";
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
      return "cgroupfs";
    case DEBUGFS_MAGIC:
      return "debugfs";
    case TRACEFS_MAGIC:
      return "tracefs";
    case SECURITYFS_MAGIC:
      return "securityfs";
    case BPF_FS_MAGIC:
      return "bpffs";
    case EFIVARFS_MAGIC:
      return "efivarfs";
    default:
      return std::nullopt;
  }
}

void warn_if_others_write(const struct stat& st, const std::string& path, bool is_root,
                          const std::string& where, std::vector<std::string>& warnings) {
  if ((st.st_mode & S_IWOTH) == 0 || (st.st_mode & S_ISVTX) != 0) return;
  if (is_root) {
    warnings.push_back(where + ": \"" + path +
                       "\" is writable by every user and not sticky: anyone can replace or plant "
                       "the files its globs match");
  } else {
    warnings.push_back(where + ": ancestor \"" + path +
                       "\" is writable by every user and not sticky: anyone can move the root "
                       "away and put another directory in its place before the next reload");
  }
}

}  // namespace

Outcome<unique_fd> open_rule_root(std::string_view root, const std::string& where,
                                  std::vector<std::string>& warnings) {
  if (std::string why = root_syntax_problem(root); !why.empty()) {
    return Failure{EINVAL, where + ": " + why};
  }
  unique_fd dir(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return os_failure(where + ": open \"/\"", errno);
  struct stat st {};
  if (::fstat(dir.get(), &st) < 0) return os_failure(where + ": stat \"/\"", errno);
  warn_if_others_write(st, "/", root == "/", where, warnings);
  // One component at a time, never following a symlink: the descriptor is the
  // directory the configuration names, not where a link happened to point.
  std::string walked;
  std::size_t start = 1;
  while (start < root.size()) {
    std::size_t slash = root.find('/', start);
    if (slash == std::string_view::npos) slash = root.size();
    std::string component(root.substr(start, slash - start));
    walked += '/';
    walked += component;
    start = slash + 1;
    unique_fd next(::openat(dir.get(), component.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) return os_failure(where + ": open \"" + walked + "\"", errno);
    if (::fstat(next.get(), &st) < 0) return os_failure(where + ": stat \"" + walked + "\"", errno);
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlinkat(dir.get(), component.c_str(), target, sizeof target - 1);
      std::string to = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
      return Failure{ELOOP, where + ": \"" + walked + "\" is a symlink (to \"" + to +
                                "\"); name the real directory: the broker follows no symlink"};
    }
    if (!S_ISDIR(st.st_mode)) {
      return Failure{ENOTDIR, where + ": \"" + walked + "\" is not a directory"};
    }
    warn_if_others_write(st, walked, start > root.size(), where, warnings);
    dir = std::move(next);
  }
  if (auto fs = kernel_interface_fs(dir.get())) {
    return Failure{EINVAL, where + ": \"" + std::string(root) + "\" is on " + std::string(*fs) +
                               ", whose files are kernel interfaces, not files to hand out"};
  }
  return dir;
}

std::string write_problem(int root_fd, const FileRule& rule) {
  if ((rule.allow & (right_write | right_create)) == 0) return {};
  struct statvfs vfs {};
  if (::fstatvfs(root_fd, &vfs) == 0 && (vfs.f_flag & ST_RDONLY) != 0) {
    return "\"" + rule.root +
           "\" is on a read-only mount where the broker runs, so write and create fail with "
           "EROFS (under the shipped unit's ProtectSystem=strict: add it to ReadWritePaths= in a "
           "drop-in)";
  }
  if ((rule.allow & right_create) != 0) {
    // Through /proc/self/fd: the descriptor is O_PATH, and faccessat needs a path.
    std::string self = "/proc/self/fd/" + std::to_string(root_fd);
    if (::faccessat(AT_FDCWD, self.c_str(), W_OK, AT_EACCESS) < 0 &&
        (errno == EACCES || errno == EPERM || errno == EROFS)) {
      return "the broker may not write in \"" + rule.root + "\", so create fails with " +
             (errno == EROFS ? "EROFS" : "EACCES");
    }
  }
  return {};
}

Outcome<std::shared_ptr<const FilePolicy>> FilePolicy::open(std::vector<FileRule> rules,
                                                            std::vector<std::string>& warnings) {
  constexpr std::size_t refused = static_cast<std::size_t>(-1);
  std::shared_ptr<FilePolicy> policy(new FilePolicy());
  std::map<std::string, std::size_t, std::less<>> by_root;
  int first_err = 0;
  std::string why;
  for (const FileRule& rule : rules) {
    std::size_t index = refused;
    if (auto known = by_root.find(rule.root); known != by_root.end()) {
      index = known->second;
    } else {
      Outcome<unique_fd> fd = open_rule_root(rule.root, rule.origin + ".root", warnings);
      if (fd) {
        policy->roots_.push_back(std::move(*fd));
        index = policy->roots_.size() - 1;
      } else {
        if (first_err == 0) first_err = fd.failure().err;
        if (!why.empty()) why += '\n';
        why += fd.failure().why;
      }
      by_root.emplace(rule.root, index);
    }
    policy->root_index_.push_back(index);
    if (index == refused) continue;
    if (std::string problem = write_problem(policy->roots_[index].get(), rule); !problem.empty()) {
      warnings.push_back(rule.origin + " (\"" + rule.name + "\"): " + problem);
    }
  }
  if (first_err != 0) return Failure{first_err, std::move(why)};
  policy->rules_ = std::move(rules);
  return std::shared_ptr<const FilePolicy>(std::move(policy));
}

namespace {

// The rest of `path` below `root` ("a/b" for "/srv/data/a/b" under "/srv/data"),
// segment-wise: never a string prefix ("/srv/data-evil/x" is not below
// "/srv/data"), and the root itself has no rest.
std::optional<std::string_view> below(std::string_view root, std::string_view path) {
  std::size_t skip = root == "/" ? 1 : root.size() + 1;
  if (path.size() <= skip) return std::nullopt;
  if (root != "/" && (path.compare(0, root.size(), root) != 0 || path[root.size()] != '/'))
    return std::nullopt;
  if (root == "/" && path.front() != '/') return std::nullopt;
  return path.substr(skip);
}

}  // namespace

Outcome<FileGrant> FilePolicy::decide(const ClientIdentity& peer, std::string_view absolute_path,
                                      unsigned rights) const {
  // The request parser refuses such paths; a second check costs nothing, and a
  // path whose segments are not what they seem must never reach a glob.
  if (absolute_path == "/" || !root_syntax_problem(absolute_path).empty()) {
    return Failure{EINVAL, "not a normalized absolute path"};
  }
  std::optional<std::size_t> granted;
  std::string_view granted_rest;
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const FileRule& rule = rules_[i];
    if (((rule.allow | rule.deny) & rights) == 0) continue;
    if (!principals_match(rule.who, peer)) continue;
    auto rest = below(rule.root, absolute_path);
    if (!rest) continue;
    bool matches = false;
    for (const std::string& glob : rule.match) {
      if (glob_match(glob, *rest)) {
        matches = true;
        break;
      }
    }
    if (!matches) continue;
    if ((rule.deny & rights) != 0) {
      return Failure{EACCES, "denied by files rule \"" + rule.name + "\" (" + rule.origin + ")"};
    }
    if (!granted && (rule.allow & rights) == rights) {
      granted = i;
      granted_rest = *rest;
    }
  }
  if (!granted) return Failure{EACCES, "no files rule grants it"};
  return FileGrant{&rules_[*granted], roots_[root_index_[*granted]].get(),
                   std::string(granted_rest)};
}

}  // namespace fdbroker::daemon
