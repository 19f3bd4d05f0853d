# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared fixtures and helpers for the Python tests.

Run through ctest (which sets PYTHONPATH=<build>/python), or by hand:
  PYTHONPATH=build/dev/python /usr/bin/python3 -m pytest -q tests/python
"""

from __future__ import annotations

import faulthandler
import fcntl
import gc
import os
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

import fdbroker

# Helpers shared with tests/systemd (kcmp).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

SOCKET_TYPES = {
    "stream": socket.SOCK_STREAM,
    "seqpacket": socket.SOCK_SEQPACKET,
    "dgram": socket.SOCK_DGRAM,
}


def pytest_report_header(config: pytest.Config) -> str:
    # Says which build is under test: a stale installed copy would be a silent lie.
    return f"fdbroker {fdbroker.__version__} from {os.path.dirname(fdbroker.__file__)}"


def open_fd_count() -> int:
    """Descriptors open in this process (listdir's own transient fd included every time).
    Collects garbage first: an earlier test's unreachable socket or file, closed by the
    collector in the middle of a later test, would otherwise shift its count."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def file_identity(fd: int) -> tuple[int, int, int]:
    """What makes two fds the same open file here: device, inode and access mode
    (a pipe's two ends share an inode; the mode tells them apart)."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def is_cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def close_all(fds: list[int] | tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class HasFileno:
    """Any object with a fileno() method: accepted wherever an fd is."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


@pytest.fixture(params=list(SOCKET_TYPES.values()), ids=list(SOCKET_TYPES))
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected AF_UNIX pair of each type in turn."""
    a, b = fdbroker.socketpair(request.param)
    with a, b:
        yield a, b


@pytest.fixture(params=[socket.SOCK_STREAM, socket.SOCK_SEQPACKET], ids=["stream", "seqpacket"])
def connected_pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    """The connection-oriented types: those with an end of stream and a peer to lose."""
    a, b = fdbroker.socketpair(request.param)
    with a, b:
        yield a, b


@pytest.fixture
def seqpacket() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = fdbroker.socketpair(socket.SOCK_SEQPACKET)
    with a, b:
        yield a, b


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe (read end, write end); either end may be closed by the test."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def alarm() -> Iterator[None]:
    """For tests that drive SIGALRM: a watchdog that dumps the stacks and exits if the
    test hangs (faulthandler's thread blocks all signals, so SIGALRM still reaches the
    main thread), and the timer and handler restored afterwards."""
    previous = signal.getsignal(signal.SIGALRM)
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


# A real fdbrokerd per test (`broker`) and the environment for its client processes
# (`broker_env`): see broker_fixture.py.
from broker_fixture import broker, broker_env  # noqa: E402, F401
