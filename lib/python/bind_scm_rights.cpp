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

The GIL is released while sending. If a signal arrives meanwhile, its Python
handler runs and the call resumes (PEP 475); an exception the handler raises
propagates. If sock is a socket object with a timeout, the timeout is honoured
(TimeoutError); dontwait=True never waits (MSG_DONTWAIT).

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

constexpr const char* recvfds_doc = R"(recvfds(sock, bufsize, numfds=253, *, accept_truncated=False, dontwait=False)
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

The GIL is released while waiting. If a signal arrives, its Python handler runs
and the call goes on waiting (PEP 475); an exception the handler raises
propagates (nothing has been received then). A socket object's timeout is
honoured (TimeoutError); dontwait=True never waits (MSG_DONTWAIT).

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

}  // namespace

void bind_scm_rights(py::module_& m) {
  add_recv_result_type(m);
  m.attr("MAX_FDS") = py::int_(max_fds_per_message);

  m.def(
      "sendfds",
      [](py::handle sock, py::handle msg, py::handle fds, bool dontwait) {
        return send_message(sock, msg, fds, dontwait);
      },
      py::arg("sock"), py::arg("msg"), py::arg("fds") = py::tuple(), py::kw_only(),
      py::arg("dontwait") = false, sendfds_doc);

  m.def(
      "recvfds",
      [](py::handle sock, Py_ssize_t bufsize, Py_ssize_t numfds, bool accept_truncated,
         bool dontwait) {
        return receive_message(sock, bufsize, numfds, accept_truncated, dontwait,
                               fd_sequence::list);
      },
      py::arg("sock"), py::arg("bufsize"),
      py::arg("numfds") = static_cast<Py_ssize_t>(max_fds_per_message), py::kw_only(),
      py::arg("accept_truncated") = false, py::arg("dontwait") = false, recvfds_doc);

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
