# SPDX-License-Identifier: LGPL-2.1-or-later
"""kcmp(2) for the tests that must tell whether two fds are one open file description
(the same socket or file, not merely the same inode): a descriptor that survived a
broker restart or upgrade must be the very one that went in."""

from __future__ import annotations

import ctypes
import os
import platform

# __NR_kcmp per architecture; the asm-generic table covers aarch64 and riscv64.
_SYS_KCMP = {"x86_64": 312, "aarch64": 272, "riscv64": 272, "i686": 349, "i386": 349,
             "armv7l": 378, "ppc64le": 354, "ppc64": 354, "s390x": 343}
_KCMP_FILE = 0
_libc = ctypes.CDLL(None, use_errno=True)


def same_open_file(fd_a: int, fd_b: int) -> bool:
    """kcmp(KCMP_FILE): do two fds of this process refer to one open file description?"""
    machine = platform.machine()
    if machine not in _SYS_KCMP:
        raise OSError(f"kcmp: no syscall number known for {machine}; add it to {__file__}")
    pid = os.getpid()
    r = _libc.syscall(_SYS_KCMP[machine], pid, pid, _KCMP_FILE, fd_a, fd_b)
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return r == 0
