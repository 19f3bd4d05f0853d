# SPDX-License-Identifier: LGPL-2.1-or-later
"""The broker's entries survive its crash (kill -9) and `systemctl restart`
through systemd's fd store: the same open file descriptions come back, with the
same meta, generation, owner and expiry (daemon/systemd_fd_store.hpp, restore.hpp).

systemd 252 empties a service's fd store when the service stops for good
(`systemctl stop`), so these tests use kill and restart."""

from __future__ import annotations

import fcntl
import os
import time

from kcmp import same_open_file
from wire import Connection
from test_fdbroker_units import (  # noqa: F401  (fixtures)
    SOCKET, broker_machine, close_all, get_entry, main_pid, service_state, unit_dir)

STATIC_FDS = 2  # test/privileged-tcp and test/os-release (test_fdbroker_units.STATIC_ENTRIES)


def fdstore_count(machine) -> int:
    return int(service_state(machine, "NFileDescriptorStore")["NFileDescriptorStore"])


def wait_for_new_broker(machine, old_pid: int) -> int:
    machine.wait_for(lambda: main_pid(machine) not in (0, old_pid) and
                     service_state(machine, "ActiveState")["ActiveState"] == "active",
                     "systemd to start a new broker", timeout=20)
    return main_pid(machine)


def put_test_entries(machine, fdbrokerctl, tmp_path) -> None:
    # A TCP listening socket made inside the machine's network namespace.
    machine.run_in_net(str(fdbrokerctl), "put", "test/tcp", "--listen", "tcp://127.0.0.1:8080",
                       "--meta", '{"role": "listener"}')
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    memfd = os.memfd_create("payload", os.MFD_CLOEXEC)
    os.write(memfd, b"state of a service")
    file_fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with Connection(machine.path(SOCKET)) as conn:
            reply, _ = conn.request("put", fds=[read_end], name="test/pipe",
                                    meta={"writer": "closed"}, ttl_ms=3_600_000)
            assert reply["ok"] is True, reply
            reply, _ = conn.request("put", fds=[memfd, file_fd], name="test/multi",
                                    meta={"n": 2, "nested": {"a": [1, 2]}})
            assert reply["ok"] is True, reply
            # A replaced entry must leave nothing behind in the fd store.
            reply, _ = conn.request("put", fds=[memfd, file_fd], name="test/multi", replace=True,
                                    meta={"n": 2, "nested": {"a": [1, 2]}})
            assert reply["ok"] is True, reply
    finally:
        close_all([read_end, write_end, memfd, file_fd])  # the pipe's writer is now gone


ENTRIES = ("test/tcp", "test/pipe", "test/multi", "test/privileged-tcp", "test/os-release")


def snapshot(machine) -> dict:
    got = {}
    for name in ENTRIES:
        got[name] = get_entry(machine, name)
    return got


def assert_same_entries(before: dict, after: dict, elapsed_ms: int) -> None:
    for name in ENTRIES:
        (old, old_fds), (new, new_fds) = before[name], after[name]
        for key in ("name", "generation", "meta", "owner", "fds"):
            assert new[key] == old[key], (name, key, old[key], new[key])
        assert len(new_fds) == len(old_fds), name
        for a, b in zip(old_fds, new_fds):
            assert same_open_file(a, b), f"{name}: a different open file description came back"
        if "expires_ms" in old:
            assert old["expires_ms"] - elapsed_ms - 1000 <= new["expires_ms"] <= old["expires_ms"], \
                (name, old["expires_ms"], new["expires_ms"], elapsed_ms)
        else:
            assert "expires_ms" not in new, name


def test_entries_survive_kill_and_restart_as_the_same_open_files(broker_machine, fdbrokerctl,
                                                                  tmp_path):
    machine = broker_machine()
    machine.systemctl("start", "fdbroker.service")
    put_test_entries(machine, fdbrokerctl, tmp_path)
    first = snapshot(machine)
    held = STATIC_FDS + 1 + 1 + 2  # statics, tcp, pipe, memfd + file
    # Every held fd, plus the state memfd (the listening socket is the .socket unit's).
    machine.wait_for(lambda: fdstore_count(machine) == held + 1, f"{held + 1} fds in the fd store")
    # A flag set on the open file description now must show on what comes back.
    pipe_fd = first["test/pipe"][1][0]
    fcntl.fcntl(pipe_fd, fcntl.F_SETFL, fcntl.fcntl(pipe_fd, fcntl.F_GETFL) | os.O_NONBLOCK)

    started = time.monotonic()
    pid = main_pid(machine)
    machine.systemctl("kill", "-s", "KILL", "fdbroker.service")
    pid = wait_for_new_broker(machine, pid)
    assert service_state(machine, "NRestarts")["NRestarts"] == "1"
    after_kill = snapshot(machine)
    assert_same_entries(first, after_kill, int((time.monotonic() - started) * 1000))
    assert fcntl.fcntl(after_kill["test/pipe"][1][0], fcntl.F_GETFL) & os.O_NONBLOCK
    assert fdstore_count(machine) == held + 1

    started = time.monotonic()
    machine.systemctl("restart", "fdbroker.service")
    pid = wait_for_new_broker(machine, pid)
    after_restart = snapshot(machine)
    assert_same_entries(first, after_restart, int((time.monotonic() - started) * 1000))
    machine.wait_for(lambda: fdstore_count(machine) == held + 1, "the fd store unchanged by restart")

    # A new put still gets a larger generation than anything before the restarts.
    with Connection(machine.path(SOCKET)) as conn:
        conn.call("delete", name="test/pipe")
        machine.wait_for(lambda: fdstore_count(machine) == held, "the deleted entry's fd to leave")
        memfd = os.memfd_create("late", os.MFD_CLOEXEC)
        try:
            reply, _ = conn.request("put", fds=[memfd], name="test/late")
        finally:
            os.close(memfd)
    assert reply["generation"] > max(e[0]["generation"] for e in first.values())
    machine.wait_for(lambda: fdstore_count(machine) == held + 1, "the new entry's fd to be stored")

    # The broker's fd table after a restore holds what it held before: nothing
    # passed back is left open twice or unclaimed.
    def broker_fds(pid: int) -> int:
        """The broker's open fds while exactly one client (this one) is connected."""
        with Connection(machine.path(SOCKET)) as conn:
            machine.wait_for(lambda: conn.call("stats")["connections"]["current"] == 1,
                             "earlier clients to be gone")
            return len(os.listdir(machine.path(f"/proc/{pid}/fd")))

    before = broker_fds(pid)
    machine.systemctl("kill", "-s", "KILL", "fdbroker.service")
    pid = wait_for_new_broker(machine, pid)
    assert broker_fds(pid) == before

    # Upgrading by itself is for brokers without systemd: here restart does it.
    refused = machine.run(str(fdbrokerctl), "upgrade", check=False)
    assert refused.returncode == 1 and "EOPNOTSUPP" in refused.stderr, refused
    assert main_pid(machine) == pid

    for snap in (first, after_kill, after_restart):
        for _, fds in snap.values():
            close_all(fds)
