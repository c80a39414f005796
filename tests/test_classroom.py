"""The classroom tools: the preflight (`make check`) and the offline install folder (`make wheelhouse`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import preflight
import wheelhouse


def test_pins_are_read_from_pyproject():
    pins = preflight.pinned_requirements()
    assert pins["torch"] == "2.13.0"
    assert all(v[0].isdigit() for v in pins.values())


def test_package_check_names_missing_and_wrong_versions():
    res = preflight.check_packages({"not-a-real-package-xyz": "1.0", "numpy": "0.0.1"})
    assert not res.ok
    assert "missing: not-a-real-package-xyz" in res.detail
    assert "numpy" in res.detail and "want 0.0.1" in res.detail
    assert "make setup" in res.fix
    assert preflight.check_packages({"numpy": preflight.md.version("numpy")}).ok


def test_a_crashing_check_fails_with_a_fix():
    def check_boom():
        raise RuntimeError("kaput")

    results = preflight.run_checks([preflight.check_python, check_boom])
    assert [r.ok for r in results] == [True, False]
    text = preflight.table(results)
    assert "FAIL" in text and "kaput" in text and "fix:" in text and "1 check(s) failed" in text


def test_training_step_and_data_pass_here():
    assert preflight.check_training_step().ok
    assert preflight.check_data().ok


@pytest.mark.slow
def test_wheelhouse_installs_offline_into_a_fresh_venv(tmp_path):
    """Build the folder for a subset (pip download: needs PyPI), then install it into a fresh
    venv with the index switched off, and import what was installed."""
    dest = tmp_path / "wh"
    try:
        manifest = wheelhouse.build(dest, ["tqdm==4.70.1", "pydantic==2.14.4"])
    except SystemExit as err:  # no PyPI here: say why instead of failing on the network
        pytest.skip(f"PyPI not reachable to build the folder: {str(err)[:200]}")
    assert any(name.startswith("pydantic_core") for name in manifest["files"])  # dependencies came too
    assert wheelhouse.verify(dest) == []
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": "/dev/null"}
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                    "--find-links", str(dest / "wheels"), "tqdm==4.70.1", "pydantic==2.14.4"],
                   check=True, env=env)
    out = subprocess.run([str(py), "-c", "import tqdm, pydantic; print(tqdm.__version__, pydantic.VERSION)"],
                         check=True, capture_output=True, text=True, env=env).stdout.split()
    assert out == ["4.70.1", "2.14.4"]
    # a package that is not in the folder cannot be installed: the index really is off
    missing = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                              str(dest / "wheels"), "six"], capture_output=True, text=True, env=env)
    assert missing.returncode != 0
    # a damaged copy is caught
    victim = dest / "wheels" / sorted(manifest["files"])[0]
    victim.write_bytes(victim.read_bytes()[:100])
    assert wheelhouse.verify(dest) == [f"changed or truncated: {victim.name}"]
    assert json.loads((dest / "MANIFEST.json").read_text())["total_bytes"] > 0


def test_figures_are_regenerated_from_code():
    """The committed diagrams equal a fresh draw (scripts/make_figures.py is their source)."""
    import make_figures

    assert make_figures.main(["--check"]) == 0
    svg, png = make_figures.render("masks_causal_vs_bidirectional")
    assert b"key position (attended to)" in svg and png[:4] == b"\x89PNG"   # labelled axes, text kept as text


def test_colab_cell_does_nothing_outside_colab_and_explains_itself_on_colab(monkeypatch, tmp_path):
    import os
    import types

    import colab_cell

    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(colab_cell.CELL, {})                                   # not on Colab: nothing happens
    assert os.getcwd() == str(tmp_path)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    if not colab_cell.REPO_URL:                                  # unpublished copy: a clear message, no guess
        with pytest.raises(RuntimeError, match="no repository URL"):
            exec(colab_cell.CELL, {})
    cmds = colab_cell.commands("https://example.org/course.git", "v1.0")
    assert cmds[0] == ["git", "clone", "--depth", "1", "--branch", "v1.0", "https://example.org/course.git",
                       "/content/course"]
    assert cmds[1][-4:] == ["install", "-q", "-e", "/content/course"]
    assert cmds[2][-2:] == ["course_lib.data", "fetch"]
    for cmd in cmds:                                             # the cell runs exactly these commands
        assert all(part in colab_cell.CELL or part in ("https://example.org/course.git", "v1.0", sys.executable)
                   for part in cmd)


def test_every_chapter_has_the_colab_cell_and_its_quiz():
    import chapter_cells

    assert chapter_cells.main(["--check"]) == 0, "run `python scripts/chapter_cells.py`"
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        ids = [c.get("id") for c in nb["cells"]]
        quiz_cell = nb["cells"][ids.index(chapter_cells.QUIZ_ID)]
        shown = {k for out in quiz_cell["outputs"] for k in out.get("data", {})}
        assert {"text/html", "application/vnd.jupyter.widget-view+json"} <= shown, path.name
        after = "".join("".join(c["source"]) for c in nb["cells"][ids.index(chapter_cells.QUIZ_ID) + 1:])
        assert 'check("' not in after, f"{path.name}: an exercise comes after the quiz"


def test_quiz_position_is_after_the_last_exercise_and_its_note():
    import chapter_cells
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## Exercises"), nbformat.v4.new_code_cell('check("04.1", a)'),
                nbformat.v4.new_markdown_cell("**Going further** try it"), nbformat.v4.new_code_cell("summary"),
                nbformat.v4.new_markdown_cell("## Summary")]
    assert chapter_cells.quiz_position(nb) == 3
    nb.cells = nb.cells[:2] + nb.cells[3:]
    assert chapter_cells.quiz_position(nb) == 2
    nb.cells = [nbformat.v4.new_markdown_cell("no exercises")]
    with pytest.raises(ValueError, match="no exercise check cell"):
        chapter_cells.quiz_position(nb)


def test_instructor_tables_are_current_and_list_every_chapter():
    import instructor_guide

    assert instructor_guide.main(["--check"]) == 0, "run `python scripts/instructor_guide.py`"
    text = (ROOT / "docs" / "instructors" / "chapters.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"notebooks/{nb.name}" in text
