#!/usr/bin/env python
"""Put the classroom cells into every chapter: the Colab install cell and the end-of-chapter quiz.

    python scripts/chapter_cells.py            # insert or update both cells in every notebook
    python scripts/chapter_cells.py --check    # exit 1 if a notebook lacks a current cell

* The Colab cell (its text is ``CELL`` in scripts/colab_cell.py) follows the ``parameters`` cell;
  on Colab it installs the course, everywhere else it does nothing.
* The quiz: a ``## Quiz`` heading and a cell ``quiz("NN")`` right after the chapter's last
  exercise (after its "Going further" note, if any), before the summary. The quiz cell's output
  is produced by running that one cell in a kernel (its output does not depend on the rest of
  the chapter; a later run of the whole chapter replaces it): widgets in JupyterLab, and the
  questions as HTML, without the answers, for static pages such as the website.

A new chapter gets both cells by running this script once; tests/test_classroom.py fails while
a chapter lacks them.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab_cell  # scripts/ is not a package

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
QUIZ_MD_ID, QUIZ_ID = "chapter-quiz-heading", "chapter-quiz"
QUIZ_MD = ("## Quiz\n\nFive minutes, no code: pick an answer, press **Check**, and read why. "
           "Nothing is recorded; the questions are about ideas, the exercises above were about code.")


def quiz_source(chapter: str) -> str:
    return f'from course_lib.quiz import quiz\n\nquiz("{chapter}")'


def quiz_position(nb: nbformat.NotebookNode) -> int:
    """Index where the quiz goes: after the last exercise check (and its "Going further" note)."""
    cells = [c for c in nb.cells if c.get("id") not in (QUIZ_MD_ID, QUIZ_ID)]
    checks = [i for i, c in enumerate(cells) if c.cell_type == "code" and 'check("' in c.source]
    if not checks:
        raise ValueError("no exercise check cell (check(\"NN.k\", ...)) to put the quiz after")
    at = checks[-1] + 1
    if at < len(cells) and cells[at].cell_type == "markdown" and cells[at].source.startswith("**Going further**"):
        at += 1
    return at


def quiz_outputs(chapter: str) -> tuple[list, int]:
    """Run the quiz cell alone in a kernel; return its outputs and execution count."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(quiz_source(chapter))]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = nb.cells[0].outputs
    if any(o.output_type == "error" for o in outputs):
        raise RuntimeError(f"the quiz cell of chapter {chapter} failed: {outputs}")
    return outputs, nb.cells[0].execution_count


def _strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    out = copy.deepcopy(nb)
    out.cells = [c for c in out.cells if c.get("id") not in (QUIZ_MD_ID, QUIZ_ID)]
    return out


def apply_quiz(path: Path, check: bool = False) -> bool:
    """Insert or update the quiz cells; return True if the notebook was (or would be) changed."""
    nb = nbformat.read(path, as_version=4)
    chapter = path.name[:2]
    at = quiz_position(nb)
    ids = [c.get("id") for c in nb.cells]
    current = (QUIZ_MD_ID in ids and QUIZ_ID in ids and ids.index(QUIZ_ID) == ids.index(QUIZ_MD_ID) + 1
               and ids.index(QUIZ_MD_ID) == at and nb.cells[at].source == QUIZ_MD
               and nb.cells[at + 1].source == quiz_source(chapter) and nb.cells[at + 1].outputs
               and nb.cells[at + 1].execution_count is not None)
    if current:
        return False
    if check:
        return True
    old = next((c for c in nb.cells if c.get("id") == QUIZ_ID and c.source == quiz_source(chapter)), None)
    nb = _strip(nb)
    md = nbformat.v4.new_markdown_cell(QUIZ_MD)
    md.id = QUIZ_MD_ID
    code = nbformat.v4.new_code_cell(quiz_source(chapter))
    code.id = QUIZ_ID
    if old is not None and old.outputs and old.execution_count is not None:   # a run of the chapter made them
        code.outputs, code.execution_count = old.outputs, old.execution_count
    else:                          # nbval's rule: a cell with outputs was run; this one ran in its own kernel
        code.outputs, code.execution_count = quiz_outputs(chapter)
    nb.cells[at:at] = [md, code]
    nbformat.write(nb, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--only", nargs="*", help="chapter numbers, e.g. 04 11")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in args.only]
    stale = []
    for p in paths:
        if colab_cell.apply(p, check=args.check) | apply_quiz(p, check=args.check):
            stale.append(p.name)
    if args.check and stale:
        print(f"the Colab or quiz cell is missing or stale in: {', '.join(stale)} (run scripts/chapter_cells.py)")
        return 1
    if not args.check:
        print(f"updated {len(stale)} notebook(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
