# SPDX-License-Identifier: LGPL-2.1-or-later
"""Identity by systemd unit, under the shipped (hardened) fdbroker.service: two
services running as the same uid (nobody), only one of them named by an access
rule's "units", ask for the same entry; the broker tells them apart by the unit
it reads through SO_PEERPIDFD, and hello says which unit each one is in. The
same for `files` and `bind` rules naming a unit, under the shipped sandbox."""

from __future__ import annotations

import json
import os
import socket

import pytest

from systemd_harness import unit_text
from test_fdbroker_units import (SOCKET, broker_machine, journal_records, main_pid,  # noqa: F401
                                 unit_dir)


def _kernel_has_peer_pidfd() -> bool:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        try:
            pidfd = a.getsockopt(socket.SOL_SOCKET, 77)  # SO_PEERPIDFD
        except OSError:
            return False
    os.close(pidfd)
    return True


pytestmark = pytest.mark.skipif(
    not _kernel_has_peer_pidfd(),
    reason="this kernel has no SO_PEERPIDFD (Linux 6.5+): the broker cannot know units "
           "(CI's kernel has it: .ci/run checks)")

ALLOWED_UNIT = "fdbroker-test-allowed.service"
OTHER_UNIT = "fdbroker-test-other.service"
ENTRY = "test/for-one-unit"
ENTRIES = [
    {"name": ENTRY, "type": "file", "path": "/etc/os-release", "flags": ["rdonly"],
     # Both services are nobody: only the unit tells them apart.
     "access": [{"users": ["nobody"], "units": [ALLOWED_UNIT], "allow": ["get"]}]},
]

# What runs in each service: a hello and a get over the raw protocol, printed as
# one JSON object on stdout (systemd-run --pipe brings it back).
CLIENT = f"""
import json, os, socket
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sock.connect({SOCKET!r})
out = {{"uid": os.getuid(), "pid": os.getpid()}}
for op, fields in (("hello", {{}}), ("get", {{"name": {ENTRY!r}}})):
    sock.send(json.dumps({{"op": op, **fields}}).encode())
    data, fds, _, _ = socket.recv_fds(sock, 65536, 16)
    for fd in fds:
        os.close(fd)
    out[op] = json.loads(data)
    out[op + "_fds"] = len(fds)
print(json.dumps(out))
"""


def run_in_unit(machine, unit: str, script: str = CLIENT) -> dict:
    """`script` in a oneshot service `unit` as nobody, allowed on the broker's
    socket (0660, group fdbroker) by a supplementary group. (Not systemd-run:
    transient units need D-Bus, which the machine does not run.)"""
    client_path = f"/run/fdbroker-test/client-{unit}.py"
    client = machine.path(client_path)
    client.write_text(script, encoding="utf-8")
    client.chmod(0o644)
    output = f"/run/fdbroker-test/{unit}.json"
    machine.add_unit(unit, unit_text({
        "Unit": {"Description": f"fdbroker test client {unit}", "DefaultDependencies": "no"},
        "Service": {"Type": "oneshot", "User": "nobody", "Group": "nogroup",
                    "SupplementaryGroups": "fdbroker",
                    "ExecStart": f"/usr/bin/python3 {client_path}",
                    "StandardOutput": f"file:{output}"}}))
    machine.systemctl("start", unit)  # a oneshot's start returns once it has exited
    return json.loads(machine.path(output).read_text(encoding="utf-8"))


def test_a_units_rule_tells_apart_two_services_of_the_same_uid(broker_machine):
    machine = broker_machine(entries=ENTRIES)
    allowed = run_in_unit(machine, ALLOWED_UNIT)
    other = run_in_unit(machine, OTHER_UNIT)
    assert allowed["uid"] == other["uid"] == 65534
    broker = main_pid(machine)

    # hello reports each one's unit and cgroup.
    assert allowed["hello"]["peer"] == {
        "uid": 65534, "gid": 65534, "pid": allowed["pid"], "unit": ALLOWED_UNIT,
        "cgroup": f"/system.slice/{ALLOWED_UNIT}"}, allowed
    assert other["hello"]["peer"]["unit"] == OTHER_UNIT, other
    assert other["hello"]["peer"]["cgroup"] == f"/system.slice/{OTHER_UNIT}", other

    # The rule's unit gets the entry; the same uid in another unit does not.
    assert allowed["get"]["ok"] is True and allowed["get_fds"] == 1, allowed
    assert (other["get"]["ok"], other["get"]["error"], other["get_fds"]) == (False, "EACCES", 0)
    assert main_pid(machine) == broker  # one broker served both

    # The journal records each decision with the peer's unit, which journalctl
    # can match on.
    def decisions(unit):
        return [(r["FDBROKER_OP"], r["FDBROKER_NAME"], r["FDBROKER_RESULT"], r["FDBROKER_PEER_PID"])
                for r in journal_records(machine, f"_PID={broker}", f"FDBROKER_PEER_UNIT={unit}")]

    assert machine.wait_for(lambda: decisions(ALLOWED_UNIT), "the grant's record") == [
        ("get", ENTRY, "ok", str(allowed["pid"]))]
    assert machine.wait_for(lambda: decisions(OTHER_UNIT), "the denial's record") == [
        ("get", ENTRY, "EACCES", str(other["pid"]))]


