"""Evaluation in depth: uncertainty, popularity bias, and multi-objective re-ranking (chapter 08).

Builds on :mod:`course_lib.metrics` and :mod:`course_lib.evaluate`:

* **Uncertainty** — :func:`bootstrap_ci` (percentile bootstrap over users) and
  :func:`paired_test` (two models on the same users: paired t-test, Wilcoxon signed-rank,
  sign-flip permutation test, or paired bootstrap).
* **Popularity bias** — :func:`popularity_bias` (share of recommendation slots taken by the
  top 1% / 10% most popular items, average recommendation popularity) and
  :func:`gini` (inequality of exposure across the catalogue).
* **Beyond-accuracy per user** — :func:`per_user_ild` (intra-list diversity of each list)
  and :func:`label_vectors` (multi-hot genre / category vectors to measure it with).
* **Multi-objective re-ranking** — :func:`candidates` (each user's top-``C`` items and their
  relevance), :func:`mmr_rerank` (maximal marginal relevance, Carbonell & Goldstein 1998),
  :func:`weighted_rerank` (a weighted sum of relevance and per-item objectives such as
  novelty) and :func:`pareto_front` (the non-dominated points of a trade-off).

Shapes: ``U`` users, ``B`` users in a batch, ``C`` candidates per user, ``k`` list length,
``N = n_items + 1`` item ids (0 = padding), ``d`` item-vector size.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Callable, Literal, Mapping, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

from .data.protocol import PAD, LeaveOneOutSplit, pad_sequences
from .scoring import ScoreFn, Scorer, as_score_fn

ArrayLike = "Sequence[float] | np.ndarray | torch.Tensor"
Lists = "Sequence[Sequence[int]] | np.ndarray | torch.Tensor"

__all__ = [
    "bootstrap_ci", "candidates", "gini", "label_vectors", "mmr_rerank", "paired_test", "pareto_front", "per_user_ild",
    "popularity_bias", "weighted_rerank",
]


# --------------------------------------------------------------------------- uncertainty
def _values(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size < 2:
        raise ValueError(f"{name} needs at least two per-user values, got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; fill per-user metrics of missing users with 0 first")
    return arr


def bootstrap_ci(values: ArrayLike, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 statistic: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """Percentile bootstrap confidence interval of a mean over users.

    Resample the ``U`` per-user values with replacement ``n_boot`` times, compute the mean
    of each resample, and take the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.

    Args:
        values: ``(U,)`` per-user metric values (e.g. ``evaluate(..., per_user=True)[1]["NDCG@10"]``).
        n_boot: resamples.
        level: coverage of the interval (0.95: a 95% interval).
        seed: seeds the resampling.
        statistic: ``f((n_boot, U) array) -> (n_boot,)``; default the row mean.

    Returns:
        ``{"estimate", "low", "high", "se"}`` — the statistic on the data, the interval, and
        the bootstrap standard error.
    """
    x = _values(values, "bootstrap_ci")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100 for stable quantiles, got {n_boot}")
    stat = statistic or (lambda a: a.mean(axis=-1))
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    chunk = max(1, 20_000_000 // len(x))  # keep each (chunk, U) index array modest
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, len(x), size=(stop - start, len(x)))
        boots[start:stop] = stat(x[idx])
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return {"estimate": float(stat(x[None, :])[0]), "low": float(low), "high": float(high),
            "se": float(boots.std(ddof=1))}


def paired_test(a: ArrayLike, b: ArrayLike, *, method: Literal["t", "wilcoxon", "permutation", "bootstrap"] = "t",
                n_resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Is model A's mean per-user metric different from model B's on the same users?

    Works on the per-user differences ``d_u = a_u - b_u`` (pairing removes the variation
    between users, which both models share):

    * ``"t"``: paired t-test, ``t = mean(d) / (sd(d) / sqrt(U))`` with ``U - 1`` degrees of freedom;
    * ``"wilcoxon"``: Wilcoxon signed-rank test (no normality assumption; zero differences dropped);
    * ``"permutation"``: sign-flip randomisation test — under "no difference" each ``d_u`` is
      as likely to be ``-d_u``; exact (all ``2^U`` flips) when ``2^U <= n_resamples``;
    * ``"bootstrap"``: paired bootstrap; p-value from the resampled means shifted to 0.

    Returns:
        ``{"mean_diff", "low", "high", "p_value"}``: the mean difference, a ``level``
        confidence interval for it (bootstrap percentile interval, except the t interval
        for ``"t"``), and the two-sided p-value.
    """
    from scipy import stats

    x, y = _values(a, "paired_test a"), _values(b, "paired_test b")
    if len(x) != len(y):
        raise ValueError(f"paired values must come from the same users: {len(x)} vs {len(y)} values")
    d = x - y
    n, mean = len(d), float(d.mean())
    if method == "t":
        sd = float(d.std(ddof=1))
        if sd == 0:
            p = 1.0 if mean == 0 else 0.0
            return {"mean_diff": mean, "low": mean, "high": mean, "p_value": p}
        t = mean / (sd / math.sqrt(n))
        p = float(2 * stats.t.sf(abs(t), df=n - 1))
        half = float(stats.t.ppf((1 + level) / 2, df=n - 1)) * sd / math.sqrt(n)
        return {"mean_diff": mean, "low": mean - half, "high": mean + half, "p_value": p}
    ci = bootstrap_ci(d, n_boot=max(1000, min(n_resamples, 5000)), level=level, seed=seed)
    if method == "wilcoxon":
        if not np.any(d != 0):
            p = 1.0
        else:
            p = float(stats.wilcoxon(d[d != 0]).pvalue)
    elif method == "permutation":
        observed = abs(mean)
        if 2 ** n <= n_resamples:
            signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
            flipped = np.abs((signs * d).mean(axis=1))
            p = float(np.mean(flipped >= observed - 1e-12))
        else:
            rng = np.random.default_rng(seed)
            count = 0
            chunk = max(1, 20_000_000 // n)
            for start in range(0, n_resamples, chunk):
                m = min(chunk, n_resamples - start)
                signs = rng.choice((-1.0, 1.0), size=(m, n))
                count += int(np.sum(np.abs((signs * d).mean(axis=1)) >= observed - 1e-12))
            p = (count + 1) / (n_resamples + 1)
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        centred = d - mean
        count = 0
        chunk = max(1, 20_000_000 // n)
        for start in range(0, n_resamples, chunk):
            m = min(chunk, n_resamples - start)
            means = centred[rng.integers(0, n, size=(m, n))].mean(axis=1)
            count += int(np.sum(np.abs(means) >= abs(mean) - 1e-12))
        p = (count + 1) / (n_resamples + 1)
    else:
        raise ValueError(f"unknown method {method!r}; choose 't', 'wilcoxon', 'permutation' or 'bootstrap'")
    return {"mean_diff": mean, "low": ci["low"], "high": ci["high"], "p_value": float(p)}


# --------------------------------------------------------------------------- popularity bias
def _rec_array(recommended: Lists) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2 or rec.size == 0:
        raise ValueError(f"recommended must be a (users, k) array of item ids, got shape {rec.shape}")
    return rec.astype(np.int64)


def popularity_bias(recommended: Lists, item_popularity: ArrayLike, *,
                    fractions: Sequence[float] = (0.01, 0.1)) -> dict[str, float]:
    """How much of what a model recommends comes from the head of the popularity curve.

    Items ``1..n_items`` are ranked by ``item_popularity`` (training counts, index 0 =
    padding, ties broken by item id); the head of size ``ceil(f · n_items)`` is the top
    ``f``. For each ``f``: the share of all recommendation slots that hold a head item
    (a popularity-blind random recommender gives about ``f``). Also ``ARP``, the average
    recommendation popularity (mean training count of the recommended items), and the
    same share for the data itself (interactions on head items), to compare against.

    Args:
        recommended: ``(U, k)`` internal item ids.
        item_popularity: ``(n_items + 1,)`` counts (``split.item_popularity()``).
        fractions: head sizes as fractions of the catalogue.

    Returns:
        ``{"top 1% share": ..., "top 10% share": ..., "data top 1% share": ..., ..., "ARP": ...}``.
    """
    rec = _rec_array(recommended)
    pop = np.asarray(item_popularity, dtype=np.float64)
    n_items = len(pop) - 1
    if n_items < 1:
        raise ValueError("item_popularity must have n_items + 1 entries (index 0 = padding)")
    if rec.min() < 1 or rec.max() > n_items:
        raise ValueError(f"recommended holds ids outside 1..{n_items}")
    order = np.lexsort((np.arange(1, n_items + 1), -pop[1:])) + 1  # most popular first
    out: dict[str, float] = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fractions must be in (0, 1], got {f}")
        head = np.zeros(n_items + 1, dtype=bool)
        head[order[: int(math.ceil(f * n_items))]] = True
        label = f"{100 * f:g}%"
        out[f"top {label} share"] = float(head[rec].mean())
        out[f"data top {label} share"] = float(pop[head].sum() / pop.sum()) if pop.sum() > 0 else float("nan")
    out["ARP"] = float(pop[rec].mean())
    return out


def gini(counts: ArrayLike) -> float:
    """Gini coefficient of non-negative counts: 0 when all are equal, → 1 when one item has all.

    ``G = sum_i (2i - n - 1) c_(i) / (n · sum c)`` with ``c_(1) <= ... <= c_(n)`` sorted.
    Applied to how often each catalogue item is recommended, it measures how unequal
    exposure is.
    """
    c = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if c.size == 0 or (c < 0).any():
        raise ValueError("gini needs a non-empty array of non-negative counts")
    if c.sum() == 0:
        raise ValueError("all counts are zero; the Gini coefficient is undefined")
    n = len(c)
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * c).sum() / (n * c.sum()))


