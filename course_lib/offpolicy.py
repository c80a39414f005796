"""Off-policy evaluation: estimate a new policy's click rate from another policy's logs.

A *logging policy* π₀ chose item ``a`` for user ``x`` with probability ``π₀(a|x)`` (its
*propensity*, recorded with the log) and the user clicked (``r = 1``) or not. For a new
policy π₁, the click rate it *would* have had is, without showing it to anyone,

    IPS   = (1/n) Σ_j r_j · π₁(a_j|x_j) / π₀(a_j|x_j)                    (unbiased if π₀ > 0 wherever π₁ > 0)
    SNIPS = Σ_j r_j w_j / Σ_j w_j,   w_j = π₁(a_j|x_j) / π₀(a_j|x_j)     (slightly biased, much less variance)

(Horvitz and Thompson, 1952; Swaminathan and Joachims, 2015). The weights blow up where π₁
likes what π₀ rarely showed, so the estimates get noisier the further apart the policies are;
:func:`effective_sample_size` says how many logged visits the estimate is really worth.
"""

from __future__ import annotations

import numpy as np

__all__ = ["effective_sample_size", "ips", "sample_from", "snips", "softmax_policy"]


def softmax_policy(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``(V, N + 1)`` action probabilities ``softmax(scores / temperature)`` per row; ``-inf`` scores get 0.

    ``temperature → 0`` approaches the greedy (top-1) policy, large temperatures the uniform one.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (a small value such as 0.01 is near-greedy), got {temperature}")
    s = np.asarray(scores, dtype=np.float64) / temperature
    s = s - np.max(s, axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def sample_from(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(V,)`` one action per row of ``probs`` ``(V, N)`` (inverse-CDF sampling, vectorised)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), probs.shape[1] - 1)


def _weights(target_prob: np.ndarray, logging_prob: np.ndarray) -> np.ndarray:
    target_prob, logging_prob = np.asarray(target_prob, float), np.asarray(logging_prob, float)
    if target_prob.shape != logging_prob.shape:
        raise ValueError(f"target and logging propensities must align; got {target_prob.shape}, {logging_prob.shape}")
    if (logging_prob <= 0).any():
        raise ValueError("a logged action has logging propensity 0: IPS needs π₀(a|x) > 0 for every logged action "
                         "(log the propensities the policy actually used)")
    return target_prob / logging_prob


def ips(rewards: np.ndarray, target_prob: np.ndarray, logging_prob: np.ndarray) -> float:
    """Inverse propensity scoring estimate of the target policy's mean reward.

    Args:
        rewards: ``(n,)`` logged rewards (clicks 0/1).
        target_prob: ``(n,)`` π₁(a_j | x_j) of the logged actions.
        logging_prob: ``(n,)`` π₀(a_j | x_j), the propensities logged with the actions.
    """
    return float(np.mean(np.asarray(rewards, float) * _weights(target_prob, logging_prob)))


def snips(rewards: np.ndarray, target_prob: np.ndarray, logging_prob: np.ndarray) -> float:
    """Self-normalised IPS: ``Σ r w / Σ w`` (same arguments as :func:`ips`)."""
    w = _weights(target_prob, logging_prob)
    return float(np.sum(np.asarray(rewards, float) * w) / np.sum(w))


def effective_sample_size(target_prob: np.ndarray, logging_prob: np.ndarray) -> float:
    """Kish's effective sample size of the importance weights: ``(Σ w)² / Σ w²`` (≤ n)."""
    w = _weights(target_prob, logging_prob)
    return float(w.sum() ** 2 / np.sum(w * w))
