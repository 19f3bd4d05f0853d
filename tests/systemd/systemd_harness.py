# SPDX-License-Identifier: LGPL-2.1-or-later
"""Boot a real systemd (Debian's /lib/systemd/systemd) in throwaway namespaces.

One `Machine` is one boot: new PID, mount, cgroup, UTS, IPC and network namespaces made by
`unshare`, set up by boot_inside.sh (private /run, /tmp, /var/tmp, /dev, cgroup2;
read-only / and /proc/sys, or with writable_root=True a writable overlay on the
machine's root whose changes `root_changes()` shows), with systemd as its PID 1
started on a test target that has DefaultDependencies=no. It has its own network namespace too (only
loopback, up), so a unit may bind any port; reach it with run("...") or
nsenter -n.

From the outside, `systemctl()`/`run()` go through `nsenter -t <pid> -m -p`, and
`path()` reaches the namespace's files through /proc/<pid>/root (a UNIX socket
there can be connected to directly). `stop()` powers systemd off by its pidfd,
falls back to SIGKILL (which kills the whole PID namespace), and removes the
cgroup it made. The chain setpriv --pdeathsig / unshare --kill-child makes the
kernel kill the boot if the test process itself dies.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOOT_INSIDE = HERE / "boot_inside.sh"
SYSTEMD = "/lib/systemd/systemd"
TEST_TARGET = "fdbroker-test.target"
# Started in every boot, so that services log to a journal a test can read.
JOURNAL_UNITS = ("systemd-journald.socket", "systemd-journald.service")
# Where boot_inside.sh binds the writable root's upper layer (read-only) inside.
ROOT_CHANGES = "/.fdbroker-test-upper"


def _dirs_hidden_by_private_tmp() -> list[str]:
    """The project's directories that the machine's private /tmp and /var/tmp would
    hide (a checkout or build tree under /tmp, as in a CI clone): boot_inside.sh
    carries them across, so that units can run the binaries under test."""
    wanted = [HERE.parents[1]]
    for var in ("FDBROKERD", "FDBROKERCTL"):
        if os.environ.get(var):
            wanted.append(Path(os.environ[var]).resolve().parent)
    wanted += [Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    hidden = sorted({p for p in wanted
                     if any(p.is_relative_to(t) for t in (Path("/tmp"), Path("/var/tmp")))})
    # A directory inside another one that is kept is carried along with it.
    return [str(p) for p in hidden if not any(p != q and p.is_relative_to(q) for q in hidden)]


NSENTER_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class BootError(RuntimeError):
    """systemd did not come up; the message carries everything it left behind."""


def _cgroup2_mount() -> Path:
    """Where this machine mounts the cgroup2 hierarchy (unified or hybrid layout)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype == "cgroup2":
                return Path(fields[4])
    raise BootError("no cgroup2 hierarchy is mounted; systemd 252 needs one")


def _own_cgroup2_path() -> str:
    with open("/proc/self/cgroup", encoding="utf-8") as cgroup:
        for line in cgroup:
            if line.startswith("0::"):
                return line[3:].strip().lstrip("/")
    raise BootError("this process is in no cgroup2 cgroup")


def _remove_cgroup_tree(root: Path) -> None:
    # Children first; a cgroup can only be removed once empty of both.
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
        os.rmdir(dirpath)


def _remove_stale_cgroups(parent: Path, prefix: str) -> None:
    """Cgroups of earlier boots whose test process died before stop() (the
    kernel killed their processes, see the module doc, but not the cgroups)."""
    for cgroup in parent.glob(f"{prefix}-*-*"):
        owner = cgroup.name[len(prefix) + 1:].split("-")[0]
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        if "populated 0" in (cgroup / "cgroup.events").read_text(encoding="utf-8"):
            _remove_cgroup_tree(cgroup)


def unit_text(sections: dict[str, dict[str, str | list[str]]]) -> str:
    """{"Unit": {"Description": "x"}, ...} -> unit file text (lists repeat the key)."""
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        for key, value in keys.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key}={item}")
        lines.append("")
    return "\n".join(lines)


