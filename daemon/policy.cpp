// SPDX-License-Identifier: LGPL-2.1-or-later
#include "policy.hpp"

#include <algorithm>

namespace fdbroker::daemon {

std::string identity_label(pid_t pid, uid_t uid, gid_t gid) {
  return "pid=" + std::to_string(pid) + " uid=" + std::to_string(uid) +
         " gid=" + std::to_string(gid);
}

Policy::Policy(std::vector<Rule> rules, unsigned owner_rights, uid_t self_uid)
    : rules_(std::move(rules)), owner_rights_(owner_rights), self_uid_(self_uid) {}

namespace {

bool ids_match(const Principals& who, const ClientIdentity& peer) {
  if (who.any) return true;
  if (std::find(who.users.begin(), who.users.end(), peer.uid) != who.users.end()) return true;
  for (gid_t g : who.groups) {
    if (g == peer.gid) return true;
    if (std::find(peer.groups.begin(), peer.groups.end(), g) != peer.groups.end()) return true;
  }
  return false;
}

}  // namespace

bool principals_match(const Principals& who, const ClientIdentity& peer) {
  if (!ids_match(who, peer)) return false;
  if (who.units.empty()) return true;
  return peer.unit.has_value() &&
         std::find(who.units.begin(), who.units.end(), *peer.unit) != who.units.end();
}

Decision Policy::check(const ClientIdentity& peer, unsigned perm, std::string_view name,
                       const uid_t* owner) const {
  if (is_admin(peer)) return {true, "admin"};
  const Rule* allowed_by = nullptr;
  for (const Rule& rule : rules_) {
    if (((rule.allow | rule.deny) & perm) == 0) continue;
    if (perm != perm_stats) {
      bool name_matches =
          rule.prefix ? name.substr(0, rule.match.size()) == rule.match : name == rule.match;
      if (!name_matches) continue;
    }
    if (!principals_match(rule.who, peer)) continue;
    if (rule.deny & perm) return {false, rule.origin, true};
    if (allowed_by == nullptr) allowed_by = &rule;
  }
  if (allowed_by != nullptr) return {true, allowed_by->origin, true};
  if (owner != nullptr && *owner == peer.uid && (owner_rights_ & perm)) return {true, "owner"};
  return {false, "no rule grants it"};
}

}  // namespace fdbroker::daemon
