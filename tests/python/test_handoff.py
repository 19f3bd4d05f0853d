# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker.listen / open_listener and fdbroker.handoff.Upgrader against a real
fdbrokerd ($FDBROKERD, set by ctest), with real sockets, memfds and processes."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

import fdbroker
from fdbroker.handoff import Upgrader, open_listener


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class HandoffBroker:
    """fdbrokerd with built-in defaults (our uid may do anything) on a temp socket."""

    def __init__(self, directory: str) -> None:
        binary = os.environ.get("FDBROKERD")
        if not binary:
            raise RuntimeError("$FDBROKERD is not set: run through ctest or point it at the built fdbrokerd")
        self.socket = os.path.join(directory, "broker.sock")
        config = os.path.join(directory, "fdbroker.json")
        with open(config, "w") as f:
            f.write("{}\n")
        self.proc = subprocess.Popen([binary, "--config", config, "--socket", self.socket, "--log-level", "error"])
        deadline = time.monotonic() + 10
        while True:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.socket)
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise
                time.sleep(0.01)
            finally:
                probe.close()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def hbroker() -> Iterator[HandoffBroker]:
    with tempfile.TemporaryDirectory(prefix="fdbroker-handoff-") as directory:
        b = HandoffBroker(directory)
        try:
            yield b
        finally:
            b.stop()


def same_socket(a: socket.socket, b: socket.socket) -> bool:
    return os.fstat(a.fileno()).st_ino == os.fstat(b.fileno()).st_ino


def test_listen_creates_then_shares_one_socket(hbroker: HandoffBroker) -> None:
    before = fd_count()
    first = open_listener("web/http", "tcp://127.0.0.1:0", broker_socket=hbroker.socket, meta={"team": "web"})
    assert first.origin == "created"
    assert first.generation > 0
    assert first.sock.family == socket.AF_INET and first.sock.type == socket.SOCK_STREAM
    assert not first.sock.get_inheritable()
    second = open_listener("web/http", "tcp://127.0.0.1:0", broker_socket=hbroker.socket)
    assert second.origin == "broker"
    assert second.generation == first.generation
    assert same_socket(first.sock, second.sock)
    with fdbroker.Client(hbroker.socket) as client:
        info = client.list("web/")[0]
        assert info.meta["team"] == "web"
        assert info.meta["url"] == "tcp://127.0.0.1:0"
        assert info.meta["pid"] == os.getpid()

    # Every process-side copy closed: the broker keeps the socket, and a connection
    # made meanwhile is accepted by the next listen().
    port = first.sock.getsockname()[1]
    first.sock.close()
    second.sock.close()
    assert fd_count() == before
    with socket.create_connection(("127.0.0.1", port)) as client_sock:
        third = fdbroker.listen("web/http", f"tcp://127.0.0.1:{port}", broker_socket=hbroker.socket)
        conn, _ = third.accept()
        with conn, third:
            client_sock.sendall(b"ping")
            assert conn.recv(4) == b"ping"
    assert fd_count() == before


def test_listen_refuses_an_entry_for_another_address(hbroker: HandoffBroker) -> None:
    with fdbroker.listen("web/http", "tcp://127.0.0.1:0", broker_socket=hbroker.socket) as held:
        other = held.getsockname()[1] % 60000 + 1
        with pytest.raises(FileExistsError):
            fdbroker.listen("web/http", f"tcp://127.0.0.1:{other}", broker_socket=hbroker.socket)


def test_listen_without_a_broker_falls_back_to_a_private_socket(tmp_path) -> None:
    missing = str(tmp_path / "nobody-here.sock")
    listener = open_listener("web/http", "tcp://127.0.0.1:0", broker_socket=missing)
    with listener.sock:
        assert listener.origin == "private"
        assert "nobody-here.sock" in listener.broker_error
        assert listener.sock.getsockname()[0] == "127.0.0.1"
    with pytest.raises(FileNotFoundError):
        fdbroker.listen("web/http", "tcp://127.0.0.1:0", broker_socket=missing, require_broker=True)


def test_listen_bad_url_is_einval(hbroker: HandoffBroker) -> None:
    with pytest.raises(OSError) as info:
        fdbroker.listen("web/http", "udp://127.0.0.1:53", broker_socket=hbroker.socket)
    assert info.value.errno == errno.EINVAL


