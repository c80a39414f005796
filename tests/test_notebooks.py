"""Every notebook in notebooks/ runs at smoke scale, and follows the course's conventions.

New notebooks are picked up automatically (no list to edit). A failure names the notebook,
the cell and the error. nbval (``pytest --nbval-lax notebooks``, run by ``make test``)
separately re-checks the outputs marked ``# NBVAL_CHECK_OUTPUT``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
TIMES = ROOT / "build" / "smoke_times.json"
MACHINE_PATH = re.compile(r"(/root/|/tmp/|/home/\w+/|/Users/\w+/|/work/|C:\\\\Users)")


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no chapter (NN_name.ipynb)"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a chapter number: {numbers}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_at_smoke_scale(path: Path, tmp_path: Path):
    import papermill as pm

    out = tmp_path / path.name
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(out), parameters={"SCALE": "smoke"}, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=600)
    except pm.PapermillExecutionError as err:
        nb = nbformat.read(out, as_version=4)
        cell = next((c for c in nb.cells if c.get("execution_count") == err.exec_count), None)
        first = _source(cell).strip().splitlines()[:3] if cell is not None else []
        pytest.fail(
            f"{path.relative_to(ROOT)} failed in cell [{err.exec_count}]:\n    "
            + "\n    ".join(first) + f"\n{err.ename}: {err.evalue}",
            pytrace=False,
        )
    seconds = time.perf_counter() - start
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    times[path.name] = round(seconds, 1)
    TIMES.parent.mkdir(exist_ok=True)
    TIMES.write_text(json.dumps(times, indent=2, sort_keys=True))
    print(f"{path.name}: {seconds:.1f} s at smoke scale")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_conventions(path: Path):
    """The conventions of ../shared/STYLE.md that a machine can check."""
    nb = nbformat.read(path, as_version=4)
    name = path.name
    code = [c for c in nb.cells if c.cell_type == "code"]
    prose = [c for c in nb.cells if c.cell_type == "markdown"]
    assert nb.cells[0].cell_type == "markdown" and _source(nb.cells[0]).startswith("# "), \
        f"{name}: the first cell must be the chapter's title (markdown '# ...')"
    params = code[0]
    assert "parameters" in params.metadata.get("tags", []), f"{name}: the first code cell must be tagged 'parameters'"
    assert 'SCALE = os.environ.get("COURSE_SCALE", "laptop")' in _source(params), \
        f"{name}: the parameters cell must read SCALE from COURSE_SCALE (default laptop)"
    text = "\n".join(_source(c) for c in prose)
    for heading in ("Learning objectives", "Exercises", "Summary", "Glossary"):
        assert re.search(rf"^#+ .*{heading}", text, re.M | re.I), f"{name}: no '{heading}' section"
    assert re.search(r"[\u4e00-\u9fff]", text), f"{name}: the glossary has no Chinese terms"
    assert any(re.search(r"^\s*assert\b|assert_close", _source(c), re.M) for c in code), \
        f"{name}: no assert checks the chapter's claims"
    assert sum("check(" in _source(c) for c in code) >= 2, f"{name}: fewer than two self-checking exercises"
    assert len(prose) >= 0.3 * len(nb.cells), f"{name}: too little prose ({len(prose)} of {len(nb.cells)} cells)"
    assert any(c.get("outputs") for c in code), f"{name}: no committed outputs; run `make outputs`"
    for c in code:
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: a committed output is an error"
            found = MACHINE_PATH.search(json.dumps(out))
            assert not found, f"{name}: a committed output shows a machine path ({found.group(0)})"
    assert path.stat().st_size < 3_000_000, f"{name}: over 3 MB; make the plots smaller"
