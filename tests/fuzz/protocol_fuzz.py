#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Black-box protocol fuzzer: a real fdbrokerd, attacked over its socket by a
non-root client, with the protocol's promises checked throughout.

  tests/fuzz/protocol_fuzz.py --fdbrokerd build/asan/daemon/fdbrokerd [--seed N] [--seconds S]
  (or scripts/fuzz-protocol, which builds first)

This process (root) builds a tree of files for `open` requests (make_tree), picks
8 free ports on 127.0.0.1 for `bind` requests, writes a configuration with `files`
and `bind` rules for both into a temporary directory, starts the
broker on it, waits for READY=1 on a notify socket and takes the broker's
descriptor count (/proc/<pid>/fd) as the baseline. It then forks the fuzzing
client, which drops to a uid with rules on a few prefixes (protocol_client.py and
protocol_gen.py), and meanwhile:
  - checks that the broker stays alive and that a fresh connection's `hello` is
    answered within 2 s, every 200-500 ms;
  - watches the broker's log (its stderr) for sanitizer reports;
  - at the end of every epoch (the client closed everything), deletes every entry
    as root and checks that the broker's descriptor count is back to its baseline
    (it keeps no copy of what it opened or bound), and that opens changed nothing
    in the tree but the spool's files;
  - at the end, stops the broker with SIGTERM and expects exit status 0.
Exit status 0: nothing found; 1: a violation (printed with the seed, the command
that replays it and the last messages of the failing connection); 2: usage or setup.

Replay: a seed fixes every message and every action, in order (expect_generation
values aside, which are taken from earlier replies); the broker's timing (which
connection it serves first, when a wait ends) it cannot fix, so a replay follows
the same path but need not fail at the same step. --exclude leaves classes of input
out, to look past a defect already known: empty (zero-length records), bigop (an
unknown op of up to 64 KiB), deepmeta, hugettl, bignum (numbers no double holds),
wake (puts that wake waiters).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))

from list_pages import names_to_delete  # noqa: E402
from notify_start import read_log, settled_count, start_until_ready  # noqa: E402
from protocol_client import Fuzzer, Violation  # noqa: E402
from protocol_gen import BIND_PORTS, SPOOL_FILES, SPOOL_MODE, TREE_KINDS  # noqa: E402

HELLO_DEADLINE = 2.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "AddressSanitizer:DEADLYSIGNAL", "UndefinedBehaviorSanitizer", "ERROR: ThreadSanitizer")
MAX_WAIT_MS = 4000
CLIENT_TIMEOUT_MS = 5000