def per_user_ild(recommended: Lists, item_vectors: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(U,)`` intra-list diversity of each list: mean pairwise cosine distance of its items.

    The per-user version of :func:`course_lib.metrics.intra_list_diversity` (whose mean it
    equals), vectorised; ``item_vectors`` is ``(N, d)``, row ``i`` the vector of item ``i``.
    """
    rec = torch.as_tensor(np.ascontiguousarray(_rec_array(recommended)))
    V = torch.as_tensor(np.ascontiguousarray(item_vectors), dtype=torch.float64)
    if rec.shape[1] < 2:
        raise ValueError("lists need at least two items for diversity")
    norms = V.norm(dim=1)
    if (norms[rec] == 0).any():
        raise ValueError("a recommended item has an all-zero vector; cosine distance is undefined for it")
    U = V / norms.clamp_min(1e-12)[:, None]
    out = []
    for start in range(0, len(rec), 2048):
        vec = U[rec[start:start + 2048]]  # (b, k, d)
        sims = vec @ vec.transpose(1, 2)  # (b, k, k)
        k = vec.shape[1]
        iu = torch.triu_indices(k, k, 1)
        out.append((1 - sims[:, iu[0], iu[1]]).mean(dim=1))
    return torch.cat(out).numpy()


def label_vectors(items: "pd.DataFrame | Sequence[str]", column: str | None = None, *, sep: str = "|") -> np.ndarray:
    """``(N, L)`` multi-hot item vectors from a label column, row ``i`` = internal item ``i``.

    ``column`` defaults to ``category`` (the shop) or ``genres`` (MovieLens, ``"A|B"`` gives
    two labels). With such vectors, cosine distance is 1 for items with no label in common
    and 0 for items with the same labels, which makes intra-list diversity easy to read.
    The padding row 0 gets a vector of ones (it is never recommended; it only must not be 0).

    Args:
        items: a split's item table (``split.items``), indexed by internal id.
        column: the label column.
        sep: separator between several labels in one cell.
    """
    if column is None:
        column = next((c for c in ("category", "genres") if c in items.columns), None)
        if column is None:
            raise ValueError(f"no 'category' or 'genres' column in the item table ({list(items.columns)}); "
                             "pass column=...")
    if column not in items.columns:
        raise ValueError(f"no column {column!r} in the item table ({list(items.columns)})")
    labels = items[column].fillna("").astype(str).str.get_dummies(sep=sep)
    V = np.array(labels.to_numpy(dtype=np.float64), copy=True)
    V[0] = 1.0
    empty = np.flatnonzero(V.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(f"{len(empty)} item(s) have no label in {column!r} (e.g. internal id {empty[0]})")
    return V


# --------------------------------------------------------------------------- re-ranking
def candidates(model: "Scorer | ScoreFn | np.ndarray | torch.Tensor", split: LeaveOneOutSplit,
               stage: Literal["valid", "test"] = "test", *, n: int = 100, users: Sequence[int] | None = None,
               batch_size: int = 1024, max_len: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Each user's top-``n`` items (seen items and padding masked) and their scores: the re-rankers' input.

    Args:
        model: a :class:`~course_lib.scoring.Scorer` (any course model or baseline), a
            score matrix ``(n_users, n_items + 1)`` or a ``score_fn(users, histories)``
            (the evaluator's interface, see :mod:`course_lib.evaluate`).
        split, stage: whose histories to use and which items to mask.
        n: candidates per user.
        users: internal user ids (default: all).

    Returns:
        ``(items, scores)``, both ``(U, n)``, items best first.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n > split.n_items:
        raise ValueError(f"n={n} candidates but the catalogue has only {split.n_items} items")
    user_idx = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
    seen, history = split.seen_matrix(stage), split.history(stage)
    if not isinstance(model, (np.ndarray, torch.Tensor)):
        model = as_score_fn(model)
    all_items, all_scores = [], []
    for start in range(0, len(user_idx), batch_size):
        batch = user_idx[start:start + batch_size]
        hist = pad_sequences([history[u] for u in batch], max_len)
        if isinstance(model, (np.ndarray, torch.Tensor)):
            block = model[batch] if isinstance(model, np.ndarray) else model[torch.from_numpy(batch).to(model.device)]
        else:
            with torch.no_grad():
                block = model(torch.from_numpy(batch), hist)
        scores = torch.as_tensor(block).detach().to("cpu", torch.float64).clone()
        if scores.shape != (len(batch), split.n_items + 1):
            raise ValueError(f"the model returned scores of shape {tuple(scores.shape)}; expected "
                             f"({len(batch)}, {split.n_items + 1})")
        rows = seen[batch]
        scores[torch.from_numpy(np.repeat(np.arange(len(batch)), np.diff(rows.indptr))),
               torch.from_numpy(rows.indices.astype(np.int64))] = -torch.inf
        scores[:, PAD] = -torch.inf
        top = torch.topk(scores, n, dim=1)
        all_items.append(top.indices.numpy())
        all_scores.append(top.values.numpy())
    return np.concatenate(all_items), np.concatenate(all_scores)


def _minmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to [0, 1] (a constant row becomes all ones)."""
    lo, hi = x.min(dim=1, keepdim=True).values, x.max(dim=1, keepdim=True).values
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.ones_like(x))


