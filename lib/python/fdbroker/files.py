# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker.open: the built-in open(), with the file opened by fdbrokerd.

A privilege-separated service swaps

    with open("/etc/ssl/private/site.key", "rb") as f:

for

    with fdbroker.open("/etc/ssl/private/site.key", "rb") as f:

and nothing else: the broker (root) opens the file if a `files` rule of its
configuration allows this caller, and the service gets the same file object the
built-in would return. The mode strings are the built-in's ("r", "rb", "w", "a",
"x", "r+", "w+b", ...) and mean the same open(2) flags:

    r  O_RDONLY                     w  O_WRONLY|O_CREAT|O_TRUNC
    a  O_WRONLY|O_CREAT|O_APPEND    x  O_WRONLY|O_CREAT|O_EXCL
    +  O_RDWR instead of O_RDONLY/O_WRONLY

What differs from the built-in, on purpose:
  - A relative path is taken relative to the current directory, but the broker
    resolves no symlink, "." or ".." (ELOOP, EINVAL): pass the real path.
  - A created file gets the permission bits of the broker's rule (its "mode",
    default 0600), not 0o666 minus your umask; perm=0o640 asks for fewer.
  - No opener: the broker opens the file. closefd must be True (the built-in
    refuses False for a path too).
  - The broker's refusals arrive as the same OSError subclasses:
    PermissionError (no rule allows it), FileNotFoundError, FileExistsError, ...

Each call connects to the broker ($FDBROKER_SOCKET, else the default socket path)
and disconnects again, unless a connected fdbroker.Client is passed as client=
(reuse one when opening many files). Nothing is shared between calls, so it is
safe in threads and after fork().

It is not exported by `from fdbroker import *`, so that it never shadows the
built-in open by accident.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import IO, Any

from .client import Client

__all__: list[str] = []  # fdbroker.open is reached as fdbroker.open only

_NEWLINES = (None, "", "\n", "\r", "\r\n")


def _parse_mode(mode: str) -> tuple[int, str, bool]:
    """(open(2) flags, FileIO's raw mode, binary?) for a built-in open() mode,
    refusing what the built-in refuses, with its messages."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    chars = set(mode)
    if chars - set("rwxab+t") or len(chars) != len(mode):
        raise ValueError(f"invalid mode: '{mode}'")
    kinds = [c for c in "rwxa" if c in chars]
    if "t" in chars and "b" in chars:
        raise ValueError("can't have text and binary mode at once")
    if len(kinds) > 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if not kinds:  # the built-in leaves this one to FileIO, hence another message
        raise ValueError(
            "Must have exactly one of create/read/write/append mode and at most one plus"
        )
    kind = kinds[0]
    update = "+" in chars
    flags = {
        "r": os.O_RDONLY,
        "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
        "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    }[kind]
    if update:
        flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
    return flags, kind + ("+" if update else ""), "b" in chars


def _absolute(path: str | bytes | os.PathLike[Any]) -> bytes:
    raw = os.fsencode(path)  # TypeError for an int fd or anything else not a path
    if not raw:
        raise FileNotFoundError(2, "No such file or directory", path)
    return raw if raw.startswith(b"/") else os.path.join(os.getcwdb(), raw)


def open(  # noqa: A001 - the point is to be a drop-in for the built-in
    file: str | bytes | os.PathLike[Any],
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: None = None,
    *,
    perm: int | None = None,
    client: Client | None = None,
) -> IO[Any]:
    """Like the built-in open(file, mode, buffering, encoding, errors, newline,
    closefd, opener), with the file opened by fdbrokerd (see the module's help).
    closefd must be True, as the built-in requires for a path; there is no opener
    (the broker opens). perm: permission
    bits for a file the broker creates (modes w, a, x), masked by its rule's mode;
    None: the rule's mode. client: a connected fdbroker.Client to ask (None: a
    connection of its own for this call)."""
    flags, raw_mode, binary = _parse_mode(mode)
    # Everything the built-in would refuse is refused before the broker opens (or
    # creates) anything.
    if not isinstance(buffering, int):
        raise TypeError(f"'{type(buffering).__name__}' object cannot be interpreted as an integer")
    if binary and buffering == 1:
        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=2,
        )
        buffering = -1
    if binary:
        for name, value in (("an encoding", encoding), ("an errors", errors), ("a newline", newline)):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {name} argument")
    elif buffering == 0:
        raise ValueError("can't have unbuffered text I/O")
    if newline not in _NEWLINES:
        raise ValueError(f"illegal newline value: {newline!r}")
    if not closefd:
        raise ValueError("Cannot use closefd=False with file name")
    if opener is not None:
        raise ValueError("fdbroker.open takes no opener: the broker opens the file")
    if perm is not None and not flags & os.O_CREAT:
        raise ValueError("perm applies only to modes that create a file: w, a, x")
    path = _absolute(file)

    if client is None:
        with Client() as own:
            opened = own.open(path, flags, perm)
    else:
        opened = client.open(path, flags, perm)
    fd = opened.detach()
    try:
        raw = io.FileIO(fd, raw_mode, closefd=True)
    except BaseException:
        os.close(fd)  # FileIO does not close a descriptor it was given and refused
        raise
    try:
        return _layered(raw, file, mode, binary, buffering, encoding, errors, newline)
    except BaseException:
        raw.close()
        raise


def _layered(
    raw: io.FileIO,
    name: Any,
    mode: str,
    binary: bool,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
) -> IO[Any]:
    """What the built-in open() stacks on its FileIO: a buffer unless buffering is
    0, and a text layer unless binary; line buffering for buffering=1 in text mode
    and for a terminal by default."""
    raw.name = name  # the built-in's file objects are named by the path given
    line_buffering = False
    if buffering == 1 or (buffering < 0 and raw.isatty()):
        buffering = -1
        line_buffering = True
    if buffering < 0:
        blksize = getattr(raw, "_blksize", 0)
        buffering = blksize if blksize > 1 else io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        return raw  # binary: checked by the caller
    buffer: io.BufferedIOBase
    if raw.readable() and raw.writable():
        buffer = io.BufferedRandom(raw, buffering)
    elif raw.writable():
        buffer = io.BufferedWriter(raw, buffering)
    else:
        buffer = io.BufferedReader(raw, buffering)
    if binary:
        return buffer
    text = io.TextIOWrapper(
        buffer, io.text_encoding(encoding), errors, newline, line_buffering=line_buffering
    )
    text.mode = mode  # type: ignore[misc]  # the built-in sets it too
    return text
