# SPDX-License-Identifier: LGPL-2.1-or-later
# Type stubs for the private extension fdbroker._fdbroker (see bind_*.cpp).
import types
from typing import Any, Final, Iterable, final

from _typeshed import FileDescriptorLike, ReadableBuffer, structseq

__version__: Final[str]
MAX_FDS: Final[int]

@final
class RecvResult(structseq[Any], tuple[bytes, list[int]]):
    """RecvResult(msg, fds): what recvfds() received; the fds belong to the caller."""

    @property
    def msg(self) -> bytes: ...
    @property
    def fds(self) -> list[int]: ...
    @property
    def msg_truncated(self) -> bool: ...
    @property
    def fds_truncated(self) -> bool: ...

def sendfds(
    sock: FileDescriptorLike,
    msg: ReadableBuffer,
    fds: Iterable[FileDescriptorLike] = (),
    *,
    dontwait: bool = False,
) -> int: ...
def recvfds(
    sock: FileDescriptorLike,
    bufsize: int,
    numfds: int = 253,
    *,
    accept_truncated: bool = False,
    dontwait: bool = False,
) -> RecvResult: ...
def socketpair(type: int) -> tuple[int, int]: ...
def peer_credentials(sock: FileDescriptorLike) -> tuple[int, int, int]: ...
def peer_groups(sock: FileDescriptorLike) -> list[int]: ...

class _Fdsend(types.ModuleType):
    """The classic fdsend API (re-exported by fdbroker.fdsend)."""

    @staticmethod
    def sendfds(
        fd: FileDescriptorLike,
        msg: ReadableBuffer | str,
        flags: int = 0,
        fds: Iterable[FileDescriptorLike] | None = None,
    ) -> int: ...
    @staticmethod
    def recvfds(
        fd: FileDescriptorLike, len: int, flags: int = 0, numfds: int = 32
    ) -> tuple[bytes, tuple[int, ...]]: ...

fdsend: _Fdsend
