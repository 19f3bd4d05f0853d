# SPDX-License-Identifier: LGPL-2.1-or-later
"""kill -9 under load, under a real systemd: 8 clients put, get and take
continuously while the broker is SIGKILLed 10 times, each time as soon as
systemd reports it ready again (as a crash loop would). systemd restarts it from
fdbroker.socket and its fd store, with the shipped units' restart settings (no
start limit: the 6th quick crash would otherwise fail the unit and empty its fd
store).

Checked: every put acknowledged is present at the end (and whenever its client
gets or takes it) with the same generation and the same open file description
(kcmp); no entry whose take was acknowledged comes back; clients see only
connection errors and carry on after reconnecting; the broker's fd count at the
end is its count before the load plus one per entry held. Each put carries a
memfd of its own, which the client keeps until the entry is taken, to compare
with kcmp.

A request cut off by a kill has an unknown outcome. After reconnecting the
client looks: a put whose entry is there (the same open file) counts as held,
a take whose entry is gone counts as done (its reply was lost with the broker:
the entry is gone for good, as a delivered take would be)."""

from __future__ import annotations

import collections
import errno
import json
import os
import socket
import threading
import time

from kcmp import same_open_file
from test_fdbroker_units import (  # noqa: F401  (fixtures)
    CONFIG, SOCKET, broker_machine, main_pid, service_state, unit_dir)
from wire import MAX_FDS, MAX_MESSAGE

CLIENTS = 8
KILLS = 10
LIVE = 40  # entries a client holds at most: then it takes its oldest
PREFIX = "load/"
# What a client may see when the broker dies under it (docs/protocol.md).
CONNECTION_ERRORS = {"ECONNRESET", "EPIPE", "ECONNREFUSED", "ENOENT", "ESHUTDOWN", "EOF"}


