"""Chapter 08's analysis helpers against scipy, brute force and hand-computed numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from course_lib.analysis import (
    bootstrap_ci,
    candidates,
    gini,
    label_vectors,
    mmr_rerank,
    paired_test,
    pareto_front,
    per_user_ild,
    popularity_bias,
    weighted_rerank,
)
from course_lib.data import leave_one_out
from course_lib.metrics import intra_list_diversity


# --------------------------------------------------------------------------- uncertainty
def test_bootstrap_ci_agrees_with_the_normal_interval_on_a_large_sample():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=4000)
    ci = bootstrap_ci(x, n_boot=2000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert ci["estimate"] == pytest.approx(x.mean())
    assert ci["low"] == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert ci["high"] == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert ci["se"] == pytest.approx(x.std(ddof=1) / np.sqrt(len(x)), rel=0.1)


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(3)
    x = (rng.random(500) < 0.2).astype(float)  # HR-like 0/1 values
    ours = bootstrap_ci(x, n_boot=4000, seed=0)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert ours["low"] == pytest.approx(ref.low, abs=0.006)
    assert ours["high"] == pytest.approx(ref.high, abs=0.006)


def test_bootstrap_ci_rejects_bad_input():
    with pytest.raises(ValueError, match="at least two"):
        bootstrap_ci([1.0])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_paired_t_test_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    b = a - 0.02 + 0.1 * rng.standard_normal(300)
    ours = paired_test(a, b, method="t")
    ref = stats.ttest_rel(a, b)
    assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (ours["low"], ours["high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert ours["mean_diff"] == pytest.approx((a - b).mean())


def test_paired_wilcoxon_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.random(60), rng.random(60)
    assert paired_test(a, b, method="wilcoxon")["p_value"] == pytest.approx(stats.wilcoxon(a - b).pvalue)


def test_exact_sign_flip_permutation_test_matches_brute_force_and_scipy():
    d = np.array([0.3, -0.1, 0.4, 0.25, 0.05, 0.2, -0.05, 0.35])
    ours = paired_test(d, np.zeros_like(d), method="permutation")
    flips = [abs(np.mean(np.array(s) * d)) for s in itertools.product((1, -1), repeat=len(d))]
    brute = np.mean(np.array(flips) >= abs(d.mean()) - 1e-12)
    assert ours["p_value"] == pytest.approx(brute)
    ref = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf)
    assert ours["p_value"] == pytest.approx(ref.pvalue)


def test_paired_tests_find_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(2)
    base = rng.random(2000)
    better = base + 0.05 + 0.05 * rng.standard_normal(2000)
    noise = 0.05 * rng.standard_normal(1000)
    same = base + np.concatenate([noise, -noise[::-1]])  # differences sum to exactly zero
    for method in ("t", "wilcoxon", "permutation", "bootstrap"):
        assert paired_test(better, base, method=method, n_resamples=2000)["p_value"] < 0.001, method
        null = paired_test(same, base, method=method, n_resamples=2000)
        assert null["p_value"] > 0.5 and null["low"] < 0 < null["high"], method
    with pytest.raises(ValueError, match="same users"):
        paired_test([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="unknown method"):
        paired_test([1, 2, 3], [1, 2, 4], method="z")


# --------------------------------------------------------------------------- popularity bias
def test_popularity_bias_by_hand():
    pop = np.array([0, 50, 40, 30, 20, 10, 9, 8, 7, 6, 5], dtype=float)  # 10 items, item 1 most popular
    rec = np.array([[1, 2], [1, 7], [9, 10]])
    out = popularity_bias(rec, pop, fractions=(0.1, 0.5))
    assert out["top 10% share"] == pytest.approx(2 / 6)  # head = {1}
    assert out["top 50% share"] == pytest.approx(3 / 6)  # head = {1..5}
    assert out["data top 10% share"] == pytest.approx(50 / 185)
    assert out["ARP"] == pytest.approx((50 + 40 + 50 + 8 + 6 + 5) / 6)
    with pytest.raises(ValueError, match="outside"):
        popularity_bias([[0, 1]], pop)


def test_gini_by_hand():
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 10]) == pytest.approx(0.75)  # (n - 1) / n for one item taking all
    x = np.array([1.0, 2.0, 3.0, 4.0])
    mean_abs_diff = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(mean_abs_diff)


def test_per_user_ild_averages_to_the_metric():
    rng = np.random.default_rng(0)
    V = rng.random((20, 5)) + 0.01
    rec = np.array([rng.choice(np.arange(1, 20), 6, replace=False) for _ in range(7)])
    per = per_user_ild(rec, V)
    assert per.shape == (7,)
    assert per.mean() == pytest.approx(intra_list_diversity(rec, V))
    one_hot = np.eye(4)[[0, 0, 1, 2, 2]]  # items 0..4 in categories 0,0,1,2,2
    assert per_user_ild([[0, 1], [0, 2]], one_hot).tolist() == [0.0, 1.0]


# --------------------------------------------------------------------------- re-ranking
def _mmr_reference(items, rel, V, k, lam):
    """Plain-Python MMR on one user."""
    rel = np.asarray(rel, dtype=float)
    rel = (rel - rel.min()) / (rel.max() - rel.min()) if rel.max() > rel.min() else np.ones_like(rel)
    U = V / np.linalg.norm(V, axis=1, keepdims=True)
    chosen: list[int] = []
    for _ in range(k):
        best, best_val = None, -np.inf
        for c in range(len(items)):
            if c in chosen:
                continue
            penalty = max((U[items[c]] @ U[items[s]] for s in chosen), default=0.0)
            val = lam * rel[c] - (1 - lam) * penalty
            if val > best_val:
                best, best_val = c, val
        chosen.append(best)
    return [items[c] for c in chosen]


def test_mmr_matches_the_plain_loop():
    rng = np.random.default_rng(0)
    V = rng.random((30, 4))
    items = np.array([rng.choice(np.arange(1, 30), 12, replace=False) for _ in range(5)])
    rel = np.sort(rng.random((5, 12)), axis=1)[:, ::-1]
    for lam in (0.0, 0.3, 0.7, 1.0):
        got = mmr_rerank(items, rel, V, 6, lam)
        want = [_mmr_reference(items[u], rel[u], V, 6, lam) for u in range(5)]
        assert got.tolist() == want, lam


def test_mmr_extremes_by_hand():
    V = np.eye(3)[[0, 0, 0, 0, 1, 2]]  # items 1-3 in category 0, item 4 in 1, item 5 in 2
    items = np.array([[1, 2, 3, 4, 5]])
    rel = np.array([[1.0, 0.9, 0.8, 0.2, 0.1]])
    assert mmr_rerank(items, rel, V, 3, lam=1.0).tolist() == [[1, 2, 3]]  # the model's order
    assert mmr_rerank(items, rel, V, 3, lam=0.5).tolist() == [[1, 4, 5]]  # one per category
    with pytest.raises(ValueError, match="lam"):
        mmr_rerank(items, rel, V, 3, lam=2)


def test_weighted_rerank_interpolates_between_relevance_and_the_objective():
    items = np.array([[3, 1, 2]])
    rel = np.array([[0.9, 0.5, 0.1]])
    novelty = np.array([0.0, 1.0, 5.0, 0.0])  # item 2 most novel, item 3 least
    assert weighted_rerank(items, rel, {"novelty": novelty}, {"novelty": 0.0}, 3).tolist() == [[3, 1, 2]]
    assert weighted_rerank(items, rel, {"novelty": novelty}, {"novelty": 1.0}, 3).tolist() == [[2, 1, 3]]
    # w = 0.5: rel scaled = [1, 0.5, 0]; novelty scaled over items 1..3 = [0.2, 1, 0] for items 1, 2, 3
    combined = {3: 0.5 * 1 + 0.5 * 0.0, 1: 0.5 * 0.5 + 0.5 * 0.2, 2: 0.5 * 0 + 0.5 * 1.0}
    expected = sorted(combined, key=lambda i: -combined[i])
    assert weighted_rerank(items, rel, {"novelty": novelty}, {"novelty": 0.5}, 3).tolist() == [expected]
    with pytest.raises(ValueError, match="at most 1"):
        weighted_rerank(items, rel, {"novelty": novelty}, {"novelty": 1.5}, 3)
    with pytest.raises(ValueError, match="unknown objective"):
        weighted_rerank(items, rel, {"novelty": novelty}, {"price": 0.5}, 3)


def test_pareto_front_by_hand():
    pts = np.array([[0.30, 0.10], [0.25, 0.20], [0.20, 0.15], [0.10, 0.40], [0.10, 0.30]])
    assert pareto_front(pts).tolist() == [True, True, False, True, False]
    assert pareto_front(pts, maximize=[True, False]).tolist() == [True, False, False, False, False]


def test_candidates_are_the_unseen_top_items():
    df = pd.DataFrame({"user_id": [0, 0, 0, 0, 1, 1, 1, 1], "item_id": [1, 2, 3, 4, 2, 3, 4, 5],
                       "timestamp": [1, 2, 3, 4, 1, 2, 3, 4]})
    split = leave_one_out(df)
    scores = torch.tensor([[0.0, 5, 4, 3, 2, 1], [0.0, 1, 2, 3, 4, 5]])
    items, values = candidates(scores, split, "test", n=2)
    # user 0 saw items 1, 2, 3 before the test stage; user 1 saw 2, 3, 4
    assert items.tolist() == [[4, 5], [5, 1]]
    assert values.tolist() == [[2.0, 1.0], [5.0, 1.0]]
    as_function = candidates(lambda users, histories: scores[users], split, "test", n=2)
    assert as_function[0].tolist() == items.tolist()
    with pytest.raises(ValueError, match="shape"):
        candidates(lambda users, histories: scores[users, :3], split, n=2)
    with pytest.raises(ValueError, match="catalogue"):
        candidates(scores, split, n=9)


def test_label_vectors():
    items = pd.DataFrame({"title": ["<pad>", "a", "b", "c"], "genres": [None, "Action|Comedy", "Comedy", "Drama"]})
    V = label_vectors(items)
    assert V.shape == (4, 3) and V[0].tolist() == [1, 1, 1]
    assert V[1].tolist() == [1, 1, 0] and V[3].tolist() == [0, 0, 1]
    shop = pd.DataFrame({"title": ["<pad>", "x", "y"], "category": [None, "Phones", "Home"]})
    assert label_vectors(shop)[1:].tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="no label"):
        label_vectors(pd.DataFrame({"genres": [None, "A", None]}))
    with pytest.raises(ValueError, match="column"):
        label_vectors(shop, "brand")
