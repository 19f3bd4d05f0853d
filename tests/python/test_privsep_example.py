# SPDX-License-Identifier: LGPL-2.1-or-later
"""examples/privsep run for real: fdbrokerd (root) in a fresh network namespace, so
that port 443 is free and nothing outside is touched; server.py as nobody, once
started by `fdbrokerctl exec --open KEY --bind tcp://127.0.0.1:443` and once asking
through the Python API; a client in the same namespace. The answer must carry
HMAC-SHA256 under the key (which only root can read), the server must run as
nobody, and its own attempts to open the key and bind a privileged port must have
failed with EACCES. The broker's fd count is back to where it was afterwards."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from broker_fixture import NOBODY, Broker, binary, make_workdir
from notify_start import start_until_ready

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "privsep")
SERVER = os.path.join(EXAMPLE, "server.py")
CLIENT = os.path.join(EXAMPLE, "client.py")
URL = "tcp://127.0.0.1:443"


def example_config(key_dir: str) -> Any:
    """examples/privsep/fdbroker.json with the key's directory of this test."""
    with open(os.path.join(EXAMPLE, "fdbroker.json")) as f:
        config = json.load(f)
    config["files"][0]["root"] = key_dir
    config["log_level"] = "info"
    return lambda socket_path: dict(config, socket={"path": socket_path, "mode": "0666"})


class NetnsBroker(Broker):
    """A Broker in a network namespace of its own (unshare --net, lo up)."""

    def start(self, timeout: float = 15.0) -> None:
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                binary("FDBROKERD"), "--config", self.config_path, "--socket", self.socket]
        try:
            self.ready_via = start_until_ready(
                argv, dict(os.environ), self.log_path, os.path.join(self.workdir, "notify.sock"),
                timeout=timeout, poll=0.05, started=lambda proc: setattr(self, "proc", proc),
            )
        except RuntimeError:
            self.stop()
            raise
        self.baseline_fds = self._settled_fd_count()

    def run_inside(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """argv in the broker's network namespace."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid}/ns/net", *argv],
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def setup() -> Iterator[tuple[NetnsBroker, str]]:
    """(broker, key path): a 0600 root-owned key in a directory of its own."""
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare --net needs CAP_SYS_ADMIN)")
    key_dir = make_workdir()
    key = os.path.join(key_dir, "site.key")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(key, 0o600)
    workdir = make_workdir()
    broker = NetnsBroker(workdir, example_config(key_dir))
    try:
        broker.start()
        yield broker, key
        assert broker.proc is not None and broker.proc.poll() is None, broker.log()
        count = broker.wait_fd_count(broker.baseline_fds)
        assert count == broker.baseline_fds, f"{count} fds after, {broker.baseline_fds} before"
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(key_dir, ignore_errors=True)


def start_server(broker: Broker, key: str, how: str) -> subprocess.Popen[str]:
    server = [sys.executable, SERVER, "--key", key]
    if how == "exec":
        argv = [binary("FDBROKERCTL"), "--socket", broker.socket, "exec", "--open", key,
                "--bind", URL, "--", *server]
    else:
        argv = [*server, "--ask", URL]
    env = dict(os.environ, FDBROKER_SOCKET=broker.socket)
    # As nobody, with no supplementary group: fdbrokerctl exec becomes the server
    # (execvp keeps the pid), so the pid is the server's either way.
    return subprocess.Popen(argv, env=env, user=NOBODY, group=NOBODY, extra_groups=[],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(server: subprocess.Popen[str]) -> None:
    """Until the server says it listens, or exits (its stderr then says why)."""
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 60)
    line = server.stdout.readline() if ready else ""
    if line != "ready\n":
        server.kill()
        _, err = server.communicate()
        pytest.fail(f"server not ready ({line!r}): {err}")


def uids(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(n) for n in line.split()[1:]]
    raise AssertionError("no Uid line")


@pytest.mark.parametrize("how", ["exec", "python-api"])
def test_unprivileged_server_serves_443_with_a_key_only_root_can_read(setup, how):
    broker, key = setup
    st = os.stat(key)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    server = start_server(broker, key, how)
    try:
        wait_ready(server)
        assert uids(server.pid) == [NOBODY] * 4  # real, effective, saved, filesystem

        result = broker.run_inside([sys.executable, CLIENT, "127.0.0.1", "443", "challenge-42"])
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        with open(key, "rb") as f:
            expected = hmac.new(f.read(), b"challenge-42", hashlib.sha256).hexdigest()
        assert answer["hmac"] == expected
        assert answer["uid"] == [NOBODY] * 3 and answer["port"] == 443
        # What it could not have done by itself:
        assert answer["open_key_myself"] == "EACCES"
        assert answer["bind_privileged_myself"] == "EACCES"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    # And the same user, asking the broker for what the rules do not give it:
    denied = subprocess.run(
        [binary("FDBROKERCTL"), "--socket", broker.socket, "open", "/etc/shadow"],
        user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, text=True, timeout=60)
    assert denied.returncode == 1 and "EACCES" in denied.stderr
