# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Debian packages as an administrator meets them: built by scripts/package,
checked by lintian, then installed with dpkg into a real systemd booted on a
writable overlay root (tests/systemd/README.md), used, restarted, upgraded in place
and purged.

Run with: FDBROKER_DEB_DIR=<dir> /usr/bin/python3 -m pytest tests/package  (as root;
ctest's package_tests does this, building the packages into <build>/deb first).
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "systemd"))

from systemd_harness import Machine  # noqa: E402

# What an administrator installs; the -dbgsym packages are built and linted too.
PACKAGES = ("libfdbroker0", "fdbroker", "libfdbroker-dev", "python3-fdbroker")
SOCKET = "/run/fdbroker/fdbroker.sock"
MEMBER = "alice"     # in group fdbroker
OUTSIDER = "mallory"  # not
# A broker that does not come up fails the command, not the test's 30 s limit
# (connect() to its socket would wait for it).
CTL = "fdbrokerctl --timeout 10"
# Long enough for dpkg's triggers (man-db, ldconfig, python byte-compiling).
DPKG_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict[str, Path]:
    """package name -> its .deb, built from this checkout by scripts/package (which
    fails on a lintian error) into $FDBROKER_DEB_DIR, or a temporary directory."""
    out = Path(os.environ.get("FDBROKER_DEB_DIR") or tmp_path_factory.mktemp("deb"))
    subprocess.run([str(ROOT / "scripts" / "package"), str(out)], check=True)
    found = {deb.name.split("_")[0]: deb for deb in out.glob("*.deb")}
    assert set(PACKAGES) <= set(found), sorted(found)
    return found


@pytest.fixture
def machine(tmp_path):
    booted = Machine(tmp_path / "machine", {}, [], writable_root=True)
    booted.workdir.mkdir()
    booted.boot()
    yield booted
    if booted.running:
        print(booted.diagnostics())
    booted.stop()


def as_user(machine: Machine, user: str, command: str, check: bool = True):
    """A shell command run inside as `user`, with that user's groups (runuser
    calls initgroups, as a login would)."""
    return machine.run("runuser", "-u", user, "--", "sh", "-c", command, check=check)


def main_pid(machine: Machine) -> int:
    return int(machine.show("fdbroker.service", "MainPID")["MainPID"])


def test_lintian_reports_no_errors(debs):
    changes = next(debs["fdbroker"].parent.glob("*.changes"))
    result = subprocess.run(["lintian", "--fail-on", "error", "--display-info", str(changes)],
                            capture_output=True, text=True)
    print(result.stdout, result.stderr)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert result.returncode == 0 and errors == [], result.stdout + result.stderr
    # lintian checks every file a .changes lists: all of debian/control's packages.
    listed = {line.split()[-1].split("_")[0] for line in changes.read_text().splitlines()
              if line.startswith(" ") and line.endswith(".deb")}
    with_binaries = ("fdbroker", "libfdbroker0", "python3-fdbroker")
    assert {*PACKAGES, *(f"{p}-dbgsym" for p in with_binaries)} == listed, listed


def test_depends_are_computed_from_the_binaries(debs):
    def depends(package: str) -> str:
        return subprocess.run(["dpkg-deb", "--field", str(debs[package]), "Depends"],
                              capture_output=True, text=True, check=True).stdout
    # dpkg-shlibdeps: the libraries each binary links, with versions.
    assert "libfdbroker0 (>= 0.1.0)" in depends("fdbroker")
    assert "libsystemd0" in depends("fdbroker") and "libspdlog" in depends("fdbroker")
    assert "libstdc++6" in depends("libfdbroker0")
    assert "libfdbroker0 (>= 0.1.0)" in depends("python3-fdbroker")
    # dh_python3: the interpreter the extension was built for.
    assert "python3 (>= 3.11~)" in depends("python3-fdbroker")
    # dh_installsysusers: what runs systemd-sysusers in the postinst.
    assert "systemd | systemd-standalone-sysusers" in depends("fdbroker")
    # The -dev package pins the library of the very same build.
    assert "libfdbroker0 (= 0.1.0)" in depends("libfdbroker-dev")


