// SPDX-License-Identifier: LGPL-2.1-or-later
// One function per binding file; _fdbroker.cpp calls them in order.
#pragma once

#include <fdbroker/client.hpp>

#include <pybind11/pybind11.h>

#include <type_traits>

// Entry owns its descriptors (unique_fd): pybind11 must move it into Python, never
// copy it, which it cannot tell from the struct's implicitly declared copy
// constructor. Declared here, before any file converts an Entry.
template <>
struct pybind11::detail::is_copy_constructible<fdbroker::Entry> : std::false_type {};

namespace fdbroker::python {

// sendfds/recvfds/socketpair/peer_credentials/peer_groups, the RecvResult type and
// MAX_FDS (bind_scm_rights.cpp).
void bind_scm_rights(pybind11::module_& m);

// The classic fdsend API, as the submodule _fdbroker.fdsend (bind_fdsend.cpp).
void bind_fdsend(pybind11::module_& m);

// The structs of client.hpp (FdDescription, EntryInfo, Entry, ListPage, Peer, Hello,
// Stats) as read-only classes (bind_client_types.cpp): before bind_client and
// bind_handoff, whose functions return them.
void bind_client_types(pybind11::module_& m);

// The broker client, as _fdbroker.Client (bind_client.cpp); fdbroker/client.py wraps it.
void bind_client(pybind11::module_& m);

// open_listener and Upgrader (bind_handoff.cpp); fdbroker/handoff.py wraps them.
void bind_handoff(pybind11::module_& m);

}  // namespace fdbroker::python
