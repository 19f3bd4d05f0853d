# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker.Client: talk to fdbrokerd, the file-descriptor broker (wire protocol v1).

    with fdbroker.Client() as broker:            # $FDBROKER_SOCKET or the default path
        broker.put("web", [listener], meta={"port": 8080})
        with broker.get("web") as entry:         # entry.fds: ints you own
            sock = socket.socket(fileno=os.dup(entry.fds[0]))

Errors the broker names arrive as OSError with that errno and the broker's
message, hence as its subclasses: FileNotFoundError (ENOENT), FileExistsError
(EEXIST), PermissionError (EACCES, EPERM), TimeoutError (ETIMEDOUT),
BrokenPipeError (ESHUTDOWN: the broker stopped or was upgraded while a get or
take waited; reconnect with a new Client and retry), plain OSError for ESTALE,
EDQUOT, ENOSPC, EINVAL, ... Transport failures are OSError
too (FileNotFoundError or ConnectionRefusedError from connecting,
ConnectionResetError if the broker went away). A meta that cannot be encoded
as a JSON object raises ValueError or TypeError before anything is sent.

Calls block until the broker replies (with wait_ms, up to that long); the GIL is
released meanwhile, and signal handlers run (Ctrl-C interrupts a long wait). With
Client(timeout=SECONDS) a request that gets no reply in time (a stopped or wedged
broker) raises TimeoutError and closes the connection: a late reply could no longer
be told from the next one. That TimeoutError leaves fileno() at -1; the broker's own
ETIMEDOUT for a wait_ms that ran out leaves the connection open. One Client may be
shared by threads: calls are serialised.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _fdbroker

__all__ = ["DEFAULT_SOCKET_PATH", "Bound", "Client", "Entry", "EntryInfo", "Opened"]

DEFAULT_SOCKET_PATH: str = _fdbroker.DEFAULT_SOCKET_PATH


@dataclass
class EntryInfo:
    """What the broker reports about an entry (docs/protocol.md, "Entries").

    fd_info holds one description per descriptor, in order: dicts with "kind"
    ("socket", "file", "pipe", ...) and the fields of that kind.
    """

    name: str
    generation: int
    meta: dict[str, Any]
    owner: int
    static: bool = False
    expires_ms: int | None = None
    fd_info: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def _from_info(cls, info: _fdbroker.EntryInfo) -> EntryInfo:
        return cls(**_info_fields(info))


@dataclass
class Entry(EntryInfo):
    """An entry received by get() or take(): its description plus fds, new
    descriptors (close-on-exec) for the open files the broker holds, in the order
    of fd_info. They belong to you: close them with close() (or use the entry as a
    context manager), or keep them and let close() skip them by calling detach().
    """

    fds: list[int] = field(default_factory=list)

    def detach(self) -> list[int]:
        """Returns the fds and forgets them: close() will no longer close them."""
        fds, self.fds = self.fds, []
        return fds

    def close(self) -> None:
        """Closes the fds not detached. Safe to call twice."""
        fds = self.detach()
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> Entry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def _from_entry(cls, entry: _fdbroker.Entry) -> Entry:
        # Until release_fds() the C++ Entry owns the fds (and closes them if anything
        # here fails); release_fds() hands over all or none; from then on they are
        # closed here unless the Entry is built.
        fields = _info_fields(entry)
        fds = entry.release_fds()
        try:
            return cls(**fields, fds=fds)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise


class _OwnedFd:
    """One descriptor that is yours: close() it (or use the object as a context
    manager), or keep it and call detach(). Finalisation does not close it: a
    caller that took the int out of `fd` must not find it closed behind its back."""

    fd: int

    def detach(self) -> int:
        """Returns the fd and forgets it: close() will no longer close it (-1 if
        it was detached or closed before)."""
        fd, self.fd = self.fd, -1
        return fd

    def close(self) -> None:
        """Closes the fd unless detached. Safe to call twice."""
        fd = self.detach()
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Opened(_OwnedFd):
    """A file the broker opened for you (Client.open): fd is a new descriptor
    (close-on-exec), the broker keeps no copy. path is the path as requested,
    rule the broker's `files` rule that allowed it, created whether the broker
    created the file, fd_info its description ({"kind": "file", "path", "access"}).
    """

    fd: int
    path: str
    rule: str
    created: bool
    fd_info: dict[str, Any]

    @classmethod
    def _from_opened(cls, opened: _fdbroker.Opened) -> Opened:
        # The C++ Opened owns the fd until release_fd(); from then on it is closed
        # here unless the Opened is built.
        fields = {
            "path": opened.path,
            "rule": opened.rule,
            "created": opened.created,
            "fd_info": json.loads(opened.description.json),
        }
        fd = opened.release_fd()
        try:
            return cls(fd=fd, **fields)
        except BaseException:
            os.close(fd)
            raise


