# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs an example handoff server (examples/handoff_server.cpp or .py) under light
load and restarts it with SIGHUP three times, the way its documentation says.

Asserts: no request fails; every generation served (distinct pids); the request
counter, a memfd handed from generation to generation through the broker, numbered
every request exactly once across all of them.

  /usr/bin/python3 tests/handoff/example_restarts.py --fdbrokerd build/dev/daemon/fdbrokerd \
      -- build/dev/examples/handoff_server
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from restart_under_load import free_port, start_broker, verdict  # noqa: E402

READY = re.compile(r" (\d+): ready \(generation (\d+)\)")
DONE = re.compile(r" (\d+): done")


class ServerLog:
    """Collects the stderr lines of every generation (successors inherit stderr)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            sys.stderr.write(line)
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, pattern: re.Pattern, exclude: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    m = pattern.search(line)
                    if m and m.group(1) not in exclude:
                        return m.group(1)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern.pattern!r} within {timeout} s")
                self.changed.wait(left)


class Load:
    def __init__(self, port: int, workers: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[tuple[str, int]] = []  # (pid, request number)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]
        for t in self.threads:
            t.start()

    def _run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            path = f"/w{worker}/{n}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                    reply = b""
                    while chunk := s.recv(4096):
                        reply += chunk
                text = reply.decode()
                m = re.search(r"\r\n\r\nGET (\S+) HTTP/1.0\npid (\d+), request (\d+)\n$", text)
                if not text.startswith("HTTP/1.0 200 OK\r\n") or not m or m.group(1) != path:
                    raise ValueError(f"bad reply {text[:80]!r}")
                with self.lock:
                    self.ok.append((m.group(2), int(m.group(3))))
            except (OSError, ValueError) as e:
                with self.lock:
                    self.failures.append(f"{path}: {e!r}")
            time.sleep(0.002)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fdbrokerd", required=True)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("server", nargs="+", help="the server command (after --)")
    args = parser.parse_args()

    port = free_port()
    seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="fdbroker-example-") as directory:
        broker, sock = start_broker(args.fdbrokerd, directory)
        env = dict(os.environ, FDBROKER_SOCKET=sock)
        server = subprocess.Popen([*args.server, f"tcp://127.0.0.1:{port}"], env=env,
                                  stderr=subprocess.PIPE, text=True)
        log = ServerLog(server.stderr)
        load = None
        try:
            leader = log.wait_for(READY, seen, 20)
            load = Load(port, workers=4)
            for _ in range(args.restarts):
                time.sleep(0.5)
                seen.add(leader)
                os.kill(int(leader), signal.SIGHUP)
                successor = log.wait_for(READY, seen, 20)
                old = leader
                leader = successor
                # The old generation drains and says so.
                deadline = time.monotonic() + 20
                while not any(DONE.search(l) and DONE.search(l).group(1) == old for l in log.lines):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"generation {old} did not finish draining")
                    time.sleep(0.02)
            time.sleep(0.5)
            load.finish()
            seen.add(leader)
            os.kill(int(leader), signal.SIGTERM)
            deadline = time.monotonic() + 20
            while not any(DONE.search(l) and DONE.search(l).group(1) == leader for l in log.lines):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"last generation {leader} did not stop")
                time.sleep(0.02)
        finally:
            if load is not None:
                load.finish()
            for pid in seen:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            server.wait(timeout=10)
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=10)

    pids = {pid for pid, _ in load.ok}
    numbers = sorted(n for _, n in load.ok)
    print(f"example {os.path.basename(args.server[-1])}: restarts={args.restarts} ok={len(load.ok)} "
          f"failed={len(load.failures)} generations_serving={len(pids)} "
          f"counter={numbers[0] if numbers else None}..{numbers[-1] if numbers else None}")
    problems = []
    if load.failures:
        problems.append(f"{len(load.failures)} failed requests, first: {load.failures[:3]}")
    if len(pids) < args.restarts + 1:
        problems.append(f"only {len(pids)} generations served requests, expected {args.restarts + 1}")
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append("the shared counter did not number every request exactly once")
    if len(load.ok) < 50:
        problems.append(f"only {len(load.ok)} requests served")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())
