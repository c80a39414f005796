"""Sphinx configuration of the course website (`make book`).

MyST-NB renders the committed notebooks *with their outputs* and executes nothing
(`nb_execution_mode = "off"`): the site shows the laptop-scale run that is in git. The theme
(sphinx-book-theme) is a PyPI package, so the build needs no network.
scripts/build_book.py copies docs/ and notebooks/ into build/book/src and runs Sphinx there.
"""

project = "Large Models for Product Recommendation"
author = "The course authors"
copyright = "the course authors; code and text MIT, MovieLens under GroupLens' terms"

extensions = ["myst_nb"]
nb_execution_mode = "off"          # render the committed outputs; never execute
nb_output_stderr = "remove-warn"   # keep error-free pages; stderr (progress bars) is noise on the web
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
