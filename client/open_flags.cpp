// SPDX-License-Identifier: LGPL-2.1-or-later
#include "open_flags.hpp"

namespace fdbrokerctl {

fdbroker::OpenFlags open_flags_for(const OpenOptions& o) {
  fdbroker::OpenFlags flags;
  if (o.mode == "w" || o.mode == "a") flags.access = fdbroker::OpenAccess::write;
  if (o.mode == "rw") flags.access = fdbroker::OpenAccess::read_write;
  flags.append = o.mode == "a";
  flags.create = o.create;
  flags.excl = o.excl;
  flags.trunc = o.trunc;
  return flags;
}

}  // namespace fdbrokerctl
