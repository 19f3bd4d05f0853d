// SPDX-License-Identifier: LGPL-2.1-or-later
// The classic fdsend API (sendfds/recvfds with their exact signatures), as the
// submodule _fdbroker.fdsend; fdbroker/fdsend.py re-exports it.
//
// What differs from the classic C module, on purpose:
//  - MSG_CTRUNC is detected: too many fds raises EMSGSIZE and closes those that
//    arrived (the classic module returned a short tuple and said nothing);
//  - received fds are close-on-exec;
//  - fds from several SCM_RIGHTS headers are all returned, correctly;
//  - no fd leaks on any error path;
//  - EINTR is retried after running Python signal handlers (PEP 475);
//  - flags: MSG_DONTWAIT is honoured, MSG_NOSIGNAL (send) and MSG_CMSG_CLOEXEC
//    (recv) are accepted and always on anyway; any other flag raises
//    OSError(EINVAL) rather than being silently passed on, because flags such as
//    MSG_PEEK would receive descriptors twice and MSG_OOB means nothing on AF_UNIX.
#include <fdbroker/scm_rights.hpp>

#include <sys/socket.h>

#include <algorithm>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "fd_passing.hpp"

namespace fdbroker::python {

namespace {

// Whether `flags` asks for MSG_DONTWAIT; raises OSError(EINVAL) for flags we do not
// support (see the top of this file).
bool dontwait_from(int flags, int always_on, const char* what) {
  if ((flags & ~(MSG_DONTWAIT | always_on)) != 0) throw_os_error(EINVAL, what);
  return (flags & MSG_DONTWAIT) != 0;
}

constexpr const char* module_doc = R"(The classic fdsend API on top of libfdbroker.

See fdbroker.fdsend for the documentation.)";

constexpr const char* sendfds_doc = R"(sendfds(fd, msg, flags=0, fds=None)
--

Send msg across the AF_UNIX socket fd, with the open files in the sequence fds
(SCM_RIGHTS), in one message. Returns the number of bytes of msg sent.

fd and each element of fds may be a socket, a file object, any object with a
fileno() method, or an int. msg is bytes-like; a str is sent UTF-8 encoded. The
files in fds remain the caller's. At most 253 files per message.

flags: MSG_DONTWAIT (do not block: BlockingIOError instead); MSG_NOSIGNAL is
accepted and always on; any other flag raises OSError(EINVAL).

Errors are OSError (socket.error) carrying the errno, e.g. ENOTSOCK when fd is
a regular file, EBADF for a closed fd, E2BIG for more than 253 files.
)";

constexpr const char* recvfds_doc = R"(recvfds(fd, len, flags=0, numfds=32)
--

Receive a message of up to len bytes and up to numfds new files from the
AF_UNIX socket fd. Returns (message, fd_tuple): the payload bytes and a tuple of
new integer file descriptors, which now belong to the caller (close them, or
wrap them with os.fdopen()/socket.socket(fileno=...)). They are close-on-exec.

The result also has the attributes msg_truncated (a datagram or seqpacket
message was longer than len: the rest is lost) and fds_truncated.

Unlike the classic module: if more than numfds files were sent, the call raises
OSError(EMSGSIZE) and closes the files that did arrive, instead of silently
losing some; files from several SCM_RIGHTS headers are all returned; no file is
left open on any error. End of stream returns (b'', ()).

flags: MSG_DONTWAIT (BlockingIOError if nothing is waiting); MSG_CMSG_CLOEXEC
is accepted and always on; any other flag raises OSError(EINVAL). numfds is
capped at 253, the kernel's limit per message.
)";

}  // namespace

void bind_fdsend(py::module_& m) {
  py::module_ fdsend = m.def_submodule("fdsend", module_doc);

  fdsend.def(
      "sendfds",
      [](py::handle fd, py::handle msg, int flags, py::handle fds) {
        const bool dontwait = dontwait_from(flags, MSG_NOSIGNAL, "sendfds: unsupported flags");
        // The classic module took "s#": a str went out UTF-8 encoded.
        if (PyUnicode_Check(msg.ptr())) {
          py::object encoded = py::reinterpret_steal<py::object>(PyUnicode_AsUTF8String(msg.ptr()));
          if (!encoded) throw py::error_already_set();
          return send_message(fd, encoded, fds, dontwait);
        }
        return send_message(fd, msg, fds, dontwait);
      },
      py::arg("fd"), py::arg("msg"), py::arg("flags") = 0, py::arg("fds") = py::none(),
      sendfds_doc);

  fdsend.def(
      "recvfds",
      [](py::handle fd, Py_ssize_t len, int flags, Py_ssize_t numfds) {
        const bool dontwait = dontwait_from(flags, MSG_CMSG_CLOEXEC, "recvfds: unsupported flags");
        // The classic module asked the kernel for numfds and got at most 253 anyway.
        const Py_ssize_t capped =
            std::clamp<Py_ssize_t>(numfds, 0, static_cast<Py_ssize_t>(max_fds_per_message));
        return receive_message(fd, len, capped, false, dontwait, fd_sequence::tuple);
      },
      py::arg("fd"), py::arg("len"), py::arg("flags") = 0, py::arg("numfds") = 32, recvfds_doc);
}

}  // namespace fdbroker::python