def test_install_use_restart_upgrade_and_purge_under_systemd(debs, machine):
    staged = []
    for package in PACKAGES:
        inside = f"/run/debs/{debs[package].name}"
        machine.path(inside).parent.mkdir(exist_ok=True)
        machine.path(inside).write_bytes(debs[package].read_bytes())
        staged.append(inside)

    # -- install: the group exists, the socket is enabled and listening, the
    #    service waits for its first client.
    # As the README says, with apt: it finds the dependencies already installed.
    machine.run("apt-get", "install", "-y", "-q", *staged,
                timeout=DPKG_TIMEOUT)
    installed = {}
    for package in PACKAGES:
        status = machine.run("dpkg-query", "-W", "-f", "${Status}", package).stdout
        assert status == "install ok installed", (package, status)
        installed[package] = machine.run("dpkg-query", "-L", package).stdout.split("\n")
    group = machine.run("getent", "group", "fdbroker").stdout.split(":")
    assert 0 < int(group[2]) < 1000, group  # a system group
    assert machine.show("fdbroker.socket", "ActiveState", "UnitFileState") == {
        "ActiveState": "active", "UnitFileState": "enabled"}
    assert machine.show("fdbroker.service", "ActiveState")["ActiveState"] == "inactive"
    # Installed with their man pages, which their Documentation= names.
    assert machine.run("systemd-analyze", "verify", "fdbroker.socket", "fdbroker.service",
                       "fdbroker-metrics.service", "fdbroker-metrics.timer").stderr == ""
    assert machine.run("stat", "-c", "%U %G %a %F", SOCKET).stdout.strip() == \
        "root fdbroker 660 socket"
    assert "/etc/fdbroker/fdbroker.json" in machine.run(
        "dpkg-query", "-W", "-f", "${Conffiles}", "fdbroker").stdout
    # The timer is installed but, like node_exporter's, left to the administrator.
    assert machine.show("fdbroker-metrics.timer", "UnitFileState")["UnitFileState"] == "disabled"

    # -- the first client activates the service; only members may connect.
    machine.run("useradd", "--system", "--no-create-home", "--groups", "fdbroker", MEMBER)
    machine.run("useradd", "--system", "--no-create-home", OUTSIDER)
    hello = json.loads(as_user(machine, MEMBER, f"{CTL} --json hello").stdout)
    uid = int(machine.run("id", "-u", MEMBER).stdout)
    assert hello["peer"]["uid"] == uid, hello
    assert machine.show("fdbroker.service", "ActiveState")["ActiveState"] == "active"
    refused = as_user(machine, OUTSIDER, f"{CTL} hello", check=False)
    assert refused.returncode != 0 and "EACCES" in refused.stdout + refused.stderr, refused
    # The installed configuration started it without a warning under the unit's sandbox.
    journal = ("journalctl", "--no-pager", "-q", "-o", "cat", "-u", "fdbroker.service")
    assert "ready:" in machine.run(*journal).stdout
    assert machine.run(*journal, "-p", "warning").stdout == ""

    # -- put and get as a member (the installed configuration lets members put under
    #    shared/): an open file description of the member's own.
    secret = "put by alice\n"
    as_user(machine, MEMBER, f"umask 077 && printf %s {shlex.quote(secret)} > /tmp/{MEMBER}-note")
    as_user(machine, MEMBER, f"{CTL} put shared/{MEMBER} --file /tmp/{MEMBER}-note")
    # Through /dev/fd: a new description of the file at offset 0 each time (the
    # entry's own offset moves with every read); the file is deleted by then.
    read_back = f"{CTL} exec --get shared/{MEMBER} -- cat /dev/fd/3"
    machine.run("rm", f"/tmp/{MEMBER}-note")  # only the broker's descriptor is left
    assert as_user(machine, MEMBER, read_back).stdout == secret
    outsider_get = as_user(machine, OUTSIDER, f"{CTL} get shared/{MEMBER}", check=False)
    assert outsider_get.returncode != 0

    # -- systemctl restart keeps the entries (systemd's fd store).
    before = main_pid(machine)
    machine.systemctl("restart", "fdbroker")
    assert main_pid(machine) not in (0, before)
    assert as_user(machine, MEMBER, read_back).stdout == secret

    # -- an upgrade in place (the same packages again: the postinst's "configure
    #    <old version>") restarts the running service and keeps its entries; the
    #    socket is never restarted (that would stop the service and empty its fd
    #    store), so it is the same socket file.
    socket_inode = machine.run("stat", "-c", "%i", SOCKET).stdout
    before = main_pid(machine)
    machine.run("dpkg", "-i", *staged, timeout=DPKG_TIMEOUT)
    assert main_pid(machine) not in (0, before)
    assert machine.run("stat", "-c", "%i", SOCKET).stdout == socket_inode
    assert as_user(machine, MEMBER, read_back).stdout == secret

    # -- the other packages work from their installed places.
    python = ("import fdbroker, fdsend; "
              f"print(fdbroker.Client().get('shared/{MEMBER}').fd_info[0]['path'])")
    assert as_user(machine, MEMBER, f"python3 -c {shlex.quote(python)}").stdout.startswith(
        f"/tmp/{MEMBER}-note")
    program = ('#include <fdbroker/fdbroker.hpp>\n#include <cstdio>\n'
               'int main() { fdbroker::Client c; c.connect();\n'
               '  std::printf("%s %d\\n", c.hello().version.c_str(), (int)c.hello().peer.uid); }\n')
    machine.path("/run/probe/probe.cpp").parent.mkdir()
    machine.path("/run/probe/probe.cpp").write_text(program, encoding="utf-8")
    machine.run("sh", "-c", "g++ -std=c++17 -o /run/probe/by-pkg-config /run/probe/probe.cpp "
                "$(pkg-config --cflags --libs fdbroker)", timeout=120)
    assert as_user(machine, MEMBER, "/run/probe/by-pkg-config").stdout == f"0.1.0 {uid}\n"
    machine.path("/run/probe/CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\nproject(probe CXX)\n"
        "find_package(fdbroker 0.1 REQUIRED)\nadd_executable(by-cmake probe.cpp)\n"
        "target_link_libraries(by-cmake PRIVATE fdbroker::fdbroker)\n", encoding="utf-8")
    machine.run("sh", "-c", "cmake -S /run/probe -B /run/probe/build >/dev/null && "
                "cmake --build /run/probe/build", timeout=120)
    assert as_user(machine, MEMBER, "/run/probe/build/by-cmake").stdout == f"0.1.0 {uid}\n"
    assert machine.run("man", "-w", "fdbrokerd").stdout.strip().endswith("fdbrokerd.8.gz")

    # -- purge: every file the packages installed is gone, and everything they
    #    wrote besides (conffile, enablement symlinks, dpkg's own records); the
    #    system group stays, as Debian keeps them.
    # The overlay's lower layer is this machine's own root: what exists here existed
    # in the booted system before the install.
    existed_before = {path for paths in installed.values() for path in paths
                      if path and Path(path).exists()}
    assert "/usr/sbin/fdbrokerd" in installed["fdbroker"]
    assert "/usr/sbin/fdbrokerd" not in existed_before and "/usr/share/doc" in existed_before
    machine.run("apt-get", "purge", "-y", "-q", *PACKAGES, timeout=DPKG_TIMEOUT)
    for package in PACKAGES:
        gone = machine.run("dpkg-query", "-W", "-f", "${Status}", package, check=False)
        assert gone.returncode != 0 or gone.stdout.startswith("unknown ok not-installed"), gone
    for paths in installed.values():
        for path in filter(None, paths):
            if path in existed_before:
                continue  # a directory the system had already (/usr/share/doc, ...)
            assert machine.run("test", "-e", path, check=False).returncode == 1, path
    # Nothing else with the name either, except man-db's cache of formatted pages
    # (written by `man` when systemd-analyze checked Documentation= above; man-db's
    # own daily job expires them).
    left = [path for path in machine.changes_named("fdbroker")
            if not path.startswith("var/cache/man/")]
    assert left == [], left
    assert machine.show("fdbroker.socket", "LoadState")["LoadState"] == "not-found"
    helper_state = machine.path("/var/lib/systemd/deb-systemd-helper-enabled")
    assert not any("fdbroker" in p.name for p in helper_state.rglob("*")), \
        list(helper_state.rglob("*"))
    assert machine.run("getent", "group", "fdbroker", check=False).returncode == 0