@dataclass
class Bound(_OwnedFd):
    """A socket the broker made and bound for you (Client.bind), listening if it
    is a stream socket: fd is yours (close-on-exec), the broker keeps no copy.
    address is the address as the broker reports it, rule its `bind` rule,
    fd_info the socket's description ({"kind": "socket", "family", "type",
    "listening", "local"}). socket() turns it into a socket.socket.
    """

    fd: int
    address: str
    rule: str
    fd_info: dict[str, Any]

    def socket(self) -> socket.socket:
        """The fd as a socket.socket (family and type read from the socket), which
        owns it from now on: this Bound no longer does."""
        sock = socket.socket(fileno=self.fd)
        self.fd = -1
        return sock

    @classmethod
    def _from_bound(cls, bound: _fdbroker.Bound) -> Bound:
        fields = {
            "address": bound.address,
            "rule": bound.rule,
            "fd_info": json.loads(bound.description.json),
        }
        fd = bound.release_fd()
        try:
            return cls(fd=fd, **fields)
        except BaseException:
            os.close(fd)
            raise


def _info_fields(info: _fdbroker.EntryInfo) -> dict[str, Any]:
    # The fields as fdbroker::Client parsed them; meta and each description are the
    # JSON objects the broker sent, as text.
    return {
        "name": info.name,
        "generation": info.generation,
        "meta": json.loads(info.meta_json),
        "owner": info.owner_uid,
        "static": info.is_static,
        "expires_ms": info.expires_ms,
        "fd_info": [json.loads(d.json) for d in info.fd_descriptions],
    }


def _as_fd_list(fds: Any) -> list[Any]:
    # One descriptor may be passed on its own: an int or anything with fileno().
    if isinstance(fds, int) or hasattr(fds, "fileno"):
        return [fds]
    return list(fds)


def _timeout_ms(timeout: float | None) -> int | None:
    # Seconds as socket.settimeout() takes them, to the whole milliseconds the C++
    # client counts, rounded up (a timeout never gets shorter than asked).
    if timeout is None:
        return None
    seconds = float(timeout)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    return max(1, math.ceil(round(seconds * 1000, 6)))


