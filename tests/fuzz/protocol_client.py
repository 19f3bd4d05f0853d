# SPDX-License-Identifier: LGPL-2.1-or-later
"""The fuzzing client: one process (a non-root uid) interleaving many non-blocking
connections to the broker, every choice drawn from one seeded random.Random, and
checking each reply against the protocol's promises as it arrives.

Replay: the seed fixes every message and every action in order. What it cannot fix
is the broker's timing (when a wait times out, which connection's request the
broker reads first), so state-dependent outcomes may differ between two runs of a
seed; a violation is reported with the last messages of its connection.
"""

from __future__ import annotations

import array
import collections
import errno
import fcntl
import json
import math
import os
import random
import re
import select
import shutil
import socket
import stat
import time
from typing import Any

from protocol_gen import (HOT_NAMES, MAX_FDS, MAX_MESSAGE, PLANT_TARGETS, SPOOL_MODE, STATIC_NAMES, Expect, FdPool, Gen,
                          Request, errno_name, visible_name)

ERROR_NAME = re.compile(r"E[A-Z0-9]+")
RECV_BUFFER = 1 << 20          # far above what a reply may be, to see oversized ones
RECV_FDS = 512                 # room for more descriptors than a message may carry
SEND_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)
SEND_REFUSED = (errno.ETOOMANYREFS, errno.ENOBUFS, errno.ENOMEM, errno.EMSGSIZE)
CANARY_DEADLINE = 2.0


class Violation(Exception):
    def __init__(self, message: str, conn: "Conn | None" = None) -> None:
        super().__init__(message)
        self.conn = conn


def preview(data: bytes, n: int = 150) -> str:
    text = repr(data[:n])
    return text + (f"...({len(data)} bytes)" if len(data) > n else "")


class Pending:
    """A request sent on a connection whose replies are checked."""

    __slots__ = ("req", "seq", "sent_at", "fd_ids", "gen_floor", "sent_fds", "canary")

    def __init__(self, req: Request, seq: int, sent_at: float, fd_ids: list[tuple[int, int]], gen_floor: int,
                 sent_fds: int, canary: int) -> None:
        self.req = req
        self.seq = seq
        self.sent_at = sent_at
        self.fd_ids = fd_ids
        self.gen_floor = gen_floor
        self.sent_fds = sent_fds
        # The read end of a pipe whose only write end went with the request (-1: none):
        # refused, the request's descriptors are closed, so this one reads EOF.
        self.canary = canary


class Conn:
    def __init__(self, serial: int, sock: socket.socket, now: float) -> None:
        self.serial = serial
        self.sock = sock
        self.outstanding: collections.deque[Pending] = collections.deque()
        self.reading = True        # its replies are read and checked
        self.ever_unread = False   # the broker may drop it (client_timeout_ms)
        self.half_closed = False   # SHUT_WR sent: the broker answers what it got, then ends
        self.dead = False          # end of stream seen, or send failed
        self.last_progress = now   # last reply read (or when the head request was sent)
        self.last_sent_empty = False
        self.trace: collections.deque[str] = collections.deque(maxlen=40)

    def fileno(self) -> int:
        return self.sock.fileno()


