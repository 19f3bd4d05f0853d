# SPDX-License-Identifier: LGPL-2.1-or-later
"""A FUSE file system that can stop answering, for tests (root only).

Speaks the FUSE protocol on /dev/fuse directly (no libfuse): one directory with
regular files "f0", "f1", … (empty, mode 0644), every attribute and entry valid
for 0 s so that the kernel asks again each time (fstat → GETATTR). A thread
answers requests until stall() is called; from then on it reads requests and
never answers, as a hung or malicious FUSE daemon would: fstat() blocks in
GETATTR and close() in FLUSH. abort() ends the connection through fusectl
(/sys/fs/fuse/connections/N/abort): every waiting request fails and nothing
blocks any more. close() aborts (if needed) and unmounts; always call it (the
class is a context manager).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import tempfile
import threading

FUSE_LOOKUP = 1
FUSE_FORGET = 2
FUSE_GETATTR = 3
FUSE_OPEN = 14
FUSE_READ = 15
FUSE_STATFS = 17
FUSE_RELEASE = 18
FUSE_FLUSH = 25
FUSE_INIT = 26
FUSE_OPENDIR = 27
FUSE_READDIR = 28
FUSE_RELEASEDIR = 29
FUSE_ACCESS = 34
FUSE_INTERRUPT = 36
FUSE_DESTROY = 38
FUSE_BATCH_FORGET = 42

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid total_extlen padding
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
ROOT_ID = 1
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _attr(ino: int, mode: int, nlink: int) -> bytes:
    # struct fuse_attr: ino size blocks atime mtime ctime (u64) atimensec mtimensec
    # ctimensec mode nlink uid gid rdev blksize flags (u32)
    return struct.pack("<QQQQQQIIIIIIIIII", ino, 0, 0, 0, 0, 0, 0, 0, 0, mode, nlink, 0, 0, 0, 4096, 0)


def fusectl_dir() -> str:
    """/sys/fs/fuse/connections, mounting fusectl there if it is not yet."""
    path = "/sys/fs/fuse/connections"
    with open("/proc/self/mountinfo") as f:
        if any(line.split()[4] == path for line in f):
            return path
    if _libc.mount(b"none", path.encode(), b"fusectl", 0, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount fusectl on {path}: {os.strerror(e)}")
    return path


class StallFuse:
    def __init__(self, files: int = 8) -> None:
        self.files = files
        self.requests: dict[int, int] = {}  # opcode → how many seen
        self.stalled: dict[int, int] = {}  # opcode → how many left unanswered
        self._stalled = threading.Event()
        self._lock = threading.Lock()
        self.mountpoint = tempfile.mkdtemp(prefix="fdbroker-fuse-")
        self.dev = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        self.mounted = False
        self.aborted = False
        self.connection = ""
        options = f"fd={self.dev},rootmode=40000,user_id=0,group_id=0,allow_other"
        # The INIT request arrives only after mount(2) returns: answered by the thread.
        if _libc.mount(b"fdbroker-test", self.mountpoint.encode(), b"fuse.fdbrokertest",
                       MS_NOSUID | MS_NODEV, options.encode()) != 0:
            e = ctypes.get_errno()
            os.close(self.dev)
            os.rmdir(self.mountpoint)
            raise OSError(e, f"mount fuse on {self.mountpoint}: {os.strerror(e)}")
        self.mounted = True
        self._thread = threading.Thread(target=self._serve, name="stall-fuse", daemon=True)
        self._thread.start()
        try:
            st = os.stat(self.mountpoint)  # waits for INIT; the daemon answers it
            self.connection = os.path.join(fusectl_dir(), str(st.st_dev))
            if not os.path.isdir(self.connection):
                raise RuntimeError(f"no fusectl entry {self.connection} for the mount")
        except BaseException:
            self.close()
            raise

    def path(self, i: int) -> str:
        return os.path.join(self.mountpoint, f"f{i}")

    def mount_id(self) -> int:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == self.mountpoint:
                    return int(fields[0])
        raise RuntimeError("mount not in /proc/self/mountinfo")

    def stall(self) -> None:
        """From now on, requests are read and never answered."""
        self._stalled.set()

    def stalled_count(self, opcode: int) -> int:
        with self._lock:
            return self.stalled.get(opcode, 0)

    def waiting(self) -> int:
        """Requests the kernel has sent that are not answered ("waiting" in fusectl)."""
        with open(os.path.join(self.connection, "waiting")) as f:
            return int(f.read())

    def abort(self) -> None:
        if self.aborted or not self.connection:
            return
        with open(os.path.join(self.connection, "abort"), "w") as f:
            f.write("1")
        self.aborted = True

    def close(self) -> None:
        try:
            if self._stalled.is_set() or not self.connection:
                self.abort()
        finally:
            if self.mounted:
                if _libc.umount2(self.mountpoint.encode(), MNT_DETACH) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"umount {self.mountpoint}: {os.strerror(e)}")
                self.mounted = False
                self._thread.join(timeout=10)
                os.close(self.dev)
                os.rmdir(self.mountpoint)

    def __enter__(self) -> StallFuse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the daemon

    def _reply(self, unique: int, error: int = 0, body: bytes = b"") -> None:
        try:
            os.write(self.dev, OUT_HEADER.pack(OUT_HEADER.size + len(body), -error, unique) + body)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):  # interrupted/aborted meanwhile
                raise

    def _serve(self) -> None:
        while True:
            try:
                data = os.read(self.dev, 1 << 20 | 4096)
            except OSError as e:
                if e.errno == errno.EINTR or e.errno == errno.ENOENT:
                    continue
                return  # ENODEV: unmounted or aborted
            length, opcode, unique, nodeid, *_ = IN_HEADER.unpack_from(data)
            body = data[IN_HEADER.size:length]
            with self._lock:
                self.requests[opcode] = self.requests.get(opcode, 0) + 1
            if opcode in (FUSE_FORGET, FUSE_BATCH_FORGET):
                continue  # never answered
            if self._stalled.is_set():
                with self._lock:
                    self.stalled[opcode] = self.stalled.get(opcode, 0) + 1
                continue
            self._answer(opcode, unique, nodeid, body)

    def _answer(self, opcode: int, unique: int, nodeid: int, body: bytes) -> None:
        if opcode == FUSE_INIT:
            major, minor, max_readahead, flags = struct.unpack_from("<IIII", body)
            # struct fuse_init_out (minor 31 layout, 64 bytes), no optional features.
            out = struct.pack("<IIIIHHIIHHII", 7, 31, max_readahead, 0, 16, 12, 65536, 1, 32, 0, 0, 0)
            self._reply(unique, body=out + bytes(64 - len(out)))
        elif opcode == FUSE_LOOKUP:
            name = body.split(b"\0", 1)[0].decode(errors="replace")
            if nodeid == ROOT_ID and name.startswith("f") and name[1:].isdigit() and int(name[1:]) < self.files:
                ino = 2 + int(name[1:])
                # fuse_entry_out: nodeid generation entry_valid attr_valid (u64)
                # entry_valid_nsec attr_valid_nsec (u32), attr
                self._reply(unique, body=struct.pack("<QQQQII", ino, 1, 0, 0, 0, 0) + _attr(ino, 0o100644, 1))
            else:
                self._reply(unique, errno.ENOENT)
        elif opcode == FUSE_GETATTR:
            attr = _attr(nodeid, 0o40755, 2) if nodeid == ROOT_ID else _attr(nodeid, 0o100644, 1)
            self._reply(unique, body=struct.pack("<QII", 0, 0, 0) + attr)  # attr_valid 0
        elif opcode in (FUSE_OPEN, FUSE_OPENDIR):
            self._reply(unique, body=struct.pack("<QII", 0, 0, 0))  # fh, open_flags
        elif opcode in (FUSE_FLUSH, FUSE_RELEASE, FUSE_RELEASEDIR, FUSE_ACCESS):
            self._reply(unique)
        elif opcode in (FUSE_READ, FUSE_READDIR):
            self._reply(unique)  # empty: end of file / directory
        elif opcode == FUSE_STATFS:
            # fuse_kstatfs: blocks bfree bavail files ffree (u64) bsize namelen frsize padding spare[6]
            self._reply(unique, body=struct.pack("<QQQQQIIII", 0, 0, 0, 0, 0, 4096, 255, 4096, 0) + bytes(24))
        elif opcode == FUSE_INTERRUPT:
            pass  # the interrupted request is answered (or not) on its own
        elif opcode == FUSE_DESTROY:
            self._reply(unique)
        else:
            self._reply(unique, errno.ENOSYS)


CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def serve_in_private_namespace(socket_path: str) -> None:
    """A FUSE mount that only a private mount namespace sees, as a user's in a
    user namespace would be: mounts it, sends the fd of its file "f0" and the
    fusectl connection directory over the UNIX socket `socket_path`, then obeys
    "stall" and "exit" lines on that socket."""
    import socket

    _libc.unshare.argtypes = [ctypes.c_int]
    if _libc.unshare(CLONE_NEWNS) != 0 or _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"private mount namespace: {os.strerror(e)}")
    with StallFuse() as fs, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(socket_path)
        fd = os.open(fs.path(0), os.O_RDONLY | os.O_CLOEXEC)
        socket.send_fds(s, [fs.connection.encode() + b"\n"], [fd])
        os.close(fd)  # answered: the daemon still runs
        for line in s.makefile("r"):
            if line.strip() == "stall":
                fs.stall()
                s.sendall(b"stalled\n")
            elif line.strip() == "exit":
                break


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "private":
        serve_in_private_namespace(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} private SOCKET")