class Client:
    """A connection to fdbrokerd. Connects on creation; a context manager.

    path is the broker's socket; None means $FDBROKER_SOCKET if set, else
    DEFAULT_SOCKET_PATH. "@name" is an abstract socket.

    timeout (seconds, None: no limit) bounds each request, from sending it to its
    reply, and the connect itself. For get/take with wait_ms the wait is added to
    it: a long wait is never cut short by a short timeout. On expiry TimeoutError
    is raised and the connection closed (fileno() is then -1).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout: float | None = None
    ) -> None:
        self._client = _fdbroker.Client(
            os.fspath(path) if path is not None else "", _timeout_ms(timeout)
        )

    @property
    def timeout(self) -> float | None:
        """The timeout in seconds (None: none); settable, for the next requests."""
        ms = self._client.timeout_ms
        return None if ms is None else ms / 1000

    @timeout.setter
    def timeout(self, timeout: float | None) -> None:
        self._client.timeout_ms = _timeout_ms(timeout)

    def fileno(self) -> int:
        """The connection's socket (borrowed), or -1 once closed."""
        return self._client.fileno()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hello(self) -> dict[str, Any]:
        """{"server", "version", "protocol", "peer": {"uid", "gid", "pid", "unit",
        "cgroup"}}: the broker, and this process as the broker sees it (its systemd
        unit, or None, and cgroup as read when the broker accepted the connection)."""
        return json.loads(self._client.hello().json)

    def get(self, name: str, wait_ms: int | None = None) -> Entry:
        """The entry `name`, with new fds for its open files (yours to close).

        With wait_ms, waits up to that long (capped by the broker) for the entry to
        be put. Raises FileNotFoundError, TimeoutError (wait_ms ran out),
        PermissionError (EACCES), OSError(EINVAL), BrokenPipeError (ESHUTDOWN:
        the broker stopped while waiting; retry with a new Client).
        """
        return Entry._from_entry(self._client.get(name, wait_ms))

    def try_get(self, name: str) -> Entry | None:
        """get(), or None if there is no such entry."""
        try:
            return self.get(name)
        except FileNotFoundError:
            return None

    def take(self, name: str, wait_ms: int | None = None) -> Entry:
        """get() and remove the entry atomically: of concurrent takers exactly one
        gets it, the others FileNotFoundError. PermissionError (EPERM) for an entry
        declared in the broker's configuration."""
        return Entry._from_entry(self._client.take(name, wait_ms))

    def try_take(self, name: str) -> Entry | None:
        """take(), or None if there is no such entry."""
        try:
            return self.take(name)
        except FileNotFoundError:
            return None

    def put(
        self,
        name: str,
        fds: Iterable[Any] | Any,
        *,
        meta: dict[str, Any] | None = None,
        ttl_ms: int | None = None,
        replace: bool = False,
        expect_generation: int | None = None,
    ) -> int:
        """Stores fds (1-253 ints, sockets, files or objects with fileno(); or one
        of them alone) under name and returns the entry's generation. The fds stay
        yours: the broker keeps its own copies.

        replace: overwrite an existing entry (else FileExistsError).
        expect_generation: succeed only if the entry's current generation is this
        (0: it must not exist), else OSError(ESTALE); a compare-and-swap.
        ttl_ms: the broker removes the entry after this long.
        Also raises PermissionError, OSError(EDQUOT, ENOSPC, EINVAL).
        """
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
        meta_json = json.dumps(meta) if meta is not None else ""
        return self._client.put(
            name, _as_fd_list(fds), meta_json, ttl_ms, replace, expect_generation
        )

    def delete(self, name: str) -> None:
        """Removes the entry; the broker closes its copies. FileNotFoundError,
        PermissionError."""
        self._client.remove(name)

    remove = delete

    def list(self, prefix: str = "", page_size: int = 0) -> list[EntryInfo]:
        """Every entry you may get whose name starts with prefix, sorted by name,
        over as many requests as it takes (page_size entries each; 0: the broker's
        default)."""
        return [EntryInfo._from_info(e) for e in self._client.list(prefix, page_size)]

    def list_page(
        self, prefix: str = "", limit: int = 0, cursor: str | None = None
    ) -> tuple[list[EntryInfo], str | None]:
        """One list request: (entries, cursor); cursor is None once none remain,
        else pass it back for the next page."""
        page = self._client.list_page(prefix, limit, cursor)
        return [EntryInfo._from_info(e) for e in page.entries], page.cursor

    def iter_list(self, prefix: str = "", page_size: int = 0) -> Iterator[EntryInfo]:
        """Like list(), one page at a time."""
        cursor: str | None = None
        while True:
            entries, cursor = self.list_page(prefix, page_size, cursor)
            yield from entries
            if cursor is None:
                return

    def stats(self) -> dict[str, Any]:
        """The broker's counters (docs/protocol.md, "stats")."""
        return json.loads(self._client.stats().json)

    def open(
        self, path: str | bytes | os.PathLike[Any], flags: int = os.O_RDONLY, mode: int | None = None
    ) -> Opened:
        """Asks the broker to open path (absolute) for you, as os.open(path, flags,
        mode) would: flags are os.O_RDONLY, O_WRONLY or O_RDWR, plus any of
        O_APPEND, O_CREAT, O_EXCL, O_TRUNC, O_NONBLOCK (O_CLOEXEC, O_NOCTTY and
        O_NOFOLLOW are accepted: the broker always applies them; any other flag is
        a ValueError, before anything is sent, as are O_APPEND or O_TRUNC with
        O_RDONLY and O_EXCL without O_CREAT, which the broker refuses). mode
        (permission bits, at most 0o777) is for a file the broker creates, masked
        by its rule's mode; only with O_CREAT. Returns an Opened whose fd is yours.

        Raises PermissionError (EACCES: no rule allows it; the broker decides that
        before looking at the file system), FileNotFoundError, FileExistsError,
        IsADirectoryError, NotADirectoryError, OSError(ELOOP: a symlink on the way,
        EXDEV, EOPNOTSUPP, EINVAL, EMFILE, ...), BlockingIOError (EAGAIN: the path
        kept changing).
        """
        return Opened._from_opened(self._client.open(os.fsencode(path), flags, mode))

    def bind(self, url: str, *, backlog: int | None = None, reuseport: bool = False) -> Bound:
        """Asks the broker for a socket bound to url (tcp://ADDR:PORT, tcp6://,
        udp://, udp6://; a concrete port), listening with backlog (None: the
        broker's default) if it is a stream socket; reuseport sets SO_REUSEPORT,
        only where the broker's rule allows it. Returns a Bound whose fd is yours
        (Bound.socket() makes it a socket.socket).

        Raises PermissionError (EACCES: no rule allows it, or reuseport without the
        rule's consent), OSError(EADDRINUSE, EADDRNOTAVAIL, EINVAL).
        """
        return Bound._from_bound(self._client.bind(url, backlog, reuseport))
