# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker.Client against a real fdbrokerd: every operation, its errors as OSError
subclasses, wait_ms, TTL, concurrent take, other users, list pagination."""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import select
import signal
import socket
import threading
import time

import pytest
from broker_fixture import NOBODY, Broker, drop_privileges

import fdbroker


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def reaches_eof(read_fd: int, timeout: float = 5.0) -> bool:
    """True once every write end of the pipe is closed (bounded, so that a broker
    that keeps one open fails the test instead of hanging it)."""
    ready, _, _ = select.select([read_fd], [], [], timeout)
    return bool(ready) and os.read(read_fd, 1) == b""


def own_cgroup() -> str:
    """This process's cgroup v2 path (the "0::" line of /proc/self/cgroup)."""
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        return next((line[3:].rstrip("\n") for line in f if line.startswith("0::")), "")


def same_file(a: int, b: int) -> bool:
    sa, sb = os.fstat(a), os.fstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


@contextlib.contextmanager
def put_later(broker: Broker, name: str, fd: int, delay: float):
    """Another client puts `fd` as `name` `delay` seconds after the block starts;
    the block waits for it with wait_ms."""
    def producer() -> None:
        time.sleep(delay)
        with fdbroker.Client(broker.socket) as other:
            other.put(name, [fd])

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        yield
    finally:
        thread.join()


@pytest.fixture
def client(broker: Broker):
    with fdbroker.Client(broker.socket) as c:
        yield c


