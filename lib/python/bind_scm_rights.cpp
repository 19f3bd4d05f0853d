// SPDX-License-Identifier: LGPL-2.1-or-later
// fdbroker.sendfds/recvfds/socketpair/peer_credentials/peer_groups. The docstrings
// start with a "name(signature)\n--\n\n" line: CPython turns it into
// __text_signature__, so help() and inspect.signature() show real parameters.
#include <fdbroker/scm_rights.hpp>
#include <fdbroker/unix_socket.hpp>

#include <sys/socket.h>

#include <system_error>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "fd_passing.hpp"

namespace fdbroker::python {

namespace {

constexpr const char* sendfds_doc = R"(sendfds(sock, msg, fds=(), *, dontwait=False)
--

Send msg and the file descriptors fds in one message over the AF_UNIX socket
sock (SOCK_STREAM, SOCK_SEQPACKET or SOCK_DGRAM), with SCM_RIGHTS.

sock and each element of fds may be a socket object, a file object, any object
with a fileno() method, or an int. msg is any bytes-like object (bytes,
bytearray, memoryview, ...). At most MAX_FDS (253) descriptors per message.

The descriptors are lent for the call: they stay open and yours; the peer gets
new descriptors for the same open files.

Returns the number of payload bytes sent. On a SOCK_STREAM socket this can be
less than len(msg) (a partial write): the descriptors went with the first byte;
send the rest with sock.sendall(). Datagram and seqpacket sockets send all or
nothing. A closed peer gives BrokenPipeError, never SIGPIPE.

The GIL is released whenever the send may block: a first attempt that cannot
block (MSG_DONTWAIT) keeps it, which saves time when the socket has room, and if
that would block the call releases the GIL and sends as asked (on a SOCK_STREAM
socket a message the buffer took only part of is finished the same way). If a
signal arrives while blocked, its Python handler runs and the call resumes
(PEP 475); an exception the handler raises propagates. If sock is a socket
object with a timeout, the timeout is honoured (TimeoutError); dontwait=True
never waits (MSG_DONTWAIT).

Raises OSError with the errno, before anything is sent:
  E2BIG                  more than 253 descriptors
  EBADF                  sock or an fd is negative or not open
  EINVAL                 fds with an empty msg on a SOCK_STREAM socket (the
                         kernel would drop them silently)
  ENOTSOCK / EOPNOTSUPP  sock is not a socket / not an AF_UNIX socket
  BlockingIOError        (EAGAIN) the socket is non-blocking and full
  BrokenPipeError, ConnectionResetError, ...: the peer is gone
  EMSGSIZE, ENOBUFS, ETOOMANYREFS: message or kernel limits
)";

constexpr const char* recvfds_doc =
    R"(recvfds(sock, bufsize, numfds=253, *, accept_truncated=False, dontwait=False)
--

Receive one message from the AF_UNIX socket sock: up to bufsize payload bytes
and up to numfds file descriptors (SCM_RIGHTS; at most 253).

sock may be a socket object, a file object, any object with fileno(), or an int.

Returns RecvResult(msg, fds), a tuple of two: `msg, fds = recvfds(sock, 4096)`.

Ownership: every int in fds is a NEW file descriptor that now belongs to you.
Close each one with os.close() or hand it to an object that will close it
(socket.socket(fileno=fd), os.fdopen(fd), open(fd)); nothing else closes it.
They are close-on-exec (MSG_CMSG_CLOEXEC): a child started with exec does not
inherit them unless you pass them on purpose (subprocess pass_fds=...). If the
call raises, no received descriptor is left open: those that arrived are closed.
Descriptors from several SCM_RIGHTS headers in one message all arrive, in order.

End of stream (the peer closed) returns (b'', []), as socket.recv returns b''.

Truncation:
  RecvResult.msg_truncated  True when a SOCK_DGRAM/SOCK_SEQPACKET message was
                            longer than bufsize; the rest of it is lost. (On a
                            SOCK_STREAM socket the rest stays for the next read.)
  fds                       if more descriptors were sent than numfds allows (or
                            the kernel could not install them), the call raises
                            OSError(EMSGSIZE) and closes those that arrived;
                            with accept_truncated=True it returns them instead,
                            with RecvResult.fds_truncated set.

The GIL is released whenever the call may wait: a message already waiting is
taken by a first attempt that cannot block (MSG_DONTWAIT), keeping the GIL, which
saves time; otherwise the call releases the GIL and waits. If a signal arrives
while waiting, its Python handler runs and the call goes on waiting (PEP 475);
an exception the handler raises propagates (nothing has been received then).
A socket object's timeout is honoured (TimeoutError); dontwait=True never waits
(MSG_DONTWAIT).

Raises OSError with the errno: EMSGSIZE (see above), EINVAL (numfds > 253),
BlockingIOError (EAGAIN: non-blocking or dontwait and nothing to read), EBADF,
ENOTSOCK, ENOTCONN, ConnectionResetError, EMFILE; ValueError for a negative
bufsize or numfds.
)";

constexpr const char* socketpair_doc = R"(socketpair(type)
--

Create a connected pair of AF_UNIX sockets of the given type (SOCK_SEQPACKET,
SOCK_STREAM or SOCK_DGRAM; SOCK_NONBLOCK may be or-ed in), both close-on-exec.
Returns two new file descriptors (ints) owned by the caller; fdbroker.socketpair()
wraps them in socket.socket objects. Raises OSError (EINVAL, EPROTONOSUPPORT,
EMFILE, ENFILE).
)";

