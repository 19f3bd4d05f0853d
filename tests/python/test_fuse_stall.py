# SPDX-License-Identifier: LGPL-2.1-or-later
"""A FUSE file system whose daemon stops answering cannot freeze the broker (issue 9).

Each test mounts a real FUSE file system (tests/support/stall_fuse.py speaks the
protocol on /dev/fuse), hands the broker one of its files, makes the daemon stop
answering, and then makes the broker describe or close that descriptor: fstat()
would hang in GETATTR, close() hangs in FLUSH. Another client's `hello` must still
be answered within a second, every time. The mount is always aborted (fusectl)
and unmounted at the end, even when a test fails; then the hanging closes return
and the broker's fd count must be back to where it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from broker_fixture import NOBODY, Broker, default_config, drop_privileges, running_broker

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from stall_fuse import FUSE_FLUSH, FUSE_GETATTR, FUSE_LOOKUP, StallFuse  # noqa: E402

RESPONSIVE_WITHIN = 1.0  # seconds: issue 9's bound for another client's hello


def config(accept: bool):
    def make(socket_path: str) -> dict[str, Any]:
        c = default_config(socket_path)
        c["accept_fuse_fds"] = accept
        return c

    return make


@contextlib.contextmanager
def stalled_setup(accept: bool) -> Iterator[tuple[Broker, StallFuse, list[int]]]:
    """A broker and a FUSE mount; yields (broker, fs, fds to close after the abort).
    The mount is aborted and unmounted before the broker's fd count is checked."""
    gen = running_broker(config(accept))
    broker = next(gen)
    later: list[int] = []
    passed = False
    try:
        with StallFuse() as fs:
            try:
                yield broker, fs, later
            finally:
                fs.abort()  # the hanging closes (ours and the broker's) return now
                for fd in later:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        passed = True
    finally:
        if passed:
            next(gen, None)  # clear, fd count back at the baseline, clean stop
        else:
            gen.close()


def exchange(broker: Broker, message: dict[str, Any], fds: list[int] = (), timeout: float = 10.0):
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(timeout)
        s.connect(broker.socket)
        socket.send_fds(s, [json.dumps(message).encode()], list(fds))
        data, received, _flags, _addr = socket.recv_fds(s, 65537, 253)
        return json.loads(data), received


def assert_responsive(broker: Broker) -> None:
    """A fresh client's hello is answered within RESPONSIVE_WITHIN seconds."""
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.setblocking(False)
        s.connect(broker.socket)
        s.send(json.dumps({"op": "hello", "id": 1}).encode())
        ready, _, _ = select.select([s], [], [], RESPONSIVE_WITHIN)
        took = time.monotonic() - start
        assert ready, f"hello not answered within {RESPONSIVE_WITHIN} s: the broker is frozen\n{broker.log()}"
        reply = json.loads(s.recv(65537))
    assert reply["ok"] and reply["id"] == 1, reply
    assert took <= RESPONSIVE_WITHIN


def wait_stalled(fs: StallFuse, opcode: int, at_least: int = 1, timeout: float = 5.0) -> None:
    """Waits until the daemon has left `at_least` requests of `opcode` unanswered:
    the broker (on some thread) really is inside the hanging call."""
    deadline = time.monotonic() + timeout
    while fs.stalled_count(opcode) < at_least:
        assert time.monotonic() < deadline, f"no unanswered request {opcode}: {fs.stalled}"
        time.sleep(0.01)


def open_file(fs: StallFuse, i: int, later: list[int]) -> int:
    fd = os.open(fs.path(i), os.O_RDONLY | os.O_CLOEXEC)
    later.append(fd)
    return fd


def put(broker: Broker, name: str, fds: list[int], **fields: Any) -> dict[str, Any]:
    reply, received = exchange(broker, {"op": "put", "name": name, **fields}, fds)
    assert not received
    return reply


