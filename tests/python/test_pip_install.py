# SPDX-License-Identifier: LGPL-2.1-or-later
"""`pip install .` from the checkout, in a fresh virtualenv, offline (pyproject.toml and
its in-tree backend, lib/python/pep517): the README's Python example then runs with the
venv's interpreter from outside the checkout, on the files pip put in the venv.

Compiles the binding once (Release, through ccache when installed): about a minute."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from test_readme import readme_example

CHECKOUT = pathlib.Path(__file__).resolve().parents[2]

# Run with the venv's python from outside the checkout: the README example, then where
# everything came from.
PROBE = """
import json, sys, sysconfig
import fdbroker, fdbroker._fdbroker, fdsend
a, b = fdsend.socketpair()
fdsend.sendfds(a, b"x", fds=[a])  # the classic API: ints
msg, fds = fdsend.recvfds(b, 16)
assert msg == b"x" and len(fds) == 1, (msg, fds)
print(json.dumps({
    "site": [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")],
    "prefix": sys.prefix,
    "files": [fdbroker.__file__, fdbroker._fdbroker.__file__, fdsend.__file__],
}))
"""


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_pip_install_into_a_fresh_venv(tmp_path: pathlib.Path) -> None:
    venv = tmp_path / "venv"
    # Debian's python3-venv provides ensurepip, hence pip in the venv (scripts/install-deps).
    run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"

    # Nothing from the build under test: not its package (PYTHONPATH), nor the sanitizer
    # runtimes an ASan build preloads (the wheel is an ordinary Release build).
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_PRELOAD", "ASAN_OPTIONS")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        PIP_NO_INDEX="1",  # offline: PyPI is never asked, build isolation included
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        PIP_CONFIG_FILE=os.devnull,
        VIRTUAL_ENV=str(venv),
    )
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", "2")
    run([python, "-m", "pip", "install", CHECKOUT], env=env, cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run([python, "-c", readme_example("python")], env=env, cwd=outside)
    where = json.loads(run([python, "-c", PROBE], env=env, cwd=outside).stdout)

    assert pathlib.Path(where["prefix"]) == venv
    site_dirs = {pathlib.Path(d) for d in where["site"]}
    assert all(d.is_relative_to(venv) for d in site_dirs), site_dirs
    files = [pathlib.Path(f) for f in where["files"]]
    for f in files:
        assert any(f.is_relative_to(d) for d in site_dirs), f"{f} is not from the venv {site_dirs}"

    # Self-contained: libfdbroker is linked into the extension, not needed beside it.
    extension = files[1]
    assert extension.name.startswith("_fdbroker.") and extension.suffix == ".so"
    dynamic = run(["readelf", "-d", extension]).stdout
    needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed and not [line for line in needed if "libfdbroker" in line], needed

    # The wheel's RECORD lists every file: uninstalling leaves none of them behind.
    run([python, "-m", "pip", "uninstall", "--yes", "fdbroker"], env=env, cwd=tmp_path)
    left = [f for f in files if f.exists()]
    for d in site_dirs:
        left += [d / name for name in ("fdbroker", "fdsend.py", "fdsend.pyi") if (d / name).exists()]
    assert not left, left
