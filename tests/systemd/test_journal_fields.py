# SPDX-License-Identifier: LGPL-2.1-or-later
"""Under the shipped fdbroker.service, stderr is the journal: the broker's audit
lines (access decisions, on-request opens and binds) arrive as records with
FDBROKER_* fields that journalctl can match on, and other lines with their
priority. (That a client's strings stay inside their own field, whatever they
hold, is tested in tests/unit/logging_test.cpp: the broker refuses names and
paths with control characters before any audit line.)"""

from __future__ import annotations

import json

from test_fdbroker_units import (SOCKET, broker_machine, journal_records, main_pid,  # noqa: F401
                                 unit_dir)

GRANTED = "test/for-nobody"
DENIED = "test/for-root"
ENTRIES = [
    {"name": GRANTED, "type": "file", "path": "/etc/os-release", "flags": ["rdonly"],
     "access": [{"users": ["nobody"], "allow": ["get"]}]},
    {"name": DENIED, "type": "file", "path": "/etc/os-release", "flags": ["rdonly"]},
]
# As nobody: a granted get, a denied get, a refused open (no files rules).
CLIENT = f"""
import json, os, socket
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sock.connect({SOCKET!r})
out = {{"uid": os.getuid(), "pid": os.getpid(), "replies": []}}
for op, fields in (("get", {{"name": {GRANTED!r}}}), ("get", {{"name": {DENIED!r}}}),
                   ("open", {{"path": "/etc/os-release"}})):
    sock.send(json.dumps({{"op": op, **fields}}).encode())
    data, fds, _, _ = socket.recv_fds(sock, 65536, 16)
    for fd in fds:
        os.close(fd)
    out["replies"].append(json.loads(data))
print(json.dumps(out))
"""


def test_audit_records_carry_fdbroker_fields_that_journalctl_matches(broker_machine):
    machine = broker_machine(entries=ENTRIES)
    machine.systemctl("start", "fdbroker.service")
    broker = main_pid(machine)
    result = machine.run("setpriv", "--reuid=nobody", "--regid=nogroup",
                         f"--groups={machine.fdbroker_gid}", "--",
                         "/usr/bin/python3", "-c", CLIENT)
    client = json.loads(result.stdout)
    assert client["uid"] == 65534, client
    replies = client["replies"]
    assert replies[0]["ok"] is True, replies
    assert [r.get("error") for r in replies[1:]] == ["EACCES"] * 2, replies

    def audits():
        return journal_records(machine, f"_PID={broker}", "FDBROKER_PEER_UID=65534")

    # The three audit records (the grant of a get is logged at debug, as the test
    # config's log_level is), found by journalctl's match on the field.
    records = machine.wait_for(lambda: (lambda found: found if len(found) >= 3 else None)(audits()),
                               "the three audit records")
    assert len(records) == 3, records
    for r in records:
        assert r["_SYSTEMD_UNIT"] == "fdbroker.service", r
        assert r["SYSLOG_IDENTIFIER"] == "fdbrokerd", r
        assert r["FDBROKER_PEER_PID"] == str(client["pid"]), r
        assert r["FDBROKER_PEER_UID"] == "65534", r
        assert r["FDBROKER_PEER_GID"] == "65534", r
        assert "FDBROKER_PEER_UNIT" not in r, r  # entered with nsenter: in no unit

    granted, denied, refused = records
    assert granted["MESSAGE"].startswith(f"granted get '{GRANTED}' to pid="), granted
    assert (granted["PRIORITY"], granted["FDBROKER_OP"], granted["FDBROKER_NAME"],
            granted["FDBROKER_RESULT"], granted["FDBROKER_RULE"]) == (
                "7", "get", GRANTED, "ok", "entries[0].access[0]"), granted

    assert denied["MESSAGE"].startswith(f"denied get '{DENIED}' to pid="), denied
    assert denied["MESSAGE"].endswith(": no rule grants it"), denied
    assert (denied["PRIORITY"], denied["FDBROKER_OP"], denied["FDBROKER_NAME"],
            denied["FDBROKER_RESULT"]) == ("6", "get", DENIED, "EACCES"), denied
    assert "FDBROKER_RULE" not in denied, denied  # no rule decided it

    assert refused["MESSAGE"].startswith("open '/etc/os-release' [rdonly] by pid="), refused
    assert (refused["PRIORITY"], refused["FDBROKER_OP"], refused["FDBROKER_PATH"],
            refused["FDBROKER_RESULT"]) == ("6", "open", "/etc/os-release", "EACCES"), refused
    assert "FDBROKER_NAME" not in refused and "FDBROKER_RULE" not in refused, refused

    # No record of another uid.
    assert journal_records(machine, f"_PID={broker}", "FDBROKER_PEER_UID=0") == []

    # Two matches at once, as an administrator would filter.
    matched = journal_records(machine, "-u", "fdbroker", "FDBROKER_PEER_UID=65534",
                              "FDBROKER_RESULT=EACCES")
    assert [r["FDBROKER_OP"] for r in matched] == ["get", "open"], matched

    # Lines that are no audit event carry their priority and no FDBROKER_ field.
    ready = [r for r in journal_records(machine, f"_PID={broker}")
             if r["MESSAGE"].startswith("ready: ")]
    assert ready and ready[0]["PRIORITY"] == "6", ready
    assert not [k for k in ready[0] if k.startswith("FDBROKER_")], ready[0]