class Fuzzer:
    def __init__(self, *, seed: int, seconds: float, socket_path: str, files_dir: str, listener_ino: int,
                 max_wait_ms: int, client_timeout_ms: int, epoch_steps: int, control: tuple[int, int] | None,
                 exclude: set[str], tree: str = "/nonexistent", port_lo: int = 1) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.seconds = seconds
        self.socket_path = socket_path
        self.listener_ino = listener_ino
        self.max_wait_ms = max_wait_ms
        self.client_timeout = client_timeout_ms / 1000
        self.epoch_steps = epoch_steps
        self.control = control
        self.exclude = exclude
        self.uid = os.getuid()
        self.pid = os.getpid()
        self.gen = Gen(self.rng, self.uid, max_wait_ms, tree, port_lo)
        self.tree = tree
        # Sockets from bind replies kept a while (so that binds meet EADDRINUSE); which
        # are kept depends on the request's sequence number, not on the rng.
        self.held: collections.deque[int] = collections.deque()
        self.plants = 0  # changes made in <tree>/plant so far
        self.last_generation: dict[str, int] = {}
        self.gen.generation_of = lambda name: self.last_generation.get(name, 0)
        self.files_dir = files_dir
        self.pool = FdPool(self.rng, files_dir, socket_path)
        self.conns: list[Conn] = []       # chosen from by the schedule (closed only by it)
        self.draining: list[Conn] = []    # half-closed: read until the broker ends them
        self.serial = 0
        self.seq = 0
        self.start = time.monotonic()
        self.last_service = self.start
        self.max_gap = 0.0                # longest time the loop did not read (a stall)
        self.recent_waits: collections.deque[str] = collections.deque(maxlen=8)
        # Generations handed out, with what was put: name, fd identities, meta, ttl.
        self.generations: dict[int, tuple[str, list[tuple[int, int]], Any, int | None]] = {}
        self.max_generation = 0
        self.taken: dict[int, float] = {}      # generation -> when its take reply was read
        self.stats = collections.Counter()
        self.global_trace: collections.deque[str] = collections.deque(maxlen=20)
        self.canaries: list[tuple[int, float, Pending, Conn]] = []

    # ------------------------------------------------------------ bookkeeping

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def check(self, cond: bool, message: str, conn: Conn | None = None) -> None:
        self.stats["invariant_checks"] += 1
        if not cond:
            raise Violation(message, conn)

    def note(self, conn: Conn, line: str) -> None:
        entry = f"{self.elapsed():8.3f} c{conn.serial} {line}"
        conn.trace.append(entry)
        self.global_trace.append(entry)

    # ------------------------------------------------------------ connections

    def connect(self) -> Conn:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        s.settimeout(2.0)
        t0 = time.monotonic()
        try:
            s.connect(self.socket_path)
        except OSError as e:
            s.close()
            raise Violation(f"cannot connect to the broker: {e} (after {time.monotonic() - t0:.2f} s)")
        s.setblocking(False)
        self.serial += 1
        conn = Conn(self.serial, s, time.monotonic())
        self.stats["connections"] += 1
        return conn

    def close(self, conn: Conn) -> None:
        if conn.sock.fileno() >= 0:
            conn.sock.close()
        conn.dead = True
        self.forget(conn)

    def forget(self, conn: Conn) -> None:
        """Its outstanding requests will not be checked: let go of their canaries."""
        for p in conn.outstanding:
            if p.canary >= 0:
                os.close(p.canary)
                p.canary = -1
        conn.outstanding.clear()

    def check_canaries(self) -> None:
        """The descriptors of a refused request are closed by the broker: the canary
        pipe that went with one reads end of file (soon after the error reply;
        closes may be done by another thread of the broker)."""
        if not self.canaries:
            return
        now = time.monotonic()
        left = []
        for r, deadline, p, conn in self.canaries:
            readable, _, _ = select.select([r], [], [], 0)
            if readable and os.read(r, 1) == b"":
                os.close(r)
                self.stats["invariant_checks"] += 1
                self.stats["canaries_closed"] += 1
            elif now > deadline:
                os.close(r)
                raise Violation(f"#{p.seq} ({p.req.label}) was refused, but {CANARY_DEADLINE:.0f} s after the "
                                f"error reply the broker still holds the descriptors it carried: "
                                f"{preview(p.req.data)}", conn)
            else:
                left.append((r, deadline, p, conn))
        self.canaries = left

    # ------------------------------------------------------------ sending

    def send(self, conn: Conn, req: Request, extra_fds: list[int] | None = None) -> bool:
        """Sends `req` with req.nfds descriptors (from the pool, plus `extra_fds`).
        The rng is consumed the same way whether or not the message leaves."""
        fds = self.pool.pick(req.nfds)
        canary = req.nfds > 0 and self.rng.random() < 0.25
        if extra_fds:
            fds = (fds + extra_fds)[:MAX_FDS]
            req.nfds = len(fds)
            req.expect = self.gen.with_fds(req)
        self.seq += 1
        req.plants = self.plants
        if conn.dead:
            return False
        canary_r = canary_w = -1
        if canary and len(fds) < MAX_FDS:
            canary_r, canary_w = os.pipe2(os.O_CLOEXEC)
            fds = fds + [canary_w]
        try:
            return self.send_fds(conn, req, fds, canary_r)
        finally:
            if canary_w >= 0:
                os.close(canary_w)

    def send_fds(self, conn: Conn, req: Request, fds: list[int], canary: int) -> bool:
        sent = False
        try:
            sent = self.send_message(conn, req, fds, canary)
        finally:
            if not sent and canary >= 0:
                os.close(canary)
        return sent

    def send_message(self, conn: Conn, req: Request, fds: list[int], canary: int) -> bool:
        fd_ids = [self.identity(fd) for fd in fds] if req.op == "put" else []
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        now = time.monotonic()
        try:
            conn.sock.sendmsg([req.data], anc, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except BlockingIOError:
            self.stats["send_eagain"] += 1
            return False
        except OSError as e:
            if e.errno in SEND_GONE:
                self.stats["send_gone"] += 1
                self.note(conn, f"> send failed {errno_name(e.errno)}")
                if conn.reading and not conn.ever_unread and not conn.half_closed:
                    # The broker closed a connection that reads its replies.
                    self.read_all(conn)
                    if not conn.dead:
                        raise Violation(f"send: {errno_name(e.errno)} on a connection the broker has not ended",
                                        conn)
                conn.dead = True
                return False
            if e.errno in SEND_REFUSED:
                self.stats["send_refused_" + errno_name(e.errno)] += 1
                return False
            raise
        self.stats["requests"] += 1
        self.stats["fds_sent"] += len(fds)
        conn.last_sent_empty = not req.data and not fds
        self.note(conn, f"> #{self.seq} {req.label} {len(fds)}fd {preview(req.data)}")
        if conn.reading:
            if not conn.outstanding:
                conn.last_progress = now
            conn.outstanding.append(Pending(req, self.seq, now, fd_ids, self.max_generation, len(fds), canary))
        elif canary >= 0:
            os.close(canary)
        return True

    @staticmethod
    def identity(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino

    # ------------------------------------------------------------ receiving

    def service(self, timeout: float) -> None:
        """Reads every reply that has arrived (waiting up to `timeout` for one)."""
        now = time.monotonic()
        self.max_gap = max(self.max_gap, now - self.last_service)
        self.last_service = now
        watched = [c for c in self.conns + self.draining if c.reading and not c.dead]
        if not watched:
            if timeout > 0:
                time.sleep(timeout)
            self.check_canaries()
            return
        poller = select.poll()
        by_fd = {}
        for c in watched:
            poller.register(c.fileno(), select.POLLIN)
            by_fd[c.fileno()] = c
        for fd, _ in poller.poll(int(timeout * 1000)):
            self.read_all(by_fd[fd])
        self.last_service = time.monotonic()
        self.check_canaries()
        self.check_liveness()
        self.draining = [c for c in self.draining if not c.dead]

    def check_liveness(self) -> None:
        """The request at the head of a connection is answered in time: its wait (if
        any) plus a generous margin."""
        now = time.monotonic()
        for c in self.conns + self.draining:
            if not c.reading or c.dead or not c.outstanding:
                continue
            head = c.outstanding[0]
            wait = min(head.req.wait_ms or 0, self.max_wait_ms) / 1000
            since = max(head.sent_at, c.last_progress)
            self.stats["invariant_checks"] += 1
            if now - since > wait + 10.0 and self.max_gap < self.client_timeout * 0.8:
                raise Violation(f"no reply to #{head.seq} ({head.req.label}) after {now - since:.1f} s", c)

    def read_all(self, conn: Conn) -> None:
        while not conn.dead:
            try:
                data, anc, flags, _ = conn.sock.recvmsg(RECV_BUFFER, socket.CMSG_SPACE(4 * RECV_FDS),
                                                       socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ECONNRESET:
                    self.on_end(conn, "connection reset")
                    return
                raise
            fds: list[int] = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[: len(payload) - len(payload) % 4])
                    fds.extend(a)
            try:
                if not data and not fds:
                    self.on_end(conn, "end of stream")
                    return
                self.on_reply(conn, data, fds, flags)
            finally:
                for fd in fds:
                    os.close(fd)

    def on_end(self, conn: Conn, what: str) -> None:
        self.note(conn, f"< {what}")
        conn.dead = True
        left = list(conn.outstanding)
        self.forget(conn)
        if left and left[-1].req.optional_reply:
            left.pop()  # an empty record right before SHUT_WR may read as the end
        if not conn.reading:
            return
        tolerated = conn.ever_unread or self.max_gap >= self.client_timeout * 0.8
        if not conn.half_closed and not tolerated:
            self.check(False, f"the broker ended a connection it had no reason to end ({what}); "
                              f"{len(left)} request(s) unanswered", conn)
        if left and not tolerated:
            self.check(False, f"{what} with {len(left)} request(s) unanswered, first #{left[0].seq} "
                              f"({left[0].req.label})", conn)
        self.stats["ends_checked"] += 1

    # ------------------------------------------------------------ reply checks

    def on_reply(self, conn: Conn, data: bytes, fds: list[int], flags: int) -> None:
        now = time.monotonic()
        self.stats["replies"] += 1
        self.note(conn, f"< {len(fds)}fd {preview(data)}")
        if not conn.reading:
            return
        conn.last_progress = now
        self.check(not flags & socket.MSG_TRUNC, f"reply longer than {RECV_BUFFER} bytes", conn)
        self.check(not flags & socket.MSG_CTRUNC, f"reply with more than {RECV_FDS} descriptors", conn)
        self.check(len(data) <= MAX_MESSAGE, f"reply of {len(data)} bytes, above {MAX_MESSAGE}", conn)
        self.check(bool(conn.outstanding), "a reply to no request", conn)
        p = conn.outstanding.popleft()
        try:
            ok = self.check_reply(conn, p, data, fds, now)
            if p.canary >= 0:
                if ok:
                    os.close(p.canary)  # stored by a put: nothing to expect
                else:
                    self.canaries.append((p.canary, now + CANARY_DEADLINE, p, conn))
                p.canary = -1
        except Violation as v:
            raise Violation(f"{v}\n  request #{p.seq} ({p.req.label}, {p.sent_fds} fds, sent "
                            f"{now - p.sent_at:.3f} s before): {preview(p.req.data, 300)}\n"
                            f"  reply: {preview(data, 300)}" + tail(p.req.data, data), conn) from None

    def check_reply(self, conn: Conn, p: Pending, data: bytes, fds: list[int], now: float) -> bool:
        req = p.req
        reply = self.parse_reply(conn, data)
        ok = reply.get("ok")
        self.check(isinstance(ok, bool), "reply without a boolean 'ok'", conn)
        err = reply.get("error")
        if not ok:
            self.check(isinstance(err, str) and ERROR_NAME.fullmatch(err) is not None,
                       f"error reply without a symbolic errno name: {err!r}", conn)
            self.check(isinstance(reply.get("message", ""), str), "error 'message' is not a string", conn)
            self.stats["error_" + err] += 1
        else:
            self.stats["ok_" + (req.op or "unknown")] += 1
        self.check_id(conn, p, reply)
        if req.op in ("open", "bind") and not req.expect.anything:
            self.stats[f"{req.op}_{'ok' if ok else err}"] += 1
        # Descriptors: only a successful get, take, open or bind carries them, as many as
        # it describes (open and bind: exactly one).
        if fds:
            self.check(ok is True, f"an error reply carried {len(fds)} descriptors", conn)
            self.check(req.op in ("get", "take", "open", "bind") or (req.op is None and p.sent_fds == 0),
                       f"a reply to {req.op or 'a request with descriptors'} carried {len(fds)} descriptors", conn)
            self.check(isinstance(reply.get("fds"), list) and len(reply["fds"]) == len(fds),
                       f"{len(fds)} descriptors attached, 'fds' describes {len(reply.get('fds') or [])}", conn)
        elif ok and req.op in ("get", "take", "open", "bind") and not req.expect.anything:
            self.check(False, f"a successful {req.op} carried no descriptors", conn)
        if ok and req.op in ("open", "bind"):
            self.check(len(fds) == 1, f"a successful {req.op} carried {len(fds)} descriptors, not one", conn)
        # What the request itself fixes.
        e = req.expect
        if not e.anything:
            if ok:
                self.check(e.ok, f"#{p.seq} succeeded; expected {e.describe()}", conn)
            else:
                self.check(err in e.errors, f"#{p.seq} failed with {err}; expected {e.describe()}", conn)
        if req.wait_ms is not None and not ok and err == "ETIMEDOUT":
            waited = now - p.sent_at
            wanted = min(req.wait_ms, self.max_wait_ms) / 1000
            self.check(waited >= wanted - 0.005,
                       f"#{p.seq} answered ETIMEDOUT after {waited * 1000:.0f} ms of a {req.wait_ms} ms wait", conn)
        if ok and not e.anything:
            self.check_success(conn, p, reply, fds)
        return ok

    def parse_reply(self, conn: Conn, data: bytes) -> dict[str, Any]:
        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [k for k, _ in pairs]
            if len(set(keys)) != len(keys):
                raise ValueError(f"duplicate keys in {keys}")
            return dict(pairs)

        def no_constant(name: str) -> Any:
            raise ValueError(f"non-JSON constant {name}")

        try:
            reply = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise Violation(f"reply is not valid UTF-8 JSON ({e}): {preview(data)}", conn)
        self.check(isinstance(reply, dict), "reply is not a JSON object", conn)
        return reply

    def check_id(self, conn: Conn, p: Pending, reply: dict[str, Any]) -> None:
        req = p.req
        has = "id" in reply
        got = reply.get("id")
        self.check(not isinstance(got, (dict, list)), f"reply id is not a scalar: {got!r}", conn)
        if req.id_mode == "absent":
            self.check(not has, f"#{p.seq} ({req.label}): reply has id {preview(repr(got).encode(), 60)}, "
                                f"the request had none that may be echoed", conn)
        elif req.id_mode in ("exact", "number"):
            self.check(has and id_matches(req.id_mode, req.id_value, got),
                       f"#{p.seq}: reply id {preview(repr(got).encode(), 60)} is not the request's "
                       f"{preview(repr(req.id_value).encode(), 60)} (out of order or mangled)", conn)

    def check_success(self, conn: Conn, p: Pending, reply: dict[str, Any], fds: list[int]) -> None:
        req = p.req
        op = req.op
        if op == "hello":
            self.check(reply.get("server") == "fdbrokerd" and reply.get("protocol") == 1, "bad hello reply", conn)
            peer = reply.get("peer") or {}
            self.check(peer.get("uid") == self.uid and peer.get("pid") == self.pid,
                       f"hello: peer {peer} is not this process (uid {self.uid}, pid {self.pid})", conn)
        elif op == "put":
            g = reply.get("generation")
            self.check(isinstance(g, int) and not isinstance(g, bool) and g > p.gen_floor,
                       f"put: generation {g!r} not above {p.gen_floor}, one handed out before this put", conn)
            self.check(reply.get("name") == req.name, f"put: name {reply.get('name')!r} != {req.name!r}", conn)
            self.check(g not in self.generations, f"put: generation {g} handed out twice", conn)
            self.generations[g] = (req.name, p.fd_ids, req.meta, req.ttl_ms)
            self.max_generation = max(self.max_generation, g)
            self.last_generation[req.name] = g
        elif op in ("get", "take"):
            self.check_entry(conn, p, reply, fds)
        elif op == "open":
            self.check_open(conn, p, reply, fds)
        elif op == "bind":
            self.check_bind(conn, p, reply, fds)
        elif op == "delete":
            self.check(reply.get("name") == req.name, f"delete: name {reply.get('name')!r} != {req.name!r}", conn)
        elif op == "list":
            entries = reply.get("entries")
            self.check(isinstance(entries, list) and len(entries) <= req.limit, "list: bad 'entries'", conn)
            names = [e.get("name") for e in entries]
            self.check(all(isinstance(n, str) for n in names), "list: entry without a name", conn)
            self.check(names == sorted(names) and len(set(names)) == len(names), f"list: not sorted: {names}", conn)
            for e in entries:
                n = e["name"]
                self.check(n.startswith(req.prefix), f"list: {n!r} outside prefix {req.prefix!r}", conn)
                self.check(visible_name(n), f"list: shows {n!r}, which this uid may not get", conn)
                self.check(req.cursor is None or n > req.cursor, f"list: {n!r} not after cursor {req.cursor!r}", conn)
                self.check(bool(e.get("static")) == (n in STATIC_NAMES), f"list: 'static' wrong for {n!r}", conn)
                self.check(isinstance(e.get("fds"), list) and len(e["fds"]) >= 1, f"list: {n!r} without fds", conn)
                self.check(isinstance(e.get("generation"), int), f"list: {n!r} without a generation", conn)
            self.check("cursor" not in reply or isinstance(reply["cursor"], str), "list: bad cursor", conn)
        elif op == "stats":
            self.check(isinstance(reply.get("connections"), dict) and isinstance(reply.get("requests"), dict),
                       "stats: bad reply", conn)

    def check_entry(self, conn: Conn, p: Pending, reply: dict[str, Any], fds: list[int]) -> None:
        req = p.req
        name = req.name
        self.check(reply.get("name") == name, f"{req.op}: name {reply.get('name')!r} != {name!r}", conn)
        g = reply.get("generation")
        self.check(isinstance(g, int) and not isinstance(g, bool) and g >= 1, f"{req.op}: generation {g!r}", conn)
        self.check(isinstance(reply.get("meta"), dict), f"{req.op}: meta is not an object", conn)
        self.check(isinstance(reply.get("owner"), dict), f"{req.op}: no owner", conn)
        descs = reply.get("fds")
        for i, fd in enumerate(fds):
            st = os.fstat(fd)  # valid: it is in this process's table
            self.check(not (stat.S_ISSOCK(st.st_mode) and st.st_ino == self.listener_ino),
                       f"{req.op} {name!r}: descriptor {i} is the broker's own listening socket", conn)
            d = descs[i] if isinstance(descs[i], dict) else {}
            want = kind_of(fd, st)
            self.check(d.get("kind") == want, f"{req.op} {name!r}: fds[{i}] described as {d.get('kind')!r}, "
                                              f"the descriptor is a {want}", conn)
            if want in ("file", "pipe", "memfd") and "access" in d:
                self.check(d["access"] == access_of(fd), f"{req.op} {name!r}: fds[{i}] access {d['access']!r}, "
                                                         f"the descriptor's is {access_of(fd)!r}", conn)
        if name in STATIC_NAMES:
            self.check(len(fds) == 1 and kind_of(fds[0], os.fstat(fds[0])) == STATIC_NAMES[name],
                       f"get {name!r}: not the static {STATIC_NAMES[name]}", conn)
            return
        known = self.generations.get(g)
        if known is not None:
            put_name, ids, meta, ttl = known
            self.stats["entries_verified"] += 1
            self.check(put_name == name, f"{req.op} {name!r}: generation {g} was put as {put_name!r}", conn)
            self.check([self.identity(fd) for fd in fds] == ids,
                       f"{req.op} {name!r} generation {g}: not the descriptors put, in order", conn)
            if meta is not None:
                self.check(json_equal(reply["meta"], meta), f"{req.op} {name!r}: meta {preview(repr(reply['meta']).encode())} "
                                                            f"is not what was put", conn)
            if ttl is None:
                self.check("expires_ms" not in reply, f"{req.op} {name!r}: expires_ms without a ttl", conn)
            else:
                x = reply.get("expires_ms")
                self.check(isinstance(x, int) and 0 <= x <= ttl, f"{req.op} {name!r}: expires_ms {x!r}, ttl {ttl}",
                           conn)
        if g in self.taken:
            self.check(req.op == "get" and p.sent_at < self.taken[g],
                       f"{req.op} {name!r}: generation {g} was taken already (reply read "
                       f"{p.sent_at - self.taken[g]:.3f} s before this request was sent)", conn)
        if req.op == "take":
            self.taken[g] = time.monotonic()
        self.last_generation[name] = g

    def check_open(self, conn: Conn, p: Pending, reply: dict[str, Any], fds: list[int]) -> None:
        """The file asked for, with the flags asked for, by the rule that must grant it."""
        req = p.req
        flags = req.flags
        self.check(reply.get("path") == req.path, f"open: path {reply.get('path')!r} != {req.path!r}", conn)
        self.check(reply.get("rule") == req.rule, f"open {req.path!r}: rule {reply.get('rule')!r}, "
                                                  f"expected {req.rule!r}", conn)
        created = reply.get("created")
        self.check(isinstance(created, bool), f"open: 'created' is {created!r}", conn)
        self.check(not created or "create" in flags, f"open {req.path!r}: created without 'create'", conn)
        self.check(created or "excl" not in flags, f"open {req.path!r}: create+excl succeeded, created false", conn)
        descs = reply.get("fds")
        self.check(isinstance(descs, list) and len(descs) == 1, f"open: 'fds' is {descs!r}", conn)
        fd = fds[0]
        st = os.fstat(fd)
        d = descs[0] if isinstance(descs[0], dict) else {}
        self.check(kind_of(fd, st) == "file" and d.get("kind") == "file",
                   f"open {req.path!r}: a {kind_of(fd, st)} described as {d.get('kind')!r}", conn)
        want = "rw" if "rdwr" in flags else "w" if "wronly" in flags else "r"
        self.check(access_of(fd) == want, f"open {req.path!r} {sorted(flags)}: access {access_of(fd)!r}", conn)
        self.check("access" not in d or d["access"] == want, f"open: described access {d.get('access')!r}", conn)
        # The description is the path the file has when described: in the plant, a
        # name the fuzzer may have removed or renamed meanwhile.
        self.check("path" not in d or d["path"] == req.path
                   or (req.rule == "plant" and d["path"].startswith(f"{self.tree}/plant/p")),
                   f"open {req.path!r}: described path {d.get('path')!r}", conn)
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
        self.check(bool(fl & os.O_APPEND) == ("append" in flags), f"open {req.path!r}: O_APPEND is "
                                                                  f"{bool(fl & os.O_APPEND)}", conn)
        self.check(bool(fl & os.O_NONBLOCK) == ("nonblock" in flags), f"open {req.path!r}: O_NONBLOCK is "
                                                                      f"{bool(fl & os.O_NONBLOCK)}", conn)
        if req.rule == "plant":
            # What is there changes under the broker: the file must be one beneath the
            # root, reached without a symlink, and singly linked if opened to write.
            where = os.readlink(f"/proc/self/fd/{fd}")
            self.check(where.startswith(f"{self.tree}/plant/p") and stat.S_ISREG(st.st_mode),
                       f"open {req.path!r}: got {where!r}, outside the rule's root or not a file", conn)
            if want != "r" and self.plants == req.plants:
                self.check(st.st_nlink == 1, f"open {req.path!r} for writing: {st.st_nlink} links", conn)
            self.stats["plant_ok"] += 1
        else:
            try:
                named = os.lstat(req.path)
            except OSError as e:
                named = None
                self.check(False, f"open {req.path!r} succeeded, but lstat of it says {errno_name(e.errno)}", conn)
            self.check(named is not None and (named.st_dev, named.st_ino) == (st.st_dev, st.st_ino),
                       f"open {req.path!r}: the descriptor is not the file of that name", conn)
        if "trunc" in flags:
            self.check(st.st_size == 0, f"open {req.path!r} with trunc: size {st.st_size}", conn)
        if created:
            self.stats["open_created"] += 1
            want_mode = (req.mode if req.mode is not None else SPOOL_MODE) & SPOOL_MODE
            self.check(stat.S_IMODE(st.st_mode) == want_mode and st.st_uid == 0,
                       f"open {req.path!r}: created with mode {stat.S_IMODE(st.st_mode):o} uid {st.st_uid}, "
                       f"expected {want_mode:o} uid 0 (the broker's)", conn)

    def check_bind(self, conn: Conn, p: Pending, reply: dict[str, Any], fds: list[int]) -> None:
        """A socket of the type asked for, bound to the address, listening if tcp."""
        req = p.req
        self.check(reply.get("address") == req.address, f"bind: address {reply.get('address')!r}, "
                                                        f"expected {req.address!r}", conn)
        self.check(reply.get("rule") == req.rule, f"bind {req.address}: rule {reply.get('rule')!r}, "
                                                  f"expected {req.rule!r}", conn)
        descs = reply.get("fds")
        self.check(isinstance(descs, list) and len(descs) == 1 and isinstance(descs[0], dict)
                   and descs[0].get("kind") == "socket", f"bind: 'fds' is {descs!r}", conn)
        fd = fds[0]
        s = socket.socket(fileno=os.dup(fd))
        try:
            tcp = req.address.startswith("tcp")
            want_type = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
            self.check(s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == want_type and s.family == socket.AF_INET,
                       f"bind {req.address}: a socket of the wrong type", conn)
            self.check(s.getsockname() == ("127.0.0.1", req.port), f"bind {req.address}: bound to {s.getsockname()}",
                       conn)
            self.check(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == (1 if tcp else 0),
                       f"bind {req.address}: listening is {s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)}",
                       conn)
            self.check(bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)) == req.reuseport,
                       f"bind {req.address}: SO_REUSEPORT is not {req.reuseport}", conn)
        finally:
            s.close()
        if p.seq % 3 == 0:
            self.held.append(os.dup(fd))
            if len(self.held) > 4:
                os.close(self.held.popleft())

    def release_held(self) -> None:
        while self.held:
            os.close(self.held.popleft())

    # ------------------------------------------------------------ actions

    def pick_conn(self) -> Conn:
        if not self.conns:
            self.conns.append(self.connect())
        return self.rng.choice(self.conns)

    def act_connect(self) -> None:
        if len(self.conns) < 10:
            self.conns.append(self.connect())

    def act_request(self) -> None:
        conn = self.pick_conn()
        req = self.gen.request()
        extra = None
        if self.rng.random() < 0.03:
            # The connection's own socket, or another's: sockets connected to the broker.
            other = self.rng.choice(self.conns)
            extra = [s.fileno() for s in (conn.sock, other.sock) if s.fileno() >= 0][: self.rng.randint(1, 2)]
        if self.excluded(req):
            return
        self.send(conn, req, extra)

    def excluded(self, req: Request) -> bool:
        """--exclude: classes of input left out (to find one defect behind another)."""
        if not self.exclude:
            return False
        d = req.data
        checks = {
            "empty": not d,
            "bigop": req.label.startswith("bigop"),
            "deepmeta": b'"meta"' in d and d.count(b"[") + d.count(b"{") > 200,
            "hugettl": req.ttl_ms is not None and req.ttl_ms > 10**12,
            "bignum": b"e400" in d or b"E400" in d or b"E+309" in d or b"1" * 400 in d,
            "wake": False,
        }
        return any(checks.get(x, False) for x in self.exclude)

    def act_burst(self) -> None:
        conn = self.pick_conn()
        for _ in range(self.rng.randint(2, 30)):
            req = self.gen.request()
            if not self.excluded(req):
                self.send(conn, req)

    def wait_request(self, name: str, op: str) -> Request:
        wait = self.rng.choice([1, 5, 30, 100, 300, 800, 1500, 3000, self.max_wait_ms + 2000])
        self.gen.seq += 1
        rid = self.gen.seq
        data = json.dumps({"op": op, "id": rid, "name": name, "wait_ms": wait}).encode()
        expect = self.gen.expectation(Request(data, "wait", Expect(), op=op, name=name, wait_ms=wait), False, 0)
        return Request(data, f"wait:{wait}", expect, op=op, name=name, id_mode="exact", id_value=rid, wait_ms=wait)

    def put_request(self, name: str) -> Request:
        self.gen.seq += 1
        rid = self.gen.seq
        data = json.dumps({"op": "put", "id": rid, "name": name, "replace": True, "meta": {"w": rid}}).encode()
        req = Request(data, "wake-put", Expect(), op="put", name=name, id_mode="exact", id_value=rid,
                      meta={"w": rid}, replace=True, nfds=self.rng.randint(1, 3))
        req.expect = self.gen.put_errors(req)
        return req

    def act_wait(self) -> None:
        """A get/take that waits; often a put from another connection wakes it."""
        conn = self.pick_conn()
        name = self.rng.choice(HOT_NAMES + ["f/w1", "f/w2"])
        op = self.rng.choice(["get", "get", "take"])
        req = self.wait_request(name, op)
        self.recent_waits.append(name)
        self.send(conn, req)
        x = self.rng.random()
        if x < 0.5:
            self.service(self.rng.choice([0, 0.005, 0.05]))
            other = self.pick_conn()
            if "wake" not in self.exclude:
                self.send(other, self.put_request(name))
        elif x < 0.65:
            # Abandoned: the waiting connection goes away.
            self.service(self.rng.choice([0, 0.01, 0.1]))
            self.conns.remove(conn)
            self.close(conn)

    def act_wake(self) -> None:
        if self.recent_waits:
            name = self.rng.choice(list(self.recent_waits))
            req = self.put_request(name)
            if "wake" not in self.exclude:
                self.send(self.pick_conn(), req)

    def act_half_close(self) -> None:
        conn = self.pick_conn()
        if conn.last_sent_empty and conn.outstanding:
            conn.outstanding[-1].req.optional_reply = True
        self.note(conn, "> shutdown(SHUT_WR)")
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.half_closed = True
        self.conns.remove(conn)
        if conn.reading and not conn.dead:
            self.draining.append(conn)
        else:
            self.close(conn)

    def act_abrupt_close(self) -> None:
        conn = self.pick_conn()
        self.note(conn, "> close")
        self.conns.remove(conn)
        self.close(conn)
        self.stats["abrupt_closes"] += 1

    def act_stop_reading(self) -> None:
        conn = self.pick_conn()
        if conn.reading:
            self.note(conn, "> stops reading")
            conn.reading = False
            conn.ever_unread = True
            self.forget(conn)
            self.stats["unread_connections"] += 1

    def act_pause(self) -> None:
        self.service(self.rng.choice([0.001, 0.01, 0.03, 0.1]))

    def act_refresh(self) -> None:
        self.pool.refresh(self.rng.randint(1, 6))

    def act_storm(self) -> None:
        """Connections that come and go: hello and close, close without a word."""
        for _ in range(self.rng.randint(1, 8)):
            c = self.connect()
            if self.rng.random() < 0.5:
                self.gen.seq += 1
                data = b'{"op":"hello","id":%d}' % self.gen.seq
                self.send(c, Request(data, "storm", Expect(), op="hello", id_mode="exact", id_value=self.gen.seq))
                if self.rng.random() < 0.5:
                    deadline = time.monotonic() + 5
                    while c.outstanding and not c.dead and time.monotonic() < deadline:
                        select.select([c.sock], [], [], 0.1)
                        self.read_all(c)
                    self.check(not c.outstanding, "no hello reply within 5 s", c)
            self.close(c)

    def act_opens(self) -> None:
        """Opens on fresh connections at once: more than the broker runs at once for
        one uid (the rest wait their turn), some abandoned before their answer (the
        broker must close what it opened for them: the fd count at the epoch's end
        tells)."""
        for _ in range(self.rng.randint(2, 6)):
            c = self.connect()
            self.send(c, self.gen.open_request())
            if self.rng.random() < 0.3:
                self.note(c, "> close (abandoned)")
                self.close(c)
                continue
            self.note(c, "> shutdown(SHUT_WR)")
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.half_closed = True
            self.draining.append(c)

    def act_plant(self) -> None:
        """Changes what a name in <tree>/plant is, between and during opens."""
        r = self.rng
        base = f"{self.tree}/plant"
        for _ in range(r.randint(1, 3)):
            target = f"{base}/{r.choice(PLANT_TARGETS)}"
            what = r.choice(["file", "file", "symlink", "symlink", "dir", "fifo", "hardlink", "remove", "rename"])
            link_to = r.choice(["/etc/shadow", "/etc", "../../pub/a.txt", "../pub/a.txt", "p0", "/proc/self/root",
                                "x"])
            other = f"{base}/{r.choice(PLANT_TARGETS)}"
            self.plants += 1
            self.stats["plants"] += 1
            try:
                if what == "rename":
                    os.rename(other, target)
                    continue
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                elif os.path.lexists(target):
                    os.unlink(target)
                if what == "file":
                    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
                elif what == "symlink":
                    os.symlink(link_to, target)
                elif what == "dir":
                    os.mkdir(target, 0o755)
                elif what == "fifo":
                    os.mkfifo(target, 0o644)
                elif what == "hardlink":
                    os.link(f"{base}/src", target)
            except OSError:
                pass  # a parent that is not a directory now, and the like

    ACTIONS = [("request", 40), ("burst", 8), ("wait", 10), ("wake", 4), ("connect", 5), ("half_close", 3),
               ("abrupt_close", 2), ("stop_reading", 1), ("pause", 6), ("refresh", 2), ("storm", 1), ("opens", 2),
               ("plant", 3)]

    # ------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        names = [a for a, _ in self.ACTIONS]
        weights = [w for _, w in self.ACTIONS]
        end = self.start + self.seconds
        steps = 0
        epoch = 0
        try:
            while time.monotonic() < end:
                action = self.rng.choices(names, weights)[0]
                getattr(self, "act_" + action)()
                self.stats["action_" + action] += 1
                self.service(0)
                steps += 1
                self.stats["steps"] = steps
                if self.epoch_steps and steps % self.epoch_steps == 0 and time.monotonic() < end - 3:
                    epoch += 1
                    self.quiesce(epoch)
            self.quiesce(epoch + 1, final=True)
        finally:
            for c in self.conns + self.draining:
                self.close(c)
            self.pool.close()
            self.release_held()
        return dict(self.stats)

    def quiesce(self, epoch: int, final: bool = False) -> None:
        """Every reading connection gets all its replies; then all close, and the
        harness (root) deletes every entry and checks the broker's fd count."""
        # Waits pipelined on one connection are answered one after the other.
        queued_waits = max((sum(min(p.req.wait_ms or 0, self.max_wait_ms) for p in c.outstanding)
                            for c in self.conns + self.draining if c.reading and not c.dead), default=0)
        deadline = time.monotonic() + max(queued_waits, self.max_wait_ms) / 1000 + 10
        while time.monotonic() < deadline:
            pending = [c for c in self.conns + self.draining if c.reading and not c.dead and c.outstanding]
            if not pending and not self.canaries:
                break
            self.service(0.05)
        for c in self.conns + self.draining:
            if c.reading and not c.dead and c.outstanding:
                head = c.outstanding[0]
                raise Violation(f"no reply to #{head.seq} ({head.req.label}) by the end of epoch {epoch}", c)
        for c in self.conns + self.draining:
            self.close(c)
        self.conns.clear()
        self.draining.clear()
        self.pool.close()  # it holds connections to the broker too
        self.release_held()
        self.stats["epochs"] += 1
        if self.control is not None:
            rfd, wfd = self.control
            os.write(wfd, (json.dumps({"quiesce": epoch, "final": final}) + "\n").encode())
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = os.read(rfd, 64)
                if not chunk:
                    raise Violation("the harness went away")
                answer += chunk
            if answer.strip() != b"go":
                raise Violation(f"the harness stopped the run: {answer.strip().decode()}")
        self.recent_waits.clear()
        if not final:
            self.pool = FdPool(self.rng, self.files_dir, self.socket_path)


