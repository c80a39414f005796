"""Bandits on a planted problem: the good ones find the best arm and lose fewer clicks."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.bandits import UCB1, EpsilonGreedy, ThompsonSampling, run_bandit


@pytest.fixture(scope="module")
def problem():
    mu = np.array([0.02, 0.04, 0.05, 0.08, 0.03])
    return np.tile(mu, (8000, 1))


def test_regret_is_counted_against_the_best_fixed_arm(problem):
    class Always:  # a fixed "policy" to check the bookkeeping by hand
        n_arms = 5

        def choose(self, t):
            return 1

        def update(self, arm, reward):
            pass

    out = run_bandit(Always(), problem[:100])
    assert out["regret"][-1] == pytest.approx(100 * (0.08 - 0.04))
    assert out["share_best"][-1] == 0


def test_thompson_and_ucb_beat_uniform_exploration_and_find_the_best_arm(problem):
    regret = {}
    for name, pol in [("random", EpsilonGreedy(5, epsilon=1.0, seed=0)), ("eps", EpsilonGreedy(5, 0.1, seed=0)),
                      ("ts", ThompsonSampling(5, seed=0)), ("ucb", UCB1(5, seed=0))]:
        out = run_bandit(pol, problem, seed=1)
        regret[name] = out["regret"][-1]
        if name == "ts":
            assert out["share_best"][-1] > 0.6
    assert regret["ts"] < 0.5 * regret["random"], regret
    assert regret["eps"] < regret["random"], regret
    assert regret["ucb"] < regret["random"], regret


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2 arms"):
        ThompsonSampling(1)
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedy(3, epsilon=1.5)
