# SPDX-License-Identifier: LGPL-2.1-or-later
# Type stubs for the private extension fdbroker._fdbroker (see bind_*.cpp).
import builtins
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

# The broker client (bind_client.cpp); fdbroker/client.py is the public wrapper.
DEFAULT_SOCKET_PATH: Final[str]

def socket_path_from_env() -> str: ...

class Client:
    def __init__(self, path: str = "", timeout_ms: int | None = None) -> None: ...
    @property
    def timeout_ms(self) -> int | None: ...
    @timeout_ms.setter
    def timeout_ms(self, timeout_ms: int | None) -> None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def hello(self) -> str: ...
    def stats(self) -> str: ...
    def get(self, name: str, wait_ms: int | None = None) -> tuple[str, list[int]]: ...
    def take(self, name: str, wait_ms: int | None = None) -> tuple[str, list[int]]: ...
    def put(
        self,
        name: str,
        fds: Iterable[FileDescriptorLike],
        meta_json: str = "",
        ttl_ms: int | None = None,
        replace: bool = False,
        expect_generation: int | None = None,
    ) -> int: ...
    def remove(self, name: str) -> None: ...
    def list(self, prefix: str = "", page_size: int = 0) -> builtins.list[str]: ...
    def list_page(
        self, prefix: str = "", limit: int = 0, cursor: str | None = None
    ) -> tuple[builtins.list[str], str | None]: ...

# The restart handoff (bind_handoff.cpp); fdbroker/handoff.py is the public wrapper.
def open_listener(
    name: str,
    url: str,
    broker_socket: str = "",
    require_broker: bool = False,
    backlog: int = 4096,
    nonblocking: bool = False,
    meta_json: str = "",
    race_wait_ms: int = 5000,
) -> tuple[int, str, int, str]:
    """(fd, origin, generation, broker_error); the fd is the caller's."""

class Upgrader:
    def __init__(
        self, service: str, broker_socket: str = "", ready_timeout_ms: int = 30000
    ) -> None: ...
    @property
    def service(self) -> str: ...
    @property
    def has_broker(self) -> bool: ...
    @property
    def broker_error(self) -> str: ...
    @property
    def predecessor_generation(self) -> int: ...
    @property
    def predecessor_pid(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def is_ready(self) -> bool: ...
    @property
    def exit_requested(self) -> bool: ...
    @property
    def successor_pid(self) -> int: ...
    def wait_for_predecessor_exit(self, timeout_ms: int) -> bool: ...
    def put_state(self, fds: list[FileDescriptorLike], meta_json: str = "") -> int: ...
    def get_state(self, wait_ms: int = 0) -> tuple[str, list[int]] | None:
        """(entry JSON, fds) or None; the fds are the caller's."""
    def take_state(self, wait_ms: int = 0) -> tuple[str, list[int]] | None:
        """(entry JSON, fds) or None; the fds are the caller's."""
    def ready(self) -> None: ...
    def exit_fd(self) -> int: ...
    def upgrade(self, argv: list[str] = ...) -> int: ...
