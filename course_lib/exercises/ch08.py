"""Exercises of chapter 08 (evaluation in depth and multi-objective ranking)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import register


def _gini(counts) -> float:
    c = np.sort(np.asarray(counts, dtype=float))
    n = len(c)
    # mean absolute difference over all ordered pairs, divided by twice the mean
    return float(np.abs(c[:, None] - c[None, :]).sum() / (2 * n * n * c.mean()))


@register(
    "08.1",
    "gini(counts): the Gini coefficient of how often each item is recommended",
    "one formula: G = sum over all pairs (i, j) of |c_i - c_j|, divided by 2 n² mean(c); "
    "equal counts give 0, one item taking everything gives (n - 1) / n",
    cases=lambda: [([5, 5, 5, 5],), ([0, 0, 0, 10],), ([1, 2, 3, 4],), (np.array([3.0, 0.0, 1.0, 0.0, 8.0]),),
                   ([7, 1],)],
)
def gini_reference():
    return _gini


def _paired_context() -> dict:
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.3) / np.log2(rng.integers(2, 12, 400))
    b = np.clip(a + rng.normal(0.02, 0.1, 400), 0, 1)
    return {"a": a, "b": b}


@register(
    "08.2",
    "the two-sided p-value of a paired t-test between per-user metric values `a` and `b`",
    "the users are the same in both arrays, so test the per-user differences: "
    "scipy.stats.ttest_rel(a, b).pvalue (or course_lib.analysis.paired_test(a, b, method='t'))",
    example_context=_paired_context,
    rtol=1e-6,
)
def paired_t_pvalue(a, b) -> float:
    from scipy import stats

    return float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)


def _sweep_context() -> dict:
    lam = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.0])
    ndcg = np.array([0.120, 0.119, 0.117, 0.113, 0.109, 0.100, 0.080, 0.040])
    ild = np.array([0.55, 0.58, 0.62, 0.66, 0.70, 0.74, 0.80, 0.86])
    return {"sweep": pd.DataFrame({"lam": lam, "NDCG@10": ndcg, "ILD@10": ild})}


@register(
    "08.3",
    "the MMR λ with the highest ILD@10 among those that keep at least 90% of the NDCG@10 of λ = 1",
    "keep the rows of `sweep` whose NDCG@10 >= 0.9 × the NDCG@10 of the row with lam == 1, "
    "then take the lam of the row with the largest ILD@10",
    example_context=_sweep_context,
    wrong=lambda sweep: float(sweep["lam"].min()) - 1.0,
)
def mmr_budget_lambda(sweep: pd.DataFrame) -> float:
    reference = float(sweep.loc[sweep["lam"] == 1.0, "NDCG@10"].iloc[0])
    ok = sweep[sweep["NDCG@10"] >= 0.9 * reference]
    return float(ok.loc[ok["ILD@10"].idxmax(), "lam"])
