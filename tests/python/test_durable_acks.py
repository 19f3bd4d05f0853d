# SPDX-License-Identifier: LGPL-2.1-or-later
"""Durable acknowledgements: with systemd's fd store in use, a put, take or delete
is answered only once the state that reflects it has been handed to systemd.

The broker runs with FDBROKER_FDSTORE=1 and a notify socket the test holds, as
systemd's. The ordering is checked without relying on speed: the notify socket's
queue is filled first (net.unix.max_dgram_qlen datagrams), so each sd_notify()
of the broker blocks until the test reads one message. The test frees one slot
at a time and looks for the reply in between; once the reply is there it stops
the broker (SIGSTOP) and reads what the broker had sent. A broker that answered
before writing the state would now be blocked writing it: the state would be
missing from what it sent before the reply.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from broker_fixture import Broker, binary, default_config, make_workdir


class FdStoreBroker(Broker):
    """fdbrokerd believing its notify socket is systemd's (FDBROKER_FDSTORE=1).
    A thread reads the notify socket into `collected` (so that the broker never
    blocks on it), except while a test holds `lock`."""

    notify: socket.socket | None = None

    def start(self, timeout: float = 15.0) -> None:
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        self.notify_path = os.path.join(self.workdir, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(self.notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, FDBROKER_FDSTORE="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary("FDBROKERD"), "--config", self.config_path, "--socket", self.socket],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(0.1)
            if message is not None and "READY=1" in message[0].split("\n"):
                break
            assert self.proc.poll() is None, f"fdbrokerd exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"fdbrokerd not ready:\n{self.log()}"
        self.collected: list[tuple[str, list[int]]] = []
        self.lock = threading.Lock()
        self.reading = True
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.baseline_fds = self._settled_fd_count()

    def _read(self) -> None:
        while self.reading:
            with self.lock:
                if self.notify is not None:
                    self.collected += self.drain_notify()
            time.sleep(0.01)

    def take_collected(self) -> list[tuple[str, list[int]]]:
        with self.lock:
            out, self.collected = self.collected + self.drain_notify(), []
            return out

    def receive(self, timeout: float) -> tuple[str, list[int]] | None:
        """One notify message (text, fds), or None after `timeout` seconds."""
        ready, _, _ = select.select([self.notify], [], [], timeout)
        if not ready:
            return None
        data, fds, _flags, _addr = socket.recv_fds(self.notify, 4096, 16)
        return data.decode(errors="replace"), fds

    def fill_notify_queue(self) -> int:
        """Sends junk datagrams until the queue is full; returns how many. One fresh
        socket per datagram: the sender's own buffer is never what runs out."""
        sent = 0
        while True:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                try:
                    s.sendto(b"JUNK=1", socket.MSG_DONTWAIT, self.notify_path)
                except BlockingIOError:
                    return sent
            sent += 1
            assert sent < 100000, "the notify socket's queue never filled"

    def drain_notify(self) -> list[tuple[str, list[int]]]:
        out = []
        while (m := self.receive(0)) is not None:
            out.append(m)
        return out

    def stop(self) -> int:
        status = super().stop()
        if getattr(self, "reader", None) is not None:
            self.reading = False
            self.reader.join()
            self.reader = None
        if self.notify is not None:
            close_messages(self.take_collected())
            self.notify.close()
            self.notify = None
        return status


@pytest.fixture
def fdstore_broker() -> Iterator[FdStoreBroker]:
    workdir = make_workdir()
    broker = FdStoreBroker(workdir, default_config)
    try:
        broker.start()
        yield broker
        assert broker.proc is not None and broker.proc.poll() is None, broker.log()
        broker.clear()
        count = broker.wait_fd_count(broker.baseline_fds)
        assert count == broker.baseline_fds, f"{count} fds after the test, {broker.baseline_fds} before"
        assert broker.stop() == 0, broker.log()
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def close_messages(messages: list[tuple[str, list[int]]]) -> None:
    for _text, fds in messages:
        for fd in fds:
            os.close(fd)