def test_the_same_uid_in_no_unit_is_refused(broker_machine):
    """A process that systemd did not start (entered from outside the machine's
    cgroup namespace, as nsenter leaves it) is in no unit: a rule naming units
    does not match it."""
    machine = broker_machine(entries=ENTRIES)
    result = machine.run("setpriv", "--reuid=nobody", "--regid=nogroup",
                         f"--groups={machine.fdbroker_gid}", "--",
                         "/usr/bin/python3", "-c", CLIENT)
    got = json.loads(result.stdout)
    assert got["uid"] == 65534 and got["hello"]["peer"]["pid"] == got["pid"], got
    assert got["hello"]["peer"]["unit"] is None, got
    assert (got["get"]["ok"], got["get"]["error"], got["get_fds"]) == (False, "EACCES", 0)


def test_the_broker_sees_its_clients_units_under_any_group(broker_machine):
    """Why the shipped unit says ProtectProc=default: with "invisible" the broker
    sees other uids' processes only because it runs as group root (hidepid's
    exempt group); under another group its clients would be hidden from it, and
    no "units" rule would ever match."""
    machine = broker_machine(entries=ENTRIES, service_extra="Group=nogroup\n")
    allowed = run_in_unit(machine, ALLOWED_UNIT)
    gids = machine.run("grep", "^Gid:", f"/proc/{main_pid(machine)}/status").stdout.split()
    assert gids[1:] == ["65534"] * 4, gids
    assert allowed["hello"]["peer"]["unit"] == ALLOWED_UNIT, allowed
    assert allowed["get"]["ok"] is True, allowed


KEYS = "/run/fdbroker-test/keys"
PORT = 844  # privileged: only the broker (CAP_NET_BIND_SERVICE) may bind it
PRIVSEP_RULES = {
    "files": [{"name": "unit-keys", "root": KEYS, "match": ["*.key"], "users": ["nobody"],
               "units": [ALLOWED_UNIT], "allow": ["read"]}],
    "bind": [{"name": "unit-port", "address": f"tcp://127.0.0.1:{PORT}", "users": ["nobody"],
              "units": [ALLOWED_UNIT], "allow": ["bind"]}],
}

# What runs in each service this time: open a key only root can read, and bind
# a privileged port, through the broker; whether it could open the key itself.
PRIVSEP_CLIENT = f"""
import json, os, socket
sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
sock.connect({SOCKET!r})
out = {{"uid": os.getuid()}}
try:
    open({KEYS + "/site.key"!r}).close()
    out["own_open"] = "ok"
except OSError as e:
    out["own_open"] = e.errno
for op, fields in (("open", {{"path": {KEYS + "/site.key"!r}}}),
                   ("bind", {{"address": "tcp://127.0.0.1:{PORT}"}})):
    sock.send(json.dumps({{"op": op, **fields}}).encode())
    data, fds, _, _ = socket.recv_fds(sock, 65536, 16)
    out[op] = json.loads(data)
    if fds and op == "open":
        out["content"] = os.read(fds[0], 100).decode()
    if fds and op == "bind":
        out["port"] = socket.socket(fileno=os.dup(fds[0])).getsockname()[1]
    for fd in fds:
        os.close(fd)
print(json.dumps(out))
"""


def test_files_and_bind_rules_naming_a_unit_under_the_shipped_sandbox(broker_machine):
    """Two services as nobody ask the broker, running under the shipped unit's
    sandbox and capabilities, for a key only root can read and a privileged port:
    the one in the rules' unit gets both, the other EACCES for both."""
    machine = broker_machine(entries=[], config=PRIVSEP_RULES,
                             files={f"{KEYS}/site.key": "the key\n"})
    key = machine.path(f"{KEYS}/site.key")
    key.chmod(0o600)  # root's; the broker starts at the first connection, after this
    machine.path(KEYS).chmod(0o700)
    allowed = run_in_unit(machine, ALLOWED_UNIT, PRIVSEP_CLIENT)
    other = run_in_unit(machine, OTHER_UNIT, PRIVSEP_CLIENT)
    assert allowed["uid"] == other["uid"] == 65534
    assert allowed["own_open"] == other["own_open"] == 13, (allowed, other)  # EACCES by itself
    assert allowed["open"]["ok"] is True and allowed["open"]["rule"] == "unit-keys", allowed
    assert allowed["content"] == "the key\n", allowed
    assert allowed["bind"]["ok"] is True and allowed["port"] == PORT, allowed
    assert (other["open"]["ok"], other["open"]["error"]) == (False, "EACCES"), other
    assert (other["bind"]["ok"], other["bind"]["error"]) == (False, "EACCES"), other
    log = machine.journal("-u", "fdbroker.service", "-o", "cat")
    assert f"unit={ALLOWED_UNIT}: granted by rule 'unit-keys'" in log, log
    assert f"unit={OTHER_UNIT}: refused" in log, log
