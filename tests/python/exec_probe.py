# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run by test_exec.py through `fdbrokerctl exec`: reports, as JSON on stdout, what
a socket-activated program would see: LISTEN_* and every descriptor it was given."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import sys


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False


def describe(fd: int) -> dict[str, object]:
    st = os.fstat(fd)
    out: dict[str, object] = {
        "fd": fd,
        "cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
        "target": os.readlink(f"/proc/self/fd/{fd}"),
    }
    if stat.S_ISSOCK(st.st_mode):
        with socket.socket(fileno=os.dup(fd)) as s:
            out["kind"] = "socket"
            out["listening"] = bool(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            out["family"] = s.family.name
            out["local"] = str(s.getsockname())
    elif stat.S_ISFIFO(st.st_mode):
        out["kind"] = "pipe"
    elif stat.S_ISREG(st.st_mode):
        out["kind"] = "file"
    else:
        out["kind"] = "other"
    return out


def main() -> None:
    # The listing includes the directory's own descriptor, closed by the time we
    # look again: keep only what is still open.
    open_fds = sorted(fd for fd in map(int, os.listdir("/proc/self/fd")) if is_open(fd))
    report = {
        "pid": os.getpid(),
        "env": {k: os.environ.get(k) for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")},
        "open_fds": open_fds,
        "fds": [describe(fd) for fd in open_fds if fd > 2],
        "argv": sys.argv[1:],
    }
    json.dump(report, sys.stdout)


main()
