# SPDX-License-Identifier: LGPL-2.1-or-later
"""The harness itself: a real systemd boots, confined, and runs notify and
socket-activated services; nothing of the machine is touched or left behind."""

import os
import socket
from pathlib import Path

import pytest

from systemd_harness import BootError, Machine, unit_text

SERVICE_SCRIPT = Path(__file__).resolve().parent / "echo_notify_service.py"
EXEC_ECHO = f"/usr/bin/python3 {SERVICE_SCRIPT}"


def echo_units(socket_path: str = "/run/echo/echo.sock") -> dict[str, str]:
    return {
        "echo.socket": unit_text({
            "Unit": {"Description": "harness echo socket", "DefaultDependencies": "no"},
            "Socket": {"ListenSequentialPacket": socket_path,
                       "FileDescriptorName": "echo-listen", "SocketMode": "0600"},
        }),
        "echo.service": unit_text({
            "Unit": {"Description": "harness echo service", "DefaultDependencies": "no"},
            "Service": {"Type": "notify", "NotifyAccess": "main", "ExecStart": EXEC_ECHO},
        }),
    }


def test_boot_is_confined_to_its_namespaces(boot, canaries):
    machine = boot({})
    assert machine.show("fdbroker-test.target", "ActiveState") == {"ActiveState": "active"}
    # systemd is PID 1 of its own PID namespace.
    assert machine.run("cat", "/proc/1/comm").stdout.strip() == "systemd"
    assert os.readlink(f"/proc/{machine.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{machine.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{machine.pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup")
    # Its /tmp, /var/tmp and /run are private tmpfs: the canaries are not visible.
    for canary in canaries:
        assert canary.exists()
        assert not machine.path(str(canary)).exists()
    mounts = machine.run("findmnt", "--noheadings", "--output", "TARGET,FSTYPE,OPTIONS",
                         "--list").stdout
    fstypes = {line.split()[0]: line.split()[1:] for line in mounts.splitlines()}
    for private in ("/tmp", "/var/tmp", "/run", "/dev"):
        assert fstypes[private][0] == "tmpfs", mounts
    assert fstypes["/sys/fs/cgroup"][0] == "cgroup2", mounts
    assert fstypes["/"][1].startswith("ro"), mounts
    # A file systemd writes to its /run is not in the machine's /run.
    assert machine.path("/run/systemd/private").is_socket()
    assert not Path("/run/systemd/system/fdbroker-test.target").exists()


def test_stop_leaves_no_process_and_no_cgroup(boot):
    machine = boot(echo_units(), start=["echo.socket"])
    cgroup = machine.cgroup
    pid = machine.pid
    assert (cgroup / "init.scope").is_dir()
    machine.stop()
    assert not machine.running
    assert not cgroup.exists() and machine.cgroup is None
    assert not Path(f"/proc/{pid}").exists()


def test_notify_service_is_active_with_its_status(boot):
    units = {"notify.service": unit_text({
        "Unit": {"Description": "harness notify service", "DefaultDependencies": "no"},
        "Service": {"Type": "notify", "NotifyAccess": "main", "ExecStart": EXEC_ECHO},
    })}
    machine = boot(units, start=["notify.service"])
    # Type=notify: the target (which wants the service) is only reached once
    # the start job finished, i.e. after READY=1 arrived.
    state = machine.show("notify.service", "ActiveState", "SubState", "StatusText", "Type")
    assert state == {"ActiveState": "active", "SubState": "running",
                     "StatusText": "idle", "Type": "notify"}
    machine.systemctl("stop", "notify.service")
    assert machine.show("notify.service", "ActiveState")["ActiveState"] == "inactive"


def test_socket_activation_starts_service_on_first_connect(boot):
    machine = boot(echo_units(), start=["echo.socket"])
    assert machine.show("echo.socket", "ActiveState")["ActiveState"] == "active"
    assert machine.show("echo.service", "ActiveState")["ActiveState"] == "inactive"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
        client.settimeout(10)
        client.connect(str(machine.path("/run/echo/echo.sock")))
        client.send(b"ping")
        assert client.recv(4096) == b"echo-listen:ping"
    state = machine.show("echo.service", "ActiveState", "StatusText", "TriggeredBy")
    assert state == {"ActiveState": "active", "StatusText": "serving fd 'echo-listen'",
                     "TriggeredBy": "echo.socket"}


def test_files_are_staged_in_the_machine_only(boot):
    group = Path("/etc/group").read_text(encoding="utf-8")
    machine = boot({}, files={"/etc/group": group + "fdbroker-harness:x:4242:\n",
                              "/run/harness/config.json": '{"x": 1}\n'})
    assert machine.run("getent", "group", "fdbroker-harness").stdout == "fdbroker-harness:x:4242:\n"
    assert "fdbroker-harness" not in Path("/etc/group").read_text(encoding="utf-8")
    assert machine.path("/run/harness/config.json").read_text() == '{"x": 1}\n'
    assert not Path("/run/harness").exists()


def test_machine_has_its_own_loopback_network(boot):
    machine = boot({})
    assert os.readlink(f"/proc/{machine.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    links = machine.run_in_net("ip", "-o", "link", "show").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert "UP" in machine.run_in_net("ip", "link", "show", "lo").stdout


def test_boot_that_never_reaches_the_target_fails_with_the_journal_and_cleans_up(tmp_path):
    units = {"never-ready.service": unit_text({
        "Unit": {"Description": "harness service that never reports READY=1",
                 "DefaultDependencies": "no"},
        "Service": {"Type": "notify", "ExecStart": "/bin/sleep 60", "TimeoutStartSec": "infinity"},
    })}
    machine = Machine(tmp_path, units, ["never-ready.service"])
    with pytest.raises(BootError) as failure:
        machine.boot(timeout=3)
    message = str(failure.value)
    assert "fdbroker-test.target is 'inactive', not active, at the deadline" in message
    # What systemd said on the console (the pty) and in the journal came along.
    assert "systemd 252" in message and "running in system mode" in message
    assert "--- journal ---" in message and "Journal started" in message
    assert not machine.running and machine.cgroup is None
