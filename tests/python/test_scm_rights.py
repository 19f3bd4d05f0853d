# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbroker.sendfds/recvfds/socketpair/peer_credentials over real sockets and fds."""

from __future__ import annotations

import array
import errno
import gc
import os
import pydoc
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import fdbroker
from conftest import HasFileno, close_all, file_identity, is_cloexec, open_fd_count


def recv_nothing_waiting(sock: socket.socket) -> None:
    """Asserts that no message is queued on `sock`."""
    with pytest.raises(BlockingIOError):
        fdbroker.recvfds(sock, 64, dontwait=True)


def assert_passes(a: socket.socket, b: socket.socket, payload: bytes, sent: list[int],
                  maxfds: int) -> None:
    """Sends `payload` and `sent` from a; b receives the same payload and descriptors
    for the same open files, and once they are closed no descriptor is left over."""
    before = open_fd_count()
    fdbroker.sendfds(a, payload, sent)
    msg, fds = fdbroker.recvfds(b, maxfds)
    assert msg == payload
    assert [file_identity(fd) for fd in fds] == [file_identity(fd) for fd in sent]
    close_all(fds)
    assert open_fd_count() == before


def assert_errno(code: int, call, *args) -> None:
    """Asserts that call(*args) raises OSError with errno `code`."""
    with pytest.raises(OSError) as raised:
        call(*args)
    assert raised.value.errno == code


# --- payload and descriptors -------------------------------------------------


def test_payload_and_fds_arrive_on_every_socket_type(pair, pipe, tmp_path):
    a, b = pair
    r, w = pipe
    with open(tmp_path / "data", "w+b") as f:
        sent = [r, w, f.fileno()]
        before = open_fd_count()
        assert fdbroker.sendfds(a, b"payload \x00 bytes", sent) == len(b"payload \x00 bytes")
        msg, fds = fdbroker.recvfds(b, 1024)
        assert msg == b"payload \x00 bytes"
        assert isinstance(fds, list) and len(fds) == 3
        assert [file_identity(fd) for fd in fds] == [file_identity(fd) for fd in sent]
        assert not set(fds) & set(sent), "received fds must be new descriptors"
        assert open_fd_count() == before + 3
        close_all(fds)
        assert open_fd_count() == before


def test_received_fd_is_the_same_open_file(seqpacket, tmp_path):
    a, b = seqpacket
    with open(tmp_path / "shared", "w+b") as f:
        fdbroker.sendfds(a, b"x", [f])
        _, (fd,) = fdbroker.recvfds(b, 1)
        # One open file description: the write and the offset are shared.
        os.write(fd, b"written through the received fd")
        os.close(fd)
        assert f.tell() == len(b"written through the received fd")
        f.seek(0)
        assert f.read() == b"written through the received fd"


def wrap(kind: str, sock: socket.socket):
    if kind == "int":
        return sock.fileno()
    if kind == "socket":
        return sock
    if kind == "file object":
        return open(sock.fileno(), "r+b", buffering=0, closefd=False)
    return HasFileno(sock.fileno())


@pytest.mark.parametrize("kind", ["int", "socket", "file object", "object with fileno"])
def test_sock_may_be_any_kind_of_object(kind, seqpacket, pipe):
    a, b = seqpacket
    fdbroker.sendfds(wrap(kind, a), b"hi", [pipe[1]])
    msg, fds = fdbroker.recvfds(wrap(kind, b), 16)
    assert msg == b"hi"
    assert [file_identity(fd) for fd in fds] == [file_identity(pipe[1])]
    close_all(fds)


def test_fds_may_be_any_kind_of_object(seqpacket, pipe, tmp_path):
    a, b = seqpacket
    r, w = pipe
    extra_a, extra_b = socket.socketpair()
    with extra_a, extra_b, open(tmp_path / "f", "wb") as f:
        objects = [r, extra_a, f, HasFileno(w), extra_b.fileno()]
        expected = [file_identity(fd) for fd in (r, extra_a.fileno(), f.fileno(), w, extra_b.fileno())]
        fdbroker.sendfds(a, b"mixed", objects)
        msg, fds = fdbroker.recvfds(b, 16)
        assert msg == b"mixed"
        assert [file_identity(fd) for fd in fds] == expected
        close_all(fds)


