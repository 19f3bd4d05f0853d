# SPDX-License-Identifier: LGPL-2.1-or-later
"""`fdbrokerctl exec`: broker-held descriptors handed to a program the way systemd's
socket activation does (fds from 3, LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES), and the
issue's demonstration: an unmodified systemd-socket-proxyd serving a TCP socket that
the broker holds, twice in a row."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from broker_fixture import Broker, binary

import fdbroker

PROBE = os.path.join(os.path.dirname(__file__), "exec_probe.py")
PROXYD = "/lib/systemd/systemd-socket-proxyd"


def ctl_cmd(broker: Broker, *args: str) -> list[str]:
    return [binary("FDBROKERCTL"), "--socket", broker.socket, *args]


def run_probe(broker: Broker, *exec_args: str, launcher_fds: bool = False) -> dict:
    """Runs exec_probe.py under `fdbrokerctl exec`. With launcher_fds, fdbrokerctl
    starts with two extra inheritable fds, at 3 (where the first passed fd must go)
    and at 40: neither may reach the program."""
    command = ctl_cmd(broker, "exec", *exec_args, "--", sys.executable, PROBE, "arg1", "arg two")
    if launcher_fds:
        launcher = (
            "import os, sys\n"
            "fd = os.open('/dev/null', os.O_RDONLY)\n"
            "os.dup2(fd, 40)\n"
            "os.dup2(40, 3)\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"
        )
        command = [sys.executable, "-c", launcher, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result
    return json.loads(result.stdout)


@contextlib.contextmanager
def put_pipe_and_file(broker: Broker, name: str) -> Iterator[tuple[int, int]]:
    """Puts a pipe's write end and /etc/hostname as `name`; yields the pipe (r, w),
    closed on exit."""
    r, w = os.pipe()
    try:
        with fdbroker.Client(broker.socket) as c, open("/etc/hostname") as f:
            c.put(name, [w, f])
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def test_exec_passes_fds_from_3_with_listen_env(broker: Broker) -> None:
    with put_pipe_and_file(broker, "app") as (_, w):
        subprocess.run(ctl_cmd(broker, "put", "svc:main", "--listen", "tcp://127.0.0.1:0"), check=True)
        report = run_probe(broker, "--get", "app", "--get", "svc:main")
        assert report["argv"] == ["arg1", "arg two"]
        assert report["env"] == {
            "LISTEN_FDS": "3",
            "LISTEN_PID": str(report["pid"]),
            # ':' is not allowed in a systemd fd name: it becomes '_'.
            "LISTEN_FDNAMES": "app:app:svc_main",
        }
        assert report["open_fds"] == [0, 1, 2, 3, 4, 5]
        fds = report["fds"]
        assert [d["kind"] for d in fds] == ["pipe", "file", "socket"]
        assert [d["cloexec"] for d in fds] == [False, False, False]
        assert fds[1]["target"] == os.path.realpath("/etc/hostname")
        assert fds[2]["listening"] is True and fds[2]["family"] == "AF_INET"
        # The pipe is the broker's copy of our write end.
        st = os.fstat(w)
        assert fds[0]["target"] == f"pipe:[{st.st_ino}]"


def test_exec_leaks_no_other_fd_even_at_3(broker: Broker) -> None:
    with put_pipe_and_file(broker, "app"):
        report = run_probe(broker, "--get", "app", launcher_fds=True)
        assert report["open_fds"] == [0, 1, 2, 3, 4]
        assert report["env"]["LISTEN_FDS"] == "2"
        assert [d["kind"] for d in report["fds"]] == ["pipe", "file"]
        assert all(d["target"] != "/dev/null" for d in report["fds"])


def test_exec_take_removes_the_entry(broker: Broker) -> None:
    with put_pipe_and_file(broker, "one-shot"):
        report = run_probe(broker, "--take", "one-shot")
        assert report["env"]["LISTEN_FDNAMES"] == "one-shot:one-shot"
        with fdbroker.Client(broker.socket) as c:
            assert c.try_get("one-shot") is None


def test_exec_waits_for_an_entry_put_later(broker: Broker) -> None:
    command = ctl_cmd(broker, "exec", "--get", "late", "--wait", "20000", "--", sys.executable, PROBE)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r, w = os.pipe()
    try:
        time.sleep(0.3)
        assert proc.poll() is None  # still waiting for "late"
        with fdbroker.Client(broker.socket) as c:
            c.put("late", [r])
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["env"]["LISTEN_FDS"] == "1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(r)
        os.close(w)


def test_exec_of_missing_entry_exits_1_without_running_the_program(broker: Broker, tmp_path) -> None:
    marker = tmp_path / "ran"
    result = subprocess.run(
        ctl_cmd(broker, "exec", "--get", "missing", "--", "touch", str(marker)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "ENOENT" in result.stderr
    assert not marker.exists()


def test_exec_of_missing_program_exits_111(broker: Broker) -> None:
    with put_pipe_and_file(broker, "app"):
        result = subprocess.run(
            ctl_cmd(broker, "exec", "--get", "app", "--", "/nonexistent/program"),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 111
        assert "ENOENT" in result.stderr


class _Backend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Answer(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().strip()
        self.wfile.write(b"backend got " + line + b"\n")


def _ask(port: int, text: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        # No shutdown(SHUT_WR): systemd-socket-proxyd ends the whole connection when
        # the client's side does. The answer is one line.
        s.sendall(text + b"\n")
        data = b""
        while not data.endswith(b"\n") and (chunk := s.recv(4096)):
            data += chunk
        return data


def test_systemd_socket_proxyd_serves_a_broker_held_socket(broker: Broker) -> None:
    backend = _Backend(("127.0.0.1", 0), _Answer)
    backend_port = backend.server_address[1]
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    try:
        subprocess.run(ctl_cmd(broker, "put", "web", "--listen", "tcp://127.0.0.1:0"), check=True)
        with fdbroker.Client(broker.socket) as c, c.get("web") as entry:
            web_port = int(entry.fd_info[0]["local"].rsplit(":", 1)[1])
        # Two proxies one after the other on the same listening socket: the broker keeps
        # it between them, so the second serves without re-binding the port.
        for attempt in (b"first", b"second"):
            proxy = subprocess.Popen(
                ctl_cmd(broker, "exec", "--get", "web", "--", PROXYD, f"127.0.0.1:{backend_port}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                assert _ask(web_port, attempt) == b"backend got " + attempt + b"\n"
            finally:
                proxy.send_signal(signal.SIGTERM)
                _, err = proxy.communicate(timeout=20)
            assert proxy.returncode in (0, -signal.SIGTERM), err
    finally:
        backend.shutdown()
        backend.server_close()
