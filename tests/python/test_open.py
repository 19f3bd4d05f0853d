# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker.open against the built-in open(): the same open(2) flags for every mode
string (the built-in's own, seen through its opener), the same refusals before
anything is asked of the broker, the same file objects, and no descriptor left
behind on any path. The broker is a stand-in here that opens the real file itself
and records what it was asked; test_privsep_clients.py does it with fdbrokerd."""

from __future__ import annotations

import builtins
import inspect
import io
import os
import warnings
from typing import Any

import pytest
from conftest import open_fd_count

import fdbroker

MODES = [
    base + plus + kind
    for base in "rwax"
    for plus in ("", "+")
    for kind in ("", "b", "t")
] + ["br", "+r", "tw+", "b+a"]


class StandInBroker:
    """Has Client.open's signature; opens the file here, as root would, and
    remembers each request."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int, int | None]] = []

    def open(self, path: bytes, flags: int, mode: int | None = None) -> fdbroker.Opened:
        self.calls.append((path, flags, mode))
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOCTTY, 0o600 if mode is None else mode)
        return fdbroker.Opened(fd=fd, path=os.fsdecode(path), rule="stand-in",
                               created=False, fd_info={"kind": "file"})


def builtin_flags(path: str, mode: str) -> int:
    """The flags the built-in open() passes to open(2) for `mode`, O_CLOEXEC aside."""
    seen: list[int] = []

    def opener(p: str, flags: int) -> int:
        seen.append(flags)
        return os.open(p, flags, 0o600)

    with builtins.open(path, mode, opener=opener):
        pass
    return seen[0] & ~os.O_CLOEXEC


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_string_asks_for_the_flags_the_builtin_uses(tmp_path, mode):
    path = str(tmp_path / "f")
    if "r" in mode:
        builtins.open(path, "w").close()
    expected = builtin_flags(path, mode)
    if "x" in mode:
        os.unlink(path)
    broker = StandInBroker()
    before = open_fd_count()
    with fdbroker.open(path, mode, client=broker) as f:
        reference_path = path + "2"
        if "r" in mode:
            builtins.open(reference_path, "w").close()
        with builtins.open(reference_path, mode) as reference:
            assert type(f) is type(reference)
            assert f.mode == reference.mode
            assert (f.readable(), f.writable()) == (reference.readable(), reference.writable())
        assert f.name == path
    assert broker.calls == [(path.encode(), expected, None)]
    assert open_fd_count() == before


@pytest.mark.parametrize(
    "mode", ["", "rw", "rr", "bt", "z", "r+a", "U", "rU", "wx", "++r", "rbb", "ax"]
)
def test_modes_the_builtin_refuses_are_refused_alike_before_asking(tmp_path, mode):
    path = str(tmp_path / "f")
    with pytest.raises(Exception) as builtin_error:
        builtins.open(path, mode)
    broker = StandInBroker()
    with pytest.raises(type(builtin_error.value)) as ours:
        fdbroker.open(path, mode, client=broker)
    assert str(ours.value) == str(builtin_error.value)
    assert broker.calls == []
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "rb", "encoding": "utf-8"},
        {"mode": "wb", "errors": "strict"},
        {"mode": "ab", "newline": "\n"},
        {"mode": "w", "buffering": 0},
        {"mode": "w", "newline": "x"},
        {"mode": 5},
        {"closefd": False},
    ],
)
def test_arguments_the_builtin_refuses_are_refused_before_asking(tmp_path, kwargs):
    path = str(tmp_path / "f")
    with pytest.raises((ValueError, TypeError)) as builtin_error:
        builtins.open(str(tmp_path / "builtin"), **kwargs)  # may create it before refusing
    broker = StandInBroker()
    with pytest.raises(type(builtin_error.value)):
        fdbroker.open(path, client=broker, **kwargs)
    assert broker.calls == []
    assert not os.path.exists(path)


def test_the_signature_is_the_builtins_plus_keyword_only_extras():
    ours = inspect.signature(fdbroker.open).parameters
    theirs = inspect.signature(builtins.open).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    assert all(p.kind is p.KEYWORD_ONLY for p in list(ours.values())[len(theirs):])
    with pytest.raises(ValueError, match="opener"):
        fdbroker.open("/x", opener=os.open, client=StandInBroker())


def test_perm_is_sent_only_for_modes_that_create(tmp_path):
    path = str(tmp_path / "f")
    broker = StandInBroker()
    with fdbroker.open(path, "x", perm=0o640, client=broker):
        pass
    assert broker.calls[0][2] == 0o640
    with pytest.raises(ValueError, match="perm"):
        fdbroker.open(path, "r", perm=0o640, client=broker)
    assert len(broker.calls) == 1


def test_text_reads_and_writes_like_the_builtin(tmp_path):
    path = str(tmp_path / "f")
    broker = StandInBroker()
    with fdbroker.open(path, "w", encoding="utf-8", newline="\r\n", client=broker) as f:
        f.write("é\n")
    with builtins.open(path, "rb") as f:
        assert f.read() == "é\r\n".encode()
    with fdbroker.open(path, "a", client=broker) as f:
        assert f.tell() == len("é\r\n".encode())  # 'a' starts at the end, as the built-in
    with fdbroker.open(path, "rb", buffering=0, client=broker) as f:
        assert isinstance(f, io.FileIO)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning):
            fdbroker.open(path, "rb", buffering=1, client=broker)


def test_a_relative_path_is_asked_for_as_the_absolute_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broker = StandInBroker()
    with fdbroker.open("rel", "w", client=broker) as f:
        assert f.name == "rel"
    assert broker.calls[0][0] == os.path.join(os.fsencode(tmp_path), b"rel")


def test_a_failure_after_the_broker_answered_closes_its_descriptor(tmp_path):
    path = str(tmp_path / "f")
    broker = StandInBroker()
    before = open_fd_count()
    with pytest.raises(LookupError):
        fdbroker.open(path, "w", encoding="no-such-codec", client=broker)
    assert len(broker.calls) == 1
    assert open_fd_count() == before


def test_refusals_arrive_as_the_builtins_errors(tmp_path):
    broker = StandInBroker()
    before = open_fd_count()
    with pytest.raises(FileNotFoundError):
        fdbroker.open(str(tmp_path / "missing"), client=broker)
    with pytest.raises(FileNotFoundError):
        fdbroker.open("", client=broker)
    with pytest.raises(TypeError):
        fdbroker.open(3, client=broker)  # type: ignore[arg-type]
    assert open_fd_count() == before


def test_without_a_client_it_connects_to_the_socket_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FDBROKER_SOCKET", str(tmp_path / "no-broker.sock"))
    before = open_fd_count()
    with pytest.raises(FileNotFoundError) as error:
        fdbroker.open("/etc/hostname")
    assert "no-broker.sock" in str(error.value)
    assert open_fd_count() == before


def test_star_import_does_not_shadow_the_builtin_open():
    namespace: dict[str, Any] = {}
    exec("from fdbroker import *", namespace)
    assert "open" not in namespace
    assert "open" not in fdbroker.__all__
    assert fdbroker.open is fdbroker.files.open
    assert "Opened" in namespace and "Bound" in namespace
