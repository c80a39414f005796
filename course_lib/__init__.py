"""course_lib: the tested helper library of the course *Large Models for Product Recommendation*.

Layers, lowest first (a module imports only from layers below it)::

    device · data (datasets, shop generator, splits, sequences)
    metrics · evaluate (full-ranking evaluator)
    attention (the blocks) · losses
    baselines · models/ (one file per model)
    train (Trainer, checkpoints, search)
    infer (scoring, retrieval, export) · serve (HTTP service)
    exercises (checkers the notebooks call) · report (notebook helpers)

Import the submodule you need (``from course_lib import data, metrics``); importing
``course_lib`` itself stays cheap.
"""

__version__ = "0.1.0"

SCALES = ("smoke", "laptop", "full")
