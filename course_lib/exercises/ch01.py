"""Exercises of chapter 01 (recommendation basics and baselines)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..data import LeaveOneOutSplit, leave_one_out
from . import register


def _toy_split() -> LeaveOneOutSplit:
    """40 users, 30 items in three taste groups; every user has 6-12 interactions."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        group = np.arange(1, 11) + 10 * (u % 3)
        n = int(rng.integers(6, 13))
        picks = rng.choice(group, size=min(n, 9), replace=False).tolist()
        picks += rng.choice(np.setdiff1d(np.arange(1, 31), picks), size=n - len(picks), replace=False).tolist()
        rows += [(u, int(i), t) for t, i in enumerate(picks)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return leave_one_out(df, name="toy")


def _recall(recommended: Sequence, relevant: Sequence, k: int) -> float:
    relevant = set(relevant)
    hits = sum(1 for item in list(recommended)[:k] if item in relevant)
    return hits / len(relevant)


@register(
    "01.1",
    "recall(recommended, relevant, k): share of the relevant items found in the top k",
    "take the first k recommended items, count how many are in relevant, divide by len(relevant) "
    "(not by k: that would be precision)",
    cases=lambda: [([3, 7, 1, 9, 4], {7, 4}, 5), ([3, 7, 1, 9, 4], {7, 4}, 2), ([3, 7, 1], {5}, 3),
                   ([1, 2, 3, 4], {1, 2, 3, 4, 5, 6}, 3), (["a", "b"], {"b"}, 1), ([10, 20, 30], [30, 40], 10),
                   ([12, 7, 3, 25, 9], {7, 9, 40}, 5)],
    wrong_answers=lambda: [
        ("precision: divided by k", lambda rec, rel, k: sum(1 for i in list(rec)[:k] if i in set(rel)) / k),
        ("all recommended items, not the first k",
         lambda rec, rel, k: sum(1 for i in rec if i in set(rel)) / len(set(rel))),
        ("divided by min(k, |relevant|)", lambda rec, rel, k: sum(1 for i in list(rec)[:k] if i in set(rel))
         / min(k, len(set(rel)))),
        ("the first k - 1 items (off by one)", lambda rec, rel, k: sum(1 for i in list(rec)[:k - 1] if i in set(rel))
         / len(set(rel))),
        ("hit rate: 1 if any relevant item is found",
         lambda rec, rel, k: float(any(i in set(rel) for i in list(rec)[:k]))),
        ("the count of hits, not the share", lambda rec, rel, k: float(sum(1 for i in list(rec)[:k] if i in set(rel)))),
    ],
)
def recall_reference():
    return _recall


@register(
    "01.2",
    "the EASE λ from `grid` with the highest validation NDCG@10 on `split`",
    "for each λ: EASE(lam=λ).fit(split), then evaluate(model.score, split, 'valid')['NDCG@10']; "
    "keep the λ with the largest value (course_lib.baselines.grid_search does this loop for you)",
    example_context=lambda: {"split": _toy_split(), "grid": (0.1, 3.0, 30.0, 300.0)},
    wrong=lambda split, grid: -1.0,
    wrong_answers=lambda split, grid: _wrong_01_2(split, grid),
)
def best_ease_lambda(split: LeaveOneOutSplit, grid: Sequence[float]) -> float:
    scores = _ease_ndcg(split, grid, "valid")
    return float(max(scores, key=lambda lam: (scores[lam], -lam)))


def _ease_ndcg(split: LeaveOneOutSplit, grid: Sequence[float], stage: str) -> dict[float, float]:
    """NDCG@10 of EASE(λ) on `stage` for each λ of `grid` (fitted on the training part)."""
    from ..baselines import EASE
    from ..evaluate import evaluate

    return {float(lam): evaluate(EASE(lam=lam).fit(split).score, split, stage, ks=(10,))["NDCG@10"] for lam in grid}


def _wrong_01_2(split: LeaveOneOutSplit, grid: Sequence[float]) -> list[tuple[str, object]]:
    valid = _ease_ndcg(split, grid, "valid")
    best = max(valid, key=lambda lam: (valid[lam], -lam))
    out: list[tuple[str, object]] = [(f"λ = {lam:g}, another value of the grid", lam) for lam in valid if lam != best]
    out.append(("the best validation NDCG@10 instead of the λ that gives it", float(valid[best])))
    out.append(("the λ with the lowest validation NDCG@10", float(min(valid, key=valid.get))))
    test = _ease_ndcg(split, grid, "test")
    best_on_test = max(test, key=lambda lam: (test[lam], -lam))
    out.append(("the λ chosen on the test stage (tuning on the exam)", float(best_on_test)))
    return out


@register(
    "01.3",
    "the density of `split`'s training matrix: filled cells / (users × items), as a fraction",
    "split.train_matrix() is a SciPy sparse matrix: .nnz counts the filled cells; remember that its "
    "column 0 is padding, so the catalogue has split.n_items items, not shape[1]",
    example_context=lambda: {"split": _toy_split()},
    wrong_answers=lambda split: _wrong_01_3(split),
)
def training_density(split: LeaveOneOutSplit) -> float:
    X = split.train_matrix()
    return X.nnz / (split.n_users * split.n_items)


def _wrong_01_3(split: LeaveOneOutSplit) -> list[tuple[str, object]]:
    X = split.train_matrix()
    right = X.nnz / (split.n_users * split.n_items)
    all_stages = (X.nnz + 2 * split.n_users) / (split.n_users * split.n_items)
    return [
        ("the padding column counted as an item", X.nnz / (X.shape[0] * X.shape[1])),
        ("a percentage instead of a fraction", 100 * right),
        ("the sparsity (1 - density)", 1 - right),
        ("validation and test items counted as filled (the whole data set)", all_stages),
        ("the number of filled cells", float(X.nnz)),
    ]
