#!/usr/bin/env python
"""Build the course as a static website (`make book`) from the committed notebooks.

    python scripts/build_book.py            # -> build/book/html/index.html

Copies docs/ and every notebooks/NN_*.ipynb into build/book/src, writes the table of
contents from the notebooks that exist (a new chapter appears by itself), and runs Sphinx
with MyST-NB, which renders the committed laptop-scale outputs without executing anything.
Warnings are errors (`-W`), so a broken link or an unreadable notebook fails the build.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = ROOT / "notebooks"


def chapter_title(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0].source.splitlines()[0] if nb.cells else path.stem
    return first.lstrip("# ").strip()


def prepare(src: Path) -> list[Path]:
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    chapters = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    (src / "chapters").mkdir()
    for nb in chapters:
        shutil.copy2(nb, src / "chapters" / nb.name)
    toc = "\n".join(f"chapters/{nb.stem}" for nb in chapters)
    index = (src / "index.md").read_text()
    index = index.replace("<!-- CHAPTERS -->", toc)
    (src / "index.md").write_text(index)
    return chapters


def build(out: Path = ROOT / "build" / "book", strict: bool = True) -> Path:
    src = out / "src"
    chapters = prepare(src)
    html = out / "html"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1", str(src), str(html)]
    if strict:
        cmd.insert(3, "-W")
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"{len(chapters)} chapters -> {html / 'index.html'} ({time.perf_counter() - start:.0f} s)")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "build" / "book"))
    parser.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    args = parser.parse_args(argv)
    build(Path(args.out), strict=not args.no_strict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