class ConnectionLost(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class LoadClient(threading.Thread):
    """One client: put (a fresh memfd), get it back, take its oldest entry once
    it holds LIVE; reconnects after any connection error."""

    def __init__(self, path, index: int, stop: threading.Event):
        super().__init__(name=f"load-client-{index}", daemon=True)
        self.path = str(path)
        self.prefix = f"{PREFIX}c{index}/"
        self.stop = stop
        self.sock: socket.socket | None = None
        self.live: dict[str, tuple[int, int]] = {}  # name -> (generation, memfd)
        self.order: collections.deque[str] = collections.deque()
        self.taken: dict[str, int] = {}  # name -> generation, take acknowledged
        self.unknown_put: tuple[str, int] | None = None  # (name, memfd)
        self.unknown_take: str | None = None
        self.acked_puts = 0
        self.acked_takes = 0
        self.gets = 0
        self.lost: list[str] = []  # acknowledged puts found missing or changed
        self.unacked_puts_kept = 0  # cut-off puts whose entry was there after all
        self.unacked_takes_done = 0  # cut-off takes whose entry was gone after all
        self.errors: collections.Counter[str] = collections.Counter()
        self.failure: BaseException | None = None

    # -- wire ---------------------------------------------------------------

    def request(self, op: str, fds=(), **fields) -> tuple[dict, list[int]]:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            self.sock.settimeout(30)
            try:
                self.sock.connect(self.path)
            except OSError as e:
                self.drop()
                raise ConnectionLost(errno.errorcode.get(e.errno, str(e.errno))) from e
        message = json.dumps({"op": op, **fields}).encode()
        try:
            socket.send_fds(self.sock, [message], list(fds))
            data, received, _flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
        except TimeoutError:
            raise  # not a connection error: fails the test
        except OSError as e:
            self.drop()
            raise ConnectionLost(errno.errorcode.get(e.errno, str(e.errno))) from e
        if not data:
            self.drop()
            raise ConnectionLost("EOF")
        reply = json.loads(data)
        if reply.get("error") == "ESHUTDOWN":
            for fd in received:
                os.close(fd)
            self.drop()
            raise ConnectionLost("ESHUTDOWN")
        return reply, received

    def drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- the load -----------------------------------------------------------

    def check_entry(self, name: str, reply: dict, fds: list[int], what: str) -> bool:
        """Is `reply` (to a get or take of a held entry) the entry as put?"""
        generation, memfd = self.live[name]
        try:
            if not reply.get("ok"):
                self.lost.append(f"{what} {name}: {reply.get('error')}")
                return False
            if reply["generation"] != generation or len(fds) != 1 or not same_open_file(fds[0], memfd):
                self.lost.append(f"{what} {name}: generation {reply['generation']} (put: "
                                 f"{generation}), {len(fds)} fds, not the same open file")
                return False
            return True
        finally:
            for fd in fds:
                os.close(fd)

    def forget(self, name: str) -> None:
        _generation, memfd = self.live.pop(name)
        os.close(memfd)
        self.order.remove(name)

    def resolve(self) -> None:
        """After a reconnect: what became of the request the kill cut off."""
        if self.unknown_put is not None:
            name, memfd = self.unknown_put
            reply, fds = self.request("get", name=name)
            try:
                if reply.get("ok") and len(fds) == 1 and same_open_file(fds[0], memfd):
                    self.live[name] = (reply["generation"], memfd)
                    self.order.append(name)
                    self.unacked_puts_kept += 1
                else:
                    assert reply.get("error") == "ENOENT", reply
                    os.close(memfd)
            finally:
                for fd in fds:
                    os.close(fd)
            self.unknown_put = None
        if self.unknown_take is not None:
            name = self.unknown_take
            reply, fds = self.request("get", name=name)
            if reply.get("ok"):
                self.check_entry(name, reply, fds, "get after a cut-off take")
            else:
                assert reply.get("error") == "ENOENT", reply
                self.forget(name)
                self.unacked_takes_done += 1
            self.unknown_take = None

    def step(self, k: int) -> None:
        self.resolve()
        name = f"{self.prefix}{k}"
        memfd = os.memfd_create(f"put-{k}", os.MFD_CLOEXEC)
        self.unknown_put = (name, memfd)
        reply, fds = self.request("put", fds=[memfd], name=name)
        self.unknown_put = None
        assert not fds and reply.get("ok"), reply
        self.live[name] = (reply["generation"], memfd)
        self.order.append(name)
        self.acked_puts += 1

        reply, fds = self.request("get", name=name)
        self.gets += 1
        self.check_entry(name, reply, fds, "get")

        if len(self.order) > LIVE:
            old = self.order[0]
            self.unknown_take = old
            reply, fds = self.request("take", name=old)
            self.unknown_take = None
            if self.check_entry(old, reply, fds, "take"):
                self.taken[old] = self.live[old][0]
                self.acked_takes += 1
            self.forget(old)

    def run(self) -> None:
        k = 0
        try:
            while not self.stop.is_set():
                try:
                    self.step(k)
                except ConnectionLost as e:
                    self.errors[e.kind] += 1
                    time.sleep(0.01)  # connect() may be refused for a moment
                k += 1
            while self.unknown_put is not None or self.unknown_take is not None:
                try:
                    self.resolve()
                except ConnectionLost as e:
                    self.errors[e.kind] += 1
        except BaseException as e:  # noqa: BLE001  (reported by the test)
            self.failure = e
        finally:
            self.drop()


def broker_fd_count(machine, pid: int) -> int:
    return len(os.listdir(machine.path(f"/proc/{pid}/fd")))


def wait_ready(machine, old_pid: int) -> int:
    def ready():
        state = service_state(machine, "MainPID", "ActiveState")
        pid = int(state["MainPID"])
        return pid if pid not in (0, old_pid) and state["ActiveState"] == "active" else 0
    return machine.wait_for(ready, "systemd to report a new broker ready", timeout=30, interval=0.02)


def get_entry(conn_path, name: str) -> tuple[dict, list[int]]:
    """`get` on a fresh connection: (reply, received fds, which the caller closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(30)
        s.connect(str(conn_path))
        s.send(json.dumps({"op": "get", "name": name}).encode())
        data, fds, _flags, _ = socket.recv_fds(s, MAX_MESSAGE, MAX_FDS)
    return json.loads(data), fds


def list_names(conn_path) -> list[str]:
    names, cursor = [], None
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(30)
        s.connect(str(conn_path))
        while True:
            fields = {"op": "list", "prefix": PREFIX, "limit": 1000}
            if cursor:
                fields["cursor"] = cursor
            s.send(json.dumps(fields).encode())
            reply = json.loads(s.recv(MAX_MESSAGE))
            assert reply["ok"], reply
            names += [e["name"] for e in reply["entries"]]
            cursor = reply.get("cursor")
            if not cursor:
                return names


def test_acknowledged_entries_survive_kill9_under_load(broker_machine, capsys):
    machine = broker_machine(entries=[])
    # Quieter than the fixture's debug log: every request would reach the journal.
    machine.path(CONFIG).write_text(json.dumps({"socket": {"path": SOCKET}, "log_level": "warning"}))
    path = machine.path(SOCKET)

    def settled_fd_count(pid: int) -> int:
        """The broker's fds while exactly one client (this one) is connected."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(30)
            s.connect(str(path))

            def alone():
                s.send(b'{"op":"stats"}')
                return json.loads(s.recv(MAX_MESSAGE))["connections"]["current"] == 1
            machine.wait_for(alone, "earlier clients to be gone")
            return broker_fd_count(machine, pid)

    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.connect(str(path))  # activates the broker
        s.send(b'{"op":"hello"}')
        assert json.loads(s.recv(MAX_MESSAGE))["ok"]
    pid = wait_ready(machine, 0)
    baseline = settled_fd_count(pid)  # no entries held

    stop = threading.Event()
    clients = [LoadClient(path, i, stop) for i in range(CLIENTS)]
    for c in clients:
        c.start()
    acked_before_kill = []
    started = time.monotonic()
    try:
        time.sleep(1.0)
        for _ in range(KILLS):
            acked_before_kill.append(sum(c.acked_puts for c in clients))
            machine.systemctl("kill", "-s", "KILL", "--kill-who=main", "fdbroker.service")
            pid = wait_ready(machine, pid)
        time.sleep(1.0)  # the clients carry on with the last broker
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=60)
    elapsed = time.monotonic() - started
    for c in clients:
        assert not c.is_alive(), f"{c.name} is stuck"
        if c.failure is not None:
            raise AssertionError(f"{c.name} failed: {c.failure!r}") from c.failure

    restarts = int(service_state(machine, "NRestarts")["NRestarts"])
    errors = sum((c.errors for c in clients), collections.Counter())
    live = {name: entry for c in clients for name, entry in c.live.items()}
    taken = {name: gen for c in clients for name, gen in c.taken.items()}
    lost = [x for c in clients for x in c.lost]

    # The end state, from a fresh connection: exactly the held entries, each the
    # same open file at the same generation; no taken entry back.
    present = set(list_names(path))
    resurrected = sorted(present & set(taken))
    for name, (generation, memfd) in live.items():
        reply, fds = get_entry(path, name)
        try:
            if not (reply.get("ok") and reply["generation"] == generation and len(fds) == 1
                    and same_open_file(fds[0], memfd)):
                lost.append(f"final get {name}: {reply}")
        finally:
            for fd in fds:
                os.close(fd)
    unexpected = sorted(present - set(live) - set(taken))
    fds_now = settled_fd_count(pid)
    fdstore = int(service_state(machine, "NFileDescriptorStore")["NFileDescriptorStore"])
    # systemd's complaints about notify messages it could not attribute (a state
    # sent by a broker already dead would be among them).
    journal = machine.journal("_PID=1", "-o", "cat")
    dropped = [line for line in journal.splitlines()
               if "notify message" in line.lower() and ("cannot find unit" in line.lower()
                                                        or "only permitted" in line.lower())]

    # The figures, shown even though pytest captures output (ctest's log keeps them).
    with capsys.disabled():
        print(f"\nkill -9 under load: {KILLS} kills, {restarts} restarts, {elapsed:.1f} s, "
              f"{CLIENTS} clients")
        print(f"  acknowledged puts: {sum(c.acked_puts for c in clients)} "
              f"(before each kill: {acked_before_kill})")
        print(f"  acknowledged takes: {sum(c.acked_takes for c in clients)}, "
              f"gets: {sum(c.gets for c in clients)}")
        print(f"  lost puts: {len(lost)}; resurrected takes: {len(resurrected)}; "
              f"unexpected entries: {len(unexpected)}")
        print(f"  cut-off puts found held: {sum(c.unacked_puts_kept for c in clients)}; "
              f"cut-off takes found done: {sum(c.unacked_takes_done for c in clients)}")
        print(f"  client errors by kind: {dict(sorted(errors.items()))}")
        print(f"  entries held at the end: {len(live)}; broker fds {fds_now} "
              f"(before the load {baseline}); fd store {fdstore}")
        print(f"  notify messages systemd dropped: {len(dropped)}")
        for line in dropped[:10]:
            print(f"    {line}")

    for _, memfd in live.values():
        os.close(memfd)
    assert restarts == KILLS, restarts
    assert not lost, lost[:20]
    assert not resurrected, resurrected[:20]
    assert not unexpected, unexpected[:20]
    assert set(errors) <= CONNECTION_ERRORS, errors
    assert sum(errors.values()) >= KILLS, "the kills went unnoticed by the clients?"
    # Every client made progress after the last restart as well as before.
    assert all(c.acked_puts > 0 for c in clients)
    assert sum(c.acked_puts for c in clients) > acked_before_kill[-1]
    assert fds_now == baseline + len(live), (fds_now, baseline, len(live))
    assert fdstore == len(live) + 1, (fdstore, len(live))  # + the state memfd
    assert not dropped, dropped


