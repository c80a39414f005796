#!/usr/bin/env bash
# A separate virtual environment for RecBole 1.2.1 (it needs older numpy / pandas / scipy than
# the course). Created under build/ (ignored by git). Usage, from the repository root:
#     bash benchmarks/peer_recbole/setup.sh
set -euo pipefail
VENV=build/peer_recbole/.venv
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    "recbole==1.2.1" "numpy<2" "pandas<3" "scipy<1.14" "setuptools<81" "torch==2.13.0"
"$VENV/bin/python" -c "import recbole, torch; print('recbole', recbole.__version__, 'torch', torch.__version__)"
