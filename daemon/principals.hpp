// SPDX-License-Identifier: LGPL-2.1-or-later
// Who a rule of any kind applies to (policy.hpp: principals_match decides).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace fdbroker::daemon {

// Who a rule applies to: a peer whose uid is in `users` or one of whose groups is
// in `groups` (any uid if `any`), and, if `units` is not empty, whose systemd unit
// is one of them. Empty users and groups with any == false matches nobody; a rule
// that names only units has any == true.
struct Principals {
  bool any = false;  // "users": ["*"], or only "units" given
  std::vector<uid_t> users;
  std::vector<gid_t> groups;
  std::vector<std::string> units;  // "nginx.service"; empty: any unit, or none
};

}  // namespace fdbroker::daemon
