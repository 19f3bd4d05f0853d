// SPDX-License-Identifier: LGPL-2.1-or-later
// Users and groups by name, through NSS (getpwnam_r, getgrnam_r): the one place
// the daemon turns a name into an id. Config loading calls it, so a reload
// resolves names once and either fully succeeds or changes nothing.
#pragma once

#include <sys/types.h>

#include <string_view>

#include "failure.hpp"

namespace fdbroker::daemon {

// The uid of the user `name`, or the number itself if `name` is a decimal uid
// ("1000": no lookup). Failures: ENOENT (no such user), EINVAL (a NUL byte in the
// name, which NSS would cut short), or the errno of the lookup; why is "unknown
// user \"NAME\"" or "a user name with a NUL byte".
Outcome<uid_t> lookup_user(std::string_view name);

// The same for groups: gid of `name`, or a decimal gid.
Outcome<gid_t> lookup_group(std::string_view name);

}  // namespace fdbroker::daemon
