// SPDX-License-Identifier: LGPL-2.1-or-later
// The "files" rules: which peers may open which paths, with which rights, and
// the decision for one `open` request. The decision never touches the file
// system (a refused caller learns nothing about which files exist); the rule it
// picks names the root descriptor the open is then resolved beneath
// (open_beneath.hpp). Root and the broker's own uid are not exempt: only a rule
// grants.
#pragma once

#include <fdbroker/unique_fd.hpp>

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "failure.hpp"
#include "open_beneath.hpp"
#include "principals.hpp"

namespace fdbroker::daemon {

struct ClientIdentity;  // policy.hpp

enum FileRight : unsigned { right_read = 1, right_write = 2, right_create = 4 };

struct FileRule {
  std::string name;                // reported in replies and logs
  std::string root;                // absolute, normalized: no "." / ".." / empty segment
  std::vector<std::string> match;  // globs relative to root (glob.hpp)
  Principals who;
  unsigned allow = 0;  // FileRight bits
  unsigned deny = 0;
  Containment containment;
  std::string origin;  // "files[2]"
};

// The rights an open needs: read for rdonly and rdwr; write for wronly, rdwr,
// trunc and append; create for create. `access` is O_RDONLY, O_WRONLY or O_RDWR.
[[nodiscard]] unsigned rights_needed(int access, bool create, bool trunc, bool append);

// What decide() grants: the rule (its name and containment) and its root
// descriptor (O_PATH), with the path relative to that root ("a/b.txt"). Valid
// while the FilePolicy that gave it is held.
struct FileGrant {
  const FileRule* rule = nullptr;
  int root_fd = -1;
  std::string relative;
};

// The rules of one configuration and their root descriptors, opened once at
// load. The broker holds a std::shared_ptr<const FilePolicy>: a reload swaps it,
// and an open running on a worker thread keeps the old one (its roots and
// rules) alive until it is done.
class FilePolicy {
 public:
  // Opens and checks each rule's root (open_rule_root; a root shared by several
  // rules once). Refused roots: the errno of the first (EINVAL, ELOOP, ENOTDIR,
  // ENOENT...), and one line per refused root in why ("files[0].root: ...").
  // Warnings (open_rule_root, write_problem) are appended to `warnings`.
  static Outcome<std::shared_ptr<const FilePolicy>> open(std::vector<FileRule> rules,
                                                         std::vector<std::string>& warnings);

  // May `peer` open `absolute_path` (a checked request path: absolute, no
  // empty, "." or ".." segment, no trailing '/') with `rights` (rights_needed;
  // not 0)? A rule applies when the path is its root + "/" + a rest that one of
  // its globs matches, and the peer is one of its principals. Any applying rule
  // that denies any of `rights`: EACCES ("denied by files rule \"NAME\"").
  // Otherwise the first applying rule in file order that allows all of them is
  // the grant; none: EACCES ("no files rule grants it"). Rights are never
  // combined across rules. A path that is not absolute and normalized: EINVAL.
  [[nodiscard]] Outcome<FileGrant> decide(const ClientIdentity& peer,
                                          std::string_view absolute_path, unsigned rights) const;

  [[nodiscard]] const std::vector<FileRule>& rules() const noexcept { return rules_; }

 private:
  FilePolicy() = default;

  std::vector<FileRule> rules_;
  std::vector<unique_fd> roots_;         // one per distinct root
  std::vector<std::size_t> root_index_;  // rules_[i]'s root: roots_[root_index_[i]]
};

// Why `root` cannot be a rule's root as written ("" if it can): not absolute,
// a ".", ".." or empty segment, a trailing '/', a NUL byte. Pure: the config
// parser checks this; open_rule_root checks the file system.
[[nodiscard]] std::string root_syntax_problem(std::string_view root);

// Opens `root` (declared at `where`, "files[0].root") as an O_PATH directory
// descriptor, walking it component by component from "/" with O_NOFOLLOW so
// that a symlink anywhere in it is refused (ELOOP), as are a root that is not a
// directory (ENOTDIR) or that lies on procfs, sysfs or another kernel-interface
// file system (EINVAL: their regular files are kernel interfaces). Warns
// (appends to `warnings`) when the root or an ancestor is writable by other
// users without the sticky bit.
Outcome<unique_fd> open_rule_root(std::string_view root, const std::string& where,
                                  std::vector<std::string>& warnings);

// Why the broker cannot do what `rule` allows in its root `root_fd` ("" if it
// can): write or create on a read-only mount (ProtectSystem=strict makes /etc,
// /usr... read-only in the broker's namespace; a ReadWritePaths= drop-in lifts
// it), or create without write permission on the root directory.
[[nodiscard]] std::string write_problem(int root_fd, const FileRule& rule);

}  // namespace fdbroker::daemon