def broker_host_pid(machine) -> int:
    """The broker's PID as this (outside) process sees it, from its cgroup."""
    procs = list(machine.cgroup.glob("**/fdbroker.service/cgroup.procs"))
    assert len(procs) == 1, procs
    pids = [int(x) for x in procs[0].read_text().split()]
    assert len(pids) == 1, pids
    return pids[0]


def test_a_put_acknowledged_just_before_kill9_survives(broker_machine):
    """The state a put's reply waited for was sent microseconds before the kill:
    systemd 252 attributes a notify message to a unit by the sender's PID, so a
    message it read only after reaping the sender would be dropped. It reads its
    notify socket before handling SIGCHLD (a higher event priority), and the
    sender is a zombie until then: here no state was dropped."""
    machine = broker_machine(entries=[])
    machine.path(CONFIG).write_text(json.dumps({"socket": {"path": SOCKET}, "log_level": "warning"}))
    path = machine.path(SOCKET)
    puts = {}  # name -> (generation, memfd)
    pid = 0
    try:
        for i in range(KILLS):
            memfd = os.memfd_create(f"put-{i}", os.MFD_CLOEXEC)
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                s.settimeout(30)
                s.connect(str(path))  # the first one activates the broker
                if i == 0:
                    s.send(b'{"op":"hello"}')
                    assert json.loads(s.recv(MAX_MESSAGE))["ok"]
                pid = wait_ready(machine, pid)
                host_pid = broker_host_pid(machine)
                socket.send_fds(s, [json.dumps({"op": "put", "name": f"fast/{i}"}).encode()], [memfd])
                reply = json.loads(s.recv(MAX_MESSAGE))
                os.kill(host_pid, 9)  # at once: the broker has just sent its state
            assert reply["ok"], reply
            puts[f"fast/{i}"] = (reply["generation"], memfd)
        pid = wait_ready(machine, pid)
        for name, (generation, memfd) in puts.items():
            reply, fds = get_entry(path, name)
            try:
                assert reply.get("ok") and reply["generation"] == generation, (name, reply)
                assert len(fds) == 1 and same_open_file(fds[0], memfd), name
            finally:
                for fd in fds:
                    os.close(fd)
        assert int(service_state(machine, "NRestarts")["NRestarts"]) == KILLS
        fdstore = int(service_state(machine, "NFileDescriptorStore")["NFileDescriptorStore"])
        assert fdstore == KILLS + 1, fdstore  # the entries and the state
    finally:
        for _, memfd in puts.values():
            os.close(memfd)


