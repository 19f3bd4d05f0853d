# SPDX-License-Identifier: LGPL-2.1-or-later
"""An unmodified systemd-socket-proxyd, launched by `fdbrokerctl exec` on a TCP
listening socket the broker holds, killed and started again many times while a load
generator keeps opening connections: the broker keeps the socket open between
proxies, so connections that arrive while no proxy runs wait in its backlog and are
served by the next one: none is refused, and every one that arrives in a gap between
proxies is served.

What is not asserted to be zero: systemd-socket-proxyd ends the connections it is
relaying when SIGTERM stops it (they see EOF or a reset). That is the proxy's
behaviour, not the broker's: the test checks that every such failure was in flight
across a kill (at most one per load thread per kill) and that no other fails."""

from __future__ import annotations

import signal
import socket
import socketserver
import subprocess
import threading
import time
from dataclasses import dataclass, field

from broker_fixture import Broker, binary

import fdbroker

PROXYD = "/lib/systemd/systemd-socket-proxyd"
GENERATIONS = 12
GENERATION_SECONDS = 0.6
# Between reaping one proxy and starting the next: long enough that every load
# thread connects while no proxy runs, and waits in the backlog.
GAP_SECONDS = 0.15
LOAD_THREADS = 4


class _Backend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().strip()
        self.wfile.write(b"backend got " + line + b"\n")


@dataclass
class LoadCounts:
    ok: int = 0
    refused: int = 0
    reset: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the assertion message
    ok_by_generation: dict[int, int] = field(default_factory=dict)
    gap_connections: dict[int, int] = field(default_factory=dict)  # gap before generation -> count
    # Served connections opened before generation g started and answered after: they
    # waited in the backlog while no proxy accepted, and generation g served them.
    waited_for: dict[int, int] = field(default_factory=dict)
    gap_failures: int = 0  # connected while no proxy ran, then not served
    failures_outside_kills: int = 0  # failed although no proxy was stopped while it was open


