"""Multi-armed bandits for exploration: which of a few new items to put on a shelf.

Each visit the shelf shows one of ``M`` arms (new items) and sees a click or not. A
*bandit* policy balances showing the arm that looks best so far (exploit) against trying
the others to learn (explore). Cumulative *regret* counts the clicks lost against always
showing the best fixed arm: ``regret(T) = Σ_t (μ* - μ_{a_t})`` with ``μ`` the true click rates.

* :class:`EpsilonGreedy` — best empirical arm, a random one with probability ε
* :class:`ThompsonSampling` — Beta(1 + clicks, 1 + misses) posterior per arm, show the arm
  whose posterior draw is largest (Thompson, 1933; Chapelle and Li, 2011)
* :class:`UCB1` — best upper confidence bound ``mean + sqrt(2 ln t / n)`` (Auer et al., 2002)
* :func:`run_bandit` — play a policy against a ``(T, M)`` matrix of click probabilities
"""

from __future__ import annotations

import numpy as np

__all__ = ["EpsilonGreedy", "ThompsonSampling", "UCB1", "run_bandit"]


class _Bandit:
    def __init__(self, n_arms: int, seed: int = 0) -> None:
        if n_arms < 2:
            raise ValueError(f"a bandit needs at least 2 arms, got {n_arms}")
        self.n_arms = n_arms
        self.rng = np.random.default_rng(seed)
        self.pulls = np.zeros(n_arms)
        self.clicks = np.zeros(n_arms)

    def choose(self, t: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, arm: int, reward: float) -> None:
        """Record one visit's reward (0/1 click) for the arm shown."""
        self.pulls[arm] += 1
        self.clicks[arm] += reward


class EpsilonGreedy(_Bandit):
    """Show the arm with the best click rate so far; with probability ``epsilon`` a random arm.

    Arms never shown count as best (each is tried once first)."""

    def __init__(self, n_arms: int, epsilon: float = 0.1, seed: int = 0) -> None:
        super().__init__(n_arms, seed)
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = epsilon

    def choose(self, t: int) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_arms))
        mean = np.where(self.pulls > 0, self.clicks / np.maximum(self.pulls, 1), np.inf)
        best = np.flatnonzero(mean == mean.max())
        return int(self.rng.choice(best))


class ThompsonSampling(_Bandit):
    """Draw each arm's click rate from its Beta(1 + clicks, 1 + misses) posterior; show the largest."""

    def choose(self, t: int) -> int:
        return int(np.argmax(self.rng.beta(1 + self.clicks, 1 + self.pulls - self.clicks)))


class UCB1(_Bandit):
    """Show the arm with the largest ``mean + sqrt(2 ln t / n)`` (each arm once first)."""

    def choose(self, t: int) -> int:
        if (self.pulls == 0).any():
            return int(np.flatnonzero(self.pulls == 0)[0])
        mean = self.clicks / self.pulls
        return int(np.argmax(mean + np.sqrt(2 * np.log(max(t, 1)) / self.pulls)))


def run_bandit(policy: _Bandit, p_click: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Play ``policy`` for ``T`` visits.

    Args:
        policy: a fresh bandit with ``M`` arms.
        p_click: ``(T, M)`` the click probability of each arm at each visit (the visiting user's,
            from the simulator); the best fixed arm is the one with the highest column mean.
        seed: seed of the click draws.

    Returns:
        ``{"arms": (T,), "clicks": (T,), "regret": (T,) cumulative expected regret against the best
        fixed arm, "share_best": (T,) running share of visits that showed the best arm}``.
    """
    p_click = np.asarray(p_click, float)
    T, M = p_click.shape
    if M != policy.n_arms:
        raise ValueError(f"p_click has {M} arms but the policy {policy.n_arms}")
    rng = np.random.default_rng(seed)
    u = rng.random(T)
    mu = p_click.mean(axis=0)
    best = int(np.argmax(mu))
    arms = np.zeros(T, np.int64)
    clicks = np.zeros(T, np.int8)
    for t in range(T):
        a = policy.choose(t + 1)
        r = int(u[t] < p_click[t, a])
        policy.update(a, r)
        arms[t], clicks[t] = a, r
    regret = np.cumsum(mu[best] - mu[arms])
    share_best = np.cumsum(arms == best) / np.arange(1, T + 1)
    return {"arms": arms, "clicks": clicks, "regret": regret, "share_best": share_best}
