// SPDX-License-Identifier: LGPL-2.1-or-later
// What fdbrokerctl's --mode r|w|rw|a and --create/--excl/--trunc ask the broker's
// `open` for (fdbrokerctl open, exec --open).
#pragma once

#include "cli_options.hpp"

#include <fdbroker/client.hpp>

namespace fdbrokerctl {

// r: rdonly; w: wronly; rw: rdwr; a: wronly + append; plus the flags set in `o`.
// Unlike put --file, w neither appends nor creates: open says so with flags.
fdbroker::OpenFlags open_flags_for(const OpenOptions& o);

}  // namespace fdbrokerctl
