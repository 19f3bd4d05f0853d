// SPDX-License-Identifier: LGPL-2.1-or-later
// The descriptors `fdbrokerctl put` stores: inherited ones, files it opens and
// sockets it binds.
#pragma once

#include "cli_options.hpp"

#include <fdbroker/unique_fd.hpp>

#include <vector>

namespace fdbrokerctl {

// The descriptors to send, in command-line order. `fds` are borrowed from `owned`
// (files and sockets made here, closed when this is destroyed) or are the inherited
// descriptors themselves, which stay open.
struct PreparedFds {
  std::vector<fdbroker::unique_fd> owned;
  std::vector<int> fds;
};

// Throws UsageError for a malformed URL, an --fd that is not open or a --mode that
// does not fit; std::system_error (errno) when open/socket/bind/listen fail.
PreparedFds prepare_fds(const std::vector<FdSource>& sources);

// A socket bound (and listening, for stream types) at `url` (see --listen).
fdbroker::unique_fd listen_on(const std::string& url);

}  // namespace fdbrokerctl
