// SPDX-License-Identifier: LGPL-2.1-or-later
// Who may do what with the named store: decided from the kernel-verified peer
// credentials only. (Opening files and binding sockets on request have rules of
// their own, which exempt nobody: file_rules.hpp, bind_rules.hpp.)
//
// Order of decision, first match wins:
//   1. root and the broker's own uid may do anything with the store ("admin");
//   2. a rule that matches the peer and the name and denies the operation;
//   3. a rule that matches the peer and the name and allows it;
//   4. the entry's owner, for the operations in owner_rights (get/take/delete by default);
//   5. otherwise denied.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"

namespace fdbroker::daemon {

// A connected client as the kernel described it at connect() time.
struct ClientIdentity {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  std::vector<gid_t> groups;  // supplementary (SO_PEERGROUPS)
  // The systemd unit ("nginx.service") and cgroup path of the process, read at
  // accept through its pidfd (SO_PEERPIDFD). No unit: it runs in none, or the
  // kernel gave no pidfd; then rules that name units never match it.
  std::optional<std::string> unit;
  std::string cgroup;  // "" if unknown; for information only without a pidfd
  std::string label;   // "pid=42 uid=1000 gid=1000", for logs
};

// Whether `peer` is one of `who` (config.hpp: Principals).
[[nodiscard]] bool principals_match(const Principals& who, const ClientIdentity& peer);

// Builds ClientIdentity::label.
std::string identity_label(pid_t pid, uid_t uid, gid_t gid);

struct Decision {
  bool allowed = false;
  // Why, for the log line: "admin", "owner", "rules[2]", "no rule grants it".
  std::string_view reason;
  bool by_rule = false;  // the reason is a rule's origin (not "admin", "owner", ...)
};

class Policy {
 public:
  Policy() = default;
  Policy(std::vector<Rule> rules, unsigned owner_rights, uid_t self_uid);

  // May `peer` do `perm` on the entry `name`? `owner` is the entry's owner uid if
  // it exists and is not static (owner rights do not apply to static entries).
  // For perm_stats the name is ignored.
  [[nodiscard]] Decision check(const ClientIdentity& peer, unsigned perm, std::string_view name,
                               const uid_t* owner) const;

  [[nodiscard]] bool is_admin(const ClientIdentity& peer) const noexcept {
    return peer.uid == 0 || peer.uid == self_uid_;
  }

 private:
  std::vector<Rule> rules_;
  unsigned owner_rights_ = perm_get | perm_take | perm_delete;
  uid_t self_uid_ = 0;
};

}  // namespace fdbroker::daemon
