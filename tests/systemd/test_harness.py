# SPDX-License-Identifier: LGPL-2.1-or-later
"""The harness itself: a real systemd boots, confined, and runs notify and
socket-activated services; nothing of the machine is touched or left behind."""

import errno
import os
import socket
import stat
import subprocess
import uuid
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


# -- a writable root (an overlay on the machine's root file system) --------------

def _is_whiteout(path: Path) -> bool:
    """overlayfs marks a deleted lower-layer path with a character device 0/0."""
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_without_writable_root_the_machine_has_no_root_changes(boot):
    machine = boot({})
    root_fstype = machine.run("findmnt", "--noheadings", "--output", "FSTYPE", "/").stdout
    assert root_fstype.strip() != "overlay"
    assert not machine.path("/.fdbroker-test-upper").exists()
    with pytest.raises(AssertionError, match="writable_root=True"):
        machine.root_changes()
    # / is read-only (test_boot_is_confined_to_its_namespaces checks the mount option).
    assert machine.run("touch", "/etc/fdbroker-harness-probe", check=False).returncode != 0


def test_writable_root_writes_land_in_the_upper_layer_only(boot):
    token = uuid.uuid4().hex[:12]
    etc_file = f"/etc/fdbroker-harness-{token}"
    local_file = f"/usr/local/share/fdbroker-harness-{token}/data"
    deleted = "/etc/issue.net"  # base-files ships it on every Debian
    assert Path(deleted).is_file()
    dpkg_status = Path("/var/lib/dpkg/status").read_bytes()

    machine = boot({}, writable_root=True)
    mounts = machine.run("findmnt", "--noheadings", "--output", "TARGET,FSTYPE,OPTIONS",
                         "--list").stdout
    fstypes = {line.split()[0]: line.split()[1:] for line in mounts.splitlines()}
    assert fstypes["/"][0] == "overlay" and fstypes["/"][1].startswith("rw"), mounts
    for read_only in ("/proc/sys", "/sys", "/.fdbroker-test-upper"):
        assert fstypes[read_only][1].startswith("ro"), mounts
    for private in ("/tmp", "/var/tmp", "/run", "/dev"):
        assert fstypes[private][0] == "tmpfs", mounts

    machine.run("sh", "-c", f"echo etc > {etc_file} && mkdir -p {Path(local_file).parent} "
                            f"&& echo local > {local_file} && rm {deleted}")
    assert machine.run("cat", etc_file, local_file).stdout == "etc\nlocal\n"
    assert machine.run("test", "-e", deleted, check=False).returncode == 1

    changes = machine.root_changes()
    assert changes == machine.path("/.fdbroker-test-upper")
    assert (changes / etc_file.lstrip("/")).read_text() == "etc\n"
    assert (changes / local_file.lstrip("/")).read_text() == "local\n"
    assert _is_whiteout(changes / deleted.lstrip("/"))
    # The machine's own root is untouched.
    assert not Path(etc_file).exists() and not Path(local_file).parent.exists()
    assert Path(deleted).is_file()
    # The upper layer is read-only, inside and from here.
    assert machine.run("touch", "/.fdbroker-test-upper/x", check=False).returncode != 0
    with pytest.raises(OSError) as refused:
        (changes / "x").write_text("x")
    assert refused.value.errno == errno.EROFS

    machine.stop()
    assert Path("/var/lib/dpkg/status").read_bytes() == dpkg_status
    assert Path(deleted).is_file()


PROBE = "fdbroker-harness-probe"  # the package's name, and its unit's and group's


def _build_probe_deb(directory: Path) -> Path:
    """A tiny package in the shape dh_installsystemd gives one: a data file, a
    unit enabled and started by its postinst, stopped by its prerm and
    forgotten by its postrm at purge; and a system group made by its postinst."""
    root = directory / PROBE
    scripts = {
        "postinst": f"""#!/bin/sh
set -e
if [ "$1" = configure ]; then
  addgroup --system {PROBE}
  deb-systemd-helper unmask {PROBE}.service
  deb-systemd-helper enable {PROBE}.service
  systemctl --system daemon-reload
  deb-systemd-invoke start {PROBE}.service
fi
""",
        "prerm": f"""#!/bin/sh
set -e
if [ "$1" = remove ]; then
  deb-systemd-invoke stop {PROBE}.service
fi
""",
        "postrm": f"""#!/bin/sh
set -e
systemctl --system daemon-reload
if [ "$1" = purge ]; then
  deb-systemd-helper purge {PROBE}.service
  deb-systemd-helper unmask {PROBE}.service
fi
""",
    }
    files = {
        "DEBIAN/control": (f"Package: {PROBE}\nVersion: 1.0\nArchitecture: all\n"
                           "Maintainer: fdbroker tests <root@localhost>\n"
                           "Description: fdbroker harness probe package\n"),
        f"usr/share/{PROBE}/hello": "hello from the probe package\n",
        f"lib/systemd/system/{PROBE}.service": unit_text({
            "Unit": {"Description": "fdbroker harness probe service"},
            "Service": {"ExecStart": "/bin/sleep infinity"},
            "Install": {"WantedBy": "multi-user.target"},
        }),
        **{f"DEBIAN/{name}": text for name, text in scripts.items()},
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    for name in scripts:
        (root / "DEBIAN" / name).chmod(0o755)
    deb = directory / f"{PROBE}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def test_dpkg_installs_and_purges_a_package_inside_a_writable_root(boot, tmp_path):
    dpkg_status = Path("/var/lib/dpkg/status").read_bytes()
    deb = _build_probe_deb(tmp_path)
    machine = boot({}, writable_root=True)
    machine.path(f"/run/{deb.name}").write_bytes(deb.read_bytes())

    machine.run("dpkg", "-i", f"/run/{deb.name}")
    state = machine.show(f"{PROBE}.service", "ActiveState", "SubState", "UnitFileState")
    assert state == {"ActiveState": "active", "SubState": "running",
                     "UnitFileState": "enabled"}, machine.diagnostics()
    hello = machine.run("cat", f"/usr/share/{PROBE}/hello").stdout
    assert hello == "hello from the probe package\n"
    assert machine.run("getent", "group", PROBE).stdout.startswith(f"{PROBE}:x:")
    assert "install ok installed" in machine.run("dpkg-query", "-s", PROBE).stdout
    changes = machine.root_changes()
    assert (changes / f"usr/share/{PROBE}/hello").is_file()
    assert (changes / f"var/lib/dpkg/info/{PROBE}.list").is_file()
    assert not Path(f"/usr/share/{PROBE}").exists()
    assert not Path(f"/lib/systemd/system/{PROBE}.service").exists()

    machine.run("dpkg", "--purge", PROBE)
    assert machine.run("test", "-e", f"/usr/share/{PROBE}", check=False).returncode == 1
    assert machine.show(f"{PROBE}.service", "LoadState", "ActiveState") == {
        "LoadState": "not-found", "ActiveState": "inactive"}
    assert machine.run("dpkg-query", "-s", PROBE, check=False).returncode != 0
    assert machine.changes_named(PROBE) == []

    machine.stop()
    assert Path("/var/lib/dpkg/status").read_bytes() == dpkg_status
    assert PROBE not in Path("/etc/group").read_text(encoding="utf-8")
