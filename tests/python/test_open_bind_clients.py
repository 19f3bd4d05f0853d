# SPDX-License-Identifier: LGPL-2.1-or-later
"""The clients of `open` and `bind` against a stand-in broker (stand_in_broker.py,
a real AF_UNIX socket that opens and binds without any policy): what
fdbrokerctl open / exec --open --bind, Client.open/bind and fdbroker.open send,
what they make of the answer, and that none leaves a descriptor behind. The
broker's own decisions are tested against fdbrokerd in test_privsep_clients.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from broker_fixture import binary
from conftest import open_fd_count
from stand_in_broker import StandInBroker

import fdbroker

PROBE = os.path.join(os.path.dirname(__file__), "exec_probe.py")


@pytest.fixture
def stand_in() -> Iterator[StandInBroker]:
    broker = StandInBroker()
    try:
        yield broker
    finally:
        broker.stop()


def ctl(stand_in: StandInBroker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("FDBROKERCTL"), "--socket", stand_in.socket, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, flags, mode",
    [
        ([], ["rdonly"], None),
        (["--mode", "w"], ["wronly"], None),
        (["--mode", "a", "--create"], ["wronly", "append", "create"], None),
        (["--mode", "rw", "--create", "--excl", "--perm", "640"], ["rdwr", "create", "excl"], "0640"),
        (["--mode=rw", "--trunc"], ["rdwr", "trunc"], None),
    ],
)
def test_ctl_open_sends_the_flags_and_describes_the_file(stand_in, tmp_path, args, flags, mode):
    path = str(tmp_path / "f")
    if "--excl" not in args:
        (tmp_path / "f").write_text("x")
    result = ctl(stand_in, "open", path, *args)
    assert result.returncode == 0, result.stderr
    request = stand_in.requests[-1]
    assert request["op"] == "open" and request["path"] == path
    assert request["flags"] == flags
    assert request.get("mode") == mode
    assert "rule:     stand-in" in result.stdout
    assert f"file {path} (" in result.stdout


def test_ctl_open_json_prints_the_reply(stand_in, tmp_path):
    path = str(tmp_path / "f")
    (tmp_path / "f").write_text("x")
    result = ctl(stand_in, "--json", "open", path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "path": path,
        "rule": "stand-in",
        "created": False,
        "fds": [{"kind": "file", "path": path, "access": "r"}],
    }


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["relative"], "absolute"),
        (["/a", "/b"], "exactly one PATH"),
        (["/a", "--mode", "x"], "--mode"),
        (["/a", "--excl"], "--excl needs --create"),
        (["/a", "--perm", "0644"], "--perm needs --create"),
        (["/a", "--create", "--perm", "1777"], "--perm"),
        (["/a", "--create", "--perm", "8"], "--perm"),
        (["/a", "--trunc"], "--trunc"),
        (["/a", "--wait", "1"], "does not apply"),
    ],
)
def test_ctl_open_usage_errors_exit_100_before_asking(stand_in, args, complaint):
    result = ctl(stand_in, "open", *args)
    assert result.returncode == 100
    assert complaint in result.stderr
    assert stand_in.requests == []


def test_ctl_open_refused_exits_1_with_the_errno_name(stand_in):
    stand_in.refuse = 13  # EACCES
    result = ctl(stand_in, "open", "/etc/shadow")
    assert result.returncode == 1
    assert "open: EACCES: refused by the stand-in" in result.stderr


def test_exec_open_and_bind_place_fds_in_command_line_order(stand_in, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    result = ctl(
        stand_in,
        "exec",
        "--bind",
        "tcp://127.0.0.1:0",
        "--open",
        f"{log}:a",
        "--open",
        "/etc/hostname",
        "--",
        sys.executable,
        PROBE,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["env"] == {
        "LISTEN_FDS": "3",
        "LISTEN_PID": str(report["pid"]),
        "LISTEN_FDNAMES": "tcp_//127.0.0.1_0:app.log:hostname",
    }
    assert report["open_fds"] == [0, 1, 2, 3, 4, 5]
    fds = report["fds"]
    assert [d["kind"] for d in fds] == ["socket", "file", "file"]
    assert fds[0]["listening"] is True and fds[0]["family"] == "AF_INET"
    assert fds[1]["target"] == str(log)
    assert fds[2]["target"] == os.path.realpath("/etc/hostname")
    assert [r["op"] for r in stand_in.requests] == ["bind", "open", "open"]
    assert stand_in.requests[1]["flags"] == ["wronly", "append"]
    assert stand_in.requests[2]["flags"] == ["rdonly"]


def test_exec_open_path_with_a_colon_keeps_it_unless_a_mode_follows(stand_in, tmp_path):
    odd = tmp_path / "a:b"
    odd.write_text("")
    result = ctl(stand_in, "exec", "--open", str(odd), "--open", f"{odd}:rw", "--", "true")
    assert result.returncode == 0, result.stderr
    assert [(r["path"], r["flags"]) for r in stand_in.requests] == [
        (str(odd), ["rdonly"]),
        (str(odd), ["rdwr"]),
    ]


def test_exec_refused_open_exits_1_without_running_the_program(stand_in, tmp_path):
    stand_in.refuse = 13
    marker = tmp_path / "ran"
    result = ctl(stand_in, "exec", "--open", "/etc/shadow", "--", "touch", str(marker))
    assert result.returncode == 1
    assert "EACCES" in result.stderr
    assert not marker.exists()


def test_client_open_hands_over_the_file(stand_in, tmp_path):
    path = tmp_path / "f"
    path.write_text("content")
    before = open_fd_count()
    with fdbroker.Client(stand_in.socket) as c:
        with c.open(str(path)) as opened:
            assert opened.rule == "stand-in"
            assert opened.path == str(path)
            assert opened.created is False
            assert opened.fd_info == {"kind": "file", "path": str(path), "access": "r"}
            assert os.read(opened.fd, 100) == b"content"
            assert not os.get_inheritable(opened.fd)
        with c.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC) as opened:
            os.write(opened.fd, b"+")
        with pytest.raises(ValueError):
            c.open(str(path), os.O_RDONLY | os.O_DIRECTORY)
        with pytest.raises(FileNotFoundError):
            c.open(str(tmp_path / "missing"))
        with pytest.raises(ValueError):
            c.open(str(path), os.O_WRONLY | os.O_CREAT, 0o1777)
        # open(2) takes them, the broker would answer EINVAL: refused before sending.
        for flags in (os.O_RDONLY | os.O_APPEND, os.O_RDONLY | os.O_TRUNC,
                      os.O_WRONLY | os.O_EXCL):
            with pytest.raises(ValueError):
                c.open(str(path), flags)
    assert path.read_text() == "content+"
    assert [r["flags"] for r in stand_in.requests] == [["rdonly"], ["wronly", "append"], ["rdonly"]]
    assert open_fd_count() == before


def test_client_bind_hands_over_a_listening_socket(stand_in):
    before = open_fd_count()
    with fdbroker.Client(stand_in.socket) as c:
        bound = c.bind("tcp://127.0.0.1:0", backlog=5, reuseport=True)
    assert stand_in.requests[-1] == {
        "op": "bind",
        "id": stand_in.requests[-1]["id"],
        "address": "tcp://127.0.0.1:0",
        "backlog": 5,
        "reuseport": True,
    }
    assert bound.rule == "stand-in" and bound.fd_info["listening"] is True
    with bound.socket() as listener:
        assert bound.fd == -1  # the socket owns it now
        with socket.create_connection(listener.getsockname(), timeout=10) as conn:
            served, _ = listener.accept()
            with served:
                conn.sendall(b"ping")
                assert served.recv(4) == b"ping"
    bound.close()  # nothing left to close: harmless
    assert open_fd_count() == before


def test_fdbroker_open_reads_through_the_broker_from_the_environment(stand_in, tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_text("line one\nline two\n")
    monkeypatch.setenv("FDBROKER_SOCKET", stand_in.socket)
    before = open_fd_count()
    with fdbroker.open(path) as f:
        assert f.readlines() == ["line one\n", "line two\n"]
    with fdbroker.open(str(path), "ab") as f:
        f.write(b"three\n")
    with fdbroker.Client() as c, fdbroker.open(path, "r+", client=c) as f:
        assert f.read().endswith("three\n")
    assert [r["flags"] for r in stand_in.requests] == [
        ["rdonly"],
        ["wronly", "append", "create"],
        ["rdwr"],
    ]
    assert open_fd_count() == before


def test_fdbroker_open_refused_raises_the_builtins_error_and_leaks_nothing(stand_in, monkeypatch):
    monkeypatch.setenv("FDBROKER_SOCKET", stand_in.socket)
    stand_in.refuse = 13
    before = open_fd_count()
    with pytest.raises(PermissionError, match="refused by the stand-in"):
        fdbroker.open("/etc/shadow")
    assert open_fd_count() == before
