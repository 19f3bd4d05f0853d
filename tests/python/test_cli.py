# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbrokerctl against a real fdbrokerd: each command, --json output, the exit codes
(0 ok, 1 refused, 100 usage, 111 system), and the fds put creates or inherits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from broker_fixture import Broker, binary

import fdbroker


def ctl(broker: Broker, *args: str, pass_fds: tuple[int, ...] = (), check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [binary("FDBROKERCTL"), "--socket", broker.socket, *args],
        capture_output=True,
        text=True,
        pass_fds=pass_fds,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result
    return result


def ctl_json(broker: Broker, *args: str, **kwargs) -> object:
    return json.loads(ctl(broker, "--json", *args, **kwargs).stdout)


def test_help_and_version_exit_zero() -> None:
    help_run = subprocess.run([binary("FDBROKERCTL"), "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0
    for command in ["hello", "list", "get", "take", "put", "delete", "stats", "exec", "LISTEN_FDNAMES"]:
        assert command in help_run.stdout
    version = subprocess.run([binary("FDBROKERCTL"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0
    assert version.stdout.strip() == f"fdbrokerctl {fdbroker.__version__}"


def test_hello(broker: Broker) -> None:
    hello = ctl_json(broker, "hello")
    assert hello["server"] == "fdbrokerd" and hello["protocol"] == 1
    assert hello["peer"]["uid"] == os.getuid()
    human = ctl(broker, "hello").stdout
    assert "fdbrokerd" in human and f"uid {os.getuid()}" in human
    unit = hello["peer"]["unit"]  # read by the broker at accept; None outside units
    assert (f", unit {unit}" if unit else ", in no unit known") in human, human


def test_socket_from_environment(broker: Broker) -> None:
    result = subprocess.run(
        [binary("FDBROKERCTL"), "hello"],
        capture_output=True,
        text=True,
        env=dict(os.environ, FDBROKER_SOCKET=broker.socket),
    )
    assert result.returncode == 0, result


def test_put_file_then_get_describes_it(broker: Broker, tmp_path) -> None:
    path = tmp_path / "config.txt"
    path.write_text("x")
    put = ctl_json(broker, "put", "cfg", "--file", str(path), "--meta", '{"role": "config"}')
    assert put["name"] == "cfg" and put["generation"] >= 1
    entry = ctl_json(broker, "get", "cfg")
    assert entry["name"] == "cfg"
    assert entry["generation"] == put["generation"]
    assert entry["meta"] == {"role": "config"}
    assert entry["fds"] == [{"kind": "file", "path": str(path), "access": "r"}] or (
        entry["fds"][0]["kind"] == "file"
        and entry["fds"][0]["path"] == str(path)
        and entry["fds"][0]["access"] == "r"
    )
    human = ctl(broker, "get", "cfg").stdout
    assert "cfg" in human and str(path) in human and "config" in human


@pytest.mark.parametrize("mode,access", [("r", "r"), ("w", "w"), ("rw", "rw")])
def test_put_file_modes(broker: Broker, tmp_path, mode: str, access: str) -> None:
    path = tmp_path / f"file-{mode}"
    path.write_text("")
    ctl(broker, "put", f"f/{mode}", "--file", str(path), "--mode", mode)
    with fdbroker.Client(broker.socket) as c, c.get(f"f/{mode}") as entry:
        assert entry.fd_info[0]["access"] == access
        if "w" in mode:
            os.write(entry.fds[0], b"written via the broker")
    if "w" in mode:
        assert path.read_bytes() == b"written via the broker"


def test_put_file_w_creates_it(broker: Broker, tmp_path) -> None:
    path = tmp_path / "new.log"
    ctl(broker, "put", "log", "--file", str(path), "--mode", "w")
    assert path.exists()


def test_put_listen_tcp_keeps_listening_after_the_cli_exits(broker: Broker) -> None:
    ctl(broker, "put", "web", "--listen", "tcp://127.0.0.1:0")
    entry = ctl_json(broker, "get", "web")
    (desc,) = entry["fds"]
    assert desc["kind"] == "socket" and desc["family"] == "inet" and desc["type"] == "stream"
    assert desc["listening"] is True
    host, port = desc["local"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    # fdbrokerctl is gone; the broker's copy still accepts connections.
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
        pass
    with fdbroker.Client(broker.socket) as c, c.get("web") as got:
        listener = socket.socket(fileno=os.dup(got.fds[0]))
        with listener:
            conn, _ = listener.accept()
            conn.close()


def test_put_listen_tcp6_udp_and_unix(broker: Broker, tmp_path) -> None:
    unix_path = tmp_path / "app.sock"
    ctl(broker, "put", "multi", "--listen", "tcp6://[::1]:0", "--listen", "udp://127.0.0.1:0",
        "--listen", f"unix:{unix_path}")
    fds = ctl_json(broker, "get", "multi")["fds"]
    assert [(d["family"], d["type"], d["listening"]) for d in fds] == [
        ("inet6", "stream", True),
        ("inet", "dgram", False),
        ("unix", "stream", True),
    ]
    assert fds[0]["local"].startswith("[::1]:")
    assert fds[2]["local"] == str(unix_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(unix_path))


def test_put_inherited_fds_in_order(broker: Broker, tmp_path) -> None:
    r, w = os.pipe()
    path = tmp_path / "f"
    path.write_text("")
    try:
        os.set_inheritable(r, True)
        os.set_inheritable(w, True)
        ctl(broker, "put", "inh", "--fd", str(w), "--file", str(path), "--fd", str(r), pass_fds=(r, w))
        kinds = [(d["kind"], d.get("access")) for d in ctl_json(broker, "get", "inh")["fds"]]
        assert kinds == [("pipe", "w"), ("file", "r"), ("pipe", "r")]
        with fdbroker.Client(broker.socket) as c, c.get("inh") as entry:
            os.write(entry.fds[0], b"!")
        assert os.read(r, 1) == b"!"
    finally:
        os.close(r)
        os.close(w)


def test_put_options_ttl_replace_and_exists(broker: Broker) -> None:
    first = ctl_json(broker, "put", "opt", "--file", "/dev/null")["generation"]
    refused = ctl(broker, "put", "opt", "--file", "/dev/null", check=False)
    assert refused.returncode == 1
    assert "EEXIST" in refused.stderr
    second = ctl_json(broker, "put", "opt", "--file", "/dev/null", "--replace", "--ttl", "60000")["generation"]
    assert second > first
    entry = ctl_json(broker, "get", "opt")
    assert 0 < entry["expires_ms"] <= 60000
    stale = ctl(broker, "put", "opt", "--file", "/dev/null", "--expect-generation", str(first), check=False)
    assert stale.returncode == 1 and "ESTALE" in stale.stderr
    ctl(broker, "put", "opt", "--file", "/dev/null", "--expect-generation", str(second))


def test_take_and_delete(broker: Broker) -> None:
    ctl(broker, "put", "a", "--file", "/dev/null")
    ctl(broker, "put", "b", "--file", "/dev/null")
    assert ctl_json(broker, "take", "a")["name"] == "a"
    assert ctl(broker, "get", "a", check=False).returncode == 1
    assert ctl_json(broker, "delete", "b") == {"name": "b"}
    missing = ctl(broker, "delete", "b", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("fdbrokerctl: delete: ENOENT: ")


def test_get_missing_exits_1_with_errno_name(broker: Broker) -> None:
    result = ctl(broker, "get", "nope", check=False)
    assert result.returncode == 1
    assert "ENOENT" in result.stderr and "nope" in result.stderr
    assert result.stdout == ""


def test_get_wait_times_out(broker: Broker) -> None:
    result = ctl(broker, "get", "nope", "--wait", "100", check=False)
    assert result.returncode == 1 and "ETIMEDOUT" in result.stderr


def test_list_prints_every_page(broker: Broker) -> None:
    with fdbroker.Client(broker.socket) as c, open("/dev/null") as null:
        for i in range(45):
            c.put(f"l/{i:02d}", null, meta={"i": i})
    names = [e["name"] for e in ctl_json(broker, "list", "l/", "--limit", "7")]
    assert names == [f"l/{i:02d}" for i in range(45)]
    table = ctl(broker, "list", "--limit", "7").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "GEN", "OWNER"]
    assert [line.split()[0] for line in table[1:]] == [f"l/{i:02d}" for i in range(45)]


def test_stats(broker: Broker) -> None:
    ctl(broker, "put", "s", "--file", "/dev/null", "--file", "/dev/null")
    stats = ctl_json(broker, "stats")
    assert stats["entries"] == 1 and stats["fds_held"] == 2
    human = ctl(broker, "stats").stdout
    assert "entries:" in human
    assert ["put", "ok", "1"] in [line.split() for line in human.splitlines()]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["get"],
        ["get", "a", "b"],
        ["hello", "extra"],
        ["put", "x"],
        ["put", "x", "--mode", "w"],
        ["put", "x", "--file", "/dev/null", "--mode", "x"],
        ["put", "x", "--fd", "notanumber"],
        ["put", "x", "--fd", "987"],
        ["put", "x", "--listen", "carrier-pigeon://1"],
        ["put", "x", "--listen", "tcp://127.0.0.1"],
        ["put", "x", "--file", "/dev/null", "--meta", "[1]"],
        ["put", "x", "--file", "/dev/null", "--meta", "{not json"],
        ["get", "x", "--fd", "3"],
        ["list", "--limit", "0"],
        ["--frobnicate", "hello"],
        ["exec", "--get", "x"],
        ["exec", "--", "true"],
        ["get", "x", "--", "y"],
        ["--timeout", "0", "hello"],
        ["--timeout", "-1", "hello"],
        ["--timeout", "soon", "hello"],
        ["hello", "--timeout"],
    ],
)
def test_usage_errors_exit_100(broker: Broker, args: list[str]) -> None:
    result = ctl(broker, *args, check=False)
    assert result.returncode == 100, result
    assert result.stderr.startswith("fdbrokerctl: ")


def test_unreachable_broker_exits_111(broker: Broker) -> None:
    result = subprocess.run(
        [binary("FDBROKERCTL"), "--socket", broker.socket + ".missing", "hello"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 111
    assert "ENOENT" in result.stderr


def test_file_that_cannot_be_opened_exits_111(broker: Broker, tmp_path) -> None:
    result = ctl(broker, "put", "x", "--file", str(tmp_path / "missing"), check=False)
    assert result.returncode == 111 and "ENOENT" in result.stderr


def test_port_in_use_exits_111(broker: Broker) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = ctl(broker, "put", "x", "--listen", f"tcp://127.0.0.1:{port}", check=False)
    assert result.returncode == 111 and "EADDRINUSE" in result.stderr


def test_refused_as_another_user_exits_1(broker: Broker) -> None:
    ctl(broker, "put", "root-only", "--file", "/dev/null")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         binary("FDBROKERCTL"), "--socket", broker.socket, "get", "root-only"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result
    assert "EACCES" in result.stderr


# --timeout: the client's own timeout. Durations are asserted as a lower bound and a
# generous upper bound only.
GENEROUS = 15.0


def test_help_mentions_timeout() -> None:
    help_run = subprocess.run([binary("FDBROKERCTL"), "--help"], capture_output=True, text=True)
    assert "--timeout SECONDS" in help_run.stdout


def test_timeout_on_a_silent_broker_exits_111(tmp_path) -> None:
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(path)
        listener.listen(16)  # connections wait here, accepted or not: none is answered
        start = time.monotonic()
        result = subprocess.run(
            [binary("FDBROKERCTL"), "--socket", path, "--timeout", "0.3", "hello"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - start
    assert result.returncode == 111, result
    assert "ETIMEDOUT" in result.stderr and "--timeout" in result.stderr
    assert result.stdout == ""
    assert 0.3 <= took < GENEROUS


def test_timeout_on_a_stopped_broker_exits_111(broker: Broker) -> None:
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        result = ctl(broker, "stats", "--timeout", "0.3", check=False)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    assert result.returncode == 111, result
    assert "ETIMEDOUT" in result.stderr
    assert ctl(broker, "--timeout", "5", "hello").returncode == 0


def test_timeout_does_not_cut_a_longer_wait_short(broker: Broker) -> None:
    def producer() -> None:
        time.sleep(0.5)
        ctl(broker, "put", "late", "--file", "/dev/null")

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        entry = ctl_json(broker, "--timeout", "0.1", "get", "late", "--wait", "20000")
    finally:
        thread.join()
    assert entry["name"] == "late"
    ctl(broker, "delete", "late")


def test_the_brokers_own_timeout_is_still_a_refusal(broker: Broker) -> None:
    result = ctl(broker, "--timeout", "5", "get", "nope", "--wait", "100", check=False)
    assert result.returncode == 1 and "ETIMEDOUT" in result.stderr
