# SPDX-License-Identifier: LGPL-2.1-or-later
"""Wire protocol v1 spoken raw (docs/protocol.md), with nothing of ours between
the test and the broker: one JSON object per SOCK_SEQPACKET message, fds as
SCM_RIGHTS on the same message."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

MAX_MESSAGE = 64 * 1024
MAX_FDS = 253


class Connection:
    def __init__(self, path: Path | str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def request(self, op: str, fds: list[int] = (), **fields) -> tuple[dict, list[int]]:
        """Sends one request; returns the reply and the fds it carried (the
        caller owns and must close them)."""
        message = json.dumps({"op": op, **fields}).encode()
        if fds:
            socket.send_fds(self.sock, [message], list(fds))
        else:
            self.sock.send(message)
        data, received, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
        assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC), f"truncated reply, flags {flags:#x}"
        assert data, "the broker closed the connection instead of replying"
        return json.loads(data), received

    def call(self, op: str, **fields) -> dict:
        """A request that carries and receives no fds and must succeed."""
        reply, received = self.request(op, **fields)
        for fd in received:
            os.close(fd)
        assert not received, f"{op} unexpectedly returned {len(received)} fds"
        assert reply.get("ok") is True, f"{op} failed: {reply}"
        return reply