def test_hello_reports_the_caller_as_the_kernel_sees_it(client: fdbroker.Client) -> None:
    hello = client.hello()
    assert hello["server"] == "fdbrokerd"
    assert hello["protocol"] == 1
    assert hello["version"] == fdbroker.__version__
    peer = hello["peer"]
    assert {k: peer[k] for k in ("uid", "gid", "pid")} == {
        "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}
    # Read when the broker accepted the connection (tests/integration and
    # tests/systemd check the unit; here it may be None, outside any unit).
    assert set(peer) == {"uid", "gid", "pid", "unit", "cgroup"}
    assert peer["cgroup"] == own_cgroup()
    # The binding's Hello.peer carries the same (it binds fdbroker::Peer 1:1).
    bound = client._client.hello().peer
    assert (bound.unit, bound.cgroup) == (peer["unit"], peer["cgroup"])


def test_socket_comes_from_the_environment(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FDBROKER_SOCKET", broker.socket)
    with fdbroker.Client() as c:
        assert c.hello()["peer"]["pid"] == os.getpid()


def test_connect_to_missing_socket_is_file_not_found(broker: Broker) -> None:
    with pytest.raises(FileNotFoundError):
        fdbroker.Client(broker.socket + ".missing")


def test_put_then_get_hands_out_the_same_open_file(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        before = open_fds()
        generation = client.put("pipe", [w], meta={"role": "log", "n": [1, 2]})
        assert generation >= 1
        with client.get("pipe") as entry:
            assert entry.name == "pipe"
            assert entry.generation == generation
            assert entry.meta == {"role": "log", "n": [1, 2]}
            assert entry.owner == os.getuid()
            assert not entry.static
            assert entry.expires_ms is None
            assert [d["kind"] for d in entry.fd_info] == ["pipe"]
            assert entry.fd_info[0]["access"] == "w"
            (got,) = entry.fds
            assert got != w and same_file(got, w)
            assert not os.get_inheritable(got)
            os.write(got, b"through the broker")
        assert open_fds() == before
        assert os.read(r, 100) == b"through the broker"
    finally:
        os.close(r)
        os.close(w)


def test_put_accepts_sockets_files_fileno_objects_and_ints(client: fdbroker.Client, tmp_path) -> None:
    path = tmp_path / "data"
    path.write_text("hello")

    class HasFileno:
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def fileno(self) -> int:
            return self.fd

    a, b = socket.socketpair()
    r, w = os.pipe()
    with a, b, open(path) as f:
        client.put("mixed", [a, f, HasFileno(r), w])
        client.put("single", f)
        with client.get("mixed") as entry:
            assert [d["kind"] for d in entry.fd_info] == ["socket", "file", "pipe", "pipe"]
            assert entry.fd_info[0]["family"] == "unix"
            assert entry.fd_info[1]["path"] == str(path)
            assert entry.fd_info[1]["access"] == "r"
            assert [same_file(x, y) for x, y in zip(entry.fds, [a.fileno(), f.fileno(), r, w])] == [True] * 4
        with client.get("single") as entry:
            assert os.pread(entry.fds[0], 5, 0) == b"hello"
    os.close(r)
    os.close(w)


def test_get_missing_is_file_not_found_and_try_get_is_none(client: fdbroker.Client) -> None:
    with pytest.raises(FileNotFoundError) as info:
        client.get("nothing/here")
    assert info.value.errno == errno.ENOENT
    assert "nothing/here" in info.value.strerror
    assert client.try_get("nothing/here") is None
    assert client.try_take("nothing/here") is None


def test_put_existing_is_file_exists_and_replace_bumps_generation(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        first = client.put("dup", [r])
        with pytest.raises(FileExistsError):
            client.put("dup", [w])
        second = client.put("dup", [w], replace=True)
        assert second > first
        with client.get("dup") as entry:
            assert entry.generation == second
            assert entry.fd_info[0]["access"] == "w"
    finally:
        os.close(r)
        os.close(w)


def test_expect_generation_is_a_compare_and_swap(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        first = client.put("cas", [r], expect_generation=0)
        with pytest.raises(OSError) as info:
            client.put("cas", [w], expect_generation=0)
        assert info.value.errno == errno.ESTALE
        with pytest.raises(OSError) as info:
            client.put("cas", [w], expect_generation=first + 1000)
        assert info.value.errno == errno.ESTALE
        second = client.put("cas", [w], expect_generation=first)
        assert second > first
    finally:
        os.close(r)
        os.close(w)


def test_take_removes_the_entry(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        client.put("once", [r])
        with client.take("once") as entry:
            assert same_file(entry.fds[0], r)
        with pytest.raises(FileNotFoundError):
            client.take("once")
        with pytest.raises(FileNotFoundError):
            client.get("once")
    finally:
        os.close(r)
        os.close(w)


def test_delete_closes_the_brokers_copy(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    client.put("gone", [w])
    os.close(w)
    client.delete("gone")
    # The broker held the last write end: reading now sees end of file.
    assert reaches_eof(r)
    os.close(r)
    with pytest.raises(FileNotFoundError):
        client.delete("gone")


@pytest.mark.parametrize("name", ["", "a/../b", "./x", "bad name", "x" * 256, "é"])
def test_bad_names_are_einval(client: fdbroker.Client, name: str) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as info:
            client.put(name, [r])
        assert info.value.errno == errno.EINVAL
        with pytest.raises(OSError) as info:
            client.get(name)
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(r)
        os.close(w)


def test_put_argument_errors_are_raised_before_sending(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError):
            client.put("none", [])
        with pytest.raises(ValueError):
            client.put("many", [r] * 254)
        with pytest.raises(TypeError):
            client.put("meta", [r], meta=[1, 2])  # type: ignore[arg-type]
        with pytest.raises(OSError) as info:
            client.put("closed", [9999])
        assert info.value.errno == errno.EBADF
        # The connection is still in step with the broker.
        assert client.hello()["protocol"] == 1
    finally:
        os.close(r)
        os.close(w)


def test_an_entry_carries_up_to_253_fds_in_order(client: fdbroker.Client) -> None:
    pipes = [os.pipe() for _ in range(4)]
    fds = [end for p in pipes for end in p]
    sent = [fds[i % len(fds)] for i in range(253)]
    try:
        before = open_fds()
        client.put("wide", sent)
        with client.get("wide") as entry:
            assert len(entry.fds) == 253
            assert all(same_file(got, want) for got, want in zip(entry.fds, sent))
        assert open_fds() == before
    finally:
        for fd in fds:
            os.close(fd)


def test_get_waits_for_a_later_put(broker: Broker, client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        with put_later(broker, "late", w, delay=0.3):
            with client.get("late", wait_ms=20000) as entry:
                assert same_file(entry.fds[0], w)
    finally:
        os.close(r)
        os.close(w)


def test_wait_ms_runs_out_as_timeout_error(client: fdbroker.Client) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.get("never", wait_ms=200)
    assert time.monotonic() - start >= 0.19
    with pytest.raises(TimeoutError):
        client.take("never", wait_ms=50)


def test_waiting_client_does_not_block_others(broker: Broker, client: fdbroker.Client) -> None:
    r, w = os.pipe()
    waiter_result: list[object] = []

    def waiter() -> None:
        with fdbroker.Client(broker.socket) as c:
            try:
                with c.get("later", wait_ms=20000) as entry:
                    waiter_result.append(entry.generation)
            except OSError as e:
                waiter_result.append(e)

    thread = threading.Thread(target=waiter)
    thread.start()
    try:
        time.sleep(0.1)
        # The broker answers us while the other connection waits.
        assert client.hello()["protocol"] == 1
        generation = client.put("later", [r])
    finally:
        thread.join()
        os.close(r)
        os.close(w)
    assert waiter_result == [generation]


def test_ttl_expires_the_entry_and_closes_its_fds(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    client.put("short", [w], ttl_ms=300)
    os.close(w)
    with client.get("short") as entry:
        assert entry.expires_ms is not None and 0 < entry.expires_ms <= 300
    # Once it expires the broker closes its copy, the last write end.
    deadline = time.monotonic() + 10
    while (entry := client.try_get("short")) is not None:
        entry.close()
        assert time.monotonic() < deadline, "entry never expired"
        time.sleep(0.05)
    assert reaches_eof(r)
    os.close(r)


def _take_in_child(socket_path: str, barrier, results) -> None:
    with fdbroker.Client(socket_path) as c:
        barrier.wait()
        try:
            with c.take("prize") as entry:
                results.put(("won", len(entry.fds)))
        except FileNotFoundError:
            results.put(("lost", 0))
        except BaseException as e:  # reported, so that the parent's assertion says what
            results.put(("error", repr(e)))


def test_concurrent_take_has_exactly_one_winner(broker: Broker, client: fdbroker.Client) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    r, w = os.pipe()
    try:
        client.put("prize", [r])
        children = [ctx.Process(target=_take_in_child, args=(broker.socket, barrier, results)) for _ in range(8)]
        for p in children:
            p.start()
        outcomes = sorted(results.get(timeout=30) for _ in children)
        for p in children:
            p.join(timeout=30)
            assert p.exitcode == 0
    finally:
        os.close(r)
        os.close(w)
    assert outcomes == [("lost", 0)] * 7 + [("won", 1)]
    assert client.try_get("prize") is None


def _as_nobody(socket_path: str, action: str, results) -> None:
    try:
        drop_privileges()
        with fdbroker.Client(socket_path) as c:
            if action == "hello":
                results.put(c.hello()["peer"])
            elif action == "get":
                c.get("private")
            elif action == "take":
                c.take("private")
            elif action == "delete":
                c.delete("private")
            elif action == "put":
                r, _w = os.pipe()
                c.put("private2", [r])
            elif action == "list":
                results.put([e.name for e in c.list()])
            elif action == "shared":
                r, w = os.pipe()
                generation = c.put("shared/mine", [w])
                with c.get("shared/mine") as entry:
                    results.put((generation, entry.owner))
                return
        results.put("allowed")
    except OSError as e:
        results.put((type(e).__name__, e.errno))


@pytest.mark.parametrize("action", ["get", "take", "delete", "put"])
def test_another_user_is_refused_with_permission_error(
    broker: Broker, client: fdbroker.Client, action: str
) -> None:
    r, w = os.pipe()
    try:
        client.put("private", [r])
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        child = ctx.Process(target=_as_nobody, args=(broker.socket, action, results))
        child.start()
        outcome = results.get(timeout=30)
        child.join(timeout=30)
        assert outcome == ("PermissionError", errno.EACCES)
        # Refused means untouched.
        with client.get("private") as entry:
            assert same_file(entry.fds[0], r)
    finally:
        os.close(r)
        os.close(w)


def test_another_user_sees_itself_and_only_what_it_may_get(broker: Broker, client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        client.put("private", [r])
        client.put("shared/public", [r])
        ctx = multiprocessing.get_context("fork")
        for action, expected in [
            ("hello", None),
            ("list", ["shared/public"]),
            ("shared", None),
        ]:
            results = ctx.Queue()
            child = ctx.Process(target=_as_nobody, args=(broker.socket, action, results))
            child.start()
            outcome = results.get(timeout=30)
            child.join(timeout=30)
            if action == "hello":
                assert outcome["uid"] == NOBODY and outcome["gid"] == NOBODY
            elif action == "list":
                assert outcome == expected
            else:
                generation, owner = outcome
                assert generation >= 1 and owner == NOBODY
        with client.get("shared/mine") as entry:
            assert entry.owner == NOBODY
    finally:
        os.close(r)
        os.close(w)


def test_list_pages_through_hundreds_of_entries(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        names = [f"many/{i:04d}" for i in range(450)]
        for name in names:
            client.put(name, [r], meta={"i": name})
        client.put("other", [w])
        entries = client.list("many/", page_size=37)
        assert [e.name for e in entries] == names
        assert all(e.meta == {"i": e.name} and e.fd_info[0]["kind"] == "pipe" for e in entries)
        # Without a page size the broker's default applies, and still every entry comes.
        assert [e.name for e in client.list("many/")] == names
        assert "other" in [e.name for e in client.list()]
        # One page at a time: the cursor is there while entries remain.
        page, cursor = client.list_page("many/", limit=100)
        assert [e.name for e in page] == names[:100] and cursor is not None
        page, cursor = client.list_page("many/", limit=1000, cursor=cursor)
        assert [e.name for e in page] == names[100:] and cursor is None
        assert [e.name for e in client.iter_list("many/", page_size=200)] == names
    finally:
        os.close(r)
        os.close(w)


def test_list_splits_pages_to_fit_the_message_limit(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        # ~2 KiB of meta each: 100 of them do not fit one 64 KiB reply.
        names = [f"big/{i:03d}" for i in range(100)]
        for name in names:
            client.put(name, [r], meta={"pad": "x" * 2000})
        page, cursor = client.list_page("big/", limit=1000)
        assert 0 < len(page) < 100 and cursor is not None
        assert [e.name for e in client.list("big/", page_size=1000)] == names
    finally:
        os.close(r)
        os.close(w)


def test_stats_count_entries_fds_and_requests(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    try:
        client.put("s1", [r, w])
        client.try_get("missing")
        stats = client.stats()
        assert stats["entries"] == 1
        assert stats["fds_held"] == 2
        assert stats["fds_limit"] > 2
        assert stats["connections"]["current"] >= 1
        assert stats["requests"]["put"]["ok"] >= 1
        assert stats["requests"]["get"]["ENOENT"] >= 1
    finally:
        os.close(r)
        os.close(w)


def test_one_client_is_safe_to_share_between_threads(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(20):
                client.put(f"t/{i}/{j}", [r])
                with client.get(f"t/{i}/{j}") as entry:
                    assert entry.name == f"t/{i}/{j}"
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(r)
    os.close(w)
    assert errors == []
    assert len(client.list("t/")) == 80


def test_closed_client_reports_not_connected(client: fdbroker.Client) -> None:
    client.close()
    assert client.fileno() == -1
    with pytest.raises(OSError) as info:
        client.hello()
    assert info.value.errno == errno.ENOTCONN


def test_entry_meta_round_trips_as_json(client: fdbroker.Client) -> None:
    r, w = os.pipe()
    meta = {"unicode": "héllo ☃", "nested": {"a": [1, 2.5, None, True]}, "empty": {}}
    try:
        client.put("meta", [r], meta=meta)
        with client.get("meta") as entry:
            assert entry.meta == meta
        (info,) = client.list("meta")
        assert info.meta == meta
        assert json.loads(json.dumps(info.fd_info))  # plain JSON data
    finally:
        os.close(r)
        os.close(w)


class _Interrupted(Exception):
    pass


def test_a_signal_handler_can_interrupt_a_long_wait(client: fdbroker.Client, alarm: None) -> None:
    def handler(signum: int, frame: object) -> None:
        raise _Interrupted()

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    start = time.monotonic()
    with pytest.raises(_Interrupted):
        client.get("never", wait_ms=25000)
    assert time.monotonic() - start < 20
    # The reply still due could not be matched any more: the connection is closed.
    with pytest.raises(OSError) as info:
        client.hello()
    assert info.value.errno == errno.ENOTCONN


def test_quiet_signal_handlers_run_and_the_wait_goes_on(broker: Broker, client: fdbroker.Client, alarm: None) -> None:
    calls = []
    signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    r, w = os.pipe()
    try:
        with put_later(broker, "awaited", r, delay=0.5):
            with client.get("awaited", wait_ms=25000) as entry:
                assert same_file(entry.fds[0], r)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.close(r)
        os.close(w)
    assert len(calls) >= 3


@pytest.fixture
def static_broker():
    """A broker that opens two entries itself, from its configuration."""
    from broker_fixture import default_config, running_broker

    def config_for(socket_path: str) -> dict:
        config = default_config(socket_path)
        config["entries"] = [
            {"name": "static/hostname", "type": "file", "path": "/etc/hostname",
             "flags": ["rdonly"], "meta": {"from": "config"}},
            {"name": "static/udp", "type": "udp", "address": "127.0.0.1:0"},
        ]
        return config

    yield from running_broker(config_for)


def test_static_entries_can_be_read_but_not_changed(static_broker: Broker) -> None:
    with fdbroker.Client(static_broker.socket) as c:
        with c.get("static/hostname") as entry:
            assert entry.static
            assert entry.meta == {"from": "config"}
            assert entry.fd_info[0]["kind"] == "file"
            assert entry.fd_info[0]["path"] == "/etc/hostname"
            assert os.pread(entry.fds[0], 4096, 0) == open("/etc/hostname", "rb").read()
        with c.get("static/udp") as entry:
            assert entry.fd_info[0]["type"] == "dgram"
        r, w = os.pipe()
        try:
            for attempt in (
                lambda: c.put("static/hostname", [r], replace=True),
                lambda: c.take("static/hostname"),
                lambda: c.delete("static/hostname"),
            ):
                with pytest.raises(PermissionError) as info:
                    attempt()
                assert info.value.errno == errno.EPERM
        finally:
            os.close(r)
            os.close(w)
        assert {e.name: e.static for e in c.list("static/")} == {"static/hostname": True, "static/udp": True}


@pytest.fixture
def small_quota_broker():
    """A broker allowing each uid 3 entries and 4 fds."""
    from broker_fixture import default_config, running_broker

    def config_for(socket_path: str) -> dict:
        config = default_config(socket_path)
        config["limits"].update({"max_entries_per_uid": 3, "max_fds_per_uid": 4})
        return config

    yield from running_broker(config_for)


def test_quotas_are_edquot(small_quota_broker: Broker) -> None:
    r, w = os.pipe()
    try:
        with fdbroker.Client(small_quota_broker.socket) as c:
            c.put("q/1", [r])
            c.put("q/2", [r, w])
            with pytest.raises(OSError) as info:
                c.put("q/3", [r, w])  # 5 fds
            assert info.value.errno == errno.EDQUOT
            c.put("q/3", [r])
            with pytest.raises(OSError) as info:
                c.put("q/4", [r])  # a 4th entry
            assert info.value.errno == errno.EDQUOT
            c.delete("q/1")
            c.put("q/4", [r])
    finally:
        os.close(r)
        os.close(w)


# The client's own timeout (Client(timeout=SECONDS)). Durations are asserted as a
# lower bound and a generous upper bound only, never as a speed.
GENEROUS = 15.0


@pytest.fixture
def silent_peer(tmp_path):
    """A "broker" that is a real AF_UNIX SOCK_SEQPACKET listener and never answers."""
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(path)
        listener.listen(16)
        yield path, listener


def closed_by_peer(server_side: socket.socket) -> bool:
    """True once the client closed its end: its request is read, then EOF."""
    server_side.settimeout(5)
    while server_side.recv(65537):
        pass
    return True


def test_a_bad_timeout_is_a_value_error_before_connecting() -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            fdbroker.Client("/nonexistent/fdbroker.sock", timeout=bad)


def test_timeout_property_reads_and_sets_seconds(client: fdbroker.Client) -> None:
    assert client.timeout is None
    client.timeout = 0.25
    assert client.timeout == 0.25
    with pytest.raises(ValueError):
        client.timeout = 0
    assert client.timeout == 0.25
    client.timeout = None
    assert client.timeout is None
    assert client.hello()["protocol"] == 1


def test_silent_broker_raises_timeout_error_and_closes_the_connection(silent_peer) -> None:
    path, listener = silent_peer
    before = open_fds()
    c = fdbroker.Client(path, timeout=0.3)
    server_side, _ = listener.accept()
    with server_side:
        start = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            c.hello()
        took = time.monotonic() - start
        assert info.value.errno == errno.ETIMEDOUT
        assert 0.3 <= took < GENEROUS
        assert c.fileno() == -1
        assert closed_by_peer(server_side)
        with pytest.raises(OSError) as info:
            c.hello()
        assert info.value.errno == errno.ENOTCONN
        c.close()
    assert open_fds() == before


def test_timeout_is_added_to_wait_ms(silent_peer) -> None:
    path, listener = silent_peer
    with fdbroker.Client(path, timeout=0.1) as c:
        server_side, _ = listener.accept()
        with server_side:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                c.get("never", wait_ms=400)
            assert 0.5 <= time.monotonic() - start < GENEROUS


def test_a_long_wait_is_not_cut_short_by_a_short_timeout(broker: Broker) -> None:
    r, w = os.pipe()
    try:
        with put_later(broker, "late", w, delay=0.5), \
                fdbroker.Client(broker.socket, timeout=0.1) as c:
            start = time.monotonic()
            with c.get("late", wait_ms=20000) as entry:
                assert same_file(entry.fds[0], w)
            assert time.monotonic() - start >= 0.4  # well past the 0.1 s timeout
            c.delete("late")
    finally:
        os.close(r)
        os.close(w)


def test_the_brokers_own_timeout_keeps_the_connection(broker: Broker) -> None:
    with fdbroker.Client(broker.socket, timeout=0.1) as c:
        with pytest.raises(TimeoutError):
            c.get("never", wait_ms=300)
        assert c.fileno() >= 0
        assert c.hello()["protocol"] == 1


def test_stopped_broker_raises_timeout_error(broker: Broker) -> None:
    with fdbroker.Client(broker.socket, timeout=0.3) as c:
        assert c.hello()["protocol"] == 1
        before = open_fds()
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                c.stats()
            assert 0.3 <= time.monotonic() - start < GENEROUS
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        assert c.fileno() == -1
        assert open_fds() == before - 1  # exactly the connection is gone
    # The broker, running again, answers a new connection (the fixture then checks
    # that it dropped the abandoned one).
    with fdbroker.Client(broker.socket, timeout=5) as again:
        assert again.hello()["protocol"] == 1


def test_ctrl_c_interrupts_a_wait_within_a_timeout(client: fdbroker.Client, alarm: None) -> None:
    client.timeout = 30
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            client.get("never", wait_ms=25000)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 20
    assert client.fileno() == -1


def test_quiet_signal_handlers_do_not_restart_the_timeout(silent_peer, alarm: None) -> None:
    path, listener = silent_peer
    calls = []
    signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 0.04, 0.04)
    try:
        with fdbroker.Client(path, timeout=0.3) as c:
            server_side, _ = listener.accept()
            with server_side:
                start = time.monotonic()
                with pytest.raises(TimeoutError):
                    c.hello()
                assert 0.3 <= time.monotonic() - start < GENEROUS
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert len(calls) >= 3
