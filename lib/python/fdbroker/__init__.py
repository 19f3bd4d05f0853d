# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker: pass open file descriptors between processes over AF_UNIX sockets.

Functions (see each one's help for the errno values it can raise):

  sendfds(sock, msg, fds=())      send a payload and up to 253 fds in one message
  recvfds(sock, bufsize, numfds)  receive one: RecvResult(msg, fds); the fds are yours
  socketpair(type)                a connected pair of AF_UNIX socket.socket objects
  peer_credentials(sock)          Credentials(pid, uid, gid) of the peer (SO_PEERCRED)
  peer_groups(sock)               the peer's supplementary groups (SO_PEERGROUPS)

Sockets and fds may be given as socket objects, file objects, anything with a
fileno() method, or ints. Errors are OSError carrying the errno, so they arrive
as its subclasses: BlockingIOError (EAGAIN), BrokenPipeError (EPIPE), ...

The broker client is fdbroker.Client (see fdbroker.client). fdbroker.open(path,
mode, ...) is the built-in open() with the file opened by the broker, by its
`files` rules (see fdbroker.files); it is deliberately left out of
`from fdbroker import *`.

fdbroker.listen(name, url) and fdbroker.handoff restart a service without dropping
a connection (see fdbroker.handoff).

The classic fdsend API lives in fdbroker.fdsend (also importable as `fdsend`).
"""

from __future__ import annotations

import os
import socket
from typing import NamedTuple

from . import _fdbroker
from ._fdbroker import MAX_FDS, RecvResult, __version__, peer_groups, recvfds, sendfds
from .client import DEFAULT_SOCKET_PATH, Bound, Client, Entry, EntryInfo, Opened
from .files import open  # noqa: A004 - fdbroker.open only; not in __all__
from . import handoff
from .handoff import listen

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "MAX_FDS",
    "Bound",
    "Client",
    "Credentials",
    "Entry",
    "EntryInfo",
    "Opened",
    "RecvResult",
    "__version__",
    "handoff",
    "listen",
    "peer_credentials",
    "peer_groups",
    "recvfds",
    "sendfds",
    "socketpair",
]


class Credentials(NamedTuple):
    """The peer's credentials as the kernel recorded them at connect() time."""

    pid: int
    uid: int
    gid: int


def socketpair(
    type: int = socket.SOCK_SEQPACKET,  # noqa: A002 - the name socket.socketpair uses
) -> tuple[socket.socket, socket.socket]:
    """Return a connected pair of AF_UNIX sockets as two socket.socket objects.

    type is SOCK_SEQPACKET (the default), SOCK_STREAM or SOCK_DGRAM, optionally
    or-ed with SOCK_NONBLOCK (the sockets then have timeout 0.0). Both are
    close-on-exec (non-inheritable). Raises OSError (EINVAL, EMFILE, ...).
    """
    first_fd, second_fd = _fdbroker.socketpair(type)
    try:
        first = socket.socket(socket.AF_UNIX, type, 0, first_fd)
    except BaseException:
        os.close(first_fd)
        os.close(second_fd)
        raise
    try:
        second = socket.socket(socket.AF_UNIX, type, 0, second_fd)
    except BaseException:
        first.close()
        os.close(second_fd)
        raise
    return first, second


def peer_credentials(sock: int | socket.socket | object) -> Credentials:
    """Return Credentials(pid, uid, gid) of the peer of a connected AF_UNIX socket.

    The kernel records them at connect()/socketpair() time (SO_PEERCRED), so the
    peer cannot forge them. sock may be a socket object, anything with fileno(),
    or an int. Raises OSError: EBADF, ENOTSOCK, ENOTCONN (no peer).
    """
    return Credentials(*_fdbroker.peer_credentials(sock))
