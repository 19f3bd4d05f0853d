# SPDX-License-Identifier: LGPL-2.1-or-later
"""A real fdbrokerd for tests: started on a private socket with a generated
config, ready when it says READY=1 on $NOTIFY_SOCKET (sd_notify), stopped by PID.

The `broker` fixture (re-exported by conftest.py) checks after each test that the
broker's descriptor count is back where it started once the test's entries are
deleted and its connections closed: every fd the broker received or created for
the test was closed again.

The binaries come from $FDBROKERD and $FDBROKERCTL, which ctest sets.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from list_pages import names_to_delete  # noqa: E402
from notify_start import read_log, settled_count, start_until_ready  # noqa: E402

# A uid/gid with no rights by default: the broker only trusts root and its own uid.
NOBODY = 65534


def binary(variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        raise RuntimeError(
            f"${variable} is not set: run through ctest, or set it to the built binary "
            f"(e.g. {variable}=build/dev/daemon/fdbrokerd)"
        )
    return path


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def drop_privileges(uid: int = NOBODY, gid: int = NOBODY) -> None:
    """For a forked child: become uid/gid with no supplementary groups. Group ids
    first: once the uid is gone, changing them is no longer allowed."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def default_config(socket_path: str) -> dict[str, Any]:
    """Socket open to everyone (mode 0666), so that access control, not file
    permissions, decides what other users may do; nobody may use `shared/`."""
    return {
        "socket": {"path": socket_path, "mode": "0666"},
        "log_level": "info",
        "limits": {"max_wait_ms": 30000},
        "rules": [
            {"prefix": "shared/", "users": ["nobody"], "allow": ["get", "take", "put", "delete"]}
        ],
    }


# Makes a broker's config from its socket path.
ConfigFactory = Callable[[str], dict[str, Any]]


class Broker:
    """One fdbrokerd process."""

    def __init__(self, workdir: str, config: ConfigFactory | None = None) -> None:
        self.workdir = workdir
        self.socket = os.path.join(workdir, "fdbroker.sock")
        self.config_path = os.path.join(workdir, "fdbroker.json")
        self.log_path = os.path.join(workdir, "fdbrokerd.log")
        self.config = (config or default_config)(self.socket)
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_via = ""
        self.baseline_fds = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def fd_count(self) -> int:
        return fd_count(self.pid)

    def log(self) -> str:
        return read_log(self.log_path)

    def start(self, timeout: float = 15.0) -> None:
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        try:
            self.ready_via = start_until_ready(
                [binary("FDBROKERD"), "--config", self.config_path, "--socket", self.socket],
                dict(os.environ),
                self.log_path,
                os.path.join(self.workdir, "notify.sock"),
                timeout=timeout,
                poll=0.05,
                started=lambda proc: setattr(self, "proc", proc),
                # Fallback for a daemon without sd_notify: connectable for a while and
                # still silent.
                connectable=self._connectable,
            )
        except RuntimeError:
            self.stop()  # not ready in time; one that exited is just reaped
            raise
        self.baseline_fds = self._settled_fd_count()

    def _settled_fd_count(self) -> int:
        """The fd count once it stops moving: READY=1 arrives while sd_notify's own
        socket is still open in the broker, for a moment."""
        return settled_count(self.fd_count, 0.2)

    def _connectable(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            try:
                s.connect(self.socket)
                return True
            except OSError:
                return False

    def request(self, message: dict[str, Any], fds: list[int] = ()) -> tuple[dict[str, Any], list[int]]:
        """One raw protocol exchange on a fresh connection: (reply, received fds)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(self.socket)
            socket.send_fds(s, [json.dumps(message).encode()], list(fds))
            data, received, _flags, _addr = socket.recv_fds(s, 65537, 253)
            return json.loads(data), received

    def clear(self) -> None:
        """Deletes every entry clients may delete (static ones stay)."""
        for name in names_to_delete(self.request_closing_fds):
            self.request_closing_fds({"op": "delete", "name": name})

    def request_closing_fds(self, message: dict[str, Any]) -> dict[str, Any]:
        """request() for a reply whose descriptors are not wanted: they are closed."""
        reply, fds = self.request(message)
        for fd in fds:
            os.close(fd)
        return reply

    def wait_fd_count(self, expected: int, timeout: float = 5.0) -> int:
        """The broker's fd count once it reaches `expected` (closing a connection's
        fd happens when the broker's loop sees the hang-up), or the last one seen."""
        deadline = time.monotonic() + timeout
        while True:
            count = self.fd_count()
            if count == expected or time.monotonic() > deadline:
                return count
            time.sleep(0.02)

    def stop(self) -> int:
        """SIGTERM by PID; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"fdbrokerd ignored SIGTERM:\n{self.log()}")
        return self.proc.returncode


def make_workdir() -> str:
    # Not pytest's tmp_path: its parents are mode 0700, and tests that drop to
    # nobody must reach the socket.
    workdir = tempfile.mkdtemp(prefix="fdbroker-test-", dir="/tmp")
    os.chmod(workdir, 0o755)
    return workdir


def running_broker(config: ConfigFactory | None = None) -> Iterator[Broker]:
    """Starts a broker (its config made by `config` from the socket path, default
    default_config), yields it, then checks its fds and stops it."""
    workdir = make_workdir()
    broker = Broker(workdir, config)
    try:
        broker.start()
        yield broker
        assert broker.proc is not None and broker.proc.poll() is None, (
            f"fdbrokerd died during the test:\n{broker.log()}"
        )
        broker.clear()
        count = broker.wait_fd_count(broker.baseline_fds)
        assert count == broker.baseline_fds, (
            f"fdbrokerd holds {count} fds after the test, {broker.baseline_fds} before"
        )
        status = broker.stop()
        assert status == 0, f"fdbrokerd exited with {status}:\n{broker.log()}"
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A running fdbrokerd with default_config(); fd count checked at the end."""
    yield from running_broker()


@pytest.fixture
def broker_env(broker: Broker) -> dict[str, str]:
    """The environment for a client process of `broker`."""
    return dict(os.environ, FDBROKER_SOCKET=broker.socket)
