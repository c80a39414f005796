"""Sphinx configuration of the course website (`make book`).

MyST-NB renders the committed notebooks *with their outputs* and executes nothing
(`nb_execution_mode = "off"`): the site shows the laptop-scale run that is in git. The theme
(sphinx-book-theme) is a PyPI package, so the build needs no network; so is MathJax (2.7, the
copy that the PyPI package jupyter-server-mathjax ships), which is copied into the site so that
formulas are typeset with no network either (Sphinx's default loads MathJax 3 from a CDN).
scripts/build_book.py copies docs/ and notebooks/ into build/book/src and runs Sphinx there.
"""

import shutil
from pathlib import Path

import jupyter_server_mathjax

project = "Large Models for Product Recommendation"
author = "The course authors"
copyright = "the course authors; code and text MIT, MovieLens under GroupLens' terms"

extensions = ["myst_nb"]
nb_execution_mode = "off"          # render the committed outputs; never execute
nb_output_stderr = "remove"        # stderr (progress bars, library warnings) is noise on the web
# Widgets (the quizzes, progress bars) have no saved state in a static page: show the HTML or
# text beside them instead of an empty widget.
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
]
nb_ipywidgets_js = {}              # so no page loads require.js and the widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "misc.highlighting_failure"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "home_page_in_toc": True,
}
html_static_path = []

# MathJax from the site itself, not from a CDN: a classroom's website works offline.
MATHJAX_DIR = Path(jupyter_server_mathjax.__file__).parent / "static"
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                "processRefs": False, "processEnvironments": False},
    # the PyPI copy ships the STIX-Web fonts, not the TeX ones
    "HTML-CSS": {"availableFonts": [], "webFont": "STIX-Web", "imageFont": None},
}
myst_update_mathjax = False        # MyST's update targets MathJax 3's configuration


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        shutil.copytree(MATHJAX_DIR, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
