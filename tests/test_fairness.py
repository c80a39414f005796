"""Exposure, the exposure-constrained re-ranking, and user-group gaps."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import fairness as Fa


def test_exposure_shares_by_hand():
    lists = np.array([[1, 2], [2, 3]])
    group = np.array([0, 0, 1, 1])                    # items 0, 1 -> group 0; 2, 3 -> group 1
    w = 1 / np.log2([2, 3])
    share = Fa.exposure_by_group(lists, group, 2)
    assert share == pytest.approx([w[0] / (2 * w.sum()), 1 - w[0] / (2 * w.sum())])
    assert Fa.parity_gap([0.5, 0.5], [0.5, 0.5]) == 0.0 and Fa.parity_gap([1, 0], [0, 1]) == 1.0


def test_rerank_improves_parity_on_a_constructed_case_and_zero_share_is_the_identity():
    # 20 users; every candidate list has 10 popular items first, then 10 long-tail items
    cands = np.tile(np.r_[np.arange(1, 11), np.arange(11, 21)], (20, 1))
    protected = np.zeros(21, bool)
    protected[11:] = True
    group = protected.astype(int)
    np.testing.assert_array_equal(Fa.exposure_rerank(cands, protected, 10, 0.0), cands[:, :10])
    target = np.array([0.5, 0.5])
    before = Fa.parity_gap(Fa.exposure_by_group(cands[:, :10], group, 2), target)
    out = Fa.exposure_rerank(cands, protected, 10, 0.5)
    after = Fa.parity_gap(Fa.exposure_by_group(out, group, 2), target)
    assert before == pytest.approx(0.5) and after < 0.1
    share = Fa.exposure_by_group(out, group, 2)[1]
    assert share >= 0.5 - 1e-9
    # the order within each group is kept
    for row in out:
        p = row[protected[row]]
        q = row[~protected[row]]
        assert (np.diff(p) > 0).all() and (np.diff(q) > 0).all()


def test_group_gaps_find_a_planted_gap_and_not_a_null_one():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.3, 0.1, 400), rng.normal(0.2, 0.1, 400)]
    groups = np.r_[["a"] * 400, ["b"] * 400]
    res = Fa.group_gaps(values, groups, n_boot=500)
    assert res.loc["a", "significant"] and res.loc["a", "gap low"] > 0.05
    null = Fa.group_gaps(rng.normal(0, 1, 800), groups, n_boot=500)
    assert not null.loc["a", "significant"]
