# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdbrokerd under a real systemd, with the shipped fdbroker.socket and the
shipped (hardened) fdbroker.service. The only test change to the units is a
drop-in that points ExecStart= at the built fdbrokerd and a test config (and,
for one test, a short WatchdogSec=)."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from wire import Connection

SOCKET = "/run/fdbroker/fdbroker.sock"
CONFIG = "/run/fdbroker-test/fdbroker.json"
PRIVILEGED_PORT = 81  # binding it needs CAP_NET_BIND_SERVICE: in the bounding set
STATIC_ENTRIES = [
    {"name": "test/privileged-tcp", "type": "tcp", "address": f"127.0.0.1:{PRIVILEGED_PORT}",
     "meta": {"role": "static"}},
    {"name": "test/os-release", "type": "file", "path": "/etc/os-release", "flags": ["rdonly"]},
]
STATUS = re.compile(r"^(\d+) entries, (\d+) fds, (\d+) clients$")
# CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_NET_BIND_SERVICE: fdbroker.service's CapabilityBoundingSet=.
EXPECTED_CAPABILITIES = (1 << 0) | (1 << 1) | (1 << 10)


@pytest.fixture(scope="session")
def unit_dir(fdbrokerd) -> Path:
    """The configured unit files in the build tree (systemd/CMakeLists.txt)."""
    path = Path(os.environ.get("FDBROKER_UNITDIR", fdbrokerd.parent.parent / "systemd"))
    assert (path / "fdbroker.service").is_file(), f"no configured fdbroker.service in {path}"
    return path


def free_gid() -> int:
    used = {int(line.split(":")[2]) for line in Path("/etc/group").read_text().splitlines() if line}
    return next(gid for gid in range(900, 1000) if gid not in used)


def broker_config(entries, extra=None) -> str:
    return json.dumps({"socket": {"path": SOCKET}, "log_level": "debug", "entries": entries,
                       **(extra or {})}, indent=2)


