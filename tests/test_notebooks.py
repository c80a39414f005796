"""Every notebook in notebooks/ runs at smoke scale, once, and follows the course's conventions.

New notebooks are picked up automatically (no list to edit). Each notebook is executed
once with papermill (``SCALE="smoke"`` injected); the executed copy is then compared with
the committed notebook on the cells marked ``# NBVAL_CHECK_OUTPUT``, with nbval's own
comparison (``nbval.plugin.IPyNbCell.compare_outputs``: the same skipped keys, stream
coalescing and sanitising as ``pytest --nbval-lax``), so ``make test`` no longer runs
every notebook a second time under nbval. A failure names the notebook, the cell and the
error or the differing output, and where the executed notebook was kept (pytest's
``tmp_path``: per run, so two runs side by side do not share files).

    pytest tests/test_notebooks.py -k 03          # one chapter: execute, compare, conventions
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import fcntl
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbval.plugin import IPyNbCell, coalesce_streams, find_comment_markers, find_metadata_tags, nocolors

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
TIMES = ROOT / "build" / "smoke_times.json"
MACHINE_PATH = re.compile(r"(/root/|/tmp/|/home/\w+/|/Users/\w+/|/work/|C:\\\\Users)")

# nbval 0.11 keeps this list in IPyNbFile.__init__ (a pytest collector we cannot build
# outside its collection), so it is copied here: the keys of an output that are never
# compared. Images are skipped because --nbdime is not used (nbval does the same).
NBVAL_SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                      "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def nbval_options(cell) -> defaultdict:
    """nbval's options for a code cell in --nbval-lax mode (as ``IPyNbFile.collect`` reads them).

    Comment markers (``# NBVAL_CHECK_OUTPUT``) win over metadata tags (``nbval-check-output``);
    ``check`` is False unless a marker asks for it.
    """
    options = defaultdict(bool, find_metadata_tags(cell.metadata))
    options.update(dict(find_comment_markers(_source(cell))))
    options.setdefault("check", False)
    return options


class _NbvalCell:
    """Just enough of an nbval test item for nbval's own comparison to run on stored outputs.

    ``compare_outputs``, ``format_output_compare`` and ``sanitize`` are nbval's methods,
    unchanged; this class only supplies the attributes they read.
    """

    compare_outputs = IPyNbCell.compare_outputs
    format_output_compare = IPyNbCell.format_output_compare
    sanitize = IPyNbCell.sanitize

    def __init__(self):
        self.parent = SimpleNamespace(skip_compare=NBVAL_SKIP_COMPARE, sanitize_patterns={})
        self.colors = nocolors
        self.config = None
        # No pytest assertion hook: nbval then prints both outputs in full (a unified diff follows).
        self.ihook = SimpleNamespace(pytest_assertrepr_compare=lambda **_: [])
        self.comparison_traceback: list[str] = []


def _text_of(outputs) -> str:
    """The comparable text of a cell's outputs, for a readable unified diff."""
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(f"[{out.get('name')}]\n{out.get('text', '')}")
        for mime, value in (out.get("data") or {}).items():
            if mime not in NBVAL_SKIP_COMPARE:
                parts.append(f"[{mime}]\n{value if isinstance(value, str) else json.dumps(value, indent=1)}")
    return "\n".join(parts)


def compare_marked_outputs(committed: nbformat.NotebookNode, executed: nbformat.NotebookNode,
                           name: str = "notebook") -> list[str]:
    """Compare an executed notebook with the committed one the way ``pytest --nbval-lax`` does.

    ``executed`` is papermill's output for ``committed`` (its injected-parameters cell is
    dropped here). Cells marked ``# NBVAL_CHECK_OUTPUT`` must have the same outputs (nbval's
    rules: streams coalesced, metadata / execution counts / images ignored); any cell that was
    never run in the committed notebook must have no outputs. Returns one readable problem
    per failing cell (empty: all agree).
    """
    ran = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if len(ran) != len(committed.cells):
        return [f"{name}: the executed notebook has {len(ran)} cells, the committed one {len(committed.cells)}"]
    problems = []
    cell_num = -1
    for ref, new in zip(committed.cells, ran):
        if ref.cell_type != "code":
            continue
        cell_num += 1  # nbval's numbering: code cells only, from 0
        where = f"{name} code cell {cell_num}"
        if _source(ref) != _source(new):
            problems.append(f"{where}: the executed source differs from the committed one")
            continue
        options = nbval_options(ref)
        if options["skip"] or options["check_exception"]:
            problems.append(f"{where}: NBVAL_SKIP / NBVAL_RAISES_EXCEPTION are not supported (papermill "
                            "executes every cell and stops at an error); remove the marker")
            continue
        unrun = ref.get("execution_count") is None
        if unrun and ref.get("outputs"):
            problems.append(f"{where}: the committed cell was never run but has outputs; re-run the notebook")
            continue
        if not options["check"] or unrun:
            continue
        ref_outs = coalesce_streams(copy.deepcopy(ref.get("outputs", [])))
        new_outs = coalesce_streams(copy.deepcopy(new.get("outputs", [])))
        nbval_cell = _NbvalCell()
        if nbval_cell.compare_outputs(new_outs, ref_outs):
            continue
        head = "\n    ".join(_source(ref).strip().splitlines()[:3])
        diff = "\n".join(difflib.unified_diff(_text_of(ref_outs).splitlines(), _text_of(new_outs).splitlines(),
                                              "committed", "executed at smoke scale", lineterm=""))
        problems.append(f"{where} (# NBVAL_CHECK_OUTPUT) outputs differ:\n    {head}\n"
                        + "\n".join(nbval_cell.comparison_traceback).rstrip()
                        + (f"\n{diff}" if diff else ""))
    return problems


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` + '.lock' (parallel workers share the times file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _record_time(name: str, seconds: float) -> None:
    with _locked(TIMES):
        times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
        times[name] = round(seconds, 1)
        tmp = TIMES.with_suffix(".tmp")
        tmp.write_text(json.dumps(times, indent=2, sort_keys=True))
        tmp.replace(TIMES)


def execute_and_compare(path: Path, out: Path, timeout: int = 600) -> float:
    """Execute ``path`` once at smoke scale into ``out``, then check its marked outputs.

    Fails the test (``pytest.fail``) with the failing cell and error, or with every marked
    cell whose output differs. Returns the execution's wall-clock seconds.
    """
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(out), parameters={"SCALE": "smoke"}, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    except pm.PapermillExecutionError as err:
        nb = nbformat.read(out, as_version=4)
        cell = next((c for c in nb.cells if c.get("execution_count") == err.exec_count), None)
        first = _source(cell).strip().splitlines()[:3] if cell is not None else []
        pytest.fail(
            f"{path.name} failed in cell [{err.exec_count}]:\n    "
            + "\n    ".join(first) + f"\n{err.ename}: {err.evalue}\n(executed notebook: {out})",
            pytrace=False,
        )
    seconds = time.perf_counter() - start
    problems = compare_marked_outputs(nbformat.read(path, as_version=4), nbformat.read(out, as_version=4),
                                      name=path.name)
    if problems:
        pytest.fail("\n\n".join(problems) + f"\n\n(executed notebook: {out}; nbval's rules, see "
                    "CONTRIBUTING.md 'Outputs and checks')", pytrace=False)
    return seconds


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no chapter (NN_name.ipynb)"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a chapter number: {numbers}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_at_smoke_scale(path: Path, tmp_path: Path):
    """Executes the notebook once, then compares its # NBVAL_CHECK_OUTPUT cells (nbval's rules)."""
    seconds = execute_and_compare(path, tmp_path / path.name)
    _record_time(path.name, seconds)
    print(f"{path.name}: {seconds:.1f} s at smoke scale")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_conventions(path: Path):
    """The conventions of CONTRIBUTING.md that a machine can check."""
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


# ---- the comparison itself can fail: a small synthetic notebook -------------------------------

def _synthetic(committed_text: str, marked: bool = True) -> nbformat.NotebookNode:
    """A committed notebook: parameters, a cell printing 42 (its stored output is committed_text)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('SCALE = "laptop"', execution_count=1)
    params.metadata["tags"] = ["parameters"]
    marker = "# NBVAL_CHECK_OUTPUT\n" if marked else ""
    cell = nbformat.v4.new_code_cell(marker + "print(6 * 7)\nprint(SCALE)", execution_count=2)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=committed_text)]
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · Synthetic"), params, cell]
    return nb


def _executed(nb: nbformat.NotebookNode, *texts: str) -> nbformat.NotebookNode:
    """What papermill would write: an injected-parameters cell, and the cell's new stream chunks."""
    run = copy.deepcopy(nb)
    injected = nbformat.v4.new_code_cell('SCALE = "smoke"', execution_count=2)
    injected.metadata["tags"] = ["injected-parameters"]
    run.cells.insert(2, injected)
    run.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text=t) for t in texts]
    run.cells[3].execution_count = 3
    return run


def test_comparison_passes_on_equal_outputs_split_into_chunks():
    nb = _synthetic("42\nsmoke\n")
    assert compare_marked_outputs(nb, _executed(nb, "42\n", "smoke\n")) == []  # nbval coalesces streams


def test_comparison_fails_when_a_marked_output_differs_and_shows_a_diff():
    nb = _synthetic("41\nsmoke\n")
    problems = compare_marked_outputs(nb, _executed(nb, "42\nsmoke\n"), name="99_synthetic.ipynb")
    assert len(problems) == 1
    assert "99_synthetic.ipynb code cell 1" in problems[0]
    assert "-41" in problems[0] and "+42" in problems[0], problems[0]


def test_comparison_fails_on_a_missing_or_extra_output():
    nb = _synthetic("42\nsmoke\n")
    run = _executed(nb, "42\nsmoke\n")
    run.cells[3].outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"}))
    assert compare_marked_outputs(nb, run), "an extra text/plain output must fail the comparison"
    assert compare_marked_outputs(nb, _executed(nb)), "a missing output must fail the comparison"


def test_comparison_ignores_unmarked_cells_and_what_nbval_ignores():
    nb = _synthetic("41\nlaptop\n", marked=False)
    assert compare_marked_outputs(nb, _executed(nb, "42\nsmoke\n")) == []
    marked = _synthetic("42\nsmoke\n")
    marked.cells[2].outputs.append(nbformat.v4.new_output("display_data", data={"image/png": "AAAA"}))
    run = _executed(marked, "42\nsmoke\n")
    run.cells[3].outputs.append(nbformat.v4.new_output("display_data", data={"image/png": "BBBB"}))
    assert compare_marked_outputs(marked, run) == [], "nbval does not compare images (without --nbdime)"


def test_comparison_fails_on_a_committed_cell_with_outputs_but_no_run():
    nb = _synthetic("42\nsmoke\n", marked=False)
    nb.cells[2].execution_count = None
    assert "never run" in " ".join(compare_marked_outputs(nb, _executed(nb, "42\nsmoke\n")))


@pytest.mark.notebook
def test_a_real_execution_of_a_wrong_committed_output_fails(tmp_path: Path):
    """End to end: papermill runs the synthetic notebook; a wrong committed output fails the test."""
    src = tmp_path / "99_synthetic.ipynb"
    nbformat.write(_synthetic("42\nsmoke\n"), src)
    execute_and_compare(src, tmp_path / "out" / src.name, timeout=120)
    nbformat.write(_synthetic("42\nlaptop\n"), src)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)code cell 1.*-laptop.*\+smoke"):
        execute_and_compare(src, tmp_path / "out" / src.name, timeout=120)
