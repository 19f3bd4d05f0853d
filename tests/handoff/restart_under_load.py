# SPDX-License-Identifier: LGPL-2.1-or-later
"""Zero-downtime restart under load (the acceptance test of the handoff API).

A real fdbrokerd on a temporary socket; restart_server serves a listening socket on
127.0.0.1 that restart_load hammers with new connections, while the server is
restarted --restarts times:

  handoff  each successor gets the socket from the broker (fdbroker::listen) and
           calls ready(); the old instance then stops accepting, drains and exits.
           Must give zero refused, zero reset and zero failed requests.
  rebind   the classic restart: SIGTERM the old instance (it closes its socket and
           drains), then start the next, which binds again. Must show failures:
           that is what the handoff prevents.

Both counts are printed. Run by ctest (tests/handoff/CMakeLists.txt), or by hand:
  /usr/bin/python3 tests/handoff/restart_under_load.py --fdbrokerd build/dev/daemon/fdbrokerd \
      --server build/dev/tests/handoff/restart_server --load build/dev/tests/handoff/restart_load
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose stdout lines we wait for, with deadlines."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        assert self.popen.stdout is not None
        while True:
            for line in self.lines:
                if line.startswith(prefix):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.argv[0]} (pid {self.pid}) printed no '{prefix}' within {timeout} s")
            ready, _, _ = select.select([self.popen.stdout], [], [], left)
            if ready:
                line = self.popen.stdout.readline()
                if line == "":
                    raise RuntimeError(f"{self.argv[0]} (pid {self.pid}) exited ({self.popen.wait()}) "
                                       f"before printing '{prefix}'")
                self.lines.append(line.rstrip("\n"))

    def wait_exit(self, timeout: float) -> int:
        code = self.popen.wait(timeout=timeout)
        assert self.popen.stdout is not None
        self.lines.extend(l.rstrip("\n") for l in self.popen.stdout.readlines())
        self.popen.stdout.close()
        return code

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None and not self.popen.stdout.closed:
            self.popen.stdout.close()


def start_broker(fdbrokerd: str, directory: str) -> tuple[subprocess.Popen, str]:
    sock = os.path.join(directory, "fdbroker.sock")
    config = os.path.join(directory, "fdbroker.json")
    with open(config, "w") as f:
        f.write("{}\n")  # built-in defaults: only root and our own uid may do anything
    broker = subprocess.Popen([fdbrokerd, "--config", config, "--socket", sock, "--log-level", "warning"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if broker.poll() is not None:
            raise RuntimeError(f"fdbrokerd exited with {broker.returncode}")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(sock)
            return broker, sock
        except OSError:
            time.sleep(0.02)
        finally:
            probe.close()
    broker.kill()
    raise TimeoutError("fdbrokerd did not start listening")


def broker_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, quiet: float = 0.3) -> int:
    """The broker's fd count once it has not moved for `quiet` seconds: right after
    start it may still hold the readiness probe's connection."""
    last, since = broker_fds(pid), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.02)
        now = broker_fds(pid)
        if now != last:
            last, since = now, time.monotonic()
    return last


def settle(pid: int, expected: int, timeout: float = 3.0) -> int:
    """Waits for the broker's fd count to reach `expected` (it notices hang-ups
    asynchronously); returns how many it holds beyond that."""
    deadline = time.monotonic() + timeout
    while broker_fds(pid) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return broker_fds(pid) - expected


def verdict(problems: list[str]) -> int:
    """Prints each problem as a FAIL line; the exit status: 1 if there was one."""
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


def run_phase(mode: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    server_argv = [args.server, "--mode", mode, "--url", url, "--delay-ms", str(args.delay_ms)]
    server = Proc(server_argv, env)
    servers = [server]
    load = None
    try:
        server.wait_line("ready", 10)
        load = Proc([args.load, "--port", str(port), "--workers", str(args.workers),
                     "--max-seconds", str(args.max_seconds), "--max-connections", str(args.max_connections),
                     "--pause-us", str(args.pause_us)], env)
        time.sleep(args.interval)
        started = time.monotonic()
        for _ in range(args.restarts):
            if mode == "handoff":
                # The successor takes over; the old one exits on its own once drained.
                successor = Proc(server_argv, env)
                servers.append(successor)
                successor.wait_line("ready", 10)
                code = server.wait_exit(10)
            else:
                server.popen.send_signal(signal.SIGTERM)
                code = server.wait_exit(10)
                successor = Proc(server_argv, env)
                servers.append(successor)
                successor.wait_line("ready", 10)
            if code != 0:
                raise RuntimeError(f"{mode}: server {server.pid} exited with {code}")
            server = successor
            time.sleep(args.interval)
        restart_seconds = time.monotonic() - started
        load.popen.send_signal(signal.SIGTERM)
        out = load.wait_line("{", 30)
        load.wait_exit(10)
        result = json.loads(out)
        result["restarts"] = args.restarts
        result["seconds"] = round(restart_seconds, 1)
        return result
    finally:
        if load is not None:
            load.stop()
        for s in servers:
            s.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fdbrokerd", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--load", required=True)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.8, help="seconds between restarts")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--delay-ms", type=int, default=2, help="server time per request")
    parser.add_argument("--pause-us", type=int, default=500, help="each worker's pause between connections")
    parser.add_argument("--max-seconds", type=int, default=25, help="the load generator's hard limit")
    parser.add_argument("--max-connections", type=int, default=60000, help="per phase")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fdbroker-restart-") as directory:
        broker, sock = start_broker(args.fdbrokerd, directory)
        env = dict(os.environ, FDBROKER_SOCKET=sock)
        try:
            baseline = settled_fds(broker.pid)
            handoff = run_phase("handoff", args, env)
            # Every server has exited: the broker holds the listening socket and the
            # last leader's pidfd, and nothing else it received (retire requests were
            # taken, every connection of every generation closed).
            leaked = settle(broker.pid, baseline + 2)
            rebind = run_phase("rebind", args, env)
        finally:
            broker.send_signal(signal.SIGTERM)
            broker.wait(timeout=10)

    for name, r in (("handoff", handoff), ("rebind", rebind)):
        print(f"{name:8} restarts={r['restarts']} in {r['seconds']} s: connections={r['connections']} "
              f"ok={r['ok']} refused={r['refused']} reset={r['reset']} failed={r['failed']} "
              f"server_pids={r['pids']}" + (f" first errors: {r['errors'][:3]}" if r["errors"] else ""))
        sys.stdout.flush()

    print(f"broker fds after the handoff phase: {'as expected' if leaked == 0 else f'{leaked:+d} vs expected'}")
    problems = []
    if leaked:
        problems.append(f"the broker holds {leaked:+d} fds more than its entries need after the handoff phase")
    if handoff["refused"] or handoff["reset"] or handoff["failed"]:
        problems.append("handoff restarts lost connections")
    if handoff["ok"] < 1000:
        problems.append(f"handoff phase served only {handoff['ok']} requests: the load did not run")
    if handoff["pids"] < args.restarts + 1:
        problems.append(f"handoff: replies came from {handoff['pids']} processes, expected {args.restarts + 1}")
    if rebind["refused"] + rebind["reset"] + rebind["failed"] == 0:
        problems.append("rebind restarts lost nothing: the comparison shows nothing")
    if rebind["ok"] < 1000:
        problems.append(f"rebind phase served only {rebind['ok']} requests: the load did not run")
    return verdict(problems)


if __name__ == "__main__":
    sys.exit(main())
