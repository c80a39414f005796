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


def _ce_variant(hidden, targets, item_embeddings, keep_padding=False, shift=1, stable=True) -> float:
    h = np.asarray(hidden, dtype=np.float64)
    E = np.asarray(item_embeddings, dtype=np.float64)
    E = E if keep_padding else E[1:]
    t = np.asarray(targets, dtype=np.int64) - (0 if keep_padding else shift)
    t = np.clip(t, 0, len(E) - 1)
    s = h @ E.T
    with np.errstate(over="ignore", invalid="ignore"):
        if stable:
            m = s.max(axis=1, keepdims=True)
            lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True))).ravel()
        else:
            lse = np.log(np.exp(s).sum(axis=1))
    return float(np.mean(lse - s[np.arange(len(h)), t]))


def _bce_only(hidden, targets, item_embeddings) -> float:
    h = np.asarray(hidden, dtype=np.float64)
    E = np.asarray(item_embeddings, dtype=np.float64)
    s_t = (h * E[np.asarray(targets, dtype=np.int64)]).sum(-1)
    return float(np.mean(np.logaddexp(0.0, -s_t)))


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
    wrong_answers=lambda: [
        ("padding row 0 kept as a candidate", lambda h, t, E: _ce_variant(h, t, E, keep_padding=True)),
        ("target index not shifted (s[target] on the items without padding)",
         lambda h, t, E: _ce_variant(h, t, E, shift=0)),
        ("the sum over rows instead of the mean", lambda h, t, E: _ce_variant(h, t, E) * len(np.atleast_2d(h))),
        ("no max subtraction (overflows on large scores)", lambda h, t, E: _ce_variant(h, t, E, stable=False)),
        ("the sign flipped", lambda h, t, E: -_ce_variant(h, t, E)),
        ("BCE with the target alone", lambda h, t, E: _bce_only(h, t, E)),
    ],
)
def full_ce_reference():
    return _full_ce


@register(
    "04.2",
    "number of (position, next item) targets one epoch of SASRec trains on, for histories cut to max_len",
    "each training sequence s gives inputs s[:-1] and targets s[1:], cut to the last max_len: "
    "min(len(s) - 1, max_len) targets per user; sum over split.train",
    example_context=lambda: {"split": _toy_split(), "max_len": 20},
    wrong_answers=lambda split, max_len: [
        ("min(len(s), max_len): the sequence's own length, not its targets",
         int(sum(min(len(s), int(max_len)) for s in split.train if len(s) >= 2))),
        ("no cut at max_len", int(sum(len(s) - 1 for s in split.train))),
        ("cut at max_len - 1", int(sum(min(len(s) - 1, int(max_len) - 1) for s in split.train if len(s) >= 2))),
        ("the training interactions, len(s) summed", int(sum(len(s) for s in split.train))),
        ("one target per user", int(sum(1 for s in split.train if len(s) >= 2))),
        ("users × max_len cells", int(sum(1 for s in split.train if len(s) >= 2)) * int(max_len)),
    ],
)
def targets_per_epoch(split: LeaveOneOutSplit, max_len: int) -> int:
    return int(sum(min(len(s) - 1, int(max_len)) for s in split.train if len(s) >= 2))


@register(
    "04.3",
    "share of the padded (user, position) cells that hold a target when every history is padded to max_len",
    "targets per epoch (exercise 04.2) divided by the number of cells, users × max_len; "
    "the rest is padding, on which the output layer need not run",
    example_context=lambda: {"split": _toy_split(), "max_len": 20},
    wrong_answers=lambda split, max_len: [
        ("the padding share (1 - answer)", 1 - target_share(split, max_len)),
        ("a percentage", 100 * target_share(split, max_len)),
        ("cells counted as users × (max_len + 1)", targets_per_epoch(split, max_len)
         / (sum(1 for s in split.train if len(s) >= 2) * (int(max_len) + 1))),
        ("no cut at max_len in the numerator", sum(len(s) - 1 for s in split.train if len(s) >= 2)
         / (sum(1 for s in split.train if len(s) >= 2) * int(max_len))),
        ("the number of targets, not the share", float(targets_per_epoch(split, max_len))),
    ],
)
def target_share(split: LeaveOneOutSplit, max_len: int) -> float:
    users = sum(1 for s in split.train if len(s) >= 2)
    return targets_per_epoch(split, max_len) / (users * int(max_len))