def assert_pipe_closed_by_broker(r: int, w: int, later: list[int]) -> None:
    """Once we close our read end, writes fail with EPIPE when the broker's copy
    is gone too: it was closed, behind the hanging mount's close."""
    os.close(r)
    later.remove(r)
    deadline = time.monotonic() + 5
    while True:
        try:
            os.write(w, b"x")
        except BrokenPipeError:
            return
        assert time.monotonic() < deadline, "the broker's copy of the pipe was never closed"
        time.sleep(0.01)


def drop_own(fd: int, later: list[int]) -> None:
    """Closes the test's copy while the daemon still answers (FLUSH returns)."""
    later.remove(fd)
    os.close(fd)


def put_fuse_file(broker: Broker, fs: StallFuse, i: int, name: str, later: list[int],
                  **fields: Any) -> None:
    """Puts file `i` of the mount under `name`; the test's own copy is closed at once."""
    fd = open_file(fs, i, later)
    assert put(broker, name, [fd], **fields)["ok"]
    drop_own(fd, later)


@contextlib.contextmanager
def stalled_with_child(
    body: Callable[[Broker, int, Callable[[dict[str, Any]], None]], None],
) -> Iterator[tuple[Broker, StallFuse, BinaryIO]]:
    """stalled_setup(accept=False) with one of the mount's files open and the daemon
    stalled, and a forked child running body(broker, that fd, report): each
    report(reply) reaches the parent as one JSON line on the yielded pipe, and an
    exception in the child as {"child": repr(e)}. The child is waited for once the
    mount is aborted and the broker checked."""
    child = 0
    try:
        with stalled_setup(accept=False) as (broker, fs, later):
            fd = open_file(fs, 0, later)
            fs.stall()
            r, w = os.pipe()
            child = os.fork()
            if child == 0:
                try:
                    os.close(r)
                    body(broker, fd, lambda reply: os.write(w, json.dumps(reply).encode() + b"\n"))
                    os._exit(0)
                except BaseException as e:
                    os.write(w, json.dumps({"child": repr(e)}).encode() + b"\n")
                    os._exit(1)
            os.close(w)
            with os.fdopen(r, "rb") as replies:
                yield broker, fs, replies
    finally:
        if child > 0:
            os.waitpid(child, 0)  # the mount is aborted: its exit completes


@contextlib.contextmanager
def closes_hanging(broker: Broker, names: list[str]) -> Iterator[StallFuse]:
    """Mounts a StallFuse, puts one of its files under each name (the test's own
    copies closed at once), stops the daemon and deletes them; the body runs once
    the broker's close hangs in FLUSH, with the mount. It is aborted on the way out."""
    with StallFuse() as fs:
        later: list[int] = []
        try:
            for i, name in enumerate(names):
                put_fuse_file(broker, fs, i, name, later)
            fs.stall()
            for name in names:
                reply, _ = exchange(broker, {"op": "delete", "name": name})
                assert reply["ok"], reply
            wait_stalled(fs, FUSE_FLUSH)
            yield fs
        finally:
            fs.abort()
            for fd in later:
                os.close(fd)


def test_fds_attached_to_a_request_that_takes_none_from_a_client_without_rights() -> None:
    def nobody(broker: Broker, fd: int, report: Callable[[dict[str, Any]], None]) -> None:
        # uid 65534, no rights: hello with the FUSE fd attached
        drop_privileges(NOBODY, NOBODY)
        reply, _ = exchange(broker, {"op": "hello", "id": 7}, [fd], timeout=5.0)
        report(reply)
        # (its exit waits in FLUSH for its copy of the fd, until the abort)

    with stalled_with_child(nobody) as (broker, fs, replies):
        reply = json.loads(replies.readline() or b"{}")
        assert reply.get("error") == "EINVAL" and reply.get("id") == 7, reply
        wait_stalled(fs, FUSE_FLUSH, 2)  # the broker's close hangs (and the child's exit)…
        assert_responsive(broker)  # …on a closer thread, not on the loop
        assert_responsive(broker)