class Load:
    """LOAD_THREADS threads, each opening one connection after another to `port`,
    sending a token and expecting the backend's answer through the proxy. Every
    failure is classified by what the kernel said: refused (ECONNREFUSED: nobody
    listening), reset (ECONNRESET/EPIPE), failed (anything else: timeout, EOF before
    the answer, a wrong answer)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.counts = LoadCounts()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        # Which proxy generation is the only one that can be running now: set before
        # each proxy starts, after the previous one has been reaped.
        self.generation = 0
        # True from reaping a proxy to starting the next: nobody accepts.
        self.in_gap = False
        # Proxies sent SIGTERM, and reaped, so far. A connection may fail only if the
        # proxy that was not yet reaped when it opened was stopped before it failed.
        self.killed = 0
        self.reaped = 0
        self.starts = 0  # proxies started so far
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(LOAD_THREADS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> LoadCounts:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a load thread hung"
        return self.counts

    def _run(self, worker: int) -> None:
        sequence = 0
        while not self.stopping.is_set():
            token = f"w{worker}-{sequence}".encode()
            sequence += 1
            in_gap, gap_generation, reaped_before = self.in_gap, self.generation, self.reaped
            starts_before = self.starts
            outcome, detail = self._one(token)
            spanned_kill = self.killed > reaped_before
            starts_after = self.starts
            with self.lock:
                if outcome == "ok" and starts_after > starts_before:
                    waited = self.counts.waited_for
                    waited[starts_after - 1] = waited.get(starts_after - 1, 0) + 1
                if in_gap:
                    gaps = self.counts.gap_connections
                    gaps[gap_generation] = gaps.get(gap_generation, 0) + 1
                    self.counts.gap_failures += outcome != "ok"
                if outcome != "ok" and not spanned_kill:
                    self.counts.failures_outside_kills += 1
                if outcome == "ok":
                    self.counts.ok += 1
                    by_gen = self.counts.ok_by_generation
                    by_gen[self.generation] = by_gen.get(self.generation, 0) + 1
                else:
                    setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
                    if len(self.counts.errors) < 10:
                        self.counts.errors.append(f"{token.decode()}: {detail}")

    def _one(self, token: bytes) -> tuple[str, str]:
        try:
            # Bounded: a connection waiting in the backlog for the next proxy takes a
            # fraction of a second; a hung one is a failure, not a hung test.
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                # No shutdown(SHUT_WR): systemd-socket-proxyd ends the whole connection
                # when the client's side does.
                s.sendall(token + b"\n")
                data = b""
                while not data.endswith(b"\n") and (chunk := s.recv(4096)):
                    data += chunk
        except ConnectionRefusedError as e:
            return "refused", repr(e)
        except (ConnectionResetError, BrokenPipeError) as e:
            return "reset", repr(e)
        except OSError as e:
            return "failed", repr(e)
        if data != b"backend got " + token + b"\n":
            return "failed", f"answer {data!r}"
        return "ok", ""


def ctl_cmd(broker: Broker, *args: str) -> list[str]:
    return [binary("FDBROKERCTL"), "--socket", broker.socket, *args]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_proxyd_restarted_under_load_refuses_nothing(broker: Broker) -> None:
    backend = _Backend(("127.0.0.1", 0), _Echo)
    backend_thread = threading.Thread(target=backend.serve_forever, daemon=True)
    backend_thread.start()
    proxy: subprocess.Popen[bytes] | None = None
    load: Load | None = None
    try:
        port = free_port()
        subprocess.run(ctl_cmd(broker, "put", "web", "--listen", f"tcp://127.0.0.1:{port}"), check=True)
        with fdbroker.Client(broker.socket) as c, c.get("web") as entry:
            assert entry.fd_info[0]["local"] == f"127.0.0.1:{port}"
        proxy_cmd = ctl_cmd(broker, "exec", "--get", "web", "--", PROXYD, f"127.0.0.1:{backend.server_address[1]}")

        load = Load(port)
        load.start()
        for generation in range(GENERATIONS):
            load.generation = generation
            load.starts += 1
            proxy = subprocess.Popen(proxy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            load.in_gap = False
            time.sleep(GENERATION_SECONDS)
            assert proxy.poll() is None, f"proxy {generation} exited early: {proxy.communicate()[1]!r}"
            load.killed += 1
            proxy.send_signal(signal.SIGTERM)  # by PID: fdbrokerctl exec became the proxy
            _, err = proxy.communicate(timeout=20)
            load.reaped += 1
            assert proxy.returncode in (0, -signal.SIGTERM), err
            proxy = None
            load.generation = generation + 1
            load.in_gap = True
            time.sleep(GAP_SECONDS)
        # The connections waiting in the backlog after the last kill: served by one
        # more proxy, so that the load ends without any connection left waiting.
        load.starts += 1
        proxy = subprocess.Popen(proxy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load.in_gap = False
        time.sleep(0.3)
        counts = load.stop()
        load = None
        print(
            f"\nproxyd restarted {GENERATIONS} times under load: ok={counts.ok} refused={counts.refused} "
            f"reset={counts.reset} failed={counts.failed} (all in flight across a kill: "
            f"{counts.failures_outside_kills == 0}); connections that waited in the backlog: "
            f"{sum(counts.gap_connections.values())} (opened between proxies, of which failed "
            f"{counts.gap_failures}), {sum(counts.waited_for.values())} (served by a later proxy); "
            f"ok_by_generation={counts.ok_by_generation}"
        )
        assert counts.refused == 0, counts.errors
        assert counts.gap_failures == 0, counts.errors
        assert sum(counts.gap_connections.values()) > 0, "no connection arrived between proxies"
        # Every restart left connections waiting, and the new proxy served them.
        for generation in range(1, GENERATIONS + 1):
            assert counts.waited_for.get(generation, 0) > 0, (generation, counts.waited_for)
        for generation in range(GENERATIONS + 1):
            assert counts.ok_by_generation.get(generation, 0) > 0, (generation, counts.ok_by_generation)
        # Only the connections a proxy was relaying when it was stopped fail.
        assert counts.failures_outside_kills == 0, counts.errors
        assert counts.reset + counts.failed <= LOAD_THREADS * GENERATIONS, counts.errors
    finally:
        if load is not None:
            load.stop()
        if proxy is not None and proxy.poll() is None:
            proxy.send_signal(signal.SIGTERM)
            proxy.communicate(timeout=20)
        backend.shutdown()
        backend.server_close()
    # The broker's fd count back at its baseline is checked by the fixture, once the
    # entry is deleted.
