# SPDX-License-Identifier: LGPL-2.1-or-later
"""The in-tree PEP 517 build backend behind `pip install .` (pyproject.toml).

It configures the project's own CMake (the binding alone: no daemon, tests or man
pages) with the installing interpreter, builds the `_fdbroker` extension with
libfdbroker linked in statically, and packs <build>/python (laid out exactly as
installed: the `fdbroker` package and the top-level `fdsend` module) into a wheel.

Standard library only, and `requires = []`: Debian 12 has no scikit-build, a plain
venv's setuptools lacks `wheel`, and PyPI may be out of reach, so build isolation
must need nothing to be downloaded. What it needs is what building from source
needs anyway: cmake, a C++ compiler, pybind11-dev, nlohmann-json3-dev, python3-dev.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile

NAME = "fdbroker"
# This file is <checkout>/lib/python/pep517/fdbroker_backend.py.
SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

# PEP 517 hooks: nothing to fetch, ever.


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def _version() -> str:
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt"), encoding="utf-8") as f:
        match = re.search(r"project\(\s*fdbroker\s+VERSION\s+([0-9.]+)", f.read())
    if not match:
        raise RuntimeError("no `project(fdbroker VERSION …)` in CMakeLists.txt")
    return match.group(1)


def _metadata(version: str) -> str:
    with open(os.path.join(SOURCE_DIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {version}\n"
        "Summary: Safe file-descriptor passing (SCM_RIGHTS) and the fdbroker client\n"
        "License: LGPL-2.1-or-later\n"
        "Requires-Python: >=3.11\n"
        "Classifier: Operating System :: POSIX :: Linux\n"
        "Classifier: License :: OSI Approved :: "
        "GNU Lesser General Public License v2 or later (LGPLv2+)\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme
    )


def _wheel_tag() -> str:
    """The running interpreter's most specific tag, as `packaging.tags` would give it
    for a CPython extension: cp311-cp311-linux_x86_64."""
    if sys.implementation.name != "cpython":
        raise RuntimeError("the fdbroker extension is built for CPython only")
    interpreter = "cp%d%d" % sys.version_info[:2]
    # SOABI is e.g. cpython-311-x86_64-linux-gnu, or cpython-311d-… for a debug build.
    soabi = sysconfig.get_config_var("SOABI") or ""
    match = re.match(r"cpython-(\d+[a-z]*)", soabi)
    abi = "cp" + match.group(1) if match else interpreter
    platform = re.sub(r"[-.]", "_", sysconfig.get_platform())
    # A 32-bit interpreter on a 64-bit kernel reports the kernel's machine.
    if platform == "linux_x86_64" and sys.maxsize <= 2**32:
        platform = "linux_i686"
    return f"{interpreter}-{abi}-{platform}"


def _cmake_build(build_dir: str) -> str:
    """Configures and builds the extension; returns the directory holding the package."""
    if not shutil.which("cmake"):
        raise RuntimeError("building fdbroker needs cmake (and what scripts/install-deps installs)")
    env = dict(os.environ)
    configure = [
        "cmake",
        "-S",
        SOURCE_DIR,
        "-B",
        build_dir,
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DPython_EXECUTABLE={sys.executable}",
        "-DFDBROKER_BUILD_PYTHON=ON",
        "-DFDBROKER_PYTHON_STATIC=ON",
        "-DFDBROKER_BUILD_TESTS=OFF",
        "-DFDBROKER_BUILD_DAEMON=OFF",
        "-DFDBROKER_BUILD_MAN=OFF",
        "-DFDBROKER_BUILD_BENCH=OFF",
        "-DFDBROKER_INSTALL=OFF",
    ]
    if shutil.which("ccache"):
        configure += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        # The build directory is new each time: paths in it, rewritten relative to it,
        # let ccache hit on the compilations of the last build.
        env.setdefault("CCACHE_BASEDIR", build_dir)
    subprocess.run(configure, check=True, env=env)
    jobs = env.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
    subprocess.run(
        ["cmake", "--build", build_dir, "--target", "_fdbroker", "--parallel", jobs],
        check=True,
        env=env,
    )
    return os.path.join(build_dir, "python")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


class _WheelWriter:
    """A zip with every file listed in <dist-info>/RECORD (PEP 427 / 491)."""

    def __init__(self, path: str, dist_info: str) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self._dist_info = dist_info
        self._records: list[tuple[str, str, str]] = []
        # Reproducible: every entry gets the same date (SOURCE_DATE_EPOCH if set).
        epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
        self._date = tuple(time.gmtime(epoch))[:6]

    def add(self, arcname: str, data: bytes, executable: bool = False) -> None:
        info = zipfile.ZipInfo(arcname, date_time=self._date)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
        self._zip.writestr(info, data)
        self._records.append((arcname, _record_hash(data), str(len(data))))

    def close(self) -> None:
        record_name = f"{self._dist_info}/RECORD"
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(self._records)
        writer.writerow((record_name, "", ""))
        info = zipfile.ZipInfo(record_name, date_time=self._date)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o100644 << 16
        self._zip.writestr(info, out.getvalue())
        self._zip.close()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version = _version()
    tag = _wheel_tag()
    dist_info = f"{NAME}-{version}.dist-info"
    wheel_name = f"{NAME}-{version}-{tag}.whl"
    with tempfile.TemporaryDirectory(prefix="fdbroker-wheel-") as build_dir:
        package_root = _cmake_build(build_dir)
        wheel_path = os.path.join(wheel_directory, wheel_name)
        wheel = _WheelWriter(wheel_path, dist_info)
        try:
            for dirpath, dirnames, filenames in os.walk(package_root):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                for filename in sorted(filenames):
                    path = os.path.join(dirpath, filename)
                    arcname = os.path.relpath(path, package_root).replace(os.sep, "/")
                    with open(path, "rb") as f:
                        wheel.add(arcname, f.read(), executable=os.access(path, os.X_OK))
            wheel.add(f"{dist_info}/METADATA", _metadata(version).encode("utf-8"))
            wheel.add(
                f"{dist_info}/WHEEL",
                (
                    "Wheel-Version: 1.0\n"
                    "Generator: fdbroker_backend (lib/python/pep517)\n"
                    "Root-Is-Purelib: false\n"
                    f"Tag: {tag}\n"
                ).encode("ascii"),
            )
            wheel.add(f"{dist_info}/top_level.txt", b"fdbroker\nfdsend\n")
            with open(os.path.join(SOURCE_DIR, "LICENSE"), "rb") as f:
                wheel.add(f"{dist_info}/LICENSE", f.read())
        finally:
            wheel.close()
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    """The files git tracks, under fdbroker-<version>/, with PKG-INFO. Needs a git
    checkout (an sdist is made from one, not from another sdist)."""
    version = _version()
    base = f"{NAME}-{version}"
    files = subprocess.run(
        ["git", "-C", SOURCE_DIR, "ls-files", "-z"], check=True, capture_output=True
    ).stdout.decode("utf-8").split("\0")
    sdist_name = f"{base}.tar.gz"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = epoch
        return info

    sdist_path = os.path.join(sdist_directory, sdist_name)
    with tarfile.open(sdist_path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(f for f in files if f):
            path = os.path.join(SOURCE_DIR, name)
            tar.add(path, f"{base}/{name}", recursive=False, filter=normalise)
        pkg_info = _metadata(version).encode("utf-8")
        info = normalise(tarfile.TarInfo(f"{base}/PKG-INFO"))
        info.size = len(pkg_info)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(pkg_info))
    return sdist_name