class Machine:
    """A booted systemd. Use as a context manager, or call boot() and stop()."""

    def __init__(self, workdir: Path, units: dict[str, str], start: list[str],
                 files: dict[str, str] | None = None, name: str = "fdbroker-test",
                 writable_root: bool = False):
        """units: name -> text, in /run/systemd/system; start: what the test
        target wants; files: absolute path -> text inside the machine: under
        /run a new file, elsewhere an existing file of the machine's that is
        replaced (bound over, read-only) in this boot only.

        writable_root: / is an overlayfs over the machine's root file system
        instead of that file system read-only, so that e.g. dpkg can run inside;
        what the boot writes lands in a tmpfs upper layer (root_changes()) and
        is gone with the machine. /proc/sys and /sys stay read-only."""
        self.workdir = Path(workdir)
        self.units = dict(units)
        self.files = dict(files or {})
        self.start_units = list(start)
        self.prefix = name
        self.writable_root = writable_root
        self.name = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        self.pid: int | None = None  # systemd, as the machine's PID namespace sees it: 1
        self._pidfd: int | None = None
        self._unshare: subprocess.Popen | None = None
        self._cgroup: Path | None = None
        self._output = self.workdir / "boot-output.log"
        self._console = self.workdir / "console"
        self._console_pty: tuple[int, int] | None = None  # (master, slave)
        self._console_reader: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> "Machine":
        self.boot()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def boot(self, timeout: float = 20.0) -> None:
        target = unit_text({"Unit": {
            "Description": "fdbroker systemd test target",
            "DefaultDependencies": "no",
            "Wants": " ".join([*JOURNAL_UNITS, *self.start_units]),
            # So that the target is reached only once their start jobs are done.
            "After": " ".join([*JOURNAL_UNITS, *self.start_units]),
        }})
        staged = {f"/run/systemd/system/{name}": text  # a name may be "x.service.d/y.conf"
                  for name, text in {**self.units, TEST_TARGET: target}.items()}
        kept = _dirs_hidden_by_private_tmp()
        if kept:
            # PrivateTmp= would hide them again inside each service.
            staged["/run/systemd/system/service.d/50-fdbroker-test-keep.conf"] = unit_text(
                {"Service": {"BindReadOnlyPaths": " ".join(kept)}})
        for path, text in {**staged, **self.files}.items():
            assert path.startswith("/"), f"not an absolute path: {path}"
            if path.startswith("/run/"):
                stage = self.workdir / path.lstrip("/")  # copied into the private /run
            else:
                assert Path(path).is_file(), f"cannot overlay {path}: no such file"
                stage = self.workdir / "overlay" / path.lstrip("/")
            stage.parent.mkdir(parents=True, exist_ok=True)
            stage.write_text(text, encoding="utf-8")
        self._console.write_text("", encoding="utf-8")
        self._start_console()

        parent = _cgroup2_mount() / _own_cgroup2_path()
        _remove_stale_cgroups(parent, self.prefix)
        self._cgroup = parent / self.name
        self._cgroup.mkdir()
        # The shell joins the new cgroup first, so that the cgroup namespace
        # unshare makes is rooted there and systemd's whole tree stays inside it.
        join_and_unshare = (
            'echo $$ > "$1/cgroup.procs" && shift && exec "$@"')
        argv = [
            "setpriv", "--pdeathsig", "KILL", "--",
            "sh", "-c", join_and_unshare, "sh", str(self._cgroup),
            "unshare", "--fork", "--pid", "--mount", "--cgroup",
            "--uts", "--ipc", "--net", "--propagation", "private", "--kill-child",
            "sh", str(BOOT_INSIDE), str(self.workdir),
            f"systemd.unit={TEST_TARGET}",
            "systemd.log_target=journal", "systemd.log_level=info",
            "systemd.show_status=0",
        ]
        env = {**NSENTER_ENV, "FDBROKER_TEST_CONSOLE": os.ttyname(self._console_pty[1]),
               "FDBROKER_TEST_KEEP": ":".join(_dirs_hidden_by_private_tmp())}
        if self.writable_root:
            env["FDBROKER_TEST_WRITABLE_ROOT"] = "1"
        with open(self._output, "wb") as output:
            self._unshare = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env,
                                             stdout=output, stderr=subprocess.STDOUT)
        try:
            self._wait_for_systemd_pid(time.monotonic() + timeout)
            self._wait_for_target(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise

    def _start_console(self) -> None:
        """A pty for the machine's /dev/console, copied to the console file by a
        thread: systemd only logs to a console that is a tty."""
        master, slave = os.openpty()
        tty.setraw(slave)  # bytes as written: no echo, no CR/LF games
        os.set_blocking(master, False)
        self._console_pty = (master, slave)

        def copy() -> None:
            with open(self._console, "ab", buffering=0) as out:
                while self._console_pty is not None:
                    readable, _, _ = select.select([master], [], [], 0.1)
                    if readable:
                        try:
                            out.write(os.read(master, 65536))
                        except (BlockingIOError, OSError):
                            pass  # EIO once no slave is open
        self._console_reader = threading.Thread(target=copy, daemon=True,
                                                name=f"{self.name} console")
        self._console_reader.start()

    def _stop_console(self) -> None:
        if self._console_pty is None:
            return
        fds, self._console_pty = self._console_pty, None
        self._console_reader.join()
        for fd in fds:
            os.close(fd)

    def _wait_for_systemd_pid(self, deadline: float) -> None:
        # unshare --fork's only child becomes systemd once boot_inside.sh execs it.
        children = Path(f"/proc/{self._unshare.pid}/task/{self._unshare.pid}/children")
        while time.monotonic() < deadline:
            if self._unshare.poll() is not None:
                raise BootError(f"the namespace setup exited with status "
                                f"{self._unshare.returncode}\n{self.diagnostics()}")
            try:
                pids = children.read_text(encoding="utf-8").split()
                if pids and os.path.basename(os.readlink(f"/proc/{pids[0]}/exe")) == "systemd":
                    self._pidfd = os.pidfd_open(int(pids[0]))
                    self.pid = int(pids[0])
                    return
            except (FileNotFoundError, ProcessLookupError):
                pass  # unshare has not forked yet, or the child is between execs
            time.sleep(0.02)
        raise BootError(f"systemd was not exec'd in time\n{self.diagnostics()}")

    def _wait_for_target(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            if self._unshare.poll() is not None:
                raise BootError(f"systemd exited with status {self._unshare.returncode}"
                                f"\n{self.diagnostics()}")
            state = self.systemctl("is-active", TEST_TARGET, check=False).stdout.strip()
            if state == "active":
                return
            time.sleep(0.05)
        raise BootError(f"{TEST_TARGET} is '{state}', not active, at the deadline"
                        f"\n{self.diagnostics()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Power off by pidfd; SIGKILL the namespace's PID 1 if that takes too long."""
        if self._unshare is not None:
            if self._pidfd is not None and self._unshare.poll() is None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signal.SIGRTMIN + 4)  # poweroff
                except ProcessLookupError:
                    pass
            try:
                self._unshare.wait(timeout if self._pidfd is not None else 0.01)
            except subprocess.TimeoutExpired:
                self._kill()
            self._unshare = None
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._cgroup is not None:
            self._release_cgroup()
            self._cgroup = None
        self._stop_console()

    def _kill(self) -> None:
        # SIGKILL to a PID namespace's init kills every process in the namespace.
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            self._unshare.kill()  # --kill-child takes the namespace's init along
        self._unshare.wait(10)

    def _release_cgroup(self) -> None:
        deadline = time.monotonic() + 5
        while "populated 1" in (self._cgroup / "cgroup.events").read_text(encoding="utf-8"):
            if time.monotonic() > deadline:
                # Only processes this boot started can be in this cgroup.
                (self._cgroup / "cgroup.kill").write_text("1", encoding="utf-8")
                deadline = time.monotonic() + 5
            time.sleep(0.02)
        _remove_cgroup_tree(self._cgroup)

    @property
    def cgroup(self) -> Path | None:
        """The machine's cgroup, as this process sees it (None once stopped)."""
        return self._cgroup

    @property
    def running(self) -> bool:
        return self._unshare is not None and self._unshare.poll() is None

    # -- acting inside -----------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 30.0,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside the machine's mount and PID namespaces."""
        assert self.pid is not None, "not booted"
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", "--", *argv],
            env=NSENTER_ENV, capture_output=True, text=True, timeout=timeout,
            input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def run_in_net(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Like run(), also in the machine's network namespace."""
        return self.run("nsenter", "-t", "1", "-n", "--", *argv, check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *[f"--property={p}" for p in properties]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def path(self, inside: str) -> Path:
        """A path inside the machine, as this (outside) process reaches it."""
        assert self.pid is not None, "not booted"
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def root_changes(self) -> Path:
        """The writable root's upper layer, as this process reaches it: every
        path of / that the boot created or changed is there (a changed file
        whole, a directory with its changed entries), every deleted one is a
        whiteout (a character device 0/0), and a directory that was removed and
        made again is opaque (xattr trusted.overlay.opaque=y). Its one entry of
        its own is the empty mount point .fdbroker-test-upper. Only with
        writable_root=True; /run, /tmp, /var/tmp, /var/lib/systemd,
        /var/log/journal and /dev are tmpfs of their own, not in it."""
        assert self.writable_root, "only a machine booted with writable_root=True has one"
        return self.path(ROOT_CHANGES)

    def changes_named(self, fragment: str) -> list[str]:
        """The paths of root_changes(), relative to /, whose name contains
        fragment (its own mount point aside): what a purge may have left."""
        changes = self.root_changes()
        return sorted(str(path.relative_to(changes)) for path in changes.rglob("*")
                      if fragment in path.name and path.name != ROOT_CHANGES.lstrip("/"))

    def add_unit(self, name: str, text: str, reload: bool = True) -> None:
        """Write a unit or drop-in ("x.service.d/y.conf") and daemon-reload."""
        path = self.path(f"/run/systemd/system/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if reload:
            self.systemctl("daemon-reload")

    def wait_for(self, predicate, what: str, timeout: float = 10.0, interval: float = 0.05):
        """Poll predicate() until it returns a true value; fail with the journal."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n"
                                     f"{self.diagnostics()}")
            time.sleep(interval)

    # -- what it left behind ------------------------------------------------

    def journal(self, *args: str) -> str:
        if not self.running:
            return "(systemd is not running)"
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", *args,
                        check=False).stdout

    def diagnostics(self) -> str:
        parts = []
        for title, path in (("namespace setup output", self._output),
                            ("console", self._console)):
            try:
                text = path.read_text(errors="replace").replace("\r\n", "\n")
                parts.append(f"--- {title} ---\n{text}")
            except OSError as e:
                parts.append(f"--- {title} --- unreadable: {e}")
        if self.running and self.pid is not None:
            parts.append("--- journal ---\n" + self.journal())
        return "\n".join(parts)
