#!/usr/bin/env python
"""The "install on Colab" cell that follows the parameters cell in every chapter.

scripts/chapter_cells.py inserts it (with the chapter's quiz); this module holds the cell.

On Google Colab the cell clones the course at a pinned revision and installs it (the same
pinned packages as `make setup`), then moves into the notebooks folder so relative paths work;
everywhere else (JupyterLab, CI, Binder) it does nothing. The repository's git URL is set once,
in ``REPO_URL`` below, when the course is published; until then the cell says so on Colab
instead of guessing an address. This machine has no internet, so the tests check that the cell
detects Colab correctly and builds the right commands (tests/test_classroom.py), not a real
Colab session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MARK = "# Colab: install the course there"
REPO_URL = ""          # e.g. "https://github.com/OWNER/REPO"; empty until the course is published
REVISION = "main"      # a tag pins the course and its pyproject.toml pins the packages

CELL = f'''{MARK} (this cell does nothing anywhere else)
import sys
if "google.colab" in sys.modules:
    import os, subprocess
    REPO_URL, REVISION = "{REPO_URL}", "{REVISION}"
    if not REPO_URL:
        raise RuntimeError("this copy of the course has no repository URL yet: clone it yourself and "
                           "`pip install -e .` it, or open the notebook from the published course")
    if not os.path.isdir("/content/course"):
        subprocess.run(["git", "clone", "--depth", "1", "--branch", REVISION, REPO_URL, "/content/course"],
                       check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/course"], check=True)
        subprocess.run([sys.executable, "-m", "course_lib.data", "fetch"], check=True)
    sys.path.insert(0, "/content/course")
    os.chdir("/content/course/notebooks")'''


def commands(repo_url: str = REPO_URL, revision: str = REVISION) -> list[list[str]]:
    """The commands the cell runs on Colab (for the tests; the cell itself is self-contained)."""
    return [["git", "clone", "--depth", "1", "--branch", revision, repo_url, "/content/course"],
            [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/course"],
            [sys.executable, "-m", "course_lib.data", "fetch"]]


def _index_after_parameters(nb: nbformat.NotebookNode) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return i + 1
    raise ValueError("no cell tagged 'parameters'")


def apply(path: Path, check: bool = False) -> bool:
    """Insert or update the cell; return True if the notebook was (or would be) changed."""
    nb = nbformat.read(path, as_version=4)
    existing = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.startswith(MARK)]
    at = _index_after_parameters(nb)
    if existing == [at] and nb.cells[at].source == CELL:
        return False
    if check:
        return True
    for i in reversed(existing):
        del nb.cells[i]
    at = _index_after_parameters(nb)
    cell = nbformat.v4.new_code_cell(CELL)
    cell.id = "colab-install"
    cell.execution_count = None
    nb.cells.insert(at, cell)
    nbformat.write(nb, path)
    return True
