"""Exercises of chapter 04 (sequential recommendation with transformers)."""

from __future__ import annotations

import numpy as np

from ..data.protocol import LeaveOneOutSplit
from . import register


def _toy_split() -> LeaveOneOutSplit:
    import pandas as pd

    from ..data import leave_one_out

    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        n = int(rng.integers(3, 40))
        rows += [(u, int(i), t) for t, i in enumerate(rng.choice(np.arange(1, 60), n, replace=False))]
    return leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), name="toy")


def _full_ce(hidden, targets, item_embeddings) -> float:
    """Mean of -s_t + log Σ_{i>=1} exp(s_i), with s = hidden @ item_embeddings.T (row 0 = padding, excluded)."""
    h = np.asarray(hidden, dtype=np.float64)
    E = np.asarray(item_embeddings, dtype=np.float64)[1:]
    t = np.asarray(targets, dtype=np.int64) - 1
    s = h @ E.T                                                      # (N, n_items)
    m = s.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True))).ravel()
    return float(np.mean(lse - s[np.arange(len(h)), t]))


def _ce_cases() -> list[tuple]:
    rng = np.random.default_rng(1)
    cases = [(np.array([[1.0, 0.0]]), np.array([1]), np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0]]))]
    for n, d, v in ((3, 4, 6), (5, 2, 9)):
        cases.append((rng.normal(size=(n, d)), rng.integers(1, v + 1, n), rng.normal(size=(v + 1, d))))
    cases.append((np.array([[30.0, 0.0]]), np.array([2]), np.array([[0.0, 0.0], [30.0, 0.0], [-30.0, 0.0]])))
    return cases


@register(
    "04.1",
    "full_ce(hidden, targets, item_embeddings): the full softmax cross-entropy of chapter 04, in NumPy",
    "scores s = hidden @ item_embeddings[1:].T (row 0 is padding, never a candidate); the loss of a row is "
    "logsumexp(s) - s[target - 1]; subtract the row maximum before exp for stability; return the mean",
    cases=_ce_cases,
    rtol=1e-6,
    atol=1e-9,
)
def full_ce_reference():
    return _full_ce


@register(
    "04.2",
    "number of (position, next item) targets one epoch of SASRec trains on, for histories cut to max_len",
    "each training sequence s gives inputs s[:-1] and targets s[1:], cut to the last max_len: "
    "min(len(s) - 1, max_len) targets per user; sum over split.train",
    example_context=lambda: {"split": _toy_split(), "max_len": 20},
)
def targets_per_epoch(split: LeaveOneOutSplit, max_len: int) -> int:
    return int(sum(min(len(s) - 1, int(max_len)) for s in split.train if len(s) >= 2))


@register(
    "04.3",
    "share of the padded (user, position) cells that hold a target when every history is padded to max_len",
    "targets per epoch (exercise 04.2) divided by the number of cells, users × max_len; "
    "the rest is padding, on which the output layer need not run",
    example_context=lambda: {"split": _toy_split(), "max_len": 20},
)
def target_share(split: LeaveOneOutSplit, max_len: int) -> float:
    users = sum(1 for s in split.train if len(s) >= 2)
    return targets_per_epoch(split, max_len) / (users * int(max_len))
