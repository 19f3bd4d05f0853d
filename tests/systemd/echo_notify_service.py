# SPDX-License-Identifier: LGPL-2.1-or-later
"""A minimal Type=notify, socket-activated service that proves the harness works.

It takes its listening SOCK_SEQPACKET socket from systemd (LISTEN_FDS, named by
FileDescriptorName=), reports READY=1 and a STATUS= line on $NOTIFY_SOCKET, and
answers every message with "<fdname>:<message>" until systemd stops it.
Without LISTEN_FDS (a plain Type=notify start) it only notifies and waits.
"""

import os
import signal
import socket
import sys

SD_LISTEN_FDS_START = 3


def notify(message: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode(), address)


def inherited_listener() -> tuple[socket.socket, str] | None:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) != 1:
        sys.exit(f"expected exactly one fd, got LISTEN_FDS={os.environ.get('LISTEN_FDS')}")
    name = os.environ.get("LISTEN_FDNAMES", "")
    return socket.socket(fileno=SD_LISTEN_FDS_START), name


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = inherited_listener()
    status = f"serving fd '{listener[1]}'" if listener else "idle"
    notify(f"READY=1\nSTATUS={status}")
    if listener is None:
        signal.pause()
        return
    sock, name = listener
    while True:
        conn, _ = sock.accept()
        with conn:
            while message := conn.recv(4096):
                conn.send(f"{name}:".encode() + message)


if __name__ == "__main__":
    main()
