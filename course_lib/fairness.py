"""Fairness of exposure, an exposure-aware re-ranking, and quality gaps between user groups.

**Exposure.** A user looks at position ``k`` of a list less than at position 1; with the DCG
discount the attention a position gets is ``1 / log2(k + 1)``. An item group's *exposure*
is the attention its items receive summed over all users' lists; its *share* of exposure
can be compared with its share of the catalogue or of the interactions (the "merit" it
has). The gap between the two distributions (total variation distance, half the sum of the
absolute differences) is 0 at parity.

**Re-ranking.** :func:`exposure_rerank` walks down each user's candidate list and, while the
protected group's share of the exposure given so far in that list is below ``min_share``,
takes the best protected candidate instead of the best overall (a greedy form of FA*IR-style
constraints, Zehlike et al., 2017). ``min_share = 0`` gives back the original ranking.

**User groups.** A model can serve some users worse than others; the per-user NDCG of each
group is compared with everyone else's, with a bootstrap confidence interval on the
difference (chapter 08's tool) that says whether the gap could be noise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def position_weights(k: int) -> np.ndarray:
    """``(k,)`` attention of positions ``1..k``: ``1 / log2(position + 1)``."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def exposure_by_group(lists: np.ndarray, group_of: np.ndarray, n_groups: int) -> np.ndarray:
    """``(n_groups,)`` share of the total position-weighted exposure of ``(U, k)`` lists that each group gets."""
    lists = np.asarray(lists)
    w = np.broadcast_to(position_weights(lists.shape[1]), lists.shape)
    exp = np.bincount(np.asarray(group_of)[lists].ravel(), weights=w.ravel(), minlength=n_groups)
    return exp / exp.sum()


def parity_gap(share: np.ndarray, target: np.ndarray) -> float:
    """Total variation distance between an exposure distribution and a target distribution (0 = parity)."""
    return float(0.5 * np.abs(np.asarray(share, float) - np.asarray(target, float)).sum())


def exposure_rerank(candidates: np.ndarray, protected: np.ndarray, k: int, min_share: float) -> np.ndarray:
    """Greedy exposure-constrained top-``k`` of each user's ranked ``candidates``.

    Args:
        candidates: ``(U, N)`` item ids, best first (``N ≥ k``).
        protected: boolean array indexed by item id: the group that should get exposure.
        k: list length.
        min_share: the protected group's minimum share of position-weighted exposure in each list.

    Returns ``(U, k)`` lists. A protected candidate is promoted only while the list's
    protected exposure is below ``min_share`` of the exposure given so far (counting the
    current position); otherwise the best remaining candidate is taken.
    """
    candidates = np.asarray(candidates)
    protected = np.asarray(protected, dtype=bool)
    w = position_weights(k)
    out = np.empty((len(candidates), k), dtype=candidates.dtype)
    for u, cand in enumerate(candidates):
        is_p = protected[cand]
        used = np.zeros(len(cand), dtype=bool)
        given = prot = 0.0
        for pos in range(k):
            need = prot < min_share * (given + w[pos]) - 1e-12
            pick = -1
            if need:
                avail = np.flatnonzero(is_p & ~used)
                if len(avail):
                    pick = avail[0]
            if pick < 0:
                pick = np.flatnonzero(~used)[0]
            used[pick] = True
            out[u, pos] = cand[pick]
            given += w[pos]
            prot += w[pos] * is_p[pick]
    return out


def group_gaps(values: Sequence[float], groups: Sequence, *, n_boot: int = 1000, level: float = 0.95,
               seed: int = 0) -> pd.DataFrame:
    """Per group: mean of ``values`` (e.g. per-user NDCG@10) with a bootstrap interval, and its gap to the rest.

    ``gap`` = group mean − mean of all other users; its interval comes from resampling the
    two sets of users independently; ``significant`` when the interval excludes 0.
    """
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    rng = np.random.default_rng(seed)
    a = (1 - level) / 2
    rows = []
    for name in pd.unique(g):
        inside, rest = v[g == name], v[g != name]
        bi = rng.choice(inside, size=(n_boot, len(inside))).mean(axis=1)
        br = rng.choice(rest, size=(n_boot, len(rest))).mean(axis=1)
        gap = bi - br
        lo, hi = np.quantile(gap, [a, 1 - a])
        rows.append({"group": name, "users": len(inside), "mean": inside.mean(),
                     "mean low": np.quantile(bi, a), "mean high": np.quantile(bi, 1 - a),
                     "gap": inside.mean() - rest.mean(), "gap low": lo, "gap high": hi,
                     "significant": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows).set_index("group")


__all__ = ["exposure_by_group", "exposure_rerank", "group_gaps", "parity_gap", "position_weights"]
