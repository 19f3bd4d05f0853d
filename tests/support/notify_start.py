# SPDX-License-Identifier: LGPL-2.1-or-later
"""Starting fdbrokerd outside systemd and waiting for its READY=1 (sd_notify), the
way systemd's test-daemon.c does: bind a datagram socket, pass it as
$NOTIFY_SOCKET, read until READY=1. Shared by tests/python/broker_fixture.py and
tests/fuzz/protocol_fuzz.py; no pytest here, the fuzzer runs without it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import warnings
from collections.abc import Callable


def read_log(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def settled_count(count: Callable[[], int], quiet: float) -> int:
    """count() once it has not moved for `quiet` seconds. A broker's fd count, say:
    READY=1 arrives while sd_notify's own socket is still open in it, for a moment."""
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.02)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
    return last


def start_until_ready(
    argv: list[str],
    env: dict[str, str],
    log_path: str,
    notify_path: str,
    *,
    timeout: float,
    poll: float,
    started: Callable[[subprocess.Popen[bytes]], None],
    connectable: Callable[[], bool] | None = None,
) -> str:
    """Starts argv (stdin /dev/null, stdout and stderr to log_path, env plus
    NOTIFY_SOCKET=notify_path) and returns once it is ready: "notify" when it sent
    READY=1; "connect" when, given `connectable`, that held for 2 s while the daemon
    stayed silent (warned about, so that it does not pass unnoticed). `started` gets
    the process as soon as it exists, so that the caller can stop it whatever
    happens next. RuntimeError if it exits first or is not ready within `timeout`
    seconds; the process is then left to the caller. `poll`: seconds between checks."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(poll)
        env = dict(env, NOTIFY_SOCKET=notify_path)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        started(proc)
        deadline = time.monotonic() + timeout
        connectable_since: float | None = None
        while True:
            try:
                if "READY=1" in notify.recv(4096).decode(errors="replace").split("\n"):
                    ready_via = "notify"
                    break
            except TimeoutError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"fdbrokerd exited with {proc.returncode} before READY=1:\n{read_log(log_path)}")
            if connectable is not None and connectable():
                connectable_since = connectable_since or time.monotonic()
                if time.monotonic() - connectable_since > 2.0:
                    warnings.warn("fdbrokerd never sent READY=1; ready by connect()")
                    ready_via = "connect"
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"fdbrokerd not ready after {timeout:g} s:\n{read_log(log_path)}")
    os.unlink(notify_path)
    return ready_via
