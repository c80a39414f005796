"""IPS and SNIPS against hand-computed numbers and against the true value they estimate."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.offpolicy import effective_sample_size, ips, sample_from, snips, softmax_policy


def test_hand_computed_estimates():
    r = np.array([1, 0, 1, 0])
    p1 = np.array([0.5, 0.1, 0.2, 0.4])
    p0 = np.array([0.25, 0.5, 0.4, 0.2])
    # weights p1 / p0: 2, 0.2, 0.5, 2
    assert ips(r, p1, p0) == pytest.approx((2 + 0.5) / 4)
    assert snips(r, p1, p0) == pytest.approx(2.5 / 4.7)
    assert effective_sample_size(p1, p0) == pytest.approx(4.7 ** 2 / (4 + 0.04 + 0.25 + 4))
    with pytest.raises(ValueError, match="propensity 0"):
        ips(r, p1, np.array([0.0, 0.5, 0.4, 0.2]))


def test_softmax_policy_and_sampling():
    s = np.array([[-np.inf, 0.0, np.log(3.0)]])
    np.testing.assert_allclose(softmax_policy(s), [[0, 0.25, 0.75]])
    rng = np.random.default_rng(0)
    draws = sample_from(np.repeat(softmax_policy(s), 40_000, axis=0), rng)
    assert set(np.unique(draws)) <= {1, 2}
    assert (draws == 2).mean() == pytest.approx(0.75, abs=0.01)


def test_ips_is_unbiased_for_a_different_policy_and_snips_close():
    rng = np.random.default_rng(1)
    V, N = 20_000, 30
    ctr = rng.beta(1, 12, size=(V, N))            # each visit's click probability of each action
    p0 = softmax_policy(rng.normal(size=(V, N)), 1.0)
    p1 = softmax_policy(3 * ctr / ctr.std(), 0.5)
    truth = (p1 * ctr).sum(axis=1).mean()
    logged_truth = (p0 * ctr).sum(axis=1).mean()
    est_ips, est_snips = [], []
    for _ in range(20):
        a = sample_from(p0, rng)
        r = (rng.random(V) < ctr[np.arange(V), a]).astype(float)
        est_ips.append(ips(r, p1[np.arange(V), a], p0[np.arange(V), a]))
        est_snips.append(snips(r, p1[np.arange(V), a], p0[np.arange(V), a]))
    assert abs(truth - logged_truth) > 0.02          # the policies really differ
    assert np.mean(est_ips) == pytest.approx(truth, abs=3 * np.std(est_ips) / np.sqrt(20) + 1e-3)
    assert np.mean(est_snips) == pytest.approx(truth, rel=0.05)
