# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdsend: the classic file-descriptor passing API, on top of libfdbroker.

A drop-in Python 3 version of the classic fdsend module, with its signatures:

  sendfds(fd, msg, flags=0, fds=None) -> bytes sent
  recvfds(fd, len, flags=0, numfds=32) -> (message, fd_tuple)
  socketpair(family=AF_UNIX, type=SOCK_STREAM, proto=0) -> (fd, fd)

fd and the elements of fds may be sockets, file objects, objects with a
fileno() method, or ints. Errors are OSError (socket.error) carrying the errno,
e.g. ENOTSOCK when fd is a regular file.

Fixed compared with the classic module: truncated ancillary data (MSG_CTRUNC)
raises OSError(EMSGSIZE) and closes the fds that did arrive; received fds and
socketpair() fds are close-on-exec; a message with several SCM_RIGHTS headers
yields all its fds, correctly; no fd leaks on error paths; a signal during a
blocking call runs its Python handler and the call resumes (PEP 475).

flags: MSG_DONTWAIT is honoured; MSG_NOSIGNAL (sendfds) and MSG_CMSG_CLOEXEC
(recvfds) are accepted and always on; any other flag raises OSError(EINVAL).

Example::

    nulldevs = [open("/dev/null") for i in range(12)]
    fdsend.sendfds(sock, b"here you go!", fds=nulldevs)
    (msg, fds) = fdsend.recvfds(sock, 128, numfds=32)
    files = [os.fdopen(fileno) for fileno in fds]
"""

from __future__ import annotations

import socket as _socket

from ._fdbroker import fdsend as _classic

__all__ = ["recvfds", "sendfds", "socketpair"]

sendfds = _classic.sendfds
recvfds = _classic.recvfds


def socketpair(
    family: int = _socket.AF_UNIX,
    type: int = _socket.SOCK_STREAM,  # noqa: A002 - the classic signature
    proto: int = 0,
) -> tuple[int, int]:
    """socketpair(family=AF_UNIX, type=SOCK_STREAM, proto=0) -> (fd, fd)

    Return a connected pair of sockets as two integer file descriptors, owned by
    the caller (close them with os.close). Unlike the classic module, both are
    close-on-exec. Raises OSError with the errno.
    """
    first, second = _socket.socketpair(family, type, proto)
    return first.detach(), second.detach()
