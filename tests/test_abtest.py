"""A/B test helpers against textbook numbers and simulation; team-draft interleaving by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from course_lib.abtest import (
    interleaving_credit,
    msprt_always_valid,
    peeking_false_positive_rate,
    sample_size_two_proportions,
    team_draft_interleave,
    two_proportion_test,
)


def test_sample_size_matches_the_formula_and_gives_the_promised_power():
    # p 0.10 -> 0.12: (1.95996 + 0.84162)^2 * (0.09 + 0.1056) / 0.02^2 = 3838.0 -> 3839
    n = sample_size_two_proportions(0.10, 0.2)
    assert n == int(np.ceil((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 * (0.09 + 0.1056) / 0.0004))
    assert 3830 < n < 3850
    rng = np.random.default_rng(0)
    a = rng.random((1000, n)) < 0.10
    b = rng.random((1000, n)) < 0.12
    z = (b.mean(1) - a.mean(1)) / np.sqrt((a.var(1) + b.var(1)) / n)
    power = (np.abs(z) > stats.norm.ppf(0.975)).mean()
    assert power == pytest.approx(0.8, abs=0.04)
    with pytest.raises(ValueError):
        sample_size_two_proportions(0.9, 0.2)


def test_two_proportion_test_against_scipy():
    rng = np.random.default_rng(1)
    a = (rng.random(5000) < 0.1).astype(float)
    b = (rng.random(5000) < 0.115).astype(float)
    res = two_proportion_test(a, b)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert res["p"] == pytest.approx(ref.pvalue, rel=0.02)
    assert res["ci_low"] < res["diff"] < res["ci_high"]


def test_peeking_inflates_false_positives_and_the_sequential_test_does_not():
    r = peeking_false_positive_rate(0.1, 2000, 20, n_experiments=1000, seed=0)
    assert r["fixed"] == pytest.approx(0.05, abs=0.02)
    assert r["peeking"] > 2 * r["fixed"]
    assert r["msprt"] <= 0.05 + 0.015


def test_msprt_detects_a_real_difference():
    rng = np.random.default_rng(2)
    a = (rng.random((200, 20000)) < 0.10).astype(float)
    b = (rng.random((200, 20000)) < 0.13).astype(float)
    out = msprt_always_valid(a, b, np.arange(100, 20001, 100))
    assert out["rejected"].mean() > 0.8


def test_team_draft_interleaving_by_hand():
    a = np.array([[1, 2, 3, 4]])
    b = np.array([[2, 5, 1, 6]])
    slates, team = team_draft_interleave(a, b, 4, rng=np.random.default_rng(0))
    # each team contributes 2 items, no duplicates, each team's items in its own order
    assert len(set(slates[0])) == 4 and (team[0] == 0).sum() == 2
    first = team[0, 0]
    if first == 0:   # A picks 1, B picks 2, then the tie is broken again
        assert list(slates[0, :2]) == [1, 2]
    else:            # B picks 2, A picks 1 (its best not yet shown)
        assert list(slates[0, :2]) == [2, 1]
    clicks = np.array([[0, 1, 1, 0]])
    assert interleaving_credit(clicks, np.array([[0, 1, 1, 0]]))[0] == 1
    assert interleaving_credit(clicks, np.array([[1, 0, 0, 1]]))[0] == -1
    assert interleaving_credit(np.array([[1, 1, 0, 0]]), np.array([[0, 1, 0, 1]]))[0] == 0


def test_team_draft_is_fair_to_identical_rankers():
    rng = np.random.default_rng(3)
    ranking = np.tile(np.arange(1, 11), (5000, 1))
    slates, team = team_draft_interleave(ranking, ranking, 10, rng=rng)
    assert (slates == ranking).all()                   # the same list either way
    assert (team == 1).mean() == pytest.approx(0.5, abs=0.01)
    # position 1 goes to each team half of the time: no structural advantage
    assert (team[:, 0] == 1).mean() == pytest.approx(0.5, abs=0.03)
