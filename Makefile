# The course in two commands:
#   make course   set up, fetch the data, execute every notebook (laptop scale) -> build/
#   make test     set up, fetch the data, ruff, unit tests + every notebook once at smoke scale
# Also: make unit (library tests, < 90 s), make lint (ruff), make lab (JupyterLab),
#       make outputs (refresh committed outputs), make data, make bench,
#       make check (one-minute preflight), make wheelhouse (offline install folder for a
#       classroom), make book (the course as a static website, build/book/html).
# Offline, from a wheelhouse folder (a USB stick): make course WHEELHOUSE=/path/to/wheelhouse

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.course-installed
SCALE  ?= laptop
# WHEELHOUSE=dir: install the packages and the data from dir/wheels with no network (see
# scripts/wheelhouse.py); pip reads PIP_NO_INDEX / PIP_FIND_LINKS, course_lib.data too.
ifdef WHEELHOUSE
export PIP_NO_INDEX := 1
export PIP_FIND_LINKS := $(abspath $(WHEELHOUSE))/wheels
export COURSE_GROUPLENS_TIMEOUT := 1
endif

.PHONY: course test unit lint lab outputs data bench setup clean help check wheelhouse book

help:
	@sed -n '1,10p' Makefile

# The install runs again only when pyproject.toml changes (or the venv is new).
# One pip call installs every pinned dependency, torch==2.13.0 (CPU wheel) included,
# and course_lib itself in editable mode. --no-compile: pip would byte-compile every installed
# module (about 40 of its 90 CPU seconds on a fresh venv); Python compiles the few that are
# imported, on first import.
$(STAMP): pyproject.toml jupyter/overrides.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-compile -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)" >/dev/null
	@# JupyterLab for a room of beginners: no "official Jupyter news?" question on first start
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $(STAMP)

setup: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m course_lib.data fetch

course: data
	$(BIN)/python scripts/run_notebooks.py --scale $(SCALE)

# Each notebook is executed once (papermill, smoke scale) by tests/test_notebooks.py, which
# then compares its # NBVAL_CHECK_OUTPUT cells with the committed outputs (nbval's rules).
PYTEST = $(THREADS) COURSE_SCALE=smoke MPLBACKEND=Agg $(BIN)/python -m pytest -p no:cacheprovider --durations=15
# JOBS=2 (the default) spreads the tests (each notebook is one test) over 2 pytest-xdist workers; "worksteal"
# lets an idle worker take queued tests (with "load", one worker got every notebook); JOBS=1: one process.
JOBS   ?= 2
XDIST  := $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist worksteal,)
# With several workers, each worker (and the notebook kernel it starts) computes on one thread:
# JOBS workers on JOBS cores, instead of 2 x 2 torch/BLAS threads fighting over 2 cores.
THREADS := $(if $(filter-out 1,$(JOBS)),OMP_NUM_THREADS=1,)

test: lint data
	$(PYTEST) $(XDIST) tests

# The fast tier: library tests only (no notebook, no test marked slow).
unit: data
	$(PYTEST) $(XDIST) tests -m "not notebook and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

check: setup
	$(BIN)/python scripts/preflight.py

wheelhouse: setup
	$(BIN)/python scripts/wheelhouse.py build build/wheelhouse

book: setup
	$(BIN)/python scripts/build_book.py

lab: data
	$(BIN)/jupyter lab notebooks/

outputs: data
	$(BIN)/python scripts/run_notebooks.py --scale laptop --inplace

bench: data
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf build .pytest_cache