def test_the_default_start_limit_would_empty_the_fd_store(broker_machine):
    """Why fdbroker.service sets StartLimitIntervalSec=0: with systemd's default
    (5 starts in 10 s) the 6th quick crash fails the unit, and systemd 252 then
    closes everything in its fd store."""
    machine = broker_machine(entries=[], service_extra="[Unit]\nStartLimitIntervalSec=10s\n"
                                                       "StartLimitBurst=5\n")
    path = machine.path(SOCKET)
    memfd = os.memfd_create("held", os.MFD_CLOEXEC)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(30)
            s.connect(str(path))
            socket.send_fds(s, [b'{"op":"put","name":"held"}'], [memfd])
            assert json.loads(s.recv(MAX_MESSAGE))["ok"]
        pid = wait_ready(machine, 0)
        assert int(service_state(machine, "NFileDescriptorStore")["NFileDescriptorStore"]) == 2
        kills = 0
        while service_state(machine, "ActiveState")["ActiveState"] != "failed":
            assert kills < 6, "the start limit never failed the unit"
            machine.systemctl("kill", "-s", "KILL", "--kill-who=main", "fdbroker.service")
            kills += 1

            def restarted_or_failed(old=pid):
                state = service_state(machine, "MainPID", "ActiveState")
                if state["ActiveState"] == "failed":
                    return -1
                new = int(state["MainPID"])
                return new if new not in (0, old) and state["ActiveState"] == "active" else 0
            pid = machine.wait_for(restarted_or_failed, "a restart or the unit's failure",
                                   timeout=30, interval=0.02)
        assert kills == 5, kills  # 5 starts in 10 s: the 5th crash's restart is refused
        # (252 keeps Result=signal, the last crash's, and logs the refusal.)
        assert "Start request repeated too quickly" in machine.journal("_PID=1", "-o", "cat")
        state = service_state(machine, "ActiveState", "NFileDescriptorStore")
        assert state == {"ActiveState": "failed", "NFileDescriptorStore": "0"}, state
    finally:
        os.close(memfd)
