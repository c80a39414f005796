"""Recommendation metrics as plain functions.

One signature family, in the spirit of Microsoft Recommenders' ``python_evaluation.py``::

    metric_at_k(recommended, relevant, k, *, per_user=False) -> float | np.ndarray

* ``recommended``: one ranked list of item ids per user (a list of lists, or a 2-D array
  whose rows are ranked lists). Only the first ``k`` entries of each list are used.
* ``relevant``: one collection of relevant item ids per user (binary relevance).
* The result is the mean over users, or the per-user values with ``per_user=True``.

Notation below: for one user, ``rel_i`` is 1 when the item at rank ``i`` (1-based) is
relevant, ``R`` the set of relevant items, ``hits@k = sum_{i<=k} rel_i``.

Bad input (``k <= 0``, lists of different lengths, a user with no relevant item, NaN scores)
raises ``ValueError`` with a message that says what to fix.
"""

from __future__ import annotations

from typing import Collection, Mapping, Sequence

import numpy as np

Recommended = Sequence[Sequence] | np.ndarray
Relevant = Sequence[Collection]


# --------------------------------------------------------------------------- helpers
def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _relevance_matrix(recommended: Recommended, relevant: Relevant, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n_users, k)`` 0/1 matrix ``rel`` and ``(n_users,)`` counts ``|R|``."""
    k = _check_k(k)
    if len(recommended) != len(relevant):
        raise ValueError(
            f"recommended has {len(recommended)} users but relevant has {len(relevant)}; "
            "pass one ranked list and one relevant set per user, in the same order"
        )
    if len(recommended) == 0:
        raise ValueError("no users to evaluate: recommended and relevant are empty")
    rel = np.zeros((len(recommended), k), dtype=np.float64)
    n_rel = np.empty(len(recommended), dtype=np.float64)
    for u, (recs, truth) in enumerate(zip(recommended, relevant)):
        truth = set(np.asarray(list(truth)).tolist()) if not isinstance(truth, set) else truth
        if not truth:
            raise ValueError(
                f"user at position {u} has no relevant items; metrics are undefined for them — "
                "drop such users before evaluating"
            )
        top = list(np.asarray(recs)[:k].tolist())
        if len(set(top)) != len(top):
            raise ValueError(f"the ranked list of user at position {u} repeats an item: {top}")
        rel[u, : len(top)] = [item in truth for item in top]
        n_rel[u] = len(truth)
    return rel, n_rel


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _reduce(values: np.ndarray, per_user: bool) -> float | np.ndarray:
    return values if per_user else float(values.mean())


# --------------------------------------------------------------------------- ranking
def hit_rate_at_k(recommended: Recommended, relevant: Relevant, k: int, *,
                  per_user: bool = False) -> float | np.ndarray:
    """Hit rate: ``HR@k = 1[hits@k > 0]``, averaged over users.

    With one relevant item per user (leave-one-out) it equals recall@k.
    """
    rel, _ = _relevance_matrix(recommended, relevant, k)
    return _reduce((rel.sum(axis=1) > 0).astype(float), per_user)


def precision_at_k(recommended: Recommended, relevant: Relevant, k: int, *,
                   per_user: bool = False) -> float | np.ndarray:
    """Precision: ``P@k = hits@k / k`` (divided by k even when a list is shorter)."""
    rel, _ = _relevance_matrix(recommended, relevant, k)
    return _reduce(rel.sum(axis=1) / k, per_user)


def recall_at_k(recommended: Recommended, relevant: Relevant, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """Recall: ``R@k = hits@k / |R|``."""
    rel, n_rel = _relevance_matrix(recommended, relevant, k)
    return _reduce(rel.sum(axis=1) / n_rel, per_user)


def ndcg_at_k(recommended: Recommended, relevant: Relevant, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """Normalised discounted cumulative gain with the log2 discount.

    ``DCG@k = sum_{i=1..k} rel_i / log2(i + 1)``; ``IDCG@k`` is the DCG of a perfect list,
    ``sum_{i=1..min(|R|, k)} 1 / log2(i + 1)``; ``NDCG@k = DCG@k / IDCG@k`` in [0, 1].
    With one relevant item at rank r ≤ k, ``NDCG@k = 1 / log2(r + 1)``.
    """
    rel, n_rel = _relevance_matrix(recommended, relevant, k)
    disc = _discounts(k)
    dcg = rel @ disc
    ideal = np.cumsum(disc)[np.minimum(n_rel, k).astype(int) - 1]
    return _reduce(dcg / ideal, per_user)


def mrr_at_k(recommended: Recommended, relevant: Relevant, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """Mean reciprocal rank: ``1 / r`` for the first relevant item's rank r ≤ k, else 0."""
    rel, _ = _relevance_matrix(recommended, relevant, k)
    first = rel.argmax(axis=1)
    rr = np.where(rel.max(axis=1) > 0, 1.0 / (first + 1), 0.0)
    return _reduce(rr, per_user)


