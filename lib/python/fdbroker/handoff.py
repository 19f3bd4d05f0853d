# SPDX-License-Identifier: LGPL-2.1-or-later
"""Restart a service without dropping a connection (docs/handoff.md).

    sock = fdbroker.listen("web/http", "tcp://0.0.0.0:8080")   # instead of socket+bind+listen

    up = fdbroker.handoff.Upgrader("web")      # who came before us?
    state = up.take_state()                    # what it handed over (an Entry), or None
    ...start serving on sock...
    up.ready()                                 # we serve: the predecessor may retire
    # later: when up.exit_fd() polls readable (or up.wait_for_exit() returns True),
    # a successor is ready: stop accepting, finish open requests, exit.
    # up.upgrade() starts that successor (this program again) and waits for it.

listen() takes the socket from LISTEN_FDS (systemd, fdbrokerctl exec) if one is
named `name`, else from the broker entry `name`, else binds `url` and deposits it
in the broker. With no broker running it binds a private socket (see
open_listener().origin) unless require_broker=True. Errors are OSError subclasses
carrying the errno (FileExistsError: the entry holds a socket for another address).
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from . import _fdbroker
from .client import Entry

__all__ = ["Listener", "Upgrader", "listen", "open_listener"]


class Listener(NamedTuple):
    """What open_listener() found: the socket (yours), where it came from
    ("inherited", "broker", "created" or "private"), the broker entry's generation
    (0 unless from the broker) and, for "private", why the broker was not used."""

    sock: socket.socket
    origin: str
    generation: int
    broker_error: str


def _meta_json(meta: dict[str, Any] | None) -> str:
    if meta is None:
        return ""
    if not isinstance(meta, dict):
        raise TypeError("meta must be a dict")
    return json.dumps(meta)


def open_listener(
    name: str,
    url: str,
    *,
    broker_socket: str | os.PathLike[str] | None = None,
    require_broker: bool = False,
    backlog: int = 4096,
    nonblocking: bool = False,
    meta: dict[str, Any] | None = None,
    race_wait: float = 5.0,
) -> Listener:
    """The listening socket for `url` kept in the broker under `name`, and where it
    came from. url: tcp://HOST:PORT, tcp6://[ADDR]:PORT, unix:/PATH, unix:@NAME.

    nonblocking sets O_NONBLOCK, which every process sharing the socket sees (servers
    sharing a listener should poll and accept without blocking anyway).
    """
    fd, origin, generation, broker_error = _fdbroker.open_listener(
        name,
        url,
        os.fspath(broker_socket) if broker_socket is not None else "",
        require_broker,
        backlog,
        nonblocking,
        _meta_json(meta),
        int(race_wait * 1000),
    )
    # socket.socket(fileno=) learns family and type from the fd itself.
    return Listener(socket.socket(fileno=fd), origin, generation, broker_error)


def listen(name: str, url: str, **options: Any) -> socket.socket:
    """open_listener(name, url, **options).sock: what most services need."""
    return open_listener(name, url, **options).sock


class Upgrader:
    """One instance of a restartable service named `service` (a broker name prefix:
    entries service/leader, service/retire/<generation>, service/state).

    Without a reachable broker it runs standalone: has_broker is False, ready() does
    nothing, no exit is ever requested, upgrade() raises OSError(ENOTCONN).
    """

    def __init__(
        self,
        service: str,
        *,
        broker_socket: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self._up = _fdbroker.Upgrader(
            service,
            os.fspath(broker_socket) if broker_socket is not None else "",
            int(ready_timeout * 1000),
        )

    service = property(lambda self: self._up.service)
    has_broker = property(lambda self: self._up.has_broker, doc="False: standalone, no handoff.")
    broker_error = property(lambda self: self._up.broker_error, doc="Why there is no broker.")
    predecessor_generation = property(lambda self: self._up.predecessor_generation)
    predecessor_pid = property(lambda self: self._up.predecessor_pid, doc="0: first instance.")
    generation = property(lambda self: self._up.generation, doc="Ours, once ready().")
    exit_requested = property(lambda self: self._up.exit_requested)
    successor_pid = property(lambda self: self._up.successor_pid)

    def wait_for_predecessor_exit(self, timeout: float) -> bool:
        """True once the predecessor process has exited (at once if there is none)."""
        return self._up.wait_for_predecessor_exit(int(timeout * 1000))

    def put_state(self, fds: Iterable[Any], meta: dict[str, Any] | None = None) -> int:
        """Hands `fds` (ints or objects with fileno(); you keep yours) and `meta` to
        the successor as service/state, replacing older state. Returns its generation."""
        return self._up.put_state(list(fds), _meta_json(meta))

    def get_state(self, wait: float = 0.0) -> Entry | None:
        """The state left for us (it stays for later instances), waiting up to
        `wait` seconds for it to appear; None if there is none. The Entry's fds are yours."""
        state = self._up.get_state(int(wait * 1000))
        return None if state is None else Entry._from_entry(state)

    def take_state(self, wait: float = 0.0) -> Entry | None:
        """Like get_state(), and removes it."""
        state = self._up.take_state(int(wait * 1000))
        return None if state is None else Entry._from_entry(state)

    def ready(self) -> None:
        """We serve: become the leader and ask the predecessor to retire.
        OSError(ESTALE) if another instance became leader first (exit then)."""
        self._up.ready()

    def exit_fd(self) -> int:
        """An fd (the Upgrader's; do not close it) that polls readable once a
        successor is ready: stop accepting, drain, exit. Call after ready()."""
        return self._up.exit_fd()

    def wait_for_exit(self, timeout: float | None = None) -> bool:
        """Blocks until a successor is ready (True) or `timeout` seconds pass (False).
        Signal handlers run meanwhile (KeyboardInterrupt ends the wait)."""
        fd = self.exit_fd()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._up.exit_requested:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready and left is not None and left <= 0:
                break
        return bool(self._up.exit_requested)

    def upgrade(self, argv: Sequence[str] | None = None) -> int:
        """Starts the successor (default: this program with its arguments) without
        LISTEN_* variables and waits until it is ready; returns its pid. Raises
        ChildProcessError (ECHILD) if it exits first, TimeoutError if it is not
        ready within ready_timeout (it is killed). Either way we keep serving."""
        return self._up.upgrade(list(argv) if argv is not None else [])