def test_fds_may_be_any_iterable(seqpacket, pipe):
    a, b = seqpacket
    fdbroker.sendfds(a, b"gen", (fd for fd in pipe))
    _, fds = fdbroker.recvfds(b, 16)
    assert [file_identity(fd) for fd in fds] == [file_identity(fd) for fd in pipe]
    close_all(fds)


@pytest.mark.parametrize(
    "payload",
    [
        b"bytes",
        bytearray(b"bytearray"),
        memoryview(b"memoryview"),
        memoryview(b"--a slice--")[2:9],
        array.array("B", b"array"),
    ],
    ids=["bytes", "bytearray", "memoryview", "memoryview slice", "array"],
)
def test_msg_may_be_any_bytes_like_object(payload, pair):
    a, b = pair
    assert fdbroker.sendfds(a, payload) == len(bytes(payload))
    msg, fds = fdbroker.recvfds(b, 64)
    assert msg == bytes(payload)
    assert fds == []


def test_str_and_non_contiguous_payloads_are_rejected_before_sending(seqpacket):
    a, b = seqpacket
    with pytest.raises(TypeError):
        fdbroker.sendfds(a, "text is not bytes")
    with pytest.raises(BufferError):
        fdbroker.sendfds(a, memoryview(b"abcdef")[::2])
    recv_nothing_waiting(b)


def test_bad_fd_objects_raise_type_error_before_sending(seqpacket, pipe):
    a, b = seqpacket
    with pytest.raises(TypeError):
        fdbroker.sendfds(a, b"x", [pipe[0], "not an fd"])
    with pytest.raises(TypeError):
        fdbroker.sendfds(a, b"x", [HasFileno("not an int")])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fdbroker.sendfds(object(), b"x")
    recv_nothing_waiting(b)


def test_received_fds_are_close_on_exec(seqpacket, pipe):
    a, b = seqpacket
    for fd in pipe:
        os.set_inheritable(fd, True)  # the flag on the sender's side must not matter
    fdbroker.sendfds(a, b"x", pipe)
    _, fds = fdbroker.recvfds(b, 1)
    assert len(fds) == 2
    assert all(is_cloexec(fd) for fd in fds)
    close_all(fds)


def pass_write_end(seqpacket, pipe) -> tuple[int, int]:
    """Sends the pipe's write end across and closes ours: (read end, received copy)."""
    a, b = seqpacket
    r, w = pipe
    fdbroker.sendfds(a, b"x", [w])
    _, (received,) = fdbroker.recvfds(b, 1)
    os.close(w)
    return r, received


def test_received_fd_works_in_a_child_given_pass_fds(seqpacket, pipe):
    r, received = pass_write_end(seqpacket, pipe)
    child = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.write(int(sys.argv[1]), b'from the child')",
         str(received)],
        pass_fds=[received], check=False)
    os.close(received)
    assert child.returncode == 0
    # The child wrote through the received fd; with every write end now closed the
    # reader then sees end of file.
    assert os.read(r, 100) == b"from the child"
    assert os.read(r, 100) == b""


def test_received_fd_is_not_inherited_without_pass_fds(seqpacket, pipe):
    _, received = pass_write_end(seqpacket, pipe)
    child = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "try:\n    os.fstat(int(sys.argv[1]))\nexcept OSError as e:\n    sys.exit(e.errno)\n",
         str(received)],
        close_fds=False, check=False)
    os.close(received)
    assert child.returncode == errno.EBADF


def test_several_scm_rights_headers_give_all_fds_in_order(seqpacket, pipe, tmp_path):
    a, b = seqpacket
    r, w = pipe
    with open(tmp_path / "f", "wb") as f:
        a.sendmsg([b"two headers"], [
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r])),
            (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w, f.fileno()])),
        ])
        msg, fds = fdbroker.recvfds(b, 64)
        assert msg == b"two headers"
        assert [file_identity(fd) for fd in fds] == [file_identity(fd) for fd in (r, w, f.fileno())]
        close_all(fds)


def test_fds_arrive_beside_credentials_when_so_passcred_is_on(seqpacket, pipe):
    a, b = seqpacket
    b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    assert_passes(a, b, b"creds too", list(pipe), 64)


# --- limits ------------------------------------------------------------------


