# SPDX-License-Identifier: LGPL-2.1-or-later
"""Entries crossing from C++ to Python (Client.get/take, Upgrader.get_state/take_state).

The values are the ones fdbroker::Client parsed (the broker's reply, field for field),
and the received descriptors have exactly one owner at every step: the C++ Entry until
release_fds() hands them all over, then the Python code that builds the public Entry.
A conversion that fails midway therefore closes every one instead of leaking those
already handed over. Failures are injected for real: one allocation after another
fails (_testcapi.set_nomemory), or the Entry constructor raises.

(pybind11 itself cannot survive a failed allocation of its own objects: it aborts or
crashes. So allocations fail only from release_fds() on, where the descriptors change
hands; the values are read before, and the fds are still the C++ Entry's there.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
from collections.abc import Callable, Iterator
from typing import Any

import _testcapi
import pytest
from broker_fixture import Broker
from conftest import open_fd_count

import fdbroker
from fdbroker import _fdbroker
from fdbroker.handoff import Upgrader

# Descriptors in the entry under test: enough for several to be handed over when a
# later one fails.
ENTRY_FDS = 24
# Python caches the ints up to 256: fds numbered above that each cost an allocation
# to hand over, and each of those allocations is made to fail in turn.
ABOVE_SMALL_INTS = 300
# Once this many calls in a row saw no injected failure, the call makes no more
# allocations to fail.
QUIET_CALLS_TO_STOP = 10


@pytest.fixture
def high_fd_numbers() -> Iterator[None]:
    """Fills the fd table past ABOVE_SMALL_INTS: every fd received during the test
    then has a number that Python must allocate an int for."""
    filler: list[int] = []
    try:
        while not filler or filler[-1] < ABOVE_SMALL_INTS:
            filler.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        yield
    finally:
        for fd in filler:
            os.close(fd)


def reaches_eof(read_fd: int, timeout: float = 5.0) -> bool:
    ready, _, _ = select.select([read_fd], [], [], timeout)
    return bool(ready) and os.read(read_fd, 1) == b""


class AllocationFailure:
    """Makes one allocation fail: the nth (from 0) after arm() is called."""

    def __init__(self) -> None:
        self.nth = 0

    def arm(self) -> None:
        _testcapi.set_nomemory(self.nth, self.nth + 1)


FAILED = object()


def call_disarmed_after(call: Callable[[], Any], arm: Callable[[], None] | None = None) -> Any:
    """arm() (if given) then call(), with the injection removed as soon as it returns
    or raises; FAILED if it raised MemoryError."""
    try:
        try:
            if arm is not None:
                arm()
            result = call()
        finally:
            _testcapi.remove_mem_hooks()
    except MemoryError:
        return FAILED
    return result


def put_state_and_entry(broker: Broker, fds: list[int]) -> None:
    """The same descriptors as the entry conv/get and as the state of service conv."""
    with fdbroker.Client(broker.socket) as c:
        c.put("conv/get", fds)
        c.put("conv/state", fds)


@pytest.fixture
def pipe_ends(broker: Broker) -> Iterator[list[int]]:
    r, w = os.pipe()
    fds = [r, w] * (ENTRY_FDS // 2)
    put_state_and_entry(broker, fds)
    yield fds
    os.close(r)
    os.close(w)


@pytest.mark.parametrize("source", ["Client.get", "Upgrader.get_state"])
def test_release_fds_hands_over_all_or_none(
    broker: Broker, pipe_ends: list[int], high_fd_numbers: None, source: str
) -> None:
    client = _fdbroker.Client(broker.socket)
    upgrader = _fdbroker.Upgrader("conv", broker.socket)
    receive = (lambda: client.get("conv/get")) if source == "Client.get" else upgrader.get_state
    failure = AllocationFailure()
    failures = quiet = 0
    while quiet < QUIET_CALLS_TO_STOP:
        entry = receive()
        held = open_fd_count()
        fds = call_disarmed_after(entry.release_fds, failure.arm)
        if fds is FAILED:
            # The Entry kept every descriptor, and closes them all with itself.
            failures += 1
            quiet = 0
            assert entry.fd_count == ENTRY_FDS
            assert open_fd_count() == held
        else:
            quiet += 1
            assert entry.fd_count == 0 and len(fds) == ENTRY_FDS
            for fd in fds:
                os.close(fd)
        del entry
        assert open_fd_count() == held - ENTRY_FDS, f"allocation {failure.nth} failing leaked"
        failure.nth += 1
    client.close()
    # The list, then every int in it, failed in its turn.
    assert failures >= ENTRY_FDS + 1


@pytest.mark.parametrize("source", ["Client.get", "Upgrader.get_state"])
def test_the_public_entry_leaks_no_fd_whichever_allocation_fails_in_the_handover(
    broker: Broker, pipe_ends: list[int], high_fd_numbers: None, source: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failure = AllocationFailure()
    release_fds = _fdbroker.Entry.release_fds

    def armed_release_fds(entry: _fdbroker.Entry) -> list[int]:
        failure.arm()
        return release_fds(entry)

    monkeypatch.setattr(_fdbroker.Entry, "release_fds", armed_release_fds)
    client = fdbroker.Client(broker.socket)
    upgrader = Upgrader("conv", broker_socket=broker.socket)
    receive = (lambda: client.get("conv/get")) if source == "Client.get" else upgrader.get_state
    failures = quiet = 0
    while quiet < QUIET_CALLS_TO_STOP:
        before = open_fd_count()
        entry = call_disarmed_after(receive)
        if entry is FAILED:
            failures += 1
            quiet = 0
        else:
            quiet += 1
            assert len(entry.fds) == ENTRY_FDS
            entry.close()
        assert open_fd_count() == before, f"allocation {failure.nth} failing leaked"
        failure.nth += 1
    client.close()
    assert failures >= ENTRY_FDS + 1


class Injected(Exception):
    pass


def refuse(self: object, *args: object, **kwargs: object) -> None:
    raise Injected("the Entry constructor failed")


def test_take_state_closes_the_fds_if_the_entry_cannot_be_built(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = Upgrader("conv", broker_socket=broker.socket)
    r, w = os.pipe()
    up.put_state([w, w, w])
    os.close(w)
    before = open_fd_count()
    monkeypatch.setattr(fdbroker.Entry, "__init__", refuse)
    with pytest.raises(Injected):
        up.take_state()
    monkeypatch.undo()
    assert open_fd_count() == before
    # take removed the broker's copies: the received ones were the last write ends.
    assert reaches_eof(r)
    os.close(r)


def test_client_take_closes_the_fds_if_the_entry_cannot_be_built(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, w = os.pipe()
    with fdbroker.Client(broker.socket) as c:
        c.put("conv/take", [w, w, w])
        os.close(w)
        before = open_fd_count()
        monkeypatch.setattr(fdbroker.Entry, "__init__", refuse)
        with pytest.raises(Injected):
            c.take("conv/take")
        monkeypatch.undo()
        assert open_fd_count() == before
    assert reaches_eof(r)
    os.close(r)


def without_envelope(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("id", "ok")}


def test_values_are_the_brokers_reply_field_for_field(broker: Broker, tmp_path) -> None:
    (tmp_path / "data").write_text("x")
    r, w = os.pipe()
    meta = {"unicode": "héllo", "nested": {"a": [1, 2.5, None, True]}}
    with open(tmp_path / "data") as f, fdbroker.Client(broker.socket) as c:
        generation = c.put("conv/values", [r, f, w], meta=meta, ttl_ms=600000)
        raw, raw_fds = broker.request({"op": "get", "name": "conv/values"})
        for fd in raw_fds:
            os.close(fd)
        with c.get("conv/values") as entry:
            assert type(entry) is fdbroker.Entry
            assert entry.name == raw["name"] == "conv/values"
            assert entry.generation == raw["generation"] == generation
            assert entry.meta == raw["meta"] == meta
            assert entry.owner == raw["owner"]["uid"] == os.getuid()
            assert entry.static is False
            assert isinstance(entry.expires_ms, int) and 0 < entry.expires_ms <= 600000
            assert entry.fd_info == raw["fds"]
            assert [d["kind"] for d in entry.fd_info] == ["pipe", "file", "pipe"]
            assert all(type(fd) is int for fd in entry.fds) and len(entry.fds) == 3
            names = [f.name for f in dataclasses.fields(fdbroker.EntryInfo)]
            fields = {name: getattr(entry, name) for name in names}
        (info,) = c.list("conv/")
        assert type(info) is fdbroker.EntryInfo
        # Dataclass equality and repr, as ever; expires_ms counts down between requests.
        assert info == fdbroker.EntryInfo(**dict(fields, expires_ms=info.expires_ms))
        assert repr(info).startswith("EntryInfo(name='conv/values', generation=")
        page, cursor = c.list_page("conv/")
        assert [dataclasses.replace(e, expires_ms=info.expires_ms) for e in page] == [info]
        assert cursor is None
        assert c.hello() == without_envelope(broker.request({"op": "hello"})[0])
        stats = c.stats()
        assert set(stats) == set(without_envelope(broker.request({"op": "stats"})[0]))
        assert stats["entries"] == 1 and stats["fds_held"] == 3
        assert json.loads(json.dumps(stats)) == stats
        c.delete("conv/values")
    os.close(r)
    os.close(w)
