# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stand-in for fdbrokerd's `open` and `bind` (docs/protocol.md) that the client
tests talk to over a real AF_UNIX SOCK_SEQPACKET socket: it opens the file or binds
the socket itself, with no policy at all, answers as the protocol says, and records
every request. It tests what the clients send and do with the answer; what the
broker decides is tested against fdbrokerd (test_privsep_clients.py)."""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import threading
from typing import Any

OPEN_FLAGS = {
    "rdonly": os.O_RDONLY,
    "wronly": os.O_WRONLY,
    "rdwr": os.O_RDWR,
    "append": os.O_APPEND,
    "create": os.O_CREAT,
    "excl": os.O_EXCL,
    "trunc": os.O_TRUNC,
    "nonblock": os.O_NONBLOCK,
}


def _error(request: dict[str, Any], err: int, message: str) -> dict[str, Any]:
    return {"id": request.get("id"), "ok": False, "error": errno.errorcode[err], "message": message}


def _bound_socket(url: str) -> socket.socket:
    # Only what the tests use: tcp:// or udp:// with an IPv4 address.
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((host, int(port)))
        if kind == socket.SOCK_STREAM:
            sock.listen()
    except BaseException:
        sock.close()
        raise
    return sock


class StandInBroker:
    """Serves on a socket in a fresh directory until stop()."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fdbroker-standin-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "broker.sock")
        self.requests: list[dict[str, Any]] = []
        self.refuse: int | None = None  # an errno every request is refused with
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._listener.bind(self.socket)
        os.chmod(self.socket, 0o666)
        self._listener.listen()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # stop() closed the listener
            with conn:
                self._serve_connection(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            request = json.loads(data)
            self.requests.append(request)
            reply, fd = self._answer(request)
            try:
                socket.send_fds(conn, [json.dumps(reply).encode()], [] if fd is None else [fd])
            finally:
                if fd is not None:
                    os.close(fd)

    def _answer(self, request: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        if self.refuse is not None:
            return _error(request, self.refuse, "refused by the stand-in"), None
        try:
            if request["op"] == "open":
                flags = 0
                for name in request.get("flags", ["rdonly"]):
                    flags |= OPEN_FLAGS[name]
                mode = int(request.get("mode", "0600"), 8)
                fd = os.open(request["path"], flags | os.O_CLOEXEC | os.O_NOCTTY, mode)
                access = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}[flags & os.O_ACCMODE]
                return {
                    "id": request["id"],
                    "ok": True,
                    "path": request["path"],
                    "rule": "stand-in",
                    "created": False,
                    "fds": [{"kind": "file", "path": request["path"], "access": access}],
                }, fd
            if request["op"] == "bind":
                sock = _bound_socket(request["address"])
                host, port = sock.getsockname()
                description = {
                    "kind": "socket",
                    "family": "inet",
                    "type": "stream" if sock.type == socket.SOCK_STREAM else "dgram",
                    "listening": sock.type == socket.SOCK_STREAM,
                    "local": f"{host}:{port}",
                }
                return {
                    "id": request["id"],
                    "ok": True,
                    "address": request["address"],
                    "rule": "stand-in",
                    "fds": [description],
                }, sock.detach()
        except OSError as e:
            return _error(request, e.errno, str(e)), None
        return _error(request, errno.EINVAL, "not an op of the stand-in"), None

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)
        os.unlink(self.socket)
        os.rmdir(self.dir)
