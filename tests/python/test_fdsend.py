# SPDX-License-Identifier: LGPL-2.1-or-later
"""The classic fdsend API: its usage unchanged, and the fixes over the classic module."""

from __future__ import annotations

import array
import errno
import os
import socket

import pytest

import fdbroker
import fdsend
from conftest import HasFileno, close_all, file_identity, is_cloexec, open_fd_count
from fdbroker import fdsend as package_fdsend


@pytest.fixture(params=["ints", "socket objects"])
def classic_pair(request):
    """The classic module's own socketpair() (two ints), or socket objects."""
    if request.param == "ints":
        a, b = fdsend.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        yield a, b
        close_all((a, b))
    else:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with a, b:
            yield a, b


def test_classic_usage_twelve_dev_null_files(classic_pair):
    sock, peer = classic_pair
    devnull = os.stat("/dev/null")
    before = open_fd_count()

    # -- sender; send 12 files
    nulldevs = [open("/dev/null") for i in range(12)]
    fdsend.sendfds(sock, b"here you go!", fds=nulldevs)

    # -- recipient; receive up to 128-byte message, and up to 32 files
    (msg, fds) = fdsend.recvfds(peer, 128, numfds=32)

    assert msg == b"here you go!"
    assert len(fds) == 12
    for fd in fds:
        st = os.fstat(fd)
        assert (st.st_dev, st.st_ino, st.st_rdev) == (devnull.st_dev, devnull.st_ino, devnull.st_rdev)
    files = [os.fdopen(fileno) for fileno in fds]
    assert all(f.read() == "" for f in files)
    for f in files + nulldevs:
        f.close()
    assert open_fd_count() == before


def test_classic_exception_handling_enotsock():
    notasock = open("/dev/null")
    with notasock:
        try:
            fdsend.sendfds(notasock, b"This won't work!")
        except socket.error as e:
            assert e.errno == errno.ENOTSOCK
            assert e.args[0] == errno.ENOTSOCK
        else:
            pytest.fail("sendfds on /dev/null did not raise")
        with pytest.raises(OSError) as raised:
            fdsend.recvfds(notasock, 10)
        assert raised.value.errno == errno.ENOTSOCK


def test_top_level_module_is_the_package_module():
    assert fdsend.sendfds is package_fdsend.sendfds
    assert fdsend.recvfds is package_fdsend.recvfds
    assert fdsend.socketpair is package_fdsend.socketpair
    assert sorted(fdsend.__all__) == ["recvfds", "sendfds", "socketpair"]


def test_flags_is_the_third_positional_argument(classic_pair, pipe):
    a, b = classic_pair
    assert fdsend.sendfds(a, b"positional", 0, [pipe[0]]) == len(b"positional")
    msg, fds = fdsend.recvfds(b, 64, 0, 4)
    assert msg == b"positional"
    assert [file_identity(fd) for fd in fds] == [file_identity(pipe[0])]
    close_all(fds)


def test_keyword_arguments_have_the_classic_names(classic_pair, pipe):
    a, b = classic_pair
    fdsend.sendfds(fd=a, msg=b"kw", flags=0, fds=[pipe[1]])
    msg, fds = fdsend.recvfds(fd=b, len=64, flags=0, numfds=1)
    assert msg == b"kw" and len(fds) == 1
    close_all(fds)


def test_recvfds_returns_a_tuple_of_int_fds(classic_pair, pipe):
    a, b = classic_pair
    fdsend.sendfds(a, b"t", fds=pipe)
    result = fdsend.recvfds(b, 64)
    msg, fds = result
    assert isinstance(result, tuple) and len(result) == 2
    assert type(fds) is tuple and all(type(fd) is int for fd in fds)
    assert [file_identity(fd) for fd in fds] == [file_identity(fd) for fd in pipe]
    close_all(fds)


def test_no_fds_gives_an_empty_tuple(classic_pair):
    a, b = classic_pair
    fdsend.sendfds(a, b"plain")
    assert fdsend.recvfds(b, 64) == (b"plain", ())


def test_fd_and_fds_accept_every_kind_of_object(pipe, tmp_path):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b, open(tmp_path / "f", "wb") as f:
        fdsend.sendfds(HasFileno(a.fileno()), b"kinds", 0, [pipe[0], f, HasFileno(pipe[1]), b])
        msg, fds = fdsend.recvfds(b.fileno(), 64)
        expected = [file_identity(fd) for fd in (pipe[0], f.fileno(), pipe[1], b.fileno())]
        assert [file_identity(fd) for fd in fds] == expected
        close_all(fds)


def test_str_message_is_sent_utf8_encoded(classic_pair):
    a, b = classic_pair
    assert fdsend.sendfds(a, "h\u00e9llo") == len("h\u00e9llo".encode())
    assert fdsend.recvfds(b, 64)[0] == "h\u00e9llo".encode()


def test_bytes_like_messages(classic_pair):
    a, b = classic_pair
    for payload in (bytearray(b"ba"), memoryview(b"mv"), array.array("B", b"ar")):
        fdsend.sendfds(a, payload)
        assert fdsend.recvfds(b, 64)[0] == bytes(payload)


def test_end_of_stream():
    a, b = fdsend.socketpair()
    os.close(a)
    try:
        assert fdsend.recvfds(b, 64) == (b"", ())
    finally:
        os.close(b)


# --- flags ----------------------------------------------------------------------


def test_msg_dontwait_on_recv_raises_blocking_io_error(classic_pair):
    a, b = classic_pair
    with pytest.raises(BlockingIOError) as raised:
        fdsend.recvfds(b, 64, socket.MSG_DONTWAIT)
    assert raised.value.errno == errno.EAGAIN


