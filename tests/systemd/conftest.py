# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures for the real-systemd tests: `boot` starts a Machine per test.

Run with: FDBROKERD=... FDBROKERCTL=... PYTHONPATH=<build>/python \
    /usr/bin/python3 -m pytest tests/systemd   (as root; ctest does this)
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "support"))  # kcmp

from systemd_harness import Machine  # noqa: E402

# Files in the machine's real temporary directories that every boot must leave
# alone: systemd's tmpfiles setup would clean them if the namespace leaked.
CANARY_DIRS = ("/tmp", "/var/tmp")


@pytest.fixture(scope="session")
def canaries():
    token = uuid.uuid4().hex
    paths = [Path(d) / f"fdbroker-systemd-test-canary-{token}" for d in CANARY_DIRS]
    for path in paths:
        path.write_text(token, encoding="utf-8")
    yield paths
    for path in paths:
        path.unlink()


def _built_binary(variable: str) -> Path:
    value = os.environ.get(variable)
    assert value, f"set {variable} to the built binary (ctest's systemd_tests does)"
    path = Path(value).resolve()
    assert os.access(path, os.X_OK), f"{variable}={value} is not an executable"
    return path


@pytest.fixture(scope="session")
def fdbrokerd() -> Path:
    return _built_binary("FDBROKERD")


@pytest.fixture(scope="session")
def fdbrokerctl() -> Path:
    return _built_binary("FDBROKERCTL")


@pytest.fixture
def boot(tmp_path, canaries):
    """boot(units={name: text}, start=[unit, ...], files={path: text},
    writable_root=False) -> a running Machine (writable_root: see Machine).

    Every machine is stopped at teardown; its journal is printed then (pytest
    shows it only for a failed test), and the machine's real /tmp and /var/tmp
    canaries must still be there.
    """
    machines = []

    def start(units, start=(), files=None, writable_root=False):
        machine = Machine(tmp_path / f"machine{len(machines)}", units, list(start), files,
                          writable_root=writable_root)
        machines.append(machine)
        machine.workdir.mkdir()
        machine.boot()
        return machine

    yield start
    for machine in machines:
        if machine.running:
            print(machine.diagnostics())
        machine.stop()
        assert not machine.running
    for canary in canaries:
        assert canary.exists(), f"{canary} vanished: a boot touched the machine's {canary.parent}"
