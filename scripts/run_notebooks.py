#!/usr/bin/env python
"""Execute the course notebooks headless with papermill and summarise the run.

    python scripts/run_notebooks.py                      # laptop scale -> build/notebooks/
    python scripts/run_notebooks.py --scale smoke --only 00 03
    python scripts/run_notebooks.py --inplace            # refresh the committed outputs

Prints a table (notebook, status, minutes, headline result) and writes it to
``build/summary.json``. A notebook that fails does not stop the others; the exit code is
non-zero if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
HEADLINE_MIME = "application/vnd.course.headline+json"


def find_notebooks(only: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
        if not found:
            raise SystemExit(f"no notebook matches {only}; have: {[p.name for p in NOTEBOOKS.glob('*.ipynb')]}")
    return found


def headline_of(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if HEADLINE_MIME in data:
                return str(data[HEADLINE_MIME].get("text", ""))
    return ""


def scrub(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove what should not be committed: papermill timings, this machine's paths."""
    nb.metadata.pop("papermill", None)
    home = str(Path.home())
    patterns = [(re.escape(str(ROOT)), "<course>"), (re.escape(sys.prefix), "<venv>"),
                (re.escape(home), "~")]
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if "text" in out:
                text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
                for pat, rep in patterns:
                    text = re.sub(pat, rep, text)
                out["text"] = text
    return nb


def run_one(path: Path, scale: str, out_dir: Path | None, inplace: bool, timeout: int) -> dict:
    # Always execute into out_dir: a failed or interrupted run must not overwrite the notebook
    # in notebooks/ with half of its outputs. With --inplace, a successful run is copied back.
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    env_scale = os.environ.get("COURSE_SCALE")
    os.environ["COURSE_SCALE"] = scale  # the parameters cell reads it; no injected cell needed
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        pm.execute_notebook(str(path), str(target), cwd=str(NOTEBOOKS), progress_bar=True,
                            execution_timeout=timeout, kernel_name="python3", log_output=False)
    except pm.PapermillExecutionError as err:
        status = "FAILED"
        error = f"cell {err.exec_count}: {err.ename}: {err.evalue}"
    except Exception as err:  # kernel died, time-out, ...
        status = "FAILED"
        error = f"{type(err).__name__}: {err}"
    finally:
        if env_scale is None:
            os.environ.pop("COURSE_SCALE", None)
        else:
            os.environ["COURSE_SCALE"] = env_scale
    minutes = (time.perf_counter() - start) / 60
    headline = ""
    if target.exists():
        nb = nbformat.read(target, as_version=4)
        headline = headline_of(nb)
        if status == "ok":
            if inplace:
                # the committed outputs carry the measurement of the run that made them: the
                # instructor guide's timing table is generated from it (scripts/instructor_guide.py)
                nb.metadata["course_run"] = {
                    "scale": scale, "minutes": round(minutes, 2), "cores": os.cpu_count(),
                    "load_average": round(os.getloadavg()[0], 1), "date": time.strftime("%Y-%m-%d")}
            nbformat.write(scrub(nb), path if inplace else target)
    return {"notebook": path.name, "status": status, "minutes": round(minutes, 2),
            "headline": headline, "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="laptop", choices=["smoke", "laptop", "full"])
    parser.add_argument("--out", default=str(ROOT / "build" / "notebooks"))
    parser.add_argument("--inplace", action="store_true", help="overwrite notebooks/ with the executed ones")
    parser.add_argument("--only", nargs="*", help="chapter prefixes, e.g. 00 03")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.inplace and args.scale != "laptop":
        parser.error("--inplace commits outputs; the committed notebooks show the laptop scale")

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = find_notebooks(args.only)
    print(f"Executing {len(notebooks)} notebook(s) at scale '{args.scale}'"
          f" -> {'notebooks/ (in place)' if args.inplace else out_dir}")
    rows = []
    for i, path in enumerate(notebooks, 1):
        print(f"\n[{i}/{len(notebooks)}] {path.name}", flush=True)
        rows.append(run_one(path, args.scale, out_dir, args.inplace, args.timeout))
        if rows[-1]["error"]:
            print(f"  {rows[-1]['status']}: {rows[-1]['error']}")

    width = max(len(r["notebook"]) for r in rows)
    print(f"\n{'notebook':<{width}}  status  minutes  headline")
    for r in rows:
        print(f"{r['notebook']:<{width}}  {r['status']:<6}  {r['minutes']:>7.2f}  {r['headline']}")
    summary = {"scale": args.scale, "notebooks": rows,
               "total_minutes": round(sum(r["minutes"] for r in rows), 2)}
    summary_path = ROOT / "build" / "summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2))
    # one file per scale as well, so a smoke run does not replace the laptop figures
    (summary_path.parent / f"summary-{args.scale}.json").write_text(json.dumps(summary, indent=2))
    print(f"\nTotal {summary['total_minutes']:.1f} min; summary in {summary_path.relative_to(ROOT)}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
