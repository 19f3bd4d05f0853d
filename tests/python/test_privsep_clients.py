# SPDX-License-Identifier: LGPL-2.1-or-later
"""The clients of `open` and `bind` against a real fdbrokerd with `files` and `bind`
rules (issue 11): Client.open/bind, fdbroker.open, fdbrokerctl open and exec
--open/--bind, for root and for nobody, with the broker's descriptor count checked
after every test (the broker fixture). What the broker decides in every corner
(symlinks, races, types, mounts) is the daemon's own tests' business; here each
client shows it asks right and reports the answer right."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from broker_fixture import NOBODY, Broker, binary, running_broker
from conftest import open_fd_count

import fdbroker

PROBE = os.path.join(os.path.dirname(__file__), "exec_probe.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def privsep_config(socket_path: str) -> dict[str, Any]:
    """data/ readable, writable and creatable by root; data/public/* readable by
    nobody too; TCP on 127.0.0.1 above 1023 bindable by both."""
    data = os.path.join(os.path.dirname(socket_path), "data")
    os.makedirs(os.path.join(data, "public"))
    os.chmod(os.path.dirname(socket_path), 0o755)
    return {
        "socket": {"path": socket_path, "mode": "0666"},
        "log_level": "info",
        "files": [
            {"name": "public", "root": data, "match": ["public/*"], "users": ["nobody"],
             "allow": ["read"]},
            {"name": "data", "root": data, "match": ["**"], "users": ["root"],
             "allow": ["read", "write", "create"], "mode": "0640"},
        ],
        "bind": [
            {"name": "high", "address": "tcp://127.0.0.1:1024-65535", "users": ["root", "nobody"],
             "allow": ["bind"]},
        ],
    }


@pytest.fixture
def broker() -> Iterator[Broker]:
    yield from running_broker(privsep_config)


def data_dir(broker: Broker) -> str:
    return os.path.join(broker.workdir, "data")


def as_nobody(code: str, broker: Broker) -> subprocess.CompletedProcess[str]:
    """Runs Python `code` as nobody (no groups) with FDBROKER_SOCKET set."""
    env = dict(os.environ, FDBROKER_SOCKET=broker.socket)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, user=NOBODY, group=NOBODY, extra_groups=[],
        capture_output=True, text=True, timeout=60,
    )


def test_client_open_reads_an_existing_file(broker: Broker) -> None:
    path = os.path.join(data_dir(broker), "config.txt")
    with open(path, "w") as f:
        f.write("hello")
    before = open_fd_count()
    with fdbroker.Client(broker.socket) as c, c.open(path) as opened:
        assert (opened.rule, opened.path, opened.created) == ("data", path, False)
        assert opened.fd_info["kind"] == "file" and opened.fd_info["access"] == "r"
        assert os.read(opened.fd, 10) == b"hello"
    assert open_fd_count() == before


def test_client_open_creates_with_the_rules_mode(broker: Broker) -> None:
    path = os.path.join(data_dir(broker), "new.tmp")
    with fdbroker.Client(broker.socket) as c:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        with c.open(path, flags, 0o666) as opened:
            assert opened.created is True
            os.write(opened.fd, b"x")
        assert os.stat(path).st_mode & 0o777 == 0o640  # 0666 masked by the rule's 0640
        with pytest.raises(FileExistsError):
            c.open(path, flags)


def test_root_without_a_rule_is_refused(broker: Broker) -> None:
    with fdbroker.Client(broker.socket) as c:
        with pytest.raises(PermissionError):
            c.open("/etc/hostname")
        with pytest.raises(PermissionError):
            c.bind("tcp://127.0.0.1:80")


def test_nobody_opens_what_its_rule_allows_and_nothing_else(broker: Broker) -> None:
    public = os.path.join(data_dir(broker), "public", "motd")
    private = os.path.join(data_dir(broker), "secret")
    for path in (public, private):
        with open(path, "w") as f:
            f.write("text")
        os.chmod(path, 0o600)  # nobody could not open either itself
    code = f"""
import fdbroker
with fdbroker.open({public!r}) as f:
    print(f.read())
for path in ({private!r}, {private + "-missing"!r}):
    try:
        fdbroker.open(path)
    except PermissionError:
        print("EACCES")
"""
    result = as_nobody(code, broker)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["text", "EACCES", "EACCES"]


def test_fdbroker_open_writes_and_reads_like_the_builtin(broker: Broker, monkeypatch) -> None:
    monkeypatch.setenv("FDBROKER_SOCKET", broker.socket)
    path = os.path.join(data_dir(broker), "notes.txt")
    before = open_fd_count()
    with fdbroker.open(path, "w", encoding="utf-8") as f:
        f.write("é\n")
    with fdbroker.open(path, "a") as f:
        f.write("two\n")
    with fdbroker.open(path, "rb") as f:
        assert f.read() == "é\ntwo\n".encode()
    with pytest.raises(FileExistsError):
        fdbroker.open(path, "x")
    with pytest.raises(FileNotFoundError):
        fdbroker.open(os.path.join(data_dir(broker), "missing"))
    assert open_fd_count() == before


def test_client_bind_serves_a_connection_and_refuses_outside_the_rule(broker: Broker) -> None:
    port = free_port()
    with fdbroker.Client(broker.socket) as c:
        bound = c.bind(f"tcp://127.0.0.1:{port}")
        assert bound.rule == "high" and bound.fd_info["listening"] is True
        with bound.socket() as listener:
            assert listener.getsockname() == ("127.0.0.1", port)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                served, _ = listener.accept()
                with served:
                    served.sendall(b"hi")
                    assert conn.recv(2) == b"hi"
            with pytest.raises(OSError) as taken:
                c.bind(f"tcp://127.0.0.1:{port}")
            assert taken.value.errno == 98  # EADDRINUSE
        with pytest.raises(PermissionError):
            c.bind("tcp://127.0.0.1:1023")  # below the rule's range
        with pytest.raises(PermissionError):
            c.bind(f"tcp://127.0.0.1:{port}", reuseport=True)  # the rule does not allow it


def ctl(broker: Broker, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("FDBROKERCTL"), "--socket", broker.socket, *args],
                          capture_output=True, text=True, timeout=60, **kwargs)


def test_ctl_open_describes_the_file_it_was_given(broker: Broker) -> None:
    path = os.path.join(data_dir(broker), "made-by-ctl")
    result = ctl(broker, "--json", "open", path, "--mode", "w", "--create", "--perm", "0600")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["rule"] == "data" and reply["created"] is True
    assert reply["fds"][0]["kind"] == "file"
    assert os.stat(path).st_mode & 0o777 == 0o600
    refused = ctl(broker, "open", "/etc/hostname")
    assert refused.returncode == 1 and "EACCES" in refused.stderr


def test_exec_gives_an_unprivileged_program_a_file_and_a_socket(broker: Broker) -> None:
    path = os.path.join(data_dir(broker), "public", "key")
    with open(path, "w") as f:
        f.write("k")
    os.chmod(path, 0o600)
    port = free_port()
    result = ctl(broker, "exec", "--open", path, "--bind", f"tcp://127.0.0.1:{port}", "--",
                 sys.executable, PROBE, user=NOBODY, group=NOBODY, extra_groups=[])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["env"]["LISTEN_FDS"] == "2"
    assert report["env"]["LISTEN_FDNAMES"] == f"key:tcp_//127.0.0.1_{port}"
    fds = report["fds"]
    assert [d["kind"] for d in fds] == ["file", "socket"]
    assert fds[0]["target"] == path
    assert fds[1]["listening"] is True and fds[1]["local"] == str(("127.0.0.1", port))
