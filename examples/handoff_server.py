#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""An HTTP-ish echo server that restarts without dropping a connection.

    handoff_server.py [URL]    (default tcp://127.0.0.1:8080; FDBROKER_SOCKET names the broker)

Every request gets "HTTP/1.0 200" with the request line, this process's pid and how
many requests all generations have served together. SIGHUP restarts it: it starts
its successor (this script again: edit it first to upgrade), which takes the
listening socket and the request counter from the broker and says it is ready; the
old process then stops accepting, finishes its requests, and exits. SIGTERM stops
it. The same service as handoff_server.cpp; docs/handoff.md walks through it.
"""

from __future__ import annotations

import mmap
import os
import selectors
import signal
import socket
import struct
import sys
import threading

import fdbroker

SERVICE = "handoff-server-py"


def log(message: str) -> None:
    print(f"handoff_server.py {os.getpid()}: {message}", file=sys.stderr, flush=True)


class Counter:
    """Requests served by all generations: 8 bytes in a memfd every instance maps."""

    def __init__(self, fd: int | None) -> None:
        if fd is None:
            fd = os.memfd_create("handoff-server-counter", os.MFD_CLOEXEC)
            os.ftruncate(fd, 8)
        self.fd = fd
        self.map = mmap.mmap(fd, 8)
        # Only one instance accepts at a time except for the moment of handoff; a
        # lock per process is enough for an example (use atomics in C++).
        self.lock = threading.Lock()

    def next(self) -> int:
        with self.lock:
            (value,) = struct.unpack("q", self.map[:8])
            self.map[:8] = struct.pack("q", value + 1)
            return value + 1


def serve(conn: socket.socket, counter: Counter) -> None:
    with conn:
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 16384:
            chunk = conn.recv(2048)
            if not chunk:
                break
            request += chunk
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        body = f"{line}\npid {os.getpid()}, request {counter.next()}\n".encode()
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:8080"

    # 1. Who came before us, if anyone.
    upgrader = fdbroker.handoff.Upgrader(SERVICE)

    # 2. The listening socket: inherited, the broker's, or bound now and deposited.
    #    Non-blocking: old and new instance poll it together for a moment.
    listener = fdbroker.handoff.open_listener(f"{SERVICE}/http", url, nonblocking=True)
    log(f"listening on {url} ({listener.origin}){': ' + listener.broker_error if listener.broker_error else ''}")
    sock = listener.sock

    # 3. The state: the predecessor's counter, or a new one; put back for our successor.
    state = upgrader.take_state()
    counter = Counter(state.detach()[0] if state and state.fds else None)
    if upgrader.has_broker:
        upgrader.put_state([counter.fd], meta={"what": "request counter"})

    # Signals become bytes on a pipe the loop watches.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    for signo in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signo, lambda *_: None)

    # 4. Ready: from here on we accept, and the predecessor is told to retire.
    upgrader.ready()
    log(f"ready (generation {upgrader.generation})")

    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "accept")
    selector.register(upgrader.exit_fd(), selectors.EVENT_READ, "exit")
    selector.register(wake_r, selectors.EVENT_READ, "signal")

    running = True
    while running:
        for key, _ in selector.select():
            if key.data == "exit":
                log(f"successor {upgrader.successor_pid} is ready; draining")
                running = False
            elif key.data == "signal":
                for signo in os.read(wake_r, 64):
                    if signo != signal.SIGHUP:
                        running = False
                        continue
                    try:
                        # 5. Upgrade: start the next generation, wait until it is ready.
                        successor = upgrader.upgrade()
                        log(f"upgraded to {successor}; draining")
                        running = False
                    except OSError as e:
                        log(f"upgrade failed: {e}")  # we keep serving; nothing was lost
            elif running:
                while True:
                    try:
                        conn, _ = sock.accept()  # EAGAIN: the other instance was faster
                    except BlockingIOError:
                        break
                    conn.setblocking(True)
                    threading.Thread(target=serve, args=(conn, counter), daemon=True).start()
    # 6. Exit: stop accepting (the broker and the successor keep the socket open, so
    #    queued connections are the successor's), finish what we accepted, leave.
    selector.close()
    sock.close()
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join()
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
