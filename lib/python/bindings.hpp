// SPDX-License-Identifier: LGPL-2.1-or-later
// One function per binding file; _fdbroker.cpp calls them in order. The broker
// client (fdbroker.Client) will add its own bind_ function here.
#pragma once

#include <pybind11/pybind11.h>

namespace fdbroker::python {

// sendfds/recvfds/socketpair/peer_credentials/peer_groups, the RecvResult type and
// MAX_FDS (bind_scm_rights.cpp).
void bind_scm_rights(pybind11::module_& m);

// The classic fdsend API, as the submodule _fdbroker.fdsend (bind_fdsend.cpp).
void bind_fdsend(pybind11::module_& m);

// The broker client, as _fdbroker.Client (bind_client.cpp); fdbroker/client.py wraps it.
void bind_client(pybind11::module_& m);

// open_listener and Upgrader (bind_handoff.cpp); fdbroker/handoff.py wraps them.
void bind_handoff(pybind11::module_& m);

}  // namespace fdbroker::python