def make_tree(tree: str) -> None:
    """The files `open` requests are aimed at (protocol_gen.TREE_KINDS says what is
    where), all root's: read by the broker for the fuzzing uid."""
    os.mkdir(tree, 0o755)
    for rel, kind in sorted(TREE_KINDS.items()):
        path = os.path.join(tree, rel)
        if kind == "dir":
            os.mkdir(path, 0o755)
    for rel, kind in sorted(TREE_KINDS.items()):
        path = os.path.join(tree, rel)
        if kind == "file":
            with open(path, "w") as f:
                f.write(f"{rel}\n")
            os.chmod(path, 0o600 if rel.endswith(".key") else 0o644)
        elif kind == "fifo":
            os.mkfifo(path, 0o666)
    for rel, kind in sorted(TREE_KINDS.items()):
        path = os.path.join(tree, rel)
        if kind == "symlink":
            os.symlink({"pub/link": "/etc/passwd", "pub/rw/link": "../a.txt"}.get(rel, "../pub/a.txt"), path)
        elif kind == "hardlink" and not os.path.exists(path):
            # other/h.txt and pub/rw/hard: one file, two names.
            with open(os.path.join(tree, "other/h.txt"), "w") as f:
                f.write("two names\n")
            os.link(os.path.join(tree, "other/h.txt"), os.path.join(tree, "pub/rw/hard"))


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports on 127.0.0.1 that nothing holds now,
    tcp or udp (below the ephemeral range, where the fuzzer's own sockets go)."""
    import random
    rng = random.Random()
    for _ in range(200):
        lo = rng.randrange(20000, 32000 - count)
        try:
            for port in range(lo, lo + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return lo
    raise RuntimeError("no free port range on 127.0.0.1")


def config_for(workdir: str, socket_path: str, uid: int, tree: str = "", port_lo: int = 0) -> dict[str, Any]:
    static_file = os.path.join(workdir, "static.txt")
    with open(static_file, "w") as f:
        f.write("a static entry\n")
    return {
        "socket": {"path": socket_path, "mode": "0666"},
        "log_level": "warning",
        "limits": {"max_wait_ms": MAX_WAIT_MS, "client_timeout_ms": CLIENT_TIMEOUT_MS, "max_queued_replies": 32,
                   "max_entries_per_uid": 200, "max_fds_per_uid": 3000, "shutdown_timeout_ms": 2000},
        "owner_rights": ["get", "take", "delete"],
        "rules": [
            {"prefix": "f/", "users": [uid], "allow": ["get", "take", "put", "delete"]},
            {"prefix": "f/ro/", "users": [uid], "deny": ["put", "take", "delete"]},
            {"name": "f/deny", "users": ["*"], "deny": ["get", "take", "put", "delete"]},
            {"prefix": "w/", "users": [uid], "allow": ["put"]},
            {"prefix": "", "users": [uid], "allow": ["stats"]},
        ],
        "entries": [
            {"name": "f/static", "type": "file", "path": static_file, "flags": ["rdonly"]},
            {"name": "s/file", "type": "file", "path": static_file, "flags": ["rdonly"],
             "access": [{"users": [uid], "allow": ["get"]}]},
            {"name": "s/sock", "type": "unix", "path": os.path.join(workdir, "static.sock"),
             "socket_type": "stream", "access": [{"users": [uid], "allow": ["get"]}]},
        ],
        # protocol_gen.py (TREE_KINDS, open_rule, bind_fields) mirrors these.
        "files": [
            {"name": "pub-deny", "root": f"{tree}/pub", "match": ["deny/**"], "users": ["*"],
             "deny": ["read", "write", "create"]},
            {"name": "pub-ro", "root": f"{tree}/pub", "match": ["**"], "users": [uid], "allow": ["read"]},
            {"name": "pub-rw", "root": f"{tree}/pub", "match": ["rw/**"], "users": [uid], "allow": ["read", "write"]},
            {"name": "spool", "root": f"{tree}/spool", "match": ["s[0-7]", "dir", "lnk"], "users": [uid],
             "allow": ["read", "write", "create"], "mode": f"0{SPOOL_MODE:o}"},
            {"name": "plant", "root": f"{tree}/plant", "match": ["p[0-3]", "p[0-3]/*"], "users": [uid],
             "allow": ["read", "write", "create"], "mode": f"0{SPOOL_MODE:o}"},
            {"name": "warmup", "root": f"{tree}/pub", "match": ["a.txt"], "users": [0], "allow": ["read"]},
        ],
        "bind": [
            {"name": "tcp-deny", "address": f"tcp://127.0.0.1:{port_lo + BIND_PORTS - 1}", "users": ["*"],
             "deny": ["bind"]},
            {"name": "tcp-lo", "address": f"tcp://127.0.0.1:{port_lo}-{port_lo + BIND_PORTS - 1}", "users": [uid],
             "allow": ["bind"]},
            {"name": "udp-lo", "address": f"udp://127.0.0.1:{port_lo}-{port_lo + BIND_PORTS - 1}", "users": [uid],
             "allow": ["bind"]},
            {"name": "tcp-lo-rp", "address": f"tcp://127.0.0.1:{port_lo}-{port_lo + 1}", "users": [uid],
             "allow": ["bind"], "reuseport": True},
        ],
    }


def fd_links(pid: int) -> dict[str, str]:
    links = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return links


def exchange(path: str, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One request on a fresh connection (as this process's uid)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.send(json.dumps(message).encode())
        data, fds, _, _ = socket.recv_fds(s, 65536, 253)
        for fd in fds:
            os.close(fd)
        return json.loads(data)


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seed: int = args.seed
        self.workdir = tempfile.mkdtemp(prefix="fdbroker-fuzz-", dir="/tmp")
        os.chmod(self.workdir, 0o755)
        self.socket = os.path.join(self.workdir, "fdbroker.sock")
        self.log_path = os.path.join(self.workdir, "fdbrokerd.log")
        self.files_dir = os.path.join(self.workdir, "files")
        os.mkdir(self.files_dir, 0o700)
        os.chown(self.files_dir, args.uid, args.gid)
        self.tree = os.path.join(self.workdir, "tree")
        make_tree(self.tree)
        # The fuzzing uid's own directory, where it plants what it likes (act_plant).
        plant = os.path.join(self.tree, "plant")
        os.mkdir(plant, 0o755)
        with open(os.path.join(plant, "src"), "w"):
            pass
        for path in (plant, os.path.join(plant, "src")):
            os.chown(path, args.uid, args.gid)
        self.port_lo = free_port_range(BIND_PORTS)
        self.proc: subprocess.Popen[bytes] | None = None
        self.baseline = 0
        self.baseline_links: dict[str, str] = {}
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stop_monitor = threading.Event()
        self.probes = 0
        self.probe_worst = 0.0
        self.settle_worst = 0.0
        self.checks = 0
        self.log_offset = 0

    # ------------------------------------------------------------ broker

    def start_broker(self) -> None:
        config = config_for(self.workdir, self.socket, self.args.uid, self.tree, self.port_lo)
        config_path = os.path.join(self.workdir, "fdbroker.json")
        # The fuzzing uid holds many connections at times (sockets connected to the
        # broker inside entries, storms of short connections): far below this, but it
        # may pass the default per-uid limit, whose refusals (a close without a reply)
        # would be indistinguishable from a broker dropping a client. A broker too old
        # to know the key gets the configuration without it.
        config["limits"]["max_connections_per_uid"] = 1024
        for _ in range(2):
            with open(config_path, "w") as f:
                json.dump(config, f, indent=1)
            check = subprocess.run([self.args.fdbrokerd, "--check-config", "--config", config_path],
                                   capture_output=True, text=True)
            if check.returncode == 0 or "max_connections_per_uid" not in check.stdout + check.stderr:
                break
            del config["limits"]["max_connections_per_uid"]
        env = dict(os.environ)
        # Sanitizer reports go to the log (stderr); leaks are checked at the SIGTERM exit.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        env.pop("LD_PRELOAD", None)
        # Not ready: RuntimeError, "setup failed"; main() kills the broker.
        start_until_ready([self.args.fdbrokerd, "--config", config_path, "--socket", self.socket], env,
                          self.log_path, os.path.join(self.workdir, "notify.sock"), timeout=60, poll=0.1,
                          started=lambda proc: setattr(self, "proc", proc))
        # Warm up as root (a put, a get, a delete, a list, stats), so that what the
        # broker creates lazily on first use is in the baseline.
        r, w = os.pipe()
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(10)
            s.connect(self.socket)
            socket.send_fds(s, [b'{"op":"put","name":"warmup","ttl_ms":60000}'], [r, w])
            s.recv(65536)
        os.close(r)
        os.close(w)
        for m in ({"op": "get", "name": "warmup"}, {"op": "list"}, {"op": "stats"}, {"op": "delete", "name": "warmup"}):
            exchange(self.socket, m, 10)
        # The workers of open start at the first (root's own rule "warmup").
        reply = exchange(self.socket, {"op": "open", "path": f"{self.tree}/pub/a.txt"}, 10)
        if reply.get("rule") != "warmup":
            raise RuntimeError(f"the warm-up open was not granted: {reply}")
        self.baseline = settled_count(self.fd_count, 0.3)
        self.baseline_links = fd_links(self.pid)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def log(self) -> str:
        return read_log(self.log_path)

    def listener_inode(self) -> int:
        with open("/proc/net/unix") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                # Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000: listening
                if len(parts) >= 8 and parts[7] == self.socket and int(parts[3], 16) & 0x10000:
                    return int(parts[6])
        raise RuntimeError(f"no listening socket at {self.socket} in /proc/net/unix")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)

    def sanitizer_report(self) -> str:
        text = self.log()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                start = text.rfind("\n", 0, max(0, i - 200)) + 1
                return "\n".join(text[start:].splitlines()[:60])
        return ""

    def new_log_has_report(self) -> bool:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, self.log_offset - 100))
                new = f.read()
        except FileNotFoundError:
            return False
        self.log_offset += len(new) - min(100, self.log_offset)
        text = new.decode(errors="replace")
        return any(marker in text for marker in SANITIZER_MARKERS)

    def broker_status(self) -> str:
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        if rc is None:
            return "alive"
        if rc < 0:
            return f"died of signal {signal.Signals(-rc).name}"
        return f"exited with status {rc}"

    # ------------------------------------------------------------ monitor

    def monitor(self) -> None:
        """A fresh connection's hello is answered within 2 s, at any moment."""
        import random
        rng = random.Random(self.seed ^ 0x6D6F6E)
        n = 0
        while not self.stop_monitor.wait(rng.uniform(0.2, 0.5)):
            if not self.alive():
                self.fail(f"the broker {self.broker_status()}")
                return
            if self.new_log_has_report():
                self.fail("sanitizer report in the broker's log")
                return
            n += 1
            t0 = time.monotonic()
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
                    s.settimeout(HELLO_DEADLINE)
                    s.connect(self.socket)
                    s.send(b'{"op":"hello","id":"probe-%d"}' % n)
                    s.settimeout(max(0.01, HELLO_DEADLINE - (time.monotonic() - t0)))
                    data = s.recv(65536)
                took = time.monotonic() - t0
                reply = json.loads(data)
                ok = reply.get("ok") is True and reply.get("id") == f"probe-{n}" and reply["peer"]["uid"] == 0
            except (OSError, ValueError, KeyError, TypeError) as e:
                took = time.monotonic() - t0
                if not self.alive():
                    self.fail(f"the broker {self.broker_status()}")
                else:
                    self.fail(f"monitor: hello on a fresh connection not answered within {HELLO_DEADLINE} s "
                              f"({type(e).__name__}: {e}, after {took:.2f} s)")
                return
            with self.lock:
                self.probes += 1
                self.checks += 3
                self.probe_worst = max(self.probe_worst, took)
            if not ok or took > HELLO_DEADLINE:
                self.fail(f"monitor: bad or late hello reply ({took:.2f} s): {data[:200]!r}")
                return

    # ------------------------------------------------------------ quiescence

    def clear(self) -> str | None:
        """As root: list and delete every entry that is not static."""
        try:
            for name in names_to_delete(lambda m: exchange(self.socket, m)):
                reply = exchange(self.socket, {"op": "delete", "name": name})
                if not reply.get("ok") and reply.get("error") != "ENOENT":  # ENOENT: expired meanwhile
                    return f"delete of {name!r} as root failed: {reply}"
        except (OSError, ValueError) as e:
            return f"clearing the broker as root failed: {e}"
        return None

    def clear_and_check_fds(self, epoch: int) -> str | None:
        """All clients have closed: delete every entry (as root) until the broker's fd
        count is back to its baseline. Not at once: a connection whose own client end
        sits in an entry or in a reply queued to it stays open until that entry goes,
        or until client_timeout_ms drops it, and a take whose reply never left puts
        its entry back then. So: clear, wait, clear again, for up to
        client_timeout_ms + 5 s."""
        t0 = time.monotonic()
        deadline = t0 + CLIENT_TIMEOUT_MS / 1000 + 5
        count = -1
        while True:
            if not self.alive():
                return f"the broker {self.broker_status()}"
            problem = self.clear()
            if problem:
                return problem
            settle = time.monotonic() + 0.5
            while time.monotonic() < settle:
                count = self.fd_count()
                if count == self.baseline:
                    break
                time.sleep(0.02)
            if count == self.baseline or time.monotonic() > deadline:
                break
        with self.lock:
            self.checks += 1
            self.settle_worst = max(self.settle_worst, time.monotonic() - t0)
        if count != self.baseline:
            now = fd_links(self.pid)
            extra = sorted(set(now.values()) - set(self.baseline_links.values()))
            extra_n = collections_count(now.values(), self.baseline_links.values())
            return (f"epoch {epoch}: the broker holds {count} descriptors {time.monotonic() - t0:.1f} s after all "
                    f"clients closed and all entries were deleted; {self.baseline} at the start. More than "
                    f"before: {extra_n}; new targets: {extra[:20]}" + self.describe_sockets(extra))
        return None

    def check_tree(self) -> str | None:
        """Opens changed nothing on disk but the spool's files they may create (no
        file elsewhere, no other name in the spool, nothing left of a failed create)."""
        found = set()
        for top, dirs, files in os.walk(self.tree):
            for name in dirs + files:
                rel = os.path.relpath(os.path.join(top, name), self.tree)
                if rel != "plant" and not rel.startswith("plant/"):  # the fuzzer's own
                    found.add(rel)
        allowed = set(TREE_KINDS) | {f"spool/{n}" for n in SPOOL_FILES}
        with self.lock:
            self.checks += 1
        extra = sorted(found - allowed)
        missing = sorted(set(TREE_KINDS) - found)
        if extra or missing:
            return f"the tree of open requests changed: new {extra[:10]}, gone {missing[:10]}"
        return None

    def describe_sockets(self, targets: list[str]) -> str:
        """`ss` lines (with the peer's inode and process) of the sockets among `targets`."""
        inodes = [t[len("socket:["):-1] for t in targets if t.startswith("socket:[")]
        if not inodes or shutil.which("ss") is None:
            return ""
        out = subprocess.run(["ss", "-axpn"], capture_output=True, text=True).stdout.splitlines()
        lines = [line for line in out if any(f" {i} " in line for i in inodes)]
        peers = set()
        for line in lines:
            parts = line.split()
            if len(parts) > 7:
                peers.add(parts[7])
        lines += [line for line in out if any(f" {p} " in line for p in peers) and line not in lines]
        return "\n  sockets (ss -axpn):\n    " + "\n    ".join(lines[:40])

    # ------------------------------------------------------------ the run

    def run(self) -> int:
        args = self.args
        print(f"protocol_fuzz: seed {self.seed}, {args.seconds} s, uid {args.uid}, broker {args.fdbrokerd}", flush=True)
        self.start_broker()
        listener_ino = self.listener_inode()
        print(f"protocol_fuzz: broker pid {self.pid} ready, {self.baseline} descriptors; workdir {self.workdir}; "
              f"bind ports {self.port_lo}-{self.port_lo + BIND_PORTS - 1}",
              flush=True)
        c2p_r, c2p_w = os.pipe()
        p2c_r, p2c_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(c2p_r)
            os.close(p2c_w)
            self.child(c2p_w, p2c_r, listener_ino)  # never returns
        os.close(c2p_w)
        os.close(p2c_r)
        monitor = threading.Thread(target=self.monitor, daemon=True)
        monitor.start()
        result: dict[str, Any] | None = None
        buffer = b""
        hard_deadline = time.monotonic() + args.seconds + 180
        child_status = None
        kill_at = None
        while result is None:
            with self.lock:
                failed = bool(self.failures)
            if failed and kill_at is None:
                kill_at = time.monotonic() + 3  # time for the client to report what it saw
            if time.monotonic() > hard_deadline:
                self.fail("the fuzzing client did not finish in time")
                kill_at = time.monotonic()
            if kill_at is not None and time.monotonic() >= kill_at:
                os.kill(child, signal.SIGKILL)
                break
            ready, _, _ = select.select([c2p_r], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(c2p_r, 1 << 20)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                msg = json.loads(line)
                if "quiesce" in msg:
                    problem = self.clear_and_check_fds(msg["quiesce"]) or self.check_tree()
                    if problem:
                        self.fail(problem)
                        os.write(p2c_w, b"stop: fd count\n")
                    else:
                        os.write(p2c_w, b"go\n")
                else:
                    result = msg
        _, child_status = os.waitpid(child, 0)
        self.stop_monitor.set()
        monitor.join(5)
        os.close(c2p_r)
        os.close(p2c_w)
        return self.finish(result, child_status)

    def child(self, out_fd: int, in_fd: int, listener_ino: int) -> None:
        code = 2
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            os.setgroups([])
            os.setresgid(self.args.gid, self.args.gid, self.args.gid)
            os.setresuid(self.args.uid, self.args.uid, self.args.uid)
            os.nice(5)  # the broker and the monitor first
            fuzzer = Fuzzer(seed=self.seed, seconds=self.args.seconds, socket_path=self.socket,
                            files_dir=self.files_dir, listener_ino=listener_ino, max_wait_ms=MAX_WAIT_MS,
                            client_timeout_ms=CLIENT_TIMEOUT_MS, epoch_steps=self.args.epoch_steps,
                            control=(in_fd, out_fd), exclude=set(self.args.exclude), tree=self.tree,
                            port_lo=self.port_lo)
            try:
                stats = fuzzer.run()
                result: dict[str, Any] = {"ok": True, "stats": stats}
                code = 0
            except Violation as v:
                trace = list(v.conn.trace) if v.conn is not None else list(fuzzer.global_trace)
                result = {"ok": False, "violation": str(v), "elapsed": fuzzer.elapsed(),
                          "conn": v.conn.serial if v.conn is not None else None, "trace": trace,
                          "stats": dict(fuzzer.stats)}
                code = 1
            os.write(out_fd, (json.dumps(result) + "\n").encode())
        except BaseException:
            msg = {"ok": False, "violation": "the fuzzing client failed:\n" + traceback.format_exc(), "trace": []}
            try:
                os.write(out_fd, (json.dumps(msg) + "\n").encode())
            except OSError:
                pass
        finally:
            os._exit(code)

    def finish(self, result: dict[str, Any] | None, child_status: int | None) -> int:
        args = self.args
        stats: dict[str, Any] = (result or {}).get("stats", {})
        problems = list(self.failures)
        trace: list[str] = []
        if result is not None and not result.get("ok"):
            problems.insert(0, f"{result['violation']} (at {result.get('elapsed', 0):.1f} s"
                               + (f", connection c{result['conn']})" if result.get("conn") else ")"))
            trace = result.get("trace", [])
        elif result is None and not problems:
            problems.append(f"the fuzzing client ended without a result (wait status {child_status})")
        # Give a crash a moment to show (a violation seen by the client is often the
        # broker dying), then stop the broker: SIGTERM, exit status 0.
        time.sleep(0.3)
        exit_status = None
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                exit_status = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
                problems.append("the broker ignored SIGTERM for 30 s")
            if exit_status not in (None, 0):
                problems.append(f"the broker exited with status {exit_status} after SIGTERM")
        else:
            if not any("broker" in p and ("died" in p or "exited" in p) for p in problems):
                problems.append(f"the broker {self.broker_status()}")
        report = self.sanitizer_report()
        if report and not any("sanitizer" in p for p in problems):
            problems.append("sanitizer report in the broker's log")
        self.checks += 2  # alive at the end, exit status
        checks = stats.get("invariant_checks", 0) + self.checks
        print(f"protocol_fuzz: {stats.get('requests', 0)} requests sent, {stats.get('replies', 0)} replies read, "
              f"{checks} invariant checks ({self.probes} hello probes, worst {self.probe_worst * 1000:.0f} ms; "
              f"fd count back to baseline in {self.settle_worst:.1f} s at worst), "
              f"{stats.get('steps', 0)} steps, {stats.get('epochs', 0)} epochs, "
              f"{stats.get('connections', 0)} connections, {stats.get('fds_sent', 0)} descriptors sent", flush=True)
        if args.verbose:
            print("protocol_fuzz: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
        if not problems:
            print(f"protocol_fuzz: seed {self.seed}: no violation", flush=True)
            shutil.rmtree(self.workdir, ignore_errors=True)
            return 0
        print("", flush=True)
        for p in problems:
            print(f"VIOLATION: {p}")
        print(f"seed: {self.seed}")
        print(f"replay: {args.replay_prefix} --seed {self.seed} --seconds {args.seconds}"
              + (f" --exclude {','.join(args.exclude)}" if args.exclude else ""))
        if trace:
            print("last messages of the connection (> sent, < received):")
            for line in trace[-25:]:
                print("  " + line)
        if report:
            print("broker log (sanitizer report):")
            print("  " + "\n  ".join(report.splitlines()))
        else:
            tail = self.log().splitlines()[-15:]
            if tail:
                print("broker log (last lines):")
                print("  " + "\n  ".join(tail))
        print(f"broker: {self.broker_status()}; workdir kept: {self.workdir}", flush=True)
        return 1


def collections_count(now: Any, before: Any) -> dict[str, int]:
    """How many more descriptors of each kind ("socket", "pipe", "anon_inode:[x]", ...)."""
    def kinds(links: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        for target in links:
            k = target.split(":[")[0] if ":[" in target else ("anon_inode" if target.startswith("anon_inode") else target)
            out[k] = out.get(k, 0) + 1
        return out
    a, b = kinds(now), kinds(before)
    return {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fdbrokerd", default=os.environ.get("FDBROKERD"), help="the broker binary ($FDBROKERD)")
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--uid", type=int, default=65534, help="the fuzzing client's uid (not root)")
    ap.add_argument("--gid", type=int, default=65534)
    ap.add_argument("--epoch-steps", type=int, default=2500,
                    help="steps between quiescent points (all closed, entries deleted, fd count checked)")
    ap.add_argument("--exclude", type=lambda s: [x for x in s.split(",") if x], default=[],
                    help="input classes to leave out, to look past a known defect: "
                         "empty,bigop,deepmeta,hugettl,bignum,wake")
    ap.add_argument("--replay-prefix", default=None, help="how to invoke this again (for the replay line)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if not args.fdbrokerd:
        ap.error("--fdbrokerd or $FDBROKERD is required")
    if os.geteuid() != 0:
        ap.error("must run as root (the broker runs as root; the fuzzing client drops to --uid)")
    if args.uid == 0:
        ap.error("--uid must not be root: root may do everything")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    if args.replay_prefix is None:
        args.replay_prefix = shlex.join([sys.executable, os.path.abspath(sys.argv[0]), "--fdbrokerd",
                                         os.path.abspath(args.fdbrokerd)])
    harness = Harness(args)
    try:
        return harness.run()
    except RuntimeError as e:
        print(f"protocol_fuzz: setup failed: {e}", file=sys.stderr)
        return 2
    finally:
        if harness.alive():
            os.kill(harness.pid, signal.SIGKILL)
            harness.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
