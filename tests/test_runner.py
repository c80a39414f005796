"""The notebook runner behind `make course`: headline extraction and scrubbing."""

import importlib.util
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)


def _nb_with_output(output) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [output]
    cell.metadata["papermill"] = {"duration": 1.0}
    nb.cells.append(cell)
    nb.metadata["papermill"] = {"start_time": "now"}
    return nb


def test_headline_is_found():
    out = nbformat.v4.new_output("display_data", data={runner.HEADLINE_MIME: {"text": "NDCG@10 = 0.18"},
                                                       "text/plain": "Headline"})
    assert runner.headline_of(_nb_with_output(out)) == "NDCG@10 = 0.18"
    assert runner.headline_of(nbformat.v4.new_notebook()) == ""


def test_scrub_removes_machine_paths_and_timings():
    text = f"warning from {ROOT}/course_lib/x.py and {sys.prefix}/lib/site.py and {Path.home()}/data"
    nb = runner.scrub(_nb_with_output(nbformat.v4.new_output("stream", name="stderr", text=text)))
    scrubbed = nb.cells[0].outputs[0]["text"]
    assert str(ROOT) not in scrubbed and sys.prefix not in scrubbed and str(Path.home()) not in scrubbed
    assert "<course>/course_lib/x.py" in scrubbed
    assert "papermill" not in nb.metadata and "papermill" not in nb.cells[0].metadata


def test_find_notebooks_filters_by_prefix():
    found = runner.find_notebooks(["00"])
    assert [p.name[:2] for p in found] == ["00"]


def test_inplace_run_never_overwrites_a_notebook_with_a_failed_run(tmp_path):
    src = tmp_path / "99_broken.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    before = src.read_bytes()
    row = runner.run_one(src, "smoke", tmp_path / "out", inplace=True, timeout=120)
    assert row["status"] == "FAILED" and "boom" in row["error"]
    assert src.read_bytes() == before, "a failed --inplace run must leave the notebook as it was"
    # a good run is copied back, with its outputs
    nb.cells = nb.cells[:1] + [nbformat.v4.new_code_cell("print(x + 1)")]
    nbformat.write(nb, src)
    row = runner.run_one(src, "smoke", tmp_path / "out", inplace=True, timeout=120)
    assert row["status"] == "ok"
    assert nbformat.read(src, as_version=4).cells[1].outputs[0]["text"].strip() == "2"