def states(messages: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
    """The state memfds among `messages`, parsed, in the order sent."""
    out = []
    for text, fds in messages:
        lines = text.split("\n")
        if "FDSTORE=1" in lines and any(line.startswith("FDNAME=state.") for line in lines):
            assert len(fds) == 1, text
            size = os.fstat(fds[0]).st_size
            out.append(json.loads(os.pread(fds[0], size, 0)))
    return out


def exchange_blocked(broker: FdStoreBroker, client: socket.socket, message: dict[str, Any],
                     fds: list[int] = ()) -> tuple[dict[str, Any], list[int], list[tuple[str, list[int]]]]:
    """Sends `message` while the broker's notify messages block, and returns the
    reply, its fds, and every notify message the broker sent before the reply."""
    with broker.lock:
        return _exchange_blocked(broker, client, message, fds)


def _exchange_blocked(broker: FdStoreBroker, client: socket.socket, message: dict[str, Any],
                      fds: list[int]) -> tuple[dict[str, Any], list[int], list[tuple[str, list[int]]]]:
    close_messages(broker.collected + broker.drain_notify())
    broker.collected = []
    broker.fill_notify_queue()
    socket.send_fds(client, [json.dumps(message).encode()], list(fds))
    seen: list[tuple[str, list[int]]] = []
    deadline = time.monotonic() + 30
    while True:
        ready, _, _ = select.select([client], [], [], 0.3)
        if ready:
            break
        assert time.monotonic() < deadline, f"no reply; notify messages seen: {[t for t, _ in seen]}"
        m = broker.receive(1.0)  # frees one slot of the queue: the broker sends one more
        if m is not None:
            seen.append(m)
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        data, reply_fds, _flags, _addr = socket.recv_fds(client, 65537, 253)
        seen += broker.drain_notify()  # all of it sent before the reply was read
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    return json.loads(data), reply_fds, [m for m in seen if m[0] != "JUNK=1"]


def entry_named(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((e for e in state["entries"] if e["name"] == name), None)


def test_put_take_delete_answered_after_their_state(fdstore_broker: FdStoreBroker) -> None:
    broker = fdstore_broker
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
        client.connect(broker.socket)
        r, w = os.pipe()
        try:
            # put: the state naming the entry, at the reply's generation, came first.
            reply, fds, sent = exchange_blocked(broker, client, {"op": "put", "name": "d/one", "id": 1}, [r])
            try:
                assert reply["ok"], reply
                before = states(sent)
                assert before, f"no state sent before the put's reply: {[t for t, _ in sent]}"
                entry = entry_named(before[-1], "d/one")
                assert entry is not None and entry["generation"] == reply["generation"], before[-1]
                # ... and its fd, under the fdname the state gives, before that.
                fdnames = [t for t, f in sent if f"FDNAME=e{entry['serial']}.0" in t.split("\n")]
                assert fdnames, [t for t, _ in sent]
            finally:
                close_messages(sent)
            generation = reply["generation"]

            # take: the state without the entry came first.
            reply, fds, sent = exchange_blocked(broker, client, {"op": "take", "name": "d/one", "id": 2})
            try:
                assert reply["ok"] and reply["generation"] == generation, reply
                assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.fstat(r).st_ino
                before = states(sent)
                assert before and entry_named(before[-1], "d/one") is None, before
            finally:
                close_messages(sent)
                for fd in fds:
                    os.close(fd)

            # delete: likewise.
            reply, fds, sent = exchange_blocked(broker, client, {"op": "put", "name": "d/two", "id": 3}, [w])
            close_messages(sent)
            assert reply["ok"], reply
            reply, fds, sent = exchange_blocked(broker, client, {"op": "delete", "name": "d/two", "id": 4})
            try:
                assert reply["ok"], reply
                before = states(sent)
                assert before and entry_named(before[-1], "d/two") is None, before
            finally:
                close_messages(sent)
        finally:
            os.close(r)
            os.close(w)


def test_pipelined_replies_keep_their_order(fdstore_broker: FdStoreBroker) -> None:
    broker = fdstore_broker
    r, w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
        client.connect(broker.socket)
        # All sent before the broker reads any (stopped meanwhile): it may read
        # several in one turn; the get behind the put must not overtake it.
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            socket.send_fds(client, [json.dumps({"op": "put", "name": "d/p", "id": 1}).encode()], [r])
            for i, op in enumerate(["get", "take", "get", "hello", "delete"], start=2):
                client.send(json.dumps({"op": op, "name": "d/p", "id": i}).encode())
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        replies = []
        for _ in range(6):
            data, fds, _flags, _addr = socket.recv_fds(client, 65537, 253)
            for fd in fds:
                os.close(fd)
            replies.append(json.loads(data))
    os.close(r)
    os.close(w)
    assert [x["id"] for x in replies] == [1, 2, 3, 4, 5, 6], replies
    assert [x["ok"] for x in replies] == [True, True, True, False, True, False], replies
    assert replies[3]["error"] == "ENOENT" and replies[5]["error"] == "ENOENT", replies


def test_take_not_delivered_gives_the_entry_back(fdstore_broker: FdStoreBroker) -> None:
    broker = fdstore_broker
    r, w = os.pipe()
    try:
        reply, _ = broker.request({"op": "put", "name": "d/back"}, [r])
        assert reply["ok"], reply
        generation = reply["generation"]
        # The take is read, its entry leaves the store, and its held reply then
        # finds the client gone (it closed while the broker was stopped).
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            client.connect(broker.socket)
            client.send(json.dumps({"op": "take", "name": "d/back"}).encode())
            client.close()
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while True:
            reply, fds = broker.request({"op": "get", "name": "d/back"})
            for fd in fds:
                os.close(fd)
            if reply["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert reply["ok"] and reply["generation"] == generation, reply
        # The fd store's last state names it again (written before the restored
        # entry could be read).
        sent = broker.take_collected()
        try:
            last = states(sent)
            assert last and entry_named(last[-1], "d/back") is not None, [t for t, _ in sent]
        finally:
            close_messages(sent)
    finally:
        os.close(r)
        os.close(w)