# ---------------------------------------------------------------- helpers

def tail(request: bytes, reply: bytes) -> str:
    """The ends of a long request and reply (where the fields after a long id are)."""
    text = ""
    if len(request) > 300:
        text += f"\n  request's end: {request[-300:]!r}"
    if len(reply) > 300:
        text += f"\n  reply's end: {reply[-300:]!r}"
    return text


def to_float(x: Any) -> float:
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def id_matches(mode: str, want: Any, got: Any) -> bool:
    if mode == "exact" and (want is None or isinstance(want, (bool, str))):
        return type(got) is type(want) and got == want
    if isinstance(got, bool):
        return False
    if got is None:
        return math.isinf(to_float(want))  # nlohmann writes an infinite double as null
    if not isinstance(got, (int, float)):
        return False
    if isinstance(want, int) and isinstance(got, int):
        return want == got
    return to_float(got) == to_float(want)


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        return a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return to_float(a) == to_float(b)
    return False


def kind_of(fd: int, st: os.stat_result) -> str:
    """The `kind` docs/protocol.md gives a descriptor, found independently."""
    if stat.S_ISSOCK(st.st_mode):
        return "socket"
    if stat.S_ISFIFO(st.st_mode):
        return "pipe"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISREG(st.st_mode):
        return "memfd" if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:") else "file"
    return "other"


def access_of(fd: int) -> str:
    return {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}.get(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE, "?")