def sanitizer_environment() -> str:
    """Environment= lines passing a sanitizer build's settings (ASAN_OPTIONS: no
    leak check, which needs ptrace, which the units' SystemCallFilter= denies)
    into a service that runs one of the built binaries."""
    return "".join(f'Environment="{name}={os.environ[name]}"\n'
                   for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS") if name in os.environ)


@pytest.fixture
def broker_machine(boot, fdbrokerd, unit_dir):
    """broker_machine(service_extra=..., entries=..., start=...) -> Machine with
    fdbroker.socket listening (and whatever `start` adds)."""

    def start(service_extra: str = "", entries=STATIC_ENTRIES, start=("fdbroker.socket",),
              config=None, files=None):
        gid = free_gid()
        dropin = f"[Service]\nExecStart=\nExecStart={fdbrokerd} --config {CONFIG}\n"
        dropin += sanitizer_environment()
        dropin += service_extra  # may open another section
        machine = boot(
            units={
                "fdbroker.socket": (unit_dir / "fdbroker.socket").read_text(),
                "fdbroker.service": (unit_dir / "fdbroker.service").read_text(),
                "fdbroker.service.d/50-test.conf": dropin,
            },
            start=list(start),
            files={
                # fdbroker.socket's SocketGroup=, as fdbroker.sysusers would create it.
                "/etc/group": Path("/etc/group").read_text() + f"fdbroker:x:{gid}:\n",
                CONFIG: broker_config(entries, config),
                **(files or {}),
            })
        machine.fdbroker_gid = gid
        return machine

    return start


def service_state(machine, *props):
    return machine.show("fdbroker.service", *props)


def main_pid(machine) -> int:
    return int(service_state(machine, "MainPID")["MainPID"])


def notifications(machine, pid: int) -> list[str]:
    """The sd_notify messages systemd logged (at debug level) from pid, in order."""
    found = []
    for line in machine.journal("_PID=1", "-o", "cat").splitlines():
        m = re.search(rf"fdbroker\.service: Got notification message from PID {pid} \((.*)\)", line)
        if m:
            found.append(m.group(1))
    return found


def lifecycle(messages: list[str]) -> list[str]:
    """The start/reload/stop notifications, without watchdog pings and the fd
    store's FDSTORE=/FDSTOREREMOVE= traffic (test_fdstore.py covers that)."""
    return [m for m in messages if m != "WATCHDOG=1" and not m.startswith("FDSTORE")]


def debug_logging(machine) -> None:
    # systemd logs every notification message it gets at debug level.
    machine.systemctl("log-level", "debug")


def fd_inode(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def get_entry(machine, name: str) -> tuple[dict, list[int]]:
    with Connection(machine.path(SOCKET)) as conn:
        reply, fds = conn.request("get", name=name)
    assert reply.get("ok") is True, reply
    return reply, fds


def close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


def test_first_connect_activates_the_broker_on_systemds_socket(broker_machine):
    machine = broker_machine()
    assert machine.show("fdbroker.socket", "ActiveState")["ActiveState"] == "active"
    assert service_state(machine, "ActiveState", "MainPID") == {"ActiveState": "inactive",
                                                                "MainPID": "0"}
    st = os.stat(machine.path(SOCKET))
    assert stat.S_ISSOCK(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, machine.fdbroker_gid)

    with Connection(machine.path(SOCKET)) as conn:
        hello = conn.call("hello")
    assert (hello["server"], hello["protocol"], hello["peer"]["uid"]) == ("fdbrokerd", 1, 0)

    state = service_state(machine, "ActiveState", "SubState", "TriggeredBy", "NRestarts")
    assert state == {"ActiveState": "active", "SubState": "running",
                     "TriggeredBy": "fdbroker.socket", "NRestarts": "0"}
    # The broker serves the socket systemd made, not one of its own: the one
    # listening socket at the path is held by both systemd and fdbrokerd.
    pid = main_pid(machine)
    listening = machine.run_in_net("ss", "--unix", "--listening", "--processes", "--no-header",
                                   "src", SOCKET).stdout
    assert len(listening.splitlines()) == 1, listening
    assert '("systemd",pid=1,' in listening and f'("fdbrokerd",pid={pid},' in listening, listening
    assert os.stat(machine.path(SOCKET)).st_ino == st.st_ino


def test_start_returns_once_ready_with_entry_and_fd_counts_in_status(broker_machine):
    machine = broker_machine()
    debug_logging(machine)
    machine.systemctl("start", "fdbroker.service")  # a Type=notify start job waits for READY=1
    state = service_state(machine, "ActiveState", "SubState", "Type", "NotifyAccess", "StatusText")
    assert state.pop("StatusText") == "2 entries, 2 fds, 0 clients"
    assert state == {"ActiveState": "active", "SubState": "running", "Type": "notify",
                     "NotifyAccess": "main"}
    # The first message other than a watchdog ping (the shipped unit has WatchdogSec=).
    messages = lifecycle(notifications(machine, main_pid(machine)))
    assert messages and messages[0].startswith("READY=1"), messages


def test_status_follows_entries_put_and_deleted(broker_machine):
    machine = broker_machine()
    machine.systemctl("start", "fdbroker.service")
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        with Connection(machine.path(SOCKET)) as conn:
            put, _ = conn.request("put", fds=[read_end, write_end], name="test/pipe")
            assert put.get("ok") is True, put
            machine.wait_for(
                lambda: service_state(machine, "StatusText")["StatusText"].startswith(
                    "3 entries, 4 fds"),
                "STATUS= to count the entry put")
            conn.call("delete", name="test/pipe")
            machine.wait_for(
                lambda: service_state(machine, "StatusText")["StatusText"].startswith(
                    "2 entries, 2 fds"),
                "STATUS= to drop the deleted entry")
    finally:
        close_all([read_end, write_end])


def test_reload_reports_reloading_then_ready_and_keeps_static_sockets(broker_machine):
    machine = broker_machine()
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    _, fds = get_entry(machine, "test/privileged-tcp")
    tcp_before = fd_inode(fds[0])
    close_all(fds)
    listener_before = machine.run_in_net("ss", "-xlH", "src", SOCKET).stdout

    added = {"name": "test/added", "type": "file", "path": "/etc/hostname", "flags": ["rdonly"]}
    machine.path(CONFIG).write_text(broker_config([*STATIC_ENTRIES, added]))
    debug_logging(machine)
    machine.systemctl("reload", "fdbroker.service")

    # (The client count depends on whether the broker saw our last close before SIGHUP.)
    ready_again = re.compile(r"READY=1, STATUS=3 entries, 3 fds, \d+ clients")
    machine.wait_for(lambda: any(ready_again.fullmatch(m) for m in notifications(machine, pid))
                     and service_state(machine, "ActiveState")["ActiveState"] == "active",
                     "READY=1 after the reload")
    messages = lifecycle(notifications(machine, pid))
    assert [m.split(",")[0] for m in messages] == ["RELOADING=1", "READY=1"], messages
    assert main_pid(machine) == pid
    reply, fds = get_entry(machine, "test/added")
    close_all(fds)
    assert reply["fds"][0]["kind"] == "file"
    # The static listening socket was neither closed nor re-bound: same socket.
    _, fds = get_entry(machine, "test/privileged-tcp")
    assert fd_inode(fds[0]) == tcp_before
    close_all(fds)
    assert machine.run_in_net("ss", "-xlH", "src", SOCKET).stdout == listener_before


def test_watchdog_pings_keep_the_broker_running(broker_machine):
    machine = broker_machine(service_extra="WatchdogSec=2s\n")
    debug_logging(machine)
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    assert service_state(machine, "WatchdogUSec")["WatchdogUSec"] == "2s"
    time.sleep(7)  # more than three watchdog intervals
    state = service_state(machine, "ActiveState", "MainPID", "NRestarts", "Result")
    assert state == {"ActiveState": "active", "MainPID": str(pid), "NRestarts": "0",
                     "Result": "success"}
    pings = [m for m in notifications(machine, pid) if m == "WATCHDOG=1"]
    assert len(pings) >= 4, notifications(machine, pid)
    assert "Watchdog timeout" not in machine.journal("-u", "fdbroker.service")


def test_hardened_unit_confines_a_working_broker(broker_machine):
    machine = broker_machine()
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    status = dict(line.split(":\t", 1) for line in
                  machine.run("cat", f"/proc/{pid}/status").stdout.splitlines() if ":\t" in line)
    assert int(status["CapBnd"], 16) == EXPECTED_CAPABILITIES
    assert int(status["CapEff"], 16) == EXPECTED_CAPABILITIES
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # SystemCallFilter=
    mounts = machine.run("cat", f"/proc/{pid}/mountinfo").stdout.splitlines()
    # The last mount at a path is the one on top, the one the broker sees.
    # ProtectSystem=strict (+ ReadOnlyPaths=/run): nothing the broker could write,
    # not even the machine's writable /run; its /tmp is its own (PrivateTmp=).
    for path in ("/run/fdbroker/probe", "/etc/fdbroker-probe", "/var/lib/fdbroker-probe"):
        touch = machine.run("nsenter", "-t", str(pid), "-m", "touch", path, check=False)
        assert "Read-only file system" in touch.stderr, (path, touch)
    assert machine.run("nsenter", "-t", str(pid), "-m", "touch", "/tmp/probe",
                       check=False).returncode == 0
    assert not machine.path("/tmp/probe").exists()
    tmp = [line.split() for line in mounts if line.split()[4] == "/tmp"][-1]
    assert "systemd-private-" in tmp[3] and "fdbroker.service" in tmp[3], tmp  # PrivateTmp=

    # And it still does its job: a privileged port (CAP_NET_BIND_SERVICE) ...
    reply, fds = get_entry(machine, "test/privileged-tcp")
    try:
        assert reply["fds"][0]["local"] == f"127.0.0.1:{PRIVILEGED_PORT}", reply
        assert reply["fds"][0]["listening"] is True
        assert reply["meta"] == {"role": "static"}
    finally:
        close_all(fds)
    # ... and descriptors a client puts, received, held and handed back.
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    open_before = len(os.listdir("/proc/self/fd"))
    try:
        with Connection(machine.path(SOCKET)) as conn:
            put, _ = conn.request("put", fds=[write_end], name="test/pipe")
            assert put.get("ok") is True, put
            os.close(write_end)
            write_end = -1
            got, fds = conn.request("get", name="test/pipe")
            assert got.get("ok") is True and len(fds) == 1, got
            os.write(fds[0], b"through the hardened broker")
            close_all(fds)
            assert os.read(read_end, 100) == b"through the hardened broker"
            conn.call("delete", name="test/pipe")
        # The broker closed its copy of the write end: the pipe is at EOF.
        assert os.read(read_end, 100) == b""
    finally:
        close_all([fd for fd in (read_end, write_end) if fd >= 0])
    assert len(os.listdir("/proc/self/fd")) == open_before - 2


def test_stop_reports_stopping_and_the_socket_restarts_the_broker(broker_machine):
    machine = broker_machine()
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    debug_logging(machine)
    machine.systemctl("stop", "fdbroker.service")
    state = service_state(machine, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0",
                     "ExecMainCode": "1"}  # CLD_EXITED: it exited by itself, status 0
    assert "STOPPING=1" in notifications(machine, pid)
    # systemd kept the socket: the next client starts a new broker.
    assert machine.show("fdbroker.socket", "ActiveState")["ActiveState"] == "active"
    with Connection(machine.path(SOCKET)) as conn:
        assert conn.call("hello")["protocol"] == 1
    assert main_pid(machine) not in (0, pid)


def journal_records(machine, *match) -> list[dict]:
    out = machine.journal("-o", "json", *match)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_logs_reach_the_journal_with_priorities(broker_machine):
    machine = broker_machine()
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    records = journal_records(machine, f"_PID={pid}")
    ready = [r for r in records if r["MESSAGE"].startswith("ready: ")]
    assert ready and ready[0]["PRIORITY"] == "6", records  # info
    assert ready[0]["_SYSTEMD_UNIT"] == "fdbroker.service"
    with Connection(machine.path(SOCKET)) as conn:
        conn.call("hello")

    def priority_of(prefix):
        found = [r["PRIORITY"] for r in journal_records(machine, f"_PID={pid}")
                 if r["MESSAGE"].startswith(prefix)]
        return found[0] if found else None

    # The test config's log_level is debug: those lines arrive as debug (7).
    assert machine.wait_for(lambda: priority_of("client connected"), "the debug line") == "7"
    # A reload with a broken config is refused, logged as an error (3), and
    # changes nothing.
    machine.path(CONFIG).write_text('{"log_level": "loud"}')
    machine.systemctl("reload", "fdbroker.service")
    assert machine.wait_for(lambda: priority_of("reload failed"), "the reload error") == "3"
    assert service_state(machine, "ActiveState", "MainPID") == {"ActiveState": "active",
                                                                "MainPID": str(pid)}
    with Connection(machine.path(SOCKET)) as conn:
        conn.call("hello")


def test_invalid_config_fails_the_start_with_a_critical_message_and_status(broker_machine):
    machine = broker_machine()
    machine.path(CONFIG).write_text('{"limits": {"max_connections": 0}}')
    assert machine.systemctl("start", "fdbroker.service", check=False).returncode != 0
    state = service_state(machine, "ActiveState", "Result", "StatusText")
    assert state["ActiveState"] in ("failed", "activating"), state  # activating: Restart= pending
    assert state["StatusText"] == "Failed: invalid configuration", state
    records = journal_records(machine, "SYSLOG_IDENTIFIER=fdbrokerd")
    critical = [r["MESSAGE"] for r in records if r["PRIORITY"] == "2"]
    assert any("limits.max_connections" in m for m in critical), records


def test_units_verify_cleanly_and_rate_ok_for_exposure(broker_machine):
    machine = broker_machine()
    # --man=no: the units are booted from the build tree, their man pages (named by
    # Documentation=) are not installed; tests/package verifies them installed.
    verify = machine.run("systemd-analyze", "verify", "--man=no", "fdbroker.socket",
                         "fdbroker.service", check=False)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", ""), verify
    security = machine.run("systemd-analyze", "security", "--no-pager", "fdbroker.service",
                           check=False).stdout
    overall = re.search(r"Overall exposure level for fdbroker\.service: ([0-9.]+) (\w+)", security)
    assert overall and overall.group(2) in ("SAFE", "OK"), security
    print(overall.group(0))


def test_clients_connecting_during_restarts_are_all_served(broker_machine):
    """systemd keeps the listening socket across restarts: a connection made
    while no broker runs waits in its backlog for the next one, and a broker
    that stops answers what it already received. The one failure a client must
    expect is EPIPE on send (the stopping broker closed the connection before
    the request arrived: nothing was received, a retry is safe); ECONNRESET or
    EOF after the request was sent means the broker dropped a request."""
    import socket
    import threading

    # Ten restarts in a few seconds: more than systemd's default start limit.
    machine = broker_machine(service_extra="[Unit]\nStartLimitIntervalSec=0\n")
    machine.systemctl("start", "fdbroker.service")
    path = str(machine.path(SOCKET))
    served, retried, dropped = [], [], []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.settimeout(20)
                sock.connect(path)
                try:
                    sock.send(b'{"op": "hello"}')
                except BrokenPipeError:
                    retried.append(1)
                    continue
                try:
                    reply = json.loads(sock.recv(65536) or b"null")
                except OSError as e:
                    reply = f"{type(e).__name__}: {e}"
                (served if isinstance(reply, dict) and reply.get("ok") else dropped).append(reply)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        pids = {main_pid(machine)}
        for _ in range(10):
            machine.systemctl("restart", "fdbroker.service")
            pids.add(main_pid(machine))
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(f"10 restarts: {len(served)} served, {len(retried)} retried after EPIPE, "
          f"{len(dropped)} dropped")
    assert len(pids) == 11, pids  # ten real restarts
    assert served and dropped == [], (f"{len(served)} served, {len(retried)} retried after EPIPE, "
                                      f"{len(dropped)} dropped", dropped[:3])


def test_fdbrokerctl_in_the_machine_activates_the_broker_and_stores_a_socket(broker_machine,
                                                                               fdbrokerctl):
    machine = broker_machine()
    assert service_state(machine, "ActiveState")["ActiveState"] == "inactive"
    # The default socket path is the one fdbroker.socket listens on.
    hello = json.loads(machine.run(str(fdbrokerctl), "--json", "hello").stdout)
    assert (hello["server"], hello["protocol"], hello["peer"]["uid"]) == ("fdbrokerd", 1, 0), hello
    assert service_state(machine, "ActiveState")["ActiveState"] == "active"
    # A listening socket made by fdbrokerctl in the machine's network namespace.
    machine.run_in_net(str(fdbrokerctl), "put", "test/cli", "--listen", "tcp://127.0.0.1:8080",
                       "--meta", '{"by": "fdbrokerctl"}')
    listed = json.loads(machine.run(str(fdbrokerctl), "--json", "list", "test/").stdout)
    names = [e["name"] for e in listed]  # every page's entries, as one array
    assert names == ["test/cli", "test/os-release", "test/privileged-tcp"], listed
    reply, fds = get_entry(machine, "test/cli")
    try:
        assert reply["meta"] == {"by": "fdbrokerctl"}
        assert (reply["fds"][0]["local"], reply["fds"][0]["listening"]) == ("127.0.0.1:8080", True)
    finally:
        close_all(fds)


def test_watchdog_restarts_a_stuck_broker_and_the_socket_stays(broker_machine):
    # TimeoutAbortSec=: a stopped process cannot act on the watchdog's SIGABRT,
    # so systemd's SIGKILL comes after this instead of the unit's 10 s.
    machine = broker_machine(service_extra="WatchdogSec=2s\nTimeoutAbortSec=1s\n")
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    machine.run("kill", "-STOP", str(pid))  # the event loop stops: no more pings
    machine.wait_for(lambda: main_pid(machine) not in (0, pid) and
                     service_state(machine, "ActiveState")["ActiveState"] == "active",
                     "systemd to restart the stuck broker", timeout=20)
    assert service_state(machine, "NRestarts")["NRestarts"] == "1"
    assert "Watchdog timeout" in machine.journal("-u", "fdbroker.service")
    with Connection(machine.path(SOCKET)) as conn:
        assert conn.call("hello")["protocol"] == 1


def test_the_rule_roots_drop_in_example_makes_just_its_paths_writable(broker_machine):
    """systemd/fdbroker-rule-roots.conf.example, with its path replaced by one
    that exists in the machine: the unit verifies and the broker may write there,
    and nowhere else."""
    example = (Path(__file__).resolve().parents[2] / "systemd" /
               "fdbroker-rule-roots.conf.example").read_text()
    assert "\nReadWritePaths=/var/spool/app\n" in example
    root = "/run/fdbroker-test/spool"
    machine = broker_machine()
    machine.path(root).mkdir()
    machine.add_unit("fdbroker.service.d/60-rule-roots.conf",
                     example.replace("ReadWritePaths=/var/spool/app", f"ReadWritePaths={root}"))
    verify = machine.run("systemd-analyze", "verify", "--man=no", "fdbroker.service",
                         check=False)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", ""), verify
    machine.systemctl("start", "fdbroker.service")
    pid = main_pid(machine)
    machine.run("nsenter", "-t", str(pid), "-m", "touch", f"{root}/created")
    assert machine.path(f"{root}/created").exists()
    beside = machine.run("nsenter", "-t", str(pid), "-m", "touch", "/run/fdbroker-test/beside",
                         check=False)
    assert "Read-only file system" in beside.stderr, beside