@pytest.fixture
def many_fds():
    """254 descriptors, 127 distinct pipes' ends (identity: inode + access mode)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    fds = [fd for _ in range(127) for fd in os.pipe()]
    yield fds
    close_all(fds)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_253_fds_in_one_message(pair, many_fds):
    a, b = pair
    assert fdbroker.MAX_FDS == 253
    assert_passes(a, b, b"253", many_fds[:253], 16)


def test_254_fds_are_rejected_before_sending(pair, many_fds):
    a, b = pair
    assert_errno(errno.E2BIG, fdbroker.sendfds, a, b"254", many_fds)
    recv_nothing_waiting(b)


def test_numfds_above_253_is_einval(seqpacket):
    assert_errno(errno.EINVAL, fdbroker.recvfds, seqpacket[1], 16, 254)


def test_negative_sizes_are_value_errors(seqpacket):
    with pytest.raises(ValueError):
        fdbroker.recvfds(seqpacket[1], -1)
    with pytest.raises(ValueError):
        fdbroker.recvfds(seqpacket[1], 16, -1)


# --- truncation --------------------------------------------------------------


def test_fd_truncation_raises_emsgsize_and_closes_what_arrived(pair, pipe):
    a, b = pair
    r, w = pipe
    # Five copies of the pipe's write end travel; the receiver takes room for two.
    fdbroker.sendfds(a, b"five", [w] * 5)
    os.close(w)
    before = open_fd_count()
    assert_errno(errno.EMSGSIZE, fdbroker.recvfds, b, 16, 2)
    assert open_fd_count() == before
    # Proof of closure: every write end is gone, so the reader sees end of file.
    assert os.read(r, 1) == b""


def test_fd_truncation_accepted_returns_what_arrived(pair, pipe):
    a, b = pair
    fdbroker.sendfds(a, b"five", [pipe[1]] * 5)
    before = open_fd_count()
    result = fdbroker.recvfds(b, 16, 2, accept_truncated=True)
    assert result.msg == b"five"
    assert result.fds_truncated is True
    assert len(result.fds) == 2
    assert all(file_identity(fd) == file_identity(pipe[1]) for fd in result.fds)
    assert open_fd_count() == before + 2
    close_all(result.fds)
    assert open_fd_count() == before


def test_no_fds_expected_but_some_sent_is_emsgsize_without_leak(seqpacket, pipe):
    a, b = seqpacket
    fdbroker.sendfds(a, b"surprise", [pipe[1]])
    before = open_fd_count()
    assert_errno(errno.EMSGSIZE, fdbroker.recvfds, b, 16, 0)
    assert open_fd_count() == before


@pytest.mark.parametrize("sock_type", [socket.SOCK_SEQPACKET, socket.SOCK_DGRAM],
                         ids=["seqpacket", "dgram"])
def test_payload_truncation_is_reported(sock_type, pipe):
    a, b = fdbroker.socketpair(sock_type)
    with a, b:
        fdbroker.sendfds(a, b"0123456789abcdef", [pipe[0]])
        result = fdbroker.recvfds(b, 10)
        assert result.msg == b"0123456789"
        assert result.msg_truncated is True
        assert result.fds_truncated is False
        assert len(result.fds) == 1  # the descriptors are not lost with the bytes
        close_all(result.fds)
        recv_nothing_waiting(b)  # the rest of the message is gone


def test_stream_keeps_the_rest_of_a_long_payload():
    a, b = fdbroker.socketpair(socket.SOCK_STREAM)
    with a, b:
        fdbroker.sendfds(a, b"0123456789abcdef")
        first = fdbroker.recvfds(b, 10)
        assert (first.msg, first.msg_truncated) == (b"0123456789", False)
        assert fdbroker.recvfds(b, 10).msg == b"abcdef"


def test_complete_message_is_not_marked_truncated(pair):
    a, b = pair
    fdbroker.sendfds(a, b"exact")
    result = fdbroker.recvfds(b, 5)
    assert (result.msg, result.msg_truncated, result.fds_truncated) == (b"exact", False, False)


# --- end of stream and errors -------------------------------------------------


def test_end_of_stream_is_empty_message_and_no_fds(connected_pair):
    a, b = connected_pair
    a.close()
    result = fdbroker.recvfds(b, 64)
    assert result == (b"", [])
    assert type(result.fds) is list


def test_closed_fd_is_ebadf(seqpacket, pipe):
    a, b = seqpacket
    r, w = pipe
    os.close(w)
    assert_errno(errno.EBADF, fdbroker.sendfds, a, b"x", [r, w])
    recv_nothing_waiting(b)
    assert_errno(errno.EBADF, fdbroker.sendfds, w, b"x")
    assert_errno(errno.EBADF, fdbroker.recvfds, w, 1)


def test_closed_socket_object_is_ebadf():
    a, b = fdbroker.socketpair()
    a.close()
    b.close()
    assert_errno(errno.EBADF, fdbroker.recvfds, a, 1)  # a closed socket's fileno() is -1


def test_negative_fd_is_ebadf(seqpacket):
    assert_errno(errno.EBADF, fdbroker.sendfds, seqpacket[0], b"x", [-1])


def test_regular_file_is_enotsock(tmp_path):
    with open(tmp_path / "plain", "w+b") as f:
        assert_errno(errno.ENOTSOCK, fdbroker.sendfds, f, b"x")
        assert_errno(errno.ENOTSOCK, fdbroker.recvfds, f, 1)


def test_errors_arrive_as_oserror_subclasses(connected_pair):
    a, b = connected_pair
    b.close()
    with pytest.raises(BrokenPipeError) as raised:
        fdbroker.sendfds(a, b"nobody listens")
    assert raised.value.errno == errno.EPIPE
    assert "sendfds" in str(raised.value)


def test_fd_out_of_int_range_is_overflow_error(seqpacket):
    with pytest.raises(OverflowError):
        fdbroker.sendfds(2**40, b"x")


# --- blocking, non-blocking, timeouts ----------------------------------------


def test_non_blocking_recv_raises_blocking_io_error(pair):
    a, b = pair
    b.setblocking(False)
    with pytest.raises(BlockingIOError) as raised:
        fdbroker.recvfds(b, 64)
    assert raised.value.errno == errno.EAGAIN
    with pytest.raises(BlockingIOError):
        fdbroker.recvfds(b.fileno(), 64)  # the fd itself is non-blocking


def test_dontwait_recv_on_a_blocking_socket_raises_blocking_io_error(pair):
    a, b = pair
    with pytest.raises(BlockingIOError):
        fdbroker.recvfds(b, 64, dontwait=True)
    fdbroker.sendfds(a, b"now there is one")
    assert fdbroker.recvfds(b, 64, dontwait=True).msg == b"now there is one"


def fill(sock: socket.socket, fds=()) -> int:
    """Sends until the socket is full; returns how many messages went."""
    sent = 0
    while True:
        try:
            fdbroker.sendfds(sock, b"f" * 1024, fds, dontwait=True)
        except BlockingIOError:
            return sent
        sent += 1
        assert sent < 100_000, "the socket never filled up"


@pytest.mark.parametrize("sock_type", [socket.SOCK_SEQPACKET, socket.SOCK_DGRAM],
                         ids=["seqpacket", "dgram"])
def test_full_non_blocking_send_raises_blocking_io_error_and_leaks_nothing(sock_type, pipe):
    a, b = fdbroker.socketpair(sock_type | socket.SOCK_NONBLOCK)
    with a, b:
        before = open_fd_count()
        count = fill(a, [pipe[1]])
        assert count > 0
        with pytest.raises(BlockingIOError) as raised:
            fdbroker.sendfds(a, b"one more", [pipe[1]])
        assert raised.value.errno == errno.EAGAIN
        for _ in range(count):
            msg, fds = fdbroker.recvfds(b, 2048)
            assert msg == b"f" * 1024 and len(fds) == 1
            close_all(fds)
        recv_nothing_waiting(b)
        assert open_fd_count() == before


def test_partial_write_on_a_stream_socket_is_reported(pipe):
    a, b = fdbroker.socketpair(socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    with a, b:
        payload = b"p" * (8 << 20)
        sent = fdbroker.sendfds(a, payload, [pipe[0]])
        assert 0 < sent < len(payload)
        # The descriptor travelled with the first byte.
        first = fdbroker.recvfds(b, 1)
        assert first.msg == b"p" and len(first.fds) == 1
        close_all(first.fds)


def test_blocking_stream_send_larger_than_the_buffer_sends_everything(alarm, pipe):
    # The binding first tries without waiting (MSG_DONTWAIT, GIL held); on a blocking
    # stream socket that stops when the buffer is full, and the rest must still go out
    # as one blocking sendmsg would send it, while another thread reads.
    a, b = fdbroker.socketpair(socket.SOCK_STREAM)
    with a, b:
        payload = os.urandom(4 << 20)
        received = bytearray()
        fds_received: list[int] = []

        def read_all():
            first = fdbroker.recvfds(b, 65536)
            received.extend(first.msg)
            fds_received.extend(first.fds)
            while len(received) < len(payload):
                received.extend(b.recv(1 << 20))

        reader = threading.Thread(target=read_all)
        reader.start()
        assert fdbroker.sendfds(a, payload, [pipe[0]]) == len(payload)
        reader.join()
        assert bytes(received) == payload
        assert [file_identity(fd) for fd in fds_received] == [file_identity(pipe[0])]
        close_all(fds_received)


def test_a_socket_whose_fileno_is_overridden_is_used_through_it(seqpacket):
    # The binding reads a plain socket.socket's descriptor without calling fileno();
    # a subclass's fileno() or one set on the instance must still be what counts.
    a, b = seqpacket

    class Redirected(socket.socket):
        def fileno(self):
            return a.fileno()

    with Redirected(socket.AF_UNIX, socket.SOCK_DGRAM) as by_class, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as plain:
        assert fdbroker.sendfds(by_class, b"by class") == len(b"by class")
        assert fdbroker.recvfds(b, 64) == (b"by class", [])

        class WithDict(socket.socket):
            pass

        with WithDict(socket.AF_UNIX, socket.SOCK_DGRAM) as by_instance:
            by_instance.fileno = a.fileno  # type: ignore[method-assign]
            assert fdbroker.sendfds(by_instance, b"by instance") == len(b"by instance")
            assert fdbroker.recvfds(b, 64) == (b"by instance", [])
        # And the plain one is its own socket: unconnected, so the send fails.
        with pytest.raises(OSError):
            fdbroker.sendfds(plain, b"nowhere")


def test_fileno_set_on_a_socket_class_after_use_is_honoured(seqpacket):
    # The binding remembers the last socket type it found plain; changing the type
    # afterwards (here: giving it a fileno()) must be noticed on the next call.
    a, b = seqpacket

    class Slotted(socket.socket):
        __slots__ = ()  # no instance __dict__: as plain as socket.socket itself

    with Slotted(socket.AF_UNIX, socket.SOCK_DGRAM) as unconnected:
        with pytest.raises(OSError):
            fdbroker.sendfds(unconnected, b"nowhere")
        Slotted.fileno = lambda self: a.fileno()  # type: ignore[method-assign]
        assert fdbroker.sendfds(unconnected, b"through a") == len(b"through a")
        assert fdbroker.recvfds(b, 64) == (b"through a", [])


def test_blocking_recv_releases_the_gil(alarm, seqpacket, pipe):
    # If recvfds held the GIL while waiting, this thread could not run to send the
    # message it waits for: the alarm fixture's watchdog would end the hung test.
    a, b = seqpacket
    results = []
    receiver = threading.Thread(target=lambda: results.append(fdbroker.recvfds(b, 64)))
    receiver.start()
    time.sleep(0.1)  # let it block in recvmsg
    assert receiver.is_alive()
    fdbroker.sendfds(a, b"woke you", [pipe[1]])
    receiver.join()
    [(msg, fds)] = results
    assert msg == b"woke you"
    assert [file_identity(fd) for fd in fds] == [file_identity(pipe[1])]
    close_all(fds)


def test_socket_timeout_raises_timeout_error(seqpacket):
    a, b = seqpacket
    b.settimeout(0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        fdbroker.recvfds(b, 64)
    # It waited rather than failing at once as a plain non-blocking call would.
    assert time.monotonic() - started >= 0.04


def test_socket_timeout_waits_for_a_message(seqpacket, pipe):
    a, b = seqpacket
    b.settimeout(30)
    sender = threading.Timer(0.05, fdbroker.sendfds, (a, b"in time", [pipe[0]]))
    sender.start()
    try:
        msg, fds = fdbroker.recvfds(b, 64)
    finally:
        sender.join()
    assert msg == b"in time"
    assert [file_identity(fd) for fd in fds] == [file_identity(pipe[0])]
    close_all(fds)


def test_zero_timeout_socket_raises_blocking_io_error(seqpacket):
    b = seqpacket[1]
    b.settimeout(0)
    with pytest.raises(BlockingIOError):
        fdbroker.recvfds(b, 64)


# --- signals (PEP 475) --------------------------------------------------------


def tick_every(seconds: float, handler) -> None:
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds, seconds)


def test_signal_during_blocking_recv_runs_handler_and_the_call_continues(alarm, seqpacket, pipe):
    a, b = seqpacket
    ticks = []

    def on_alarm(signum, frame):
        ticks.append(signum)
        # The first two ticks interrupt a recvmsg with nothing to read; the call must
        # run this handler and wait again. The third one sends the message.
        if len(ticks) == 3:
            signal.setitimer(signal.ITIMER_REAL, 0)
            fdbroker.sendfds(a, b"after three signals", [pipe[0]])

    tick_every(0.02, on_alarm)
    msg, fds = fdbroker.recvfds(b, 64)  # blocks; only a handler can ever send
    assert ticks == [signal.SIGALRM] * 3
    assert msg == b"after three signals"
    assert [file_identity(fd) for fd in fds] == [file_identity(pipe[0])]
    close_all(fds)


@pytest.fixture
def inner_message(pipe):
    """The socket a nested recvfds reads: b"inner" with both ends of `pipe` waits on it."""
    inner_a, inner_b = fdbroker.socketpair()
    fdbroker.sendfds(inner_a, b"inner", [pipe[0], pipe[1]])
    yield inner_b
    inner_a.close()
    inner_b.close()


def check_and_close_both(outer, inner, pipe) -> None:
    """outer is b"outer" with pipe's write end, inner b"inner" with both ends: each
    call kept its own descriptors. Closes them all."""
    (msg, fds), [(inner_msg, inner_fds)] = outer, inner
    try:
        assert (msg, inner_msg) == (b"outer", b"inner")
        assert [file_identity(fd) for fd in fds] == [file_identity(pipe[1])]
        assert [file_identity(fd) for fd in inner_fds] == [file_identity(pipe[0]),
                                                          file_identity(pipe[1])]
        assert len(set(fds) | set(inner_fds)) == 3  # no number handed out twice
    finally:
        close_all(fds + inner_fds)


def test_recvfds_nested_in_a_signal_handler_keeps_both_messages_fds(alarm, seqpacket, pipe,
                                                                    inner_message):
    # A handler run while recvfds waits may itself call recvfds: each call must keep
    # its own descriptors (the binding reuses per-thread storage between calls).
    a, b = seqpacket
    before = open_fd_count()
    inner = []

    def on_alarm(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 0)
        inner.append(fdbroker.recvfds(inner_message, 64))
        fdbroker.sendfds(a, b"outer", [pipe[1]])

    tick_every(0.02, on_alarm)
    outer = fdbroker.recvfds(b, 64)  # blocks until the handler has run
    check_and_close_both(outer, inner, pipe)
    assert open_fd_count() == before


def test_recvfds_run_by_a_finalizer_inside_recvfds_keeps_both_messages_fds(seqpacket, pipe,
                                                                         inner_message):
    # Python code can also run inside recvfds after the descriptors have arrived:
    # building the result allocates, which may start a garbage collection and a
    # finalizer. A recvfds made there must not touch the outer call's descriptors.
    a, b = seqpacket
    fdbroker.sendfds(a, b"outer", [pipe[1]])
    before = open_fd_count()
    inner = []

    class ReceivesWhenCollected:
        def __del__(self):
            inner.append(fdbroker.recvfds(inner_message, 64))

    old_threshold = gc.get_threshold()
    cycle = ReceivesWhenCollected()
    cycle.self = cycle
    del cycle
    gc.set_threshold(1)  # the next allocation of a tracked object collects the cycle
    try:
        outer = fdbroker.recvfds(b, 64)
    finally:
        gc.set_threshold(*old_threshold)
    check_and_close_both(outer, inner, pipe)
    assert open_fd_count() == before


def test_signal_during_blocking_send_runs_handler_and_the_call_continues(alarm, pipe):
    a, b = fdbroker.socketpair(socket.SOCK_DGRAM)
    with a, b:
        queued = fill(a)
        ticks = []

        def on_alarm(signum, frame):
            ticks.append(signum)
            if len(ticks) == 3:  # make room: the blocked send can then complete
                signal.setitimer(signal.ITIMER_REAL, 0)
                for _ in range(queued):
                    fdbroker.recvfds(b, 2048, dontwait=True)

        tick_every(0.02, on_alarm)
        assert fdbroker.sendfds(a, b"got through", [pipe[1]]) == len(b"got through")
        assert ticks == [signal.SIGALRM] * 3
        msg, fds = fdbroker.recvfds(b, 64)
        assert msg == b"got through"
        assert [file_identity(fd) for fd in fds] == [file_identity(pipe[1])]
        close_all(fds)


class Interrupted(Exception):
    pass


def test_exception_raised_by_a_signal_handler_propagates(alarm, seqpacket, pipe):
    a, b = seqpacket

    raised = []

    def on_alarm(signum, frame):
        # Disarmed by the first tick, which alone raises: on a busy machine a second
        # tick could otherwise land after pytest.raises and fail the test.
        signal.setitimer(signal.ITIMER_REAL, 0)
        if not raised:
            raised.append(signum)
            raise Interrupted()

    before = open_fd_count()  # gc.collect() in there can outlast a tick: count first
    tick_every(0.02, on_alarm)
    with pytest.raises(Interrupted):
        fdbroker.recvfds(b, 64)
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert open_fd_count() == before
    # The socket is still usable and nothing was lost.
    fdbroker.sendfds(a, b"still works", [pipe[0]])
    msg, fds = fdbroker.recvfds(b, 64)
    assert msg == b"still works" and len(fds) == 1
    close_all(fds)


# --- socketpair, credentials, docs -------------------------------------------


@pytest.mark.parametrize("sock_type", [socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM],
                         ids=["stream", "seqpacket", "dgram"])
def test_socketpair_returns_connected_close_on_exec_socket_objects(sock_type):
    a, b = fdbroker.socketpair(sock_type)
    with a, b:
        for s in (a, b):
            assert isinstance(s, socket.socket)
            assert s.family == socket.AF_UNIX
            assert s.type == sock_type
            assert not s.get_inheritable()
            assert is_cloexec(s.fileno())
            assert s.gettimeout() is None
        a.send(b"ping")
        assert b.recv(4) == b"ping"


def test_socketpair_defaults_to_seqpacket_and_accepts_nonblock():
    a, b = fdbroker.socketpair()
    with a, b:
        assert a.type == socket.SOCK_SEQPACKET
    a, b = fdbroker.socketpair(socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    with a, b:
        assert a.gettimeout() == 0.0
        with pytest.raises(BlockingIOError):
            fdbroker.recvfds(a, 1)


def test_socketpair_bad_type_is_oserror():
    with pytest.raises(OSError):
        fdbroker.socketpair(12345)


def test_peer_credentials_of_a_socketpair_are_our_own(seqpacket):
    creds = fdbroker.peer_credentials(seqpacket[0])
    assert creds == (os.getpid(), os.getuid(), os.getgid())
    assert (creds.pid, creds.uid, creds.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert isinstance(creds, fdbroker.Credentials)


def test_peer_credentials_name_the_connecting_process(tmp_path):
    path = str(tmp_path / "listen.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(path)
        server.listen()
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
             "s.connect(sys.argv[1])\n"
             "s.recv(1)\n",
             path])
        try:
            conn, _ = server.accept()
            with conn:
                creds = fdbroker.peer_credentials(conn)
                conn.send(b"k")
        finally:
            assert child.wait(timeout=30) == 0
    assert creds == (child.pid, os.getuid(), os.getgid())


def test_peer_credentials_without_a_peer_is_enotconn(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lonely:
        assert_errno(errno.ENOTCONN, fdbroker.peer_credentials, lonely)


def test_peer_groups_are_our_supplementary_groups(seqpacket):
    assert sorted(fdbroker.peer_groups(seqpacket[0])) == sorted(os.getgroups())


def test_help_explains_who_owns_received_fds():
    text = pydoc.render_doc(fdbroker.recvfds, renderer=pydoc.plaintext)
    assert "recvfds(sock, bufsize, numfds=253" in text
    assert "belongs to you" in text
    assert "close-on-exec" in text
    assert "EMSGSIZE" in text
