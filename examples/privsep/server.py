#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A service that runs as an unprivileged user and still serves on port 443 with a
key only root can read: fdbrokerd opened the key and bound the port for it, by its
`files` and `bind` rules (see README.md).

Each connection sends one line, a challenge; the answer is one line of JSON:
HMAC-SHA256 of the challenge under the key (proof that the service holds the key),
who the service runs as, and what happened when it tried to open the key and bind a
privileged port by itself (proof that it could not have done either).

Two ways to get the descriptors:
  server.py --key PATH                 started by `fdbrokerctl exec --open PATH
                                       --bind URL -- server.py --key PATH`: the key
                                       at fd 3, the socket at fd 4 (LISTEN_FDS, as
                                       systemd passes them); no fdbroker code here
  server.py --key PATH --ask URL       asks the broker itself, through the Python
                                       API ($FDBROKER_SOCKET or the default socket)
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import json
import os
import socket
import sys

SD_LISTEN_FDS_START = 3


def from_activation() -> tuple[bytes, socket.socket]:
    """The key and the listener as `fdbrokerctl exec` passed them (sd_listen_fds)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "2":
        sys.exit("server.py: expected LISTEN_FDS=2 (the key, then the socket) for this pid")
    key_fd, sock_fd = SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + 1
    os.set_inheritable(key_fd, False)
    with open(key_fd, "rb") as f:
        key = f.read()
    return key, socket.socket(fileno=sock_fd)


def from_broker(key_path: str, url: str) -> tuple[bytes, socket.socket]:
    """The key and the listener asked of the broker through the Python API."""
    import fdbroker

    with fdbroker.open(key_path, "rb") as f:  # the built-in open(), by the broker
        key = f.read()
    with fdbroker.Client() as broker:
        listener = broker.bind(url).socket()
    return key, listener


def try_by_myself(action) -> str:
    """"ok" or the errno name of what `action` raised."""
    try:
        action()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e))


def open_key_myself(path: str) -> None:
    os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))


def bind_privileged_myself(listener: socket.socket) -> None:
    host, port = listener.getsockname()[:2]
    with socket.socket(listener.family, socket.SOCK_STREAM) as s:
        s.bind((host, port - 1 if port > 1 else 1))  # another port below 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="the key's path (as the broker's rule names it)")
    parser.add_argument("--ask", metavar="URL", help="ask the broker for this socket and the key")
    args = parser.parse_args()

    key, listener = from_broker(args.key, args.ask) if args.ask else from_activation()
    facts = {
        "uid": os.getresuid(),
        "gid": os.getresgid(),
        "port": listener.getsockname()[1],
        "open_key_myself": try_by_myself(lambda: open_key_myself(args.key)),
        "bind_privileged_myself": try_by_myself(lambda: bind_privileged_myself(listener)),
    }
    print("ready", flush=True)  # the socket listens and the key is read
    with listener:
        while True:
            conn, _ = listener.accept()
            with conn, conn.makefile("rwb") as stream:
                challenge = stream.readline().rstrip(b"\n")
                mac = hmac.new(key, challenge, hashlib.sha256).hexdigest()
                stream.write(json.dumps({**facts, "hmac": mac}).encode() + b"\n")


if __name__ == "__main__":
    main()