def test_msg_dontwait_on_send_raises_blocking_io_error_when_full():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        with pytest.raises(BlockingIOError):
            for _ in range(100_000):
                fdsend.sendfds(a, b"x" * 1024, socket.MSG_DONTWAIT)


def test_always_on_flags_are_accepted(classic_pair, pipe):
    a, b = classic_pair
    fdsend.sendfds(a, b"ok", socket.MSG_NOSIGNAL, [pipe[0]])
    msg, fds = fdsend.recvfds(b, 64, socket.MSG_CMSG_CLOEXEC)
    assert msg == b"ok" and len(fds) == 1
    close_all(fds)


def test_unsupported_flags_are_einval_and_touch_nothing(classic_pair, pipe):
    a, b = classic_pair
    with pytest.raises(OSError) as raised:
        fdsend.sendfds(a, b"oob", socket.MSG_OOB, [pipe[0]])
    assert raised.value.errno == errno.EINVAL
    fdsend.sendfds(a, b"queued", 0, [pipe[0]])
    before = open_fd_count()
    with pytest.raises(OSError) as raised:
        fdsend.recvfds(b, 64, socket.MSG_PEEK)
    assert raised.value.errno == errno.EINVAL
    assert open_fd_count() == before
    # Neither call did anything: the one message queued is still whole.
    msg, fds = fdsend.recvfds(b, 64, socket.MSG_DONTWAIT)
    assert msg == b"queued" and len(fds) == 1
    close_all(fds)


# --- what the classic module got wrong -----------------------------------------


def test_ctrunc_is_detected_and_arrived_fds_are_closed(classic_pair, pipe):
    a, b = classic_pair
    r, w = pipe
    fdsend.sendfds(a, b"too many", fds=[w] * 8)
    os.close(w)
    before = open_fd_count()
    with pytest.raises(OSError) as raised:
        fdsend.recvfds(b, 64, numfds=3)
    assert raised.value.errno == errno.EMSGSIZE
    assert open_fd_count() == before
    assert os.read(r, 1) == b""  # every copy of the write end was closed


def test_default_numfds_is_32(classic_pair, pipe):
    a, b = classic_pair
    fdsend.sendfds(a, b"32", fds=[pipe[0]] * 32)
    msg, fds = fdsend.recvfds(b, 64)
    assert len(fds) == 32
    close_all(fds)
    fdsend.sendfds(a, b"33", fds=[pipe[0]] * 33)
    before = open_fd_count()
    with pytest.raises(OSError) as raised:
        fdsend.recvfds(b, 64)
    assert raised.value.errno == errno.EMSGSIZE
    assert open_fd_count() == before


def test_numfds_above_the_kernel_limit_is_capped(classic_pair, pipe):
    a, b = classic_pair
    fdsend.sendfds(a, b"x", fds=[pipe[0]])
    msg, fds = fdsend.recvfds(b, 64, 0, 1000)
    assert len(fds) == 1
    close_all(fds)


def test_received_fds_are_close_on_exec(classic_pair, pipe):
    a, b = classic_pair
    os.set_inheritable(pipe[0], True)
    fdsend.sendfds(a, b"x", fds=[pipe[0]])
    _, fds = fdsend.recvfds(b, 64)
    assert is_cloexec(fds[0])
    close_all(fds)


def test_socketpair_returns_two_close_on_exec_ints():
    a, b = fdsend.socketpair()
    try:
        assert type(a) is int and type(b) is int
        assert is_cloexec(a) and is_cloexec(b)
        s = socket.socket(fileno=os.dup(a))
        with s:
            assert (s.family, s.type) == (socket.AF_UNIX, socket.SOCK_STREAM)
        os.write(a, b"over the pair")
        assert os.read(b, 64) == b"over the pair"
    finally:
        close_all((a, b))
    a, b = fdsend.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0)
    close_all((a, b))


def test_several_scm_rights_headers_give_the_right_fds(pipe, tmp_path):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b, open(tmp_path / "f", "wb") as f:
        sent = [pipe[0], pipe[1], f.fileno(), a.fileno()]
        a.sendmsg([b"headers"], [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", sent[:1])),
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", sent[1:3])),
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", sent[3:])),
        ])
        msg, fds = fdsend.recvfds(b, 64)
        assert msg == b"headers"
        assert [file_identity(fd) for fd in fds] == [file_identity(fd) for fd in sent]
        close_all(fds)


def test_no_leak_and_nothing_sent_when_an_fd_argument_is_bad(pipe):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        before = open_fd_count()
        with pytest.raises(TypeError):
            fdsend.sendfds(a, b"x", 0, [pipe[0], 1.5])
        os.close(pipe[1])
        with pytest.raises(OSError) as raised:
            fdsend.sendfds(a, b"x", 0, [pipe[0], pipe[1]])
        assert raised.value.errno == errno.EBADF
        assert open_fd_count() == before - 1
        with pytest.raises(BlockingIOError):
            fdsend.recvfds(b, 64, socket.MSG_DONTWAIT)


def test_payload_truncation_is_visible_on_the_result(pipe):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        fdsend.sendfds(a, b"a longer message", fds=[pipe[0]])
        result = fdsend.recvfds(b, 4)
        assert result == (b"a lo", result[1])
        assert result.msg_truncated is True
        close_all(result[1])


def test_fdbroker_and_fdsend_interoperate(pipe):
    a, b = fdbroker.socketpair()
    with a, b:
        fdsend.sendfds(a, b"classic to new", 0, [pipe[0]])
        msg, fds = fdbroker.recvfds(b, 64)
        assert msg == b"classic to new" and len(fds) == 1
        close_all(fds)
        fdbroker.sendfds(b, b"new to classic", [pipe[1]])
        msg, fds = fdsend.recvfds(a, 64)
        assert msg == b"new to classic" and len(fds) == 1
        close_all(fds)
