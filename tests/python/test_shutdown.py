# SPDX-License-Identifier: LGPL-2.1-or-later
"""A get waiting (wait_ms) when fdbrokerd stops: the broker answers ESHUTDOWN,
which fdbroker.Client raises as BrokenPipeError (CPython's class for ESHUTDOWN)
and fdbrokerctl reports as a refusal. Each test stops its own broker, so it
runs one of its own rather than the shared `broker` fixture."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from broker_fixture import Broker, binary, make_workdir

import fdbroker


@pytest.fixture
def doomed() -> Iterator[Broker]:
    """A broker the test will SIGTERM itself."""
    workdir = make_workdir()
    broker = Broker(workdir)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_waiting_get_raises_broken_pipe_error_with_eshutdown(doomed: Broker):
    outcome: list[BaseException | object] = []

    def wait_for_entry() -> None:
        with fdbroker.Client(doomed.socket) as c:
            try:
                outcome.append(c.get("later", wait_ms=20_000))
            except BaseException as e:  # noqa: BLE001 - the test inspects whatever it was
                outcome.append(e)

    fds_before = len(os.listdir("/proc/self/fd"))
    waiter = threading.Thread(target=wait_for_entry)
    waiter.start()
    time.sleep(0.3)  # parked in the broker
    assert not outcome, outcome
    os.kill(doomed.pid, signal.SIGTERM)
    waiter.join(10)
    assert not waiter.is_alive()
    [error] = outcome
    assert isinstance(error, BrokenPipeError), repr(error)
    assert error.errno == errno.ESHUTDOWN
    assert error.strerror == "broker shutting down"
    assert doomed.proc is not None and doomed.proc.wait(10) == 0
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_fdbrokerctl_reports_eshutdown_as_a_refusal(doomed: Broker):
    ctl = subprocess.Popen(
        [binary("FDBROKERCTL"), "--socket", doomed.socket, "get", "later", "--wait", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    assert ctl.poll() is None
    os.kill(doomed.pid, signal.SIGTERM)
    out, err = ctl.communicate(timeout=10)
    assert ctl.returncode == 1, (ctl.returncode, out, err)
    assert err == "fdbrokerctl: get: ESHUTDOWN: broker shutting down\n"
