#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Regenerates the seeds of tests/fuzz/corpus/{request,reply,restore} from a real
fdbrokerd: real requests, the replies it sent, and the state memfd and fdnames it
handed to "systemd" (a notify socket of ours, FDBROKER_FDSTORE=1).

    tests/fuzz/make_corpus.py build/dev/daemon/fdbrokerd

Only overwrites the files it writes (named real-*); hand-written seeds stay.
"""
import array
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
REPLY_SELECTOR = {"hello": 0, "get": 1, "take": 1, "put": 2, "delete": 3, "list": 4, "stats": 5}


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def recv_notify(sock, timeout):
    """Every notify message until `timeout` passes without one: [(text, [fds])]."""
    out = []
    sock.settimeout(timeout)
    while True:
        try:
            msg, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(253 * 4))
        except socket.timeout:
            return out
        fds = []
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(data[: len(data) - len(data) % a.itemsize])
                fds.extend(a)
        out.append((msg.decode(), fds))


def main():
    fdbrokerd = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="fdbroker-corpus-")
    sock_path = os.path.join(tmp, "broker.sock")
    notify_path = os.path.join(tmp, "notify")
    config = {
        "socket": {"path": sock_path, "mode": "0600"},
        "log_level": "warning",
        "entries": [
            {"name": "static/hostname", "type": "file", "path": "/etc/hostname", "flags": ["rdonly"],
             "meta": {"what": "a file the broker opens"}},
            {"name": "static/unix", "type": "unix", "path": os.path.join(tmp, "app.sock"),
             "socket_type": "seqpacket"},
        ],
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, INVOCATION_ID="corpus", FDBROKER_FDSTORE="1")
    broker = subprocess.Popen([fdbrokerd, "--config", os.path.join(tmp, "config.json")], env=env)
    try:
        for _ in range(100):
            if os.path.exists(sock_path):
                break
            time.sleep(0.05)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.connect(sock_path)
        r, w = os.pipe()
        memfd = os.memfd_create("seed")
        sp1, sp2 = socket.socketpair()
        s1, s2 = sp1.fileno(), sp2.fileno()
        requests = [
            ({"op": "hello", "id": 7}, []),
            ({"op": "put", "id": 7, "name": "app/pipe", "meta": {"role": "reader", "n": [1, 2.5, None]}}, [r]),
            ({"op": "put", "id": 7, "name": "app/two", "ttl_ms": 3600000}, [w, memfd]),
            ({"op": "put", "id": 7, "name": "app/sock", "replace": True, "expect_generation": 0}, [s1]),
            ({"op": "put", "id": 7, "name": "app/pipe", "replace": True, "meta": {"v": 2}}, [r]),
            ({"op": "get", "id": 7, "name": "app/two"}, []),
            ({"op": "get", "id": 7, "name": "static/unix"}, []),
            ({"op": "get", "id": 7, "name": "app/missing"}, []),
            ({"op": "get", "id": 7, "name": "app/missing", "wait_ms": 1}, []),
            ({"op": "take", "id": 7, "name": "app/sock"}, []),
            ({"op": "put", "id": 7, "name": "app/sock2"}, [s2]),
            ({"op": "list", "id": 7}, []),
            ({"op": "list", "id": 7, "prefix": "app/", "limit": 1}, []),
            ({"op": "list", "id": 7, "prefix": "app/", "limit": 2, "cursor": "app/pipe"}, []),
            ({"op": "delete", "id": 7, "name": "app/sock2"}, []),
            ({"op": "delete", "id": 7, "name": "static/hostname"}, []),
            ({"op": "stats", "id": 7}, []),
            ({"op": "frobnicate", "id": 7}, []),
            ({"id": 7, "name": "x"}, []),
            ({"op": "get", "id": 7, "name": "../etc"}, []),
        ]
        # The notify socket is read as we go: a datagram queue that fills up
        # (net.unix.max_dgram_qlen) would block the broker's sd_notify.
        notes = recv_notify(notify, 0.5)
        for i, (req, fds) in enumerate(requests):
            text = json.dumps(req, separators=(",", ":")).encode()
            c.sendmsg([text], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else [])
            reply, ancdata, _, _ = c.recvmsg(65536, socket.CMSG_SPACE(253 * 4))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(data[: len(data) - len(data) % a.itemsize])
                    for fd in a:
                        os.close(fd)
            notes += recv_notify(notify, 0.05)
            op = req.get("op", "hello")
            write("fuzz_request", f"real-{i:02d}-{op}", text)
            write("fuzz_reply", f"real-{i:02d}-{op}", bytes([REPLY_SELECTOR.get(op, 3)]) + reply)
        # The state the broker hands to the fd store (flushed by a timer), and the
        # fdnames of the descriptors it stored.
        stored = {}
        state = None
        notes += recv_notify(notify, 3.0)
        for text, fds in notes:
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            name = fields.get("FDNAME")
            if "FDSTORE" in fields and name:
                if name.startswith("state."):
                    with os.fdopen(os.dup(fds[0]), "rb") as f:
                        f.seek(0)  # the offset is shared, and at the end
                        state = (name, f.read())
                stored[name] = True
            if "FDSTOREREMOVE" in fields and name:
                stored.pop(name, None)
            for fd in fds:
                os.close(fd)
        assert state is not None, "no state memfd was sent"
        entry_names = sorted(n for n in stored if not n.startswith("state."))
        head = " ".join(["listen", state[0]] + entry_names).encode()
        write("fuzz_restore", "real-state", head + b"\n" + state[1])
        # The same state, a descriptor short (an entry lost), and with a stale state.
        write("fuzz_restore", "real-state-lost-fd", " ".join(["listen", state[0]] + entry_names[1:]).encode()
              + b"\n" + state[1])
        write("fuzz_restore", "real-state-two-seqs",
              " ".join(["state.0", "listen", state[0]] + entry_names).encode() + b"\n" + state[1])
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
