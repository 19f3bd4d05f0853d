// SPDX-License-Identifier: LGPL-2.1-or-later
// Umbrella header: includes the public headers of libfdbroker, nothing else.
#pragma once

#include <fdbroker/client.hpp>
#include <fdbroker/error.hpp>
#include <fdbroker/handoff.hpp>
#include <fdbroker/listen_fds.hpp>
#include <fdbroker/listen_url.hpp>
#include <fdbroker/result.hpp>
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unique_fd.hpp>
#include <fdbroker/unix_socket.hpp>
#include <fdbroker/version.hpp>
