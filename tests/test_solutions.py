"""The instructors' solutions notebooks are current and every solution passes its checker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("*_solutions.ipynb"))


def test_solutions_are_regenerated_from_the_checkers():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_solutions.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_chapter_with_exercises_has_solutions():
    from course_lib.exercises import all_exercises

    chapters = {i.split(".")[0] for i in all_exercises()}
    assert {p.name[:2] for p in NOTEBOOKS} == chapters


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_solutions_notebook_runs_and_passes_its_checkers(path, capsys):
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": "__solutions__"}
    for cell in nb.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, f"{path.name}", "exec"), namespace)  # noqa: S102 - our own notebook
    out = capsys.readouterr().out
    n = sum('assert check(' in c.source for c in nb.cells if c.cell_type == "code")
    assert out.count("✓") == n and "✗" not in out
