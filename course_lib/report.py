"""Small helpers the notebooks share: scale settings and the chapter's headline result."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from . import SCALES

HEADLINE_MIME = "application/vnd.course.headline+json"


def scale_config(scale: str, **by_scale: dict[str, Any]) -> SimpleNamespace:
    """Pick the settings of one scale.

    >>> cfg = scale_config("smoke", smoke=dict(epochs=1), laptop=dict(epochs=10), full=dict(epochs=200))
    >>> cfg.epochs
    1

    Every scale must be given the same keys, so that no scale silently lacks a setting.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown SCALE {scale!r}; choose one of: {', '.join(SCALES)}")
    missing = [s for s in SCALES if s not in by_scale]
    if missing:
        raise ValueError(f"scale_config needs settings for every scale; missing: {missing}")
    keys = {s: set(v) for s, v in by_scale.items()}
    if len({frozenset(k) for k in keys.values()}) != 1:
        raise ValueError(f"every scale must set the same keys; got {keys}")
    return SimpleNamespace(scale=scale, **by_scale[scale])


def headline(text: str, **values: Any) -> None:
    """Show the chapter's headline result; ``make course`` collects it into its summary."""
    record = {"text": text, "values": {k: (float(v) if isinstance(v, (int, float)) else str(v))
                                       for k, v in values.items()}}
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display({HEADLINE_MIME: record, "text/plain": f"Headline: {text}"}, raw=True)
            return
    except ImportError:  # pragma: no cover
        pass
    print(f"Headline: {text} {json.dumps(record['values'])}")


def setup_plots() -> None:
    """The course's plot style: seaborn's whitegrid, modest size and resolution.

    Keeps committed notebooks small (a figure is ~30–60 kB) and readable on the web.
    """
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    mpl.rcParams.update({"figure.figsize": (6.4, 3.6), "figure.dpi": 80, "savefig.dpi": 80,
                         "axes.titleweight": "bold"})