def test_listen_takes_the_socket_inherited_through_listen_fds(tmp_path) -> None:
    # The socket arrives as fd 3 with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES naming it,
    # as systemd passes it; no broker exists, and require_broker would make asking fail.
    code = (
        "import os, sys, fdbroker\n"
        "l = fdbroker.handoff.open_listener('web/http', 'tcp://127.0.0.1:0',"
        f" broker_socket={str(tmp_path / 'none.sock')!r}, require_broker=True)\n"
        "print(l.origin, l.sock.fileno(), os.fstat(l.sock.fileno()).st_ino, l.sock.get_inheritable())\n"
    )
    shell = 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web/http exec "$0" -c "$1" 3<&0 0</dev/null'
    with fdbroker.listen("x", "tcp://127.0.0.1:0", broker_socket=str(tmp_path / "none.sock")) as sock:
        out = subprocess.run(["/bin/sh", "-c", shell, sys.executable, code], stdin=sock,
                             capture_output=True, text=True, check=True, env=dict(os.environ))
        origin, fd, inode, inheritable = out.stdout.split()
        assert origin == "inherited"
        assert fd == "3"
        assert int(inode) == os.fstat(sock.fileno()).st_ino
        assert inheritable == "False"  # marked close-on-exec once claimed


def test_upgrader_hands_over_state_and_retires_the_predecessor(hbroker: HandoffBroker) -> None:
    before = fd_count()
    old = Upgrader("svc", broker_socket=hbroker.socket)
    assert old.has_broker and old.predecessor_generation == 0 and old.predecessor_pid == 0
    old.ready()
    memfd = os.memfd_create("state", os.MFD_CLOEXEC)
    os.write(memfd, b"counter=41")
    old.put_state([memfd], meta={"format": 1})

    new = Upgrader("svc", broker_socket=hbroker.socket)
    assert new.predecessor_generation == old.generation
    assert new.predecessor_pid == os.getpid()
    with new.take_state() as state:
        assert state.meta == {"format": 1}
        assert os.fstat(state.fds[0]).st_ino == os.fstat(memfd).st_ino
        assert os.pread(state.fds[0], 10, 0) == b"counter=41"
    assert new.take_state() is None
    os.close(memfd)

    assert not old.wait_for_exit(0.05)
    new.ready()
    assert new.generation > old.generation
    assert old.wait_for_exit(5)
    assert old.exit_requested and old.successor_pid == os.getpid()
    del old, new
    assert fd_count() == before


def test_racing_successors_one_wins(hbroker: HandoffBroker) -> None:
    leader = Upgrader("svc", broker_socket=hbroker.socket)
    leader.ready()
    a = Upgrader("svc", broker_socket=hbroker.socket)
    b = Upgrader("svc", broker_socket=hbroker.socket)
    a.ready()
    with pytest.raises(OSError) as info:
        b.ready()
    assert info.value.errno == errno.ESTALE
    assert leader.wait_for_exit(5)


def test_upgrade_reports_a_successor_that_dies_or_hangs(hbroker: HandoffBroker) -> None:
    up = Upgrader("svc", broker_socket=hbroker.socket, ready_timeout=0.3)
    up.ready()
    with pytest.raises(ChildProcessError):
        up.upgrade([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        up.upgrade([sys.executable, "-c", "import time; time.sleep(30)"])
    assert time.monotonic() - started < 5
    assert not up.exit_requested


def test_upgrade_returns_once_the_successor_is_ready(hbroker: HandoffBroker) -> None:
    up = Upgrader("svc", broker_socket=hbroker.socket)
    up.ready()
    successor = (
        "import os, fdbroker\n"
        "assert 'LISTEN_FDS' not in os.environ\n"
        f"u = fdbroker.handoff.Upgrader('svc', broker_socket={hbroker.socket!r})\n"
        "u.ready()\n"
        "u.wait_for_exit(20)\n"
    )
    os.environ["LISTEN_FDS"] = "1"  # the successor must not inherit this claim
    try:
        pid = up.upgrade([sys.executable, "-c", successor])
    finally:
        del os.environ["LISTEN_FDS"]
    assert up.exit_requested and up.successor_pid == pid
    third = Upgrader("svc", broker_socket=hbroker.socket)
    assert third.predecessor_pid == pid
    third.ready()
    assert third.wait_for_predecessor_exit(10)
    assert os.waitpid(pid, 0)[1] == 0


def test_upgrader_without_a_broker_runs_standalone(tmp_path) -> None:
    up = Upgrader("svc", broker_socket=str(tmp_path / "nobody-here.sock"))
    assert not up.has_broker
    assert "nobody-here.sock" in up.broker_error
    up.ready()
    assert not up.wait_for_exit(0.05)
    assert up.take_state() is None
    with pytest.raises(OSError) as info:
        up.upgrade(["/bin/true"])
    assert info.value.errno == errno.ENOTCONN


def test_state_meta_round_trips_as_json(hbroker: HandoffBroker) -> None:
    up = Upgrader("svc", broker_socket=hbroker.socket)
    r, w = os.pipe()
    try:
        up.put_state([w], meta={"nested": {"list": [1, 2]}, "text": "é"})
        with up.get_state() as state:
            assert json.dumps(state.meta, sort_keys=True) == json.dumps(
                {"nested": {"list": [1, 2]}, "text": "é"}, sort_keys=True)
        again = up.get_state()  # get leaves it
        assert again is not None
        again.close()
    finally:
        os.close(r)
        os.close(w)
