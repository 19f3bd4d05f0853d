# SPDX-License-Identifier: LGPL-2.1-or-later
"""Upgrade without systemd (daemon/upgrade.hpp): the broker runs a new fdbrokerd
and hands it its socket, every entry and its state, while clients keep issuing
gets over the raw protocol. No get may fail, every entry must come back as the
same open file description, and a binary that cannot start leaves the old
broker serving with everything intact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from broker_fixture import binary
from kcmp import same_open_file

MAX_MESSAGE = 64 * 1024


class Raw:
    """One SOCK_SEQPACKET connection speaking the wire protocol directly."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.settimeout(20)
        self.sock.connect(path)

    def close(self) -> None:
        self.sock.close()

    def send(self, request: dict, fds=()) -> None:
        data = json.dumps(request).encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def receive(self) -> tuple[dict | None, list[int]]:
        data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, 253)
        assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
        return (json.loads(data) if data else None), fds

    def call(self, request: dict, fds=()) -> tuple[dict, list[int]]:
        self.send(request, fds)
        reply, got = self.receive()
        assert reply is not None, f"connection closed instead of answering {request}"
        return reply, got


def wait_for_socket(path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = Raw(path)
            conn.call({"op": "hello"})
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.01)


def brokers_with(config: Path) -> list[int]:
    """The live fdbrokerd processes started with `config` (every upgrade runs the same argv),
    not counting each one's spawner (forked, so the same argv; named fdbrokerd-spawn)."""
    argv = [binary("FDBROKERD").encode(), b"--config", str(config).encode()]
    found = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and pid_alive(int(p)) and \
                    Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[:3] == argv and \
                    Path(f"/proc/{p}/comm").read_text().strip() != "fdbrokerd-spawn":
                found.append(int(p))
        except OSError:
            pass  # gone meanwhile
    return found


def broker_pid(config: Path) -> int:
    found = brokers_with(config)
    assert len(found) == 1, found
    return found[0]


def broker_fds(path: str, pid: int) -> int:
    """The broker's open fds while exactly one client (this one) is connected."""
    conn = Raw(path)
    try:
        deadline = time.monotonic() + 10
        while conn.call({"op": "stats"})[0]["connections"]["current"] != 1:
            assert time.monotonic() < deadline, "earlier clients did not go"
            time.sleep(0.01)
        return len(os.listdir(f"/proc/{pid}/fd"))
    finally:
        conn.close()