constexpr const char* peer_credentials_doc = R"(peer_credentials(sock)
--

The credentials (pid, uid, gid) the kernel recorded for the peer of the connected
AF_UNIX socket sock (SO_PEERCRED), at connect()/socketpair() time: they cannot
be forged by the peer. Raises OSError: EBADF, ENOTSOCK, ENOTCONN (no peer).
)";

constexpr const char* peer_groups_doc = R"(peer_groups(sock)
--

The supplementary group ids of the peer of the connected AF_UNIX socket sock
(SO_PEERGROUPS), as recorded at connect() time, as a list of ints.
Raises OSError: EBADF, ENOTSOCK, ENOPROTOOPT (kernel older than 4.13).
)";

// sendfds and recvfds are plain METH_FASTCALL functions, not pybind11 ones: they are
// called in tight loops, and pybind11's dispatcher (overload resolution, keyword
// matching, its casters) costs about as much as the rest of the call. The
// signatures, defaults and errors are the documented ones above.

PyObject* sendfds_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return guarded([&]() -> PyObject* {
    static const char* const names[] = {"sock", "msg", "fds", "dontwait"};
    PyObject* arg[4];
    if (!parse_fastcall_args("sendfds", args, nargs, kwnames, names, 4, 3, 2, arg)) {
      return nullptr;
    }
    const int dontwait = arg[3] == nullptr ? 0 : PyObject_IsTrue(arg[3]);
    if (dontwait < 0) return nullptr;
    // fds=() by default; None is taken as no fds as well.
    const std::size_t sent =
        send_message(arg[0], arg[1], arg[2] != nullptr ? arg[2] : Py_None, dontwait != 0);
    return PyLong_FromSize_t(sent);
  });
}

// An int argument as Py_ssize_t; -1 with an error set if it is not an int.
Py_ssize_t size_arg(PyObject* arg) { return PyNumber_AsSsize_t(arg, PyExc_OverflowError); }

PyObject* recvfds_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return guarded([&]() -> PyObject* {
    static const char* const names[] = {"sock", "bufsize", "numfds", "accept_truncated",
                                        "dontwait"};
    PyObject* arg[5];
    if (!parse_fastcall_args("recvfds", args, nargs, kwnames, names, 5, 3, 2, arg)) {
      return nullptr;
    }
    const Py_ssize_t bufsize = size_arg(arg[1]);
    if (bufsize == -1 && PyErr_Occurred() != nullptr) return nullptr;
    Py_ssize_t numfds = static_cast<Py_ssize_t>(max_fds_per_message);
    if (arg[2] != nullptr) {
      numfds = size_arg(arg[2]);
      if (numfds == -1 && PyErr_Occurred() != nullptr) return nullptr;
    }
    const int accept_truncated = arg[3] == nullptr ? 0 : PyObject_IsTrue(arg[3]);
    if (accept_truncated < 0) return nullptr;
    const int dontwait = arg[4] == nullptr ? 0 : PyObject_IsTrue(arg[4]);
    if (dontwait < 0) return nullptr;
    return receive_message(arg[0], bufsize, numfds, accept_truncated != 0, dontwait != 0,
                           fd_sequence::list)
        .release()
        .ptr();
  });
}

// The module's functions keep pointers to these for their lifetime.
PyMethodDef fastcall_defs[] = {
    {"sendfds", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sendfds_fastcall)),
     METH_FASTCALL | METH_KEYWORDS, sendfds_doc},
    {"recvfds", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(recvfds_fastcall)),
     METH_FASTCALL | METH_KEYWORDS, recvfds_doc},
};

}  // namespace

void bind_scm_rights(py::module_& m) {
  add_recv_result_type(m);
  m.attr("MAX_FDS") = py::int_(max_fds_per_message);

  py::object module_name = m.attr("__name__");
  for (PyMethodDef& def : fastcall_defs) {
    PyObject* function = PyCFunction_NewEx(&def, nullptr, module_name.ptr());
    if (function == nullptr) throw py::error_already_set();
    m.add_object(def.ml_name, py::reinterpret_steal<py::object>(function));
  }

  m.def(
      "socketpair",
      [](int type) {
        auto pair = try_socketpair(type);
        if (!pair) throw std::system_error(pair.error(), "socketpair");
        py::tuple fds = py::make_tuple(pair->first.get(), pair->second.get());
        // Built without failing: the caller owns both from here (the Python wrapper
        // closes them if it cannot wrap them).
        static_cast<void>(pair->first.release());
        static_cast<void>(pair->second.release());
        return fds;
      },
      py::arg("type"), socketpair_doc);

  m.def(
      "peer_credentials",
      [](py::handle sock) {
        const credentials cred = fdbroker::peer_credentials(fd_of(sock));
        return py::make_tuple(cred.pid, cred.uid, cred.gid);
      },
      py::arg("sock"), peer_credentials_doc);

  m.def(
      "peer_groups",
      [](py::handle sock) {
        auto groups = try_peer_groups(fd_of(sock));
        if (!groups) throw std::system_error(groups.error(), "peer_groups");
        py::list ids;
        for (gid_t gid : *groups) ids.append(gid);
        return ids;
      },
      py::arg("sock"), peer_groups_doc);
}

}  // namespace fdbroker::python
