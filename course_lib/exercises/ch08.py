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


def _gini_wrong_answers(**_) -> list[tuple[str, object]]:
    def sample_gini(counts):                                # n (n - 1) instead of n²
        c = np.asarray(counts, dtype=float)
        n = len(c)
        return float(np.abs(c[:, None] - c[None, :]).sum() / (2 * n * (n - 1) * c.mean()))

    def no_half(counts):                                    # forgot the 2 in the denominator
        return 2 * _gini(counts)

    def coefficient_of_variation(counts):
        c = np.asarray(counts, dtype=float)
        return float(c.std() / c.mean())

    return [("n (n - 1) instead of n²", sample_gini), ("the factor 2 left out", no_half),
            ("1 - Gini", lambda counts: 1 - _gini(counts)), ("the coefficient of variation", coefficient_of_variation)]


@register(
    "08.1",
    "gini(counts): the Gini coefficient of how often each item is recommended",
    "one formula: G = sum over all pairs (i, j) of |c_i - c_j|, divided by 2 n² mean(c); "
    "equal counts give 0, one item taking everything gives (n - 1) / n",
    cases=lambda: [([5, 5, 5, 5],), ([0, 0, 0, 10],), ([1, 2, 3, 4],), (np.array([3.0, 0.0, 1.0, 0.0, 8.0]),),
                   ([7, 1],)],
    atol=1e-12,  # equal counts give exactly 0
    wrong_answers=_gini_wrong_answers,
)
def gini_reference():
    return _gini


def _paired_context() -> dict:
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.3) / np.log2(rng.integers(2, 12, 400))
    b = np.clip(a + rng.normal(0.02, 0.1, 400), 0, 1)
    return {"a": a, "b": b}


def _t_pvalue(a, b) -> float:
    from scipy import stats

    return float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)


def _pvalue_wrong_answers(a, b) -> list[tuple[str, object]]:
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    p = _t_pvalue(a, b)
    return [("an unpaired t-test (ttest_ind)", float(stats.ttest_ind(a, b).pvalue)),
            ("one-sided (half the two-sided p)", p / 2), ("a percentage", 100 * p), ("1 - p", 1 - p),
            ("the t statistic", float(stats.ttest_rel(a, b).statistic)),
            ("a Wilcoxon signed-rank test", float(stats.wilcoxon(a, b).pvalue))]


@register(
    "08.2",
    "the two-sided p-value of a paired t-test between per-user metric values `a` and `b`",
    "the users are the same in both arrays, so test the per-user differences: "
    "scipy.stats.ttest_rel(a, b).pvalue (or course_lib.analysis.paired_test(a, b, method='t'))",
    example_context=_paired_context,
    rtol=1e-6,  # relative: a p-value of 1e-10 is not matched by 0
    wrong_answers=_pvalue_wrong_answers,
)
def paired_t_pvalue(a, b) -> float:
    return _t_pvalue(a, b)


def _significance_wrong_answers(a, b) -> list[tuple[str, object]]:
    return [("the p-value instead of True/False", _t_pvalue(a, b)),
            ("the string 'True'", str(_t_pvalue(a, b) < 0.05))]


@register(
    "08.3",
    "is the difference between `a` and `b` significant at the 5% level (two-sided paired t-test)? True or False",
    "significant at 5% means p < 0.05 for the two-sided paired test of 08.2; answer with the bool True or False",
    example_context=_paired_context,
    wrong_answers=_significance_wrong_answers,
)
def significant_at_5(a, b) -> bool:
    return bool(_t_pvalue(a, b) < 0.05)


def _budget_context() -> dict:
    w = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    ndcg = np.array([0.120, 0.1199, 0.1185, 0.1160, 0.1120, 0.1050, 0.090])
    coverage = np.array([0.30, 0.33, 0.36, 0.41, 0.47, 0.66, 0.80])
    ild = np.array([0.61, 0.62, 0.60, 0.59, 0.58, 0.57, 0.56])
    return {"sweep": pd.DataFrame({"w": w, "NDCG@10": ndcg, "coverage": coverage, "ILD@10": ild}),
            "knob": "w", "objective": "coverage", "keep": 0.95}


def _budget_choice(sweep: pd.DataFrame, knob: str, objective: str, keep: float) -> float:
    reference = float(sweep.loc[sweep[knob] == 0.0, "NDCG@10"].iloc[0])
    ok = sweep[sweep["NDCG@10"] >= keep * reference]
    return float(ok.loc[ok[objective].idxmax(), knob])


def _budget_wrong_answers(sweep, knob, objective, keep) -> list[tuple[str, object]]:
    ok = sweep[sweep["NDCG@10"] >= keep * float(sweep.loc[sweep[knob] == 0.0, "NDCG@10"].iloc[0])]
    best_row = ok.loc[ok[objective].idxmax()]
    return [("no budget: the largest objective overall", float(sweep.loc[sweep[objective].idxmax(), knob])),
            ("a 90% budget instead of the one asked", _budget_choice(sweep, knob, objective, 0.90)),
            (f"the {objective} value instead of the setting", float(best_row[objective])),
            ("the row number instead of the setting", float(ok[objective].idxmax())),
            ("the most diverse (ILD@10) setting instead", _budget_choice(sweep, knob, "ILD@10", keep)),
            ("the smallest setting outside the budget",
             float(sweep.loc[sweep["NDCG@10"] < keep * float(sweep.loc[sweep[knob] == 0.0, "NDCG@10"].iloc[0]),
                             knob].min()))]


@register(
    "08.4",
    "the setting of `knob` with the highest `objective` among those that keep at least `keep` of the NDCG@10 "
    "of the setting 0 (no re-ranking)",
    "keep the rows of `sweep` whose NDCG@10 >= keep × the NDCG@10 of the row where the knob is 0, "
    "then take the knob's value in the row with the largest objective",
    example_context=_budget_context,
    wrong_answers=_budget_wrong_answers,
)
def budget_choice(sweep: pd.DataFrame, knob: str, objective: str, keep: float) -> float:
    return _budget_choice(sweep, knob, objective, keep)