def map_at_k(recommended: Recommended, relevant: Relevant, k: int, *, per_user: bool = False) -> float | np.ndarray:
    """Mean average precision: ``AP@k = (1 / min(|R|, k)) * sum_{i=1..k} P@i * rel_i``."""
    rel, n_rel = _relevance_matrix(recommended, relevant, k)
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    ap = (precision_at_i * rel).sum(axis=1) / np.minimum(n_rel, k)
    return _reduce(ap, per_user)


# --------------------------------------------------------------------------- scores
def _as_float_array(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN at position {int(np.flatnonzero(np.isnan(arr))[0])}; "
                         "fix the model's output (or drop those rows) before scoring")
    return arr


def auc(labels: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outranks a random negative.

    ``AUC = (sum of positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos * n_neg)`` with
    ranks 1..n by ascending score, ties given their average rank (Mann–Whitney U).
    """
    y = _as_float_array(labels, "labels")
    s = _as_float_array(scores, "scores")
    if len(y) != len(s):
        raise ValueError(f"labels has {len(y)} entries but scores has {len(s)}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative label")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rmse(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> float:
    """Root mean squared error: ``sqrt(mean((y - ŷ)^2))`` (rating prediction, explicit feedback)."""
    y, p = _as_float_array(y_true, "y_true"), _as_float_array(y_pred, "y_pred")
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} entries but y_pred has {len(p)}")
    return float(np.sqrt(np.mean((y - p) ** 2)))


def mae(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray) -> float:
    """Mean absolute error: ``mean(|y - ŷ|)``."""
    y, p = _as_float_array(y_true, "y_true"), _as_float_array(y_pred, "y_pred")
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} entries but y_pred has {len(p)}")
    return float(np.mean(np.abs(y - p)))


# --------------------------------------------------------------------------- beyond accuracy
def _lists(recommended: Recommended) -> list[list]:
    if len(recommended) == 0:
        raise ValueError("recommended is empty")
    return [list(np.asarray(r).tolist()) for r in recommended]


def catalog_coverage(recommended: Recommended, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list: ``|∪ lists| / n_items``."""
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    distinct = set().union(*map(set, _lists(recommended)))
    if len(distinct) > n_items:
        raise ValueError(f"{len(distinct)} distinct items recommended but n_items is {n_items}")
    return len(distinct) / n_items


def intra_list_diversity(recommended: Recommended, item_vectors: np.ndarray | Mapping) -> float:
    """Mean pairwise cosine distance inside each list, averaged over lists.

    ``ILD(L) = 2 / (|L| (|L| - 1)) * sum_{i<j} (1 - cos(v_i, v_j))``. ``item_vectors`` is
    indexed by item id (an array whose row i is item i's vector, or a mapping id → vector).
    Lists with fewer than two items are skipped.
    """
    values = []
    for recs in _lists(recommended):
        if len(recs) < 2:
            continue
        try:
            vecs = np.stack([np.asarray(item_vectors[i], dtype=np.float64) for i in recs])
        except (KeyError, IndexError) as err:
            raise ValueError(f"no vector for recommended item {err}") from None
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("an item vector is all zeros; cosine distance is undefined for it")
        unit = vecs / norms
        sims = unit @ unit.T
        n = len(recs)
        values.append(float((1 - sims)[np.triu_indices(n, 1)].mean()))
    if not values:
        raise ValueError("every list has fewer than two items; diversity is undefined")
    return float(np.mean(values))


def novelty(recommended: Recommended, item_popularity: np.ndarray | Mapping) -> float:
    """Mean self-information of recommended items: ``mean(-log2(count_i / sum(count)))``.

    ``item_popularity`` holds each item's interaction count (array indexed by item id, or a
    mapping). Popular items carry little information; rare ones a lot. An item with zero
    count has infinite novelty: smooth the counts first (e.g. ``counts + 1``).
    """
    if isinstance(item_popularity, Mapping):
        counts = item_popularity
        total = float(sum(item_popularity.values()))
    else:
        counts = np.asarray(item_popularity, dtype=np.float64)
        total = float(counts.sum())
    if total <= 0:
        raise ValueError("item_popularity sums to zero")
    values = []
    for recs in _lists(recommended):
        for i in recs:
            c = float(counts[i])
            if c <= 0:
                raise ValueError(f"item {i} has zero interactions: its novelty is infinite; "
                                 "pass smoothed counts such as item_popularity + 1")
            values.append(-np.log2(c / total))
    return float(np.mean(values))


__all__ = [
    "auc", "catalog_coverage", "hit_rate_at_k", "intra_list_diversity", "mae", "map_at_k",
    "mrr_at_k", "ndcg_at_k", "novelty", "precision_at_k", "recall_at_k", "rmse",
]