def test_put_refuses_fuse_descriptors_without_calling_into_the_file_system() -> None:
    with stalled_setup(accept=False) as (broker, fs, later):
        fd = open_file(fs, 0, later)
        r, w = os.pipe()
        later += [r, w]
        fs.stall()
        reply = put(broker, "shared/f", [r, fd])
        assert reply["ok"] is False and reply["error"] == "EOPNOTSUPP", reply
        assert "descriptor 1" in reply["message"] and "fuse.fdbrokertest" in reply["message"], reply
        assert fs.stalled_count(FUSE_GETATTR) == 0  # detected without asking the daemon
        reply, _ = exchange(broker, {"op": "get", "name": "shared/f"})
        assert reply["error"] == "ENOENT", reply  # nothing kept (nor sent to PID 1's fd store)
        wait_stalled(fs, FUSE_FLUSH)
        assert_responsive(broker)
        # The pipe of the refused put was closed, though the FUSE file's close hangs.
        assert_pipe_closed_by_broker(r, w, later)


def test_put_accepted_is_described_without_calling_into_the_file_system() -> None:
    with stalled_setup(accept=True) as (broker, fs, later):
        fd = open_file(fs, 1, later)
        fs.stall()
        reply = put(broker, "shared/f", [fd], meta={"k": 1})
        assert reply["ok"], reply
        assert fs.stalled_count(FUSE_GETATTR) == 0
        got, fds = exchange(broker, {"op": "get", "name": "shared/f"})
        later += fds
        assert got["fds"] == [{"kind": "file", "path": fs.path(1), "access": "r"}], got
        assert_responsive(broker)
        reply, _ = exchange(broker, {"op": "delete", "name": "shared/f"})
        assert reply["ok"], reply
        wait_stalled(fs, FUSE_FLUSH)
        assert_responsive(broker)


def test_delete_while_the_daemon_hangs_leaves_other_closes_running() -> None:
    with stalled_setup(accept=True) as (broker, fs, later):
        a = open_file(fs, 0, later)
        b = open_file(fs, 1, later)
        assert put(broker, "shared/a", [a])["ok"]
        assert put(broker, "shared/b", [b])["ok"]
        drop_own(a, later)
        drop_own(b, later)
        r, w = os.pipe()
        later += [r, w]
        assert put(broker, "shared/pipe", [r])["ok"]
        fs.stall()
        for name in ("shared/a", "shared/b"):
            reply, _ = exchange(broker, {"op": "delete", "name": name})
            assert reply["ok"], reply
            assert_responsive(broker)
        wait_stalled(fs, FUSE_FLUSH)
        # Another mount's descriptor still closes: the broker's read end goes.
        reply, _ = exchange(broker, {"op": "delete", "name": "shared/pipe"})
        assert reply["ok"], reply
        assert_pipe_closed_by_broker(r, w, later)
        assert_responsive(broker)


def test_replace_while_the_daemon_hangs() -> None:
    with stalled_setup(accept=True) as (broker, fs, later):
        put_fuse_file(broker, fs, 0, "shared/x", later)
        fs.stall()
        r, w = os.pipe()
        later += [r, w]
        reply = put(broker, "shared/x", [r], replace=True)
        assert reply["ok"], reply
        wait_stalled(fs, FUSE_FLUSH)
        assert_responsive(broker)
        got, fds = exchange(broker, {"op": "get", "name": "shared/x"})
        later += fds
        assert got["fds"][0]["kind"] == "pipe", got


def test_ttl_expiry_while_the_daemon_hangs() -> None:
    with stalled_setup(accept=True) as (broker, fs, later):
        put_fuse_file(broker, fs, 0, "shared/t", later, ttl_ms=300)
        fs.stall()
        wait_stalled(fs, FUSE_FLUSH)  # the expiry closed it
        assert_responsive(broker)
        reply, _ = exchange(broker, {"op": "get", "name": "shared/t"})
        assert reply["error"] == "ENOENT", reply


