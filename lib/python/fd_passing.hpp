// SPDX-License-Identifier: LGPL-2.1-or-later
// The two calls behind both Python APIs (fdbroker.sendfds/recvfds and the classic
// fdsend module): Python objects in, libfdbroker's try_sendfds/try_recvfds_into
// (first with MSG_DONTWAIT and the GIL held, then, if that would block, without
// the GIL), Python objects out.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>

namespace fdbroker::python {

namespace py = pybind11;

// Creates the RecvResult struct-sequence type (a tuple of (msg, fds) with the extra
// attributes msg_truncated and fds_truncated, like os.stat_result) and adds it to `m`.
// Call once, before receive_message().
void add_recv_result_type(py::module_& m);

// Sends `payload` (any contiguous bytes-like object) and the descriptors in `fds`
// (an iterable of ints or objects with fileno(); None for none) over `sock` in one
// message. The descriptors stay the caller's. Returns the payload bytes sent.
// Raises OSError (see scm_rights.hpp for the errnos), TypeError for bad arguments.
std::size_t send_message(py::handle sock, py::handle payload, py::handle fds, bool dontwait);

// How the received fds are returned: fdbroker's list, or the classic module's tuple.
enum class fd_sequence { list, tuple };

// Receives one message as a RecvResult. The descriptors in it are new and belong to
// the caller; on any failure every descriptor that arrived has been closed.
py::object receive_message(py::handle sock, Py_ssize_t bufsize, Py_ssize_t numfds,
                           bool accept_truncated, bool dontwait, fd_sequence kind);

}  // namespace fdbroker::python