class GetLoad:
    """Clients issuing gets continuously on several connections. A send refused
    with EPIPE means the broker stopped reading this connection before the
    request went out (a request boundary): reconnect and send it again. Anything
    else (no reply, a reset, an error reply, wrong fds) is a failed get."""

    def __init__(self, path: str, originals: dict[str, list[int]], clients: int = 4):
        self.path = path
        self.originals = originals
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.reconnects = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(clients)]

    def run(self, index: int) -> None:
        names = list(self.originals)
        conn = None
        n = index
        try:
            while not self.stop.is_set():
                name = names[n % len(names)]
                n += 1
                if conn is None:
                    conn = Raw(self.path)
                try:
                    conn.send({"op": "get", "name": name, "id": n})
                except BrokenPipeError:
                    conn.close()
                    conn = None
                    with self.lock:
                        self.reconnects += 1
                    n -= 1  # the same get again, on a new connection
                    continue
                try:
                    reply, fds = conn.receive()
                except OSError as e:
                    self.fail(f"get '{name}': {e!r}")
                    conn.close()
                    conn = None
                    continue
                try:
                    if reply is None:
                        self.fail(f"get '{name}': connection closed with the request unanswered")
                        conn.close()
                        conn = None
                    elif reply.get("ok") is not True or reply.get("id") != n:
                        self.fail(f"get '{name}': {reply}")
                    elif len(fds) != len(self.originals[name]) or not all(
                            same_open_file(a, b) for a, b in zip(fds, self.originals[name])):
                        self.fail(f"get '{name}': other open files came back")
                    else:
                        with self.lock:
                            self.ok += 1
                finally:
                    for fd in fds:
                        os.close(fd)
        except Exception as e:  # noqa: BLE001: any surprise is a failure to report
            self.fail(f"client {index}: {e!r}")
        finally:
            if conn is not None:
                conn.close()

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def __enter__(self) -> "GetLoad":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_upgrades_under_get_load_lose_no_get_and_no_entry(tmp_path: Path):
    sock_path = str(tmp_path / "broker.sock")
    config = tmp_path / "fdbroker.json"
    config.write_text(json.dumps({"socket": {"path": sock_path}, "log_level": "info"}))
    log = open(tmp_path / "broker.log", "w")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
    first = subprocess.Popen([binary("FDBROKERD"), "--config", str(config)], stdout=log,
                             stderr=subprocess.STDOUT, env=env)
    pid = first.pid
    held: list[int] = []
    originals: dict[str, list[int]] = {}
    try:
        wait_for_socket(sock_path)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        memfd = os.memfd_create("upgrade-test", os.MFD_CLOEXEC)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(16)
        conn = Raw(sock_path)
        put = {}
        for name, fds, extra in (("up/pipe", [read_end], {"ttl_ms": 3_600_000}),
                                 ("up/memfd-tcp", [memfd, tcp.fileno()], {}),
                                 ("up/meta", [memfd], {"meta": {"x": [1, {"y": 2}]}})):
            reply, _ = conn.call({"op": "put", "name": name, **extra}, fds)
            assert reply["ok"] is True, reply
            put[name] = reply["generation"]
        for fd in (read_end, write_end, memfd):
            os.close(fd)  # the pipe's writer is gone: the broker must keep the reader anyway
        tcp.close()
        before = {}
        for name in put:
            reply, fds = conn.call({"op": "get", "name": name})
            before[name] = reply
            originals[name] = fds
            held += fds
        conn.close()
        baseline = broker_fds(sock_path, pid)

        upgrades = 0
        with GetLoad(sock_path, originals) as load:
            for i in range(10):
                time.sleep(0.05)  # let the clients get going between upgrades
                if i == 2:
                    # fdbrokerctl upgrade: the same operation from the command line.
                    out = subprocess.run([binary("FDBROKERCTL"), "--socket", sock_path, "--json",
                                          "upgrade"], capture_output=True, text=True, timeout=30)
                    assert out.returncode == 0, out.stderr
                    reply = {"ok": True, "id": i, **json.loads(out.stdout)}
                else:
                    conn = Raw(sock_path)
                    reply, _ = conn.call({"op": "upgrade", "id": i})
                    conn.close()
                assert reply["ok"] is True and reply["id"] == i, reply
                wait_gone(pid)
                assert reply["pid"] != pid and pid_alive(reply["pid"])
                pid = reply["pid"]
                upgrades += 1
                if i == 4:
                    # A binary that cannot become a broker: the old one carries on.
                    conn = Raw(sock_path)
                    reply, _ = conn.call({"op": "upgrade", "binary": "/bin/false"})
                    assert (reply["ok"], reply["error"]) == (False, "ECHILD"), reply
                    reply, _ = conn.call({"op": "upgrade", "binary": str(tmp_path / "missing")})
                    assert (reply["ok"], reply["error"]) == (False, "ENOENT"), reply
                    conn.close()
                    out = subprocess.run([binary("FDBROKERCTL"), "--socket", sock_path, "upgrade",
                                          "--binary", "/bin/false"],
                                         capture_output=True, text=True, timeout=30)
                    assert out.returncode == 1 and "ECHILD" in out.stderr, (out.returncode, out.stderr)
                    assert pid_alive(pid)
                if i == 7:
                    os.kill(pid, signal.SIGUSR2)  # the same, by signal
                    wait_gone(pid)
                    wait_for_socket(sock_path)
                    pid = broker_pid(config)
            time.sleep(0.1)
        print(f"{load.ok} gets served, {load.reconnects} reconnects at a request boundary, "
              f"{len(load.failures)} failed, over {upgrades} upgrades + 1 by SIGUSR2")
        assert load.failures == [], load.failures[:5]
        assert load.ok > 0

        conn = Raw(sock_path)
        for name, old in before.items():
            reply, fds = conn.call({"op": "get", "name": name})
            try:
                for key in ("generation", "meta", "owner", "fds"):
                    assert reply[key] == old[key], (name, key)
                assert ("expires_ms" in reply) == ("expires_ms" in old)
                assert all(same_open_file(a, b) for a, b in zip(fds, originals[name]))
            finally:
                for fd in fds:
                    os.close(fd)
        conn.close()
        # Nothing handed over was left open twice or unclaimed.
        assert broker_fds(sock_path, pid) == baseline
    finally:
        for fd in held:
            os.close(fd)
        # Whichever brokers of this test still run (after a failure, possibly
        # one the test lost track of): they are this test's own processes.
        for leftover in brokers_with(config):
            os.kill(leftover, signal.SIGTERM)
            wait_gone(leftover)
        first.wait(10)
        log.close()
        print((tmp_path / "broker.log").read_text()[-4000:])
    assert not os.path.exists(sock_path), "the last broker left its socket file behind"