def test_take_while_the_daemon_hangs() -> None:
    with stalled_setup(accept=True) as (broker, fs, later):
        put_fuse_file(broker, fs, 0, "shared/t", later)
        fs.stall()
        reply, fds = exchange(broker, {"op": "take", "name": "shared/t"})
        later += fds  # ours to close, after the abort
        assert reply["ok"] and len(fds) == 1, reply
        wait_stalled(fs, FUSE_FLUSH)  # the broker's own copy
        assert_responsive(broker)


def test_sigterm_completes_while_a_close_hangs() -> None:
    gen = running_broker(config(True))
    broker = next(gen)
    try:
        with closes_hanging(broker, ["shared/s"]):
            assert_responsive(broker)
            os.kill(broker.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while "stopped" not in broker.log() or os.path.exists(broker.socket):
                assert time.monotonic() < deadline, f"shutdown did not complete:\n{broker.log()}"
                time.sleep(0.02)
            # Its work is done; what is left of the process waits in close.
            assert broker.proc.poll() is None or broker.proc.returncode == 0
        # Aborted: the close returns and the process ends, cleanly.
        assert broker.proc.wait(timeout=10) == 0, broker.log()
    finally:
        gen.close()


def test_check_config_reports_the_switch(tmp_path) -> None:
    import subprocess

    from broker_fixture import binary

    for value, expected in ((None, "refused"), (False, "refused"), (True, "accepted")):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({} if value is None else {"accept_fuse_fds": value}))
        out = subprocess.run([binary("FDBROKERD"), "--check-config", "--config", str(path)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert f"descriptors on FUSE file systems {expected}" in out.stdout, out.stdout
    path.write_text(json.dumps({"accept_fuse_fds": 1}))
    out = subprocess.run([binary("FDBROKERD"), "--check-config", "--config", str(path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "accept_fuse_fds: must be true or false" in out.stderr, out


def test_put_refuses_a_file_system_in_a_mount_namespace_the_broker_cannot_see() -> None:
    """A user's FUSE mount in a namespace of their own (unshare -Urm) is not in the
    broker's /proc/self/mountinfo: a file on it, on no block device, counts as FUSE."""
    import subprocess
    import tempfile

    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support", "stall_fuse.py")
    with stalled_setup_without_fs(accept=False) as broker, tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "helper.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(15)
            proc = subprocess.Popen([sys.executable, helper, "private", path])
            fds: list[int] = []
            connection = ""
            try:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(15)
                    data, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
                    connection = data.decode().strip()
                    assert len(fds) == 1 and os.path.isdir(connection), (data, fds)
                    with open("/proc/self/mountinfo") as f:
                        assert "fuse.fdbrokertest" not in f.read(), "the mount is visible here"
                    conn.sendall(b"stall\n")
                    assert conn.recv(64) == b"stalled\n"
                    reply = put(broker, "shared/ns", fds)
                    assert reply["error"] == "EOPNOTSUPP", reply
                    assert "unknown file system on device 0:" in reply["message"], reply
                    assert_responsive(broker)
                    if connection:
                        with open(os.path.join(connection, "abort"), "w") as f:
                            f.write("1")
                    conn.sendall(b"exit\n")
            finally:
                if connection:
                    with contextlib.suppress(OSError), open(os.path.join(connection, "abort"), "w") as f:
                        f.write("1")
                for fd in fds:
                    with contextlib.suppress(OSError):  # ENOTCONN once aborted; closed all the same
                        os.close(fd)
                try:
                    assert proc.wait(timeout=15) == 0
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()


@contextlib.contextmanager
def stalled_setup_without_fs(accept: bool) -> Iterator[Broker]:
    gen = running_broker(config(accept))
    broker = next(gen)
    passed = False
    try:
        yield broker
        passed = True
    finally:
        if passed:
            next(gen, None)
        else:
            gen.close()


def start_standalone(tmp_path):
    """A broker not run by systemd (so that it may upgrade itself), accepting FUSE
    descriptors; returns (its Popen, a Broker naming its socket and log)."""
    import subprocess

    from broker_fixture import binary

    sock_path = str(tmp_path / "broker.sock")
    config_path = tmp_path / "fdbroker.json"
    config_path.write_text(json.dumps({"socket": {"path": sock_path, "mode": "0666"}, "accept_fuse_fds": True}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "INVOCATION_ID")}
    with open(tmp_path / "broker.log", "w") as log:
        first = subprocess.Popen([binary("FDBROKERD"), "--config", str(config_path)], stdout=log,
                                 stderr=subprocess.STDOUT, env=env)
    broker = Broker(str(tmp_path))
    broker.socket, broker.log_path = sock_path, str(tmp_path / "broker.log")
    deadline = time.monotonic() + 15
    while not os.path.exists(sock_path):
        if time.monotonic() > deadline or first.poll() is not None:
            first.kill()
            first.wait()
            raise AssertionError(broker.log())
        time.sleep(0.02)
    return first, broker


def wait_logged(broker: Broker, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in broker.log():
        assert time.monotonic() < deadline, broker.log()
        time.sleep(0.02)


def assert_the_successor_took_over(broker: Broker) -> None:
    """After an `upgrade`: the new broker answers on the same socket and the old one
    logs that it stopped."""
    assert_responsive(broker)
    hello, _ = exchange(broker, {"op": "hello"})
    assert hello["ok"], hello
    wait_logged(broker, "stopped", timeout=10)


def stop_upgraded(first, successor: int) -> None:
    """Stops what an upgrade test started, by PID: the first broker if it still runs,
    and its successor (not our child: waited for through /proc)."""
    if first.poll() is None:
        first.kill()
        first.wait()
    if successor > 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(successor, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{successor}") and time.monotonic() < deadline:
            time.sleep(0.02)


def test_upgrade_completes_while_a_close_hangs(tmp_path) -> None:
    """`upgrade` (without systemd): the new broker is started, gets the socket and
    answers, while a closer thread of the old one hangs in FLUSH; the old process
    ends once the mount is aborted."""
    first, broker = start_standalone(tmp_path)
    successor = 0
    try:
        with closes_hanging(broker, ["u/f"]):
            reply, _ = exchange(broker, {"op": "upgrade", "id": 1}, timeout=30)
            assert reply["ok"] is True, (reply, broker.log())
            successor = reply["pid"]
            assert successor != first.pid
            assert_the_successor_took_over(broker)
        assert first.wait(timeout=10) == 0, broker.log()
    finally:
        stop_upgraded(first, successor)


def test_a_uid_whose_closes_pile_up_is_paused_and_the_others_are_served() -> None:
    """1024 of one uid's dropped descriptors waiting for the closer (one mount's
    closes are never run two at once, and the first one hangs): that uid's next
    request is not read until they are closed; root is answered throughout."""
    import resource

    copies = 253  # one FUSE file, attached 253 times to each message
    messages = 6  # 5 × 253 ≥ 1024: the sixth waits

    def nobody(broker: Broker, fd: int, report: Callable[[dict[str, Any]], None]) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # fds in flight
        drop_privileges(NOBODY, NOBODY)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(broker.socket)
            for i in range(messages):
                socket.send_fds(s, [json.dumps({"op": "hello", "id": i}).encode()], [fd] * copies)
            s.settimeout(30)
            for i in range(messages):
                report(json.loads(s.recv(65537)))

    with stalled_with_child(nobody) as (broker, fs, replies):
        for i in range(messages - 1):
            reply = json.loads(replies.readline() or b"{}")
            assert reply.get("id") == i and reply.get("error") == "EINVAL", reply
        assert_responsive(broker)  # root, another uid
        ready, _, _ = select.select([replies], [], [], 1.0)
        assert not ready, "the paused uid's sixth request was read"
        assert_responsive(broker)
        fs.abort()  # the closes return; the uid is read again
        reply = json.loads(replies.readline() or b"{}")
        assert reply.get("id") == messages - 1 and reply.get("error") == "EINVAL", reply


def test_upgrade_completes_with_descriptors_queued_behind_a_hanging_close(tmp_path) -> None:
    """A second descriptor of the hanging mount waits for the closer, still open in
    the broker. The new broker is forked by the spawner (whose fd table never held a
    client's descriptor), so the upgrade completes: the successor is ready, holds no
    descriptor of the mount, serves hello on the socket, and the old broker stops
    (its process ends once the mount is aborted)."""
    first, broker = start_standalone(tmp_path)
    successor = 0
    try:
        with closes_hanging(broker, ["u/a", "u/b"]) as fs:
            # The closer calls the close slow: one descriptor is queued behind it
            # (what used to make an upgrade refuse with EBUSY).
            wait_logged(broker, "has not returned", timeout=15)
            start = time.monotonic()
            reply, _ = exchange(broker, {"op": "upgrade", "id": 1}, timeout=30)
            assert reply["ok"] is True, (reply, broker.log())
            assert time.monotonic() - start < 10, broker.log()
            successor = reply["pid"]
            assert successor != first.pid
            for link in os.listdir(f"/proc/{successor}/fd"):
                with contextlib.suppress(FileNotFoundError):
                    target = os.readlink(f"/proc/{successor}/fd/{link}")
                    assert not target.startswith(fs.mountpoint), (link, target)
            assert_the_successor_took_over(broker)
        assert first.wait(timeout=10) == 0, broker.log()
        assert_responsive(broker)  # the successor outlives the old broker and its spawner
    finally:
        stop_upgraded(first, successor)


# ---------------------------------------------------------------- open on request


def open_rule_config(root: str, plain: str):
    def make(socket_path: str) -> dict[str, Any]:
        c = default_config(socket_path)
        c["files"] = [{"name": "fuse", "root": root, "match": ["*"], "users": ["root"],
                       "allow": ["read"]},
                      {"name": "plain", "root": plain, "match": ["*"], "users": ["nobody"],
                       "allow": ["read"]}]
        return c

    return make


OPEN_SYSCALLS = {257, 437}  # x86-64 openat, openat2


def threads_opening(pid: int) -> int:
    """How many of `pid`'s threads are inside openat/openat2 now."""
    count = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                if int(f.read().split()[0]) in OPEN_SYSCALLS:
                    count += 1
    return count


def open_as_nobody(broker: Broker, path: str) -> dict[str, Any]:
    """The reply to an `open` of path by uid 65534 (in a child), with "read": the
    file's first bytes through the fd it got; answered within RESPONSIVE_WITHIN."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            drop_privileges(NOBODY, NOBODY)
            reply, fds = exchange(broker, {"op": "open", "path": path}, timeout=RESPONSIVE_WITHIN)
            os.write(w, json.dumps({**reply, "read": os.read(fds[0], 10).decode()
                                    if fds else ""}).encode())
            os._exit(0)
        except BaseException as e:
            os.write(w, json.dumps({"child": repr(e)}).encode())
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = json.loads(f.read())
    os.waitpid(child, 0)
    return got


def test_open_on_a_stalled_mount_holds_a_worker_never_the_broker(tmp_path) -> None:
    """An `open` whose file system stops answering waits on a worker thread: other
    clients are answered meanwhile; a uid's further opens wait behind its hung
    ones (it holds at most two workers) while another uid's open passes them; the
    connections that asked get their replies once the mount is aborted, and one
    whose client left gets none and leaks nothing."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file").write_text("plain\n")
    os.chmod(tmp_path, 0o755)
    with StallFuse() as fs:
        gen = running_broker(open_rule_config(fs.mountpoint, str(plain)))
        broker = next(gen)
        passed = False
        try:
            fs.stall()
            waiting = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            waiting.connect(broker.socket)
            waiting.send(json.dumps({"op": "open", "id": 1, "path": fs.path(0)}).encode())
            # Behind it on the same connection: answered after it, in order.
            waiting.send(json.dumps({"op": "hello", "id": 2}).encode())
            leaving = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            leaving.connect(broker.socket)
            leaving.send(json.dumps({"op": "open", "id": 3, "path": fs.path(1)}).encode())
            # The first lookup reaches the daemon; the second waits in the kernel
            # behind it (FUSE serializes lookups in one directory): two workers
            # are inside the open system call.
            wait_stalled(fs, FUSE_LOOKUP)
            deadline = time.monotonic() + 5
            while threads_opening(broker.pid) < 2:
                assert time.monotonic() < deadline, "the second open never started"
                time.sleep(0.01)
            for _ in range(3):
                assert_responsive(broker)
            # root's third open waits for one of its two workers...
            third = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            third.connect(broker.socket)
            third.send(json.dumps({"op": "open", "id": 4, "path": fs.path(2)}).encode())
            assert not select.select([third], [], [], 0.3)[0], "root's third open was answered"
            assert threads_opening(broker.pid) == 2
            # ...while nobody's open passes it, on a free worker.
            got = open_as_nobody(broker, str(plain / "file"))
            assert got.get("ok") and got["read"] == "plain\n", got
            leaving.close()  # gone before its open returns
            assert_responsive(broker)
            fs.abort()
            waiting.settimeout(10)
            third.settimeout(10)
            first = json.loads(waiting.recv(65537))
            second = json.loads(waiting.recv(65537))
            queued = json.loads(third.recv(65537))
            assert first["id"] == 1 and not first["ok"], first
            assert first["error"] in ("ECONNABORTED", "ENOTCONN", "EIO"), first
            assert second == {**second, "id": 2, "ok": True}, second
            assert queued["id"] == 4 and not queued["ok"], queued
            waiting.close()
            third.close()
            assert f"open '{fs.path(0)}'" in broker.log()
            passed = True
        finally:
            fs.abort()
            if passed:
                next(gen, None)  # fd count back at the baseline, clean stop
            else:
                gen.close()


def test_a_uid_past_256_pending_opens_gets_eagain_and_others_are_served(tmp_path) -> None:
    """One uid may have 256 opens pending (2 on workers, the rest waiting); beyond
    that each open is refused at once with EAGAIN, while another uid's open is
    still served; once the mount is aborted every held open is answered, in full,
    and the broker's fd count is back at its baseline (the fixture checks it)."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file").write_text("plain\n")
    os.chmod(tmp_path, 0o755)
    held, extra = 256, 14
    with StallFuse() as fs:
        gen = running_broker(open_rule_config(fs.mountpoint, str(plain)))
        broker = next(gen)
        passed = False
        clients: list[socket.socket] = []
        try:
            fs.stall()
            # One open per connection (a connection reads no further until its open
            # is answered); root, whose connections no per-uid limit caps.
            for i in range(held + extra):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                client.connect(broker.socket)
                client.send(json.dumps({"op": "open", "id": i, "path": fs.path(i)}).encode())
                clients.append(client)
            # Which ones are refused depends on the order the broker reads them in;
            # how many does not.
            refused: dict[int, dict[str, Any]] = {}
            deadline = time.monotonic() + 10
            while len(refused) < extra and time.monotonic() < deadline:
                ready, _, _ = select.select([c for c in clients if c.fileno() not in refused],
                                            [], [], 0.5)
                for client in ready:
                    refused[client.fileno()] = json.loads(client.recv(65537))
            assert all(r["error"] == "EAGAIN" for r in refused.values()), refused
            assert len(refused) == extra, f"{len(refused)} refused, not {extra}"
            waiting = [c for c in clients if c.fileno() not in refused]
            assert not select.select(waiting, [], [], 0.3)[0], "a held open was answered"
            got = open_as_nobody(broker, str(plain / "file"))
            assert got.get("ok") and got["read"] == "plain\n", got
            fs.abort()
            for client in waiting:
                client.settimeout(10)
                reply = json.loads(client.recv(65537))
                assert not reply["ok"] and reply["error"] != "EAGAIN", reply
            assert "too many opens in progress" in broker.log()
            passed = True
        finally:
            fs.abort()
            for client in clients:
                client.close()
            if passed:
                next(gen, None)  # fd count back at the baseline, clean stop
            else:
                gen.close()