def mmr_rerank(items: Lists, relevance: "np.ndarray | torch.Tensor", item_vectors: "np.ndarray | torch.Tensor",
               k: int, lam: float, *, batch_size: int = 1024) -> np.ndarray:
    """Maximal marginal relevance: pick a list that is relevant *and* varied.

    Greedy: start from an empty list ``S``; ``k`` times, add the candidate ``i`` that maximises

        λ · rel(i) - (1 - λ) · max_{j in S} sim(i, j)

    where ``rel`` is the model's score scaled to [0, 1] over the user's candidates and
    ``sim`` the cosine similarity of item vectors (the max over an empty ``S`` is 0).
    ``λ = 1`` keeps the model's order; smaller ``λ`` trades relevance for diversity.

    Args:
        items: ``(U, C)`` candidate item ids, best first (from :func:`candidates`).
        relevance: ``(U, C)`` their scores (any scale; min-max scaled per user here).
        item_vectors: ``(N, d)`` vectors defining similarity (e.g. category one-hot).
        k: list length (≤ C).
        lam: the trade-off λ in [0, 1].

    Returns:
        ``(U, k)`` re-ranked item ids.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    cand = torch.as_tensor(np.ascontiguousarray(items), dtype=torch.long)
    rel_all = torch.as_tensor(np.ascontiguousarray(relevance), dtype=torch.float64)
    if cand.shape != rel_all.shape or cand.ndim != 2:
        raise ValueError(f"items and relevance must both be (U, C); got {tuple(cand.shape)} and {tuple(rel_all.shape)}")
    if not 1 <= k <= cand.shape[1]:
        raise ValueError(f"k must be in [1, C={cand.shape[1]}], got {k}")
    V = torch.as_tensor(np.ascontiguousarray(item_vectors), dtype=torch.float64)
    V = V / V.norm(dim=1, keepdim=True).clamp_min(1e-12)
    out = []
    for start in range(0, len(cand), batch_size):
        c = cand[start:start + batch_size]
        rel = _minmax_rows(rel_all[start:start + batch_size])
        vec = V[c]  # (b, C, d)
        sims = vec @ vec.transpose(1, 2)  # (b, C, C)
        b, C = c.shape
        rows = torch.arange(b)
        chosen = torch.zeros(b, C, dtype=torch.bool)
        max_sim = torch.zeros(b, C, dtype=torch.float64)
        picks = torch.empty(b, k, dtype=torch.long)
        for t in range(k):
            objective = lam * rel - (1 - lam) * max_sim
            objective[chosen] = -torch.inf
            pick = objective.argmax(dim=1)  # ties: the earlier (more relevant) candidate
            picks[:, t] = c[rows, pick]
            chosen[rows, pick] = True
            max_sim = torch.maximum(max_sim, sims[rows, pick])
        out.append(picks)
    return torch.cat(out).numpy()


def weighted_rerank(items: Lists, relevance: "np.ndarray | torch.Tensor", objectives: Mapping[str, np.ndarray],
                    weights: Mapping[str, float], k: int) -> np.ndarray:
    """Re-rank by a weighted sum of objectives: ``(1 - Σw) · rel(i) + Σ_o w_o · o(i)``.

    ``rel`` is the model's score min-max scaled over each user's candidates; every per-item
    objective ``o`` (an ``(N,)`` array, e.g. novelty ``-log2 popularity``) is min-max scaled
    over the catalogue (items ``1..n_items``) so that weights compare like with like.

    Args:
        items, relevance: ``(U, C)`` from :func:`candidates`.
        objectives: name → ``(N,)`` per-item values (higher is better).
        weights: name → weight ≥ 0; the weights sum to at most 1.
        k: list length.

    Returns:
        ``(U, k)`` item ids, best first (ties keep the model's order).
    """
    cand = np.asarray(items, dtype=np.int64)
    rel = _minmax_rows(torch.as_tensor(np.ascontiguousarray(relevance), dtype=torch.float64)).numpy()
    if not 1 <= k <= cand.shape[1]:
        raise ValueError(f"k must be in [1, C={cand.shape[1]}], got {k}")
    unknown = set(weights) - set(objectives)
    if unknown:
        raise ValueError(f"weights for unknown objective(s) {sorted(unknown)}; objectives: {sorted(objectives)}")
    total_w = float(sum(weights.values()))
    if any(w < 0 for w in weights.values()) or total_w > 1 + 1e-9:
        raise ValueError(f"weights must be >= 0 and sum to at most 1, got {dict(weights)}")
    combined = (1 - total_w) * rel
    for name, w in weights.items():
        o = np.asarray(objectives[name], dtype=np.float64)
        real = o[1:]
        span = real.max() - real.min()
        scaled = (o - real.min()) / span if span > 0 else np.ones_like(o)
        combined = combined + w * scaled[cand]
    order = np.argsort(-combined, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand, order, axis=1)


def pareto_front(points: "Sequence[Sequence[float]] | np.ndarray",
                 maximize: bool | Sequence[bool] = True) -> np.ndarray:
    """``(P,)`` boolean mask of the non-dominated points.

    A point is dominated when another is at least as good on every objective and strictly
    better on one. ``maximize`` says, per column, whether larger is better.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or len(pts) == 0:
        raise ValueError(f"points must be a (P, objectives) array, got shape {pts.shape}")
    sign = np.where(np.broadcast_to(np.asarray(maximize, dtype=bool), (pts.shape[1],)), 1.0, -1.0)
    p = pts * sign
    better_eq = (p[:, None, :] >= p[None, :, :]).all(axis=2)  # [a, b]: a >= b everywhere
    strictly = (p[:, None, :] > p[None, :, :]).any(axis=2)
    dominated = (better_eq & strictly).any(axis=0)
    return ~dominated
