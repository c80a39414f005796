"""Online experiments: A/B tests, their power, the peeking problem, and interleaving.

Plain functions on arrays of per-visit outcomes (0/1 clicks, revenue), so they work on the
simulator's output (``course_lib.simulator``) or on real logs alike.

* :func:`sample_size_two_proportions` — users per arm to detect a lift (normal approximation)
* :func:`two_proportion_test` — z-test, difference and its confidence interval
* :func:`peeking_false_positive_rate` — A/A tests looked at after every batch: how often
  "stop at the first p < 0.05" declares a winner that is not there
* :func:`msprt_always_valid` — the mixture sequential probability ratio test (Johari et
  al., 2017), a test one may look at after every visit and still keep the error rate
* :func:`team_draft_interleave` / :func:`interleaving_credit` — team-draft interleaving
  (Radlinski, Kurup and Joachims, 2008): both rankers' items in one list, clicks decide
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

__all__ = ["interleaving_credit", "msprt_always_valid", "peeking_false_positive_rate",
           "sample_size_two_proportions", "team_draft_interleave", "two_proportion_test"]


def sample_size_two_proportions(p_control: float, lift: float, *, alpha: float = 0.05,
                                power: float = 0.8) -> int:
    """Users per arm for a two-sided two-proportion z-test to detect ``p_control → p_control·(1+lift)``.

    ``n = (z_{1-α/2} + z_{power})² · (p1(1-p1) + p2(1-p2)) / (p2 - p1)²`` (rounded up).
    """
    if not 0 < p_control < 1:
        raise ValueError(f"p_control must be a rate in (0, 1), got {p_control}")
    p2 = p_control * (1.0 + lift)
    if not 0 < p2 < 1 or lift == 0:
        raise ValueError(f"the treated rate p_control*(1+lift) = {p2} must be in (0, 1) and differ from p_control")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    var = p_control * (1 - p_control) + p2 * (1 - p2)
    return int(math.ceil(z * z * var / (p2 - p_control) ** 2))


def two_proportion_test(a: np.ndarray, b: np.ndarray, *, level: float = 0.95) -> dict[str, float]:
    """Compare per-visit 0/1 outcomes (or any per-visit values) of arms A and B.

    Returns ``{"mean_a", "mean_b", "diff" (b - a), "ci_low", "ci_high", "z", "p"}``: a Welch-style
    z-test with unpooled standard error ``sqrt(var_a/n_a + var_b/n_b)`` and a two-sided p-value.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each arm needs at least 2 visits, got {len(a)} and {len(b)}")
    diff = b.mean() - a.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    z = diff / se if se > 0 else 0.0
    h = stats.norm.ppf(0.5 + level / 2) * se
    return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "diff": float(diff),
            "ci_low": float(diff - h), "ci_high": float(diff + h), "z": float(z),
            "p": float(2 * stats.norm.sf(abs(z)))}


def _cumulative_z(a: np.ndarray, b: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """``(R, n_looks)`` z statistics of b - a after the first ``looks[j]`` visits per arm."""
    ca, cb = np.cumsum(a, axis=1), np.cumsum(b, axis=1)
    ca2, cb2 = np.cumsum(a * a, axis=1), np.cumsum(b * b, axis=1)
    n = looks.astype(float)
    ma, mb = ca[:, looks - 1] / n, cb[:, looks - 1] / n
    va = np.maximum(ca2[:, looks - 1] / n - ma ** 2, 0) * n / np.maximum(n - 1, 1)
    vb = np.maximum(cb2[:, looks - 1] / n - mb ** 2, 0) * n / np.maximum(n - 1, 1)
    se = np.sqrt((va + vb) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, (mb - ma) / se, 0.0)


def peeking_false_positive_rate(p: float, n_per_arm: int, n_looks: int, *, n_experiments: int = 2000,
                                alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Simulate A/A tests (both arms convert at ``p``) and count false positives.

    Each experiment runs to ``n_per_arm`` visits per arm and is looked at ``n_looks`` times
    (evenly spaced). Returns the share of experiments that declare a difference
    ``"fixed"``: only at the pre-registered end, ``"peeking"``: at the first look with
    p < alpha, and ``"msprt"``: at the first look where the always-valid mSPRT rejects.
    """
    rng = np.random.default_rng(seed)
    looks = np.unique(np.linspace(n_per_arm / n_looks, n_per_arm, n_looks).astype(int))
    fixed = peek = seq = 0
    chunk = max(1, int(2e7 // max(n_per_arm, 1)))
    for start in range(0, n_experiments, chunk):
        r = min(chunk, n_experiments - start)
        a = (rng.random((r, n_per_arm)) < p).astype(np.float32)
        b = (rng.random((r, n_per_arm)) < p).astype(np.float32)
        z = _cumulative_z(a, b, looks)
        pv = 2 * stats.norm.sf(np.abs(z))
        fixed += int((pv[:, -1] < alpha).sum())
        peek += int((pv < alpha).any(axis=1).sum())
        seq += int(msprt_always_valid(a, b, looks, alpha=alpha)["rejected"].sum())
    return {"fixed": fixed / n_experiments, "peeking": peek / n_experiments, "msprt": seq / n_experiments,
            "n_looks": int(len(looks))}


def msprt_always_valid(a: np.ndarray, b: np.ndarray, looks: np.ndarray | None = None, *, alpha: float = 0.05,
                       tau: float | None = None) -> dict[str, np.ndarray]:
    """The mixture sequential probability ratio test on the pairwise differences ``d = b - a``.

    With ``V`` the variance of one difference and a normal mixture ``N(0, τ²)`` over the true
    effect, after ``n`` pairs with mean difference ``d̄``

        Λ_n = sqrt(V / (V + n τ²)) · exp(n² τ² d̄² / (2 V (V + n τ²))),

    and rejecting the first time ``Λ_n ≥ 1/α`` keeps the false-positive rate below α however
    often one looks (Johari, Pekelis and Walsh, "Always valid inference", 2017). ``V`` is
    estimated from the data seen so far (a plug-in, as in practice).

    Args:
        a, b: ``(R, n)`` per-visit outcomes of R experiments (or ``(n,)`` for one).
        looks: 1-based visit counts at which to look (default: every visit).
        alpha: the error rate to keep.
        tau: mixture scale (default: the standard deviation of one difference / 10·sqrt(2),
            tuned for lifts of a few per cent).

    Returns:
        ``{"rejected": (R,) bool, "stop": (R,) the look count at rejection or -1, "lambda": (R, n_looks)}``.
    """
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    n_total = a.shape[1]
    looks = np.arange(1, n_total + 1) if looks is None else np.asarray(looks, dtype=np.int64)
    d = b - a
    cs, cs2 = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
    n = looks.astype(float)
    mean = cs[:, looks - 1] / n
    var = np.maximum(cs2[:, looks - 1] / n - mean ** 2, 1e-12)
    t2 = (np.sqrt(var) / 10.0) ** 2 if tau is None else np.full_like(var, float(tau) ** 2)
    log_lam = 0.5 * np.log(var / (var + n * t2)) + n * n * t2 * mean ** 2 / (2 * var * (var + n * t2))
    log_lam[:, n < 10] = -np.inf          # the plug-in variance is meaningless on a handful of visits
    hit = log_lam >= math.log(1.0 / alpha)
    rejected = hit.any(axis=1)
    stop = np.where(rejected, looks[hit.argmax(axis=1)], -1)
    return {"rejected": rejected, "stop": stop, "lambda": np.exp(np.minimum(log_lam, 700))}


def team_draft_interleave(list_a: np.ndarray, list_b: np.ndarray, k: int | None = None, *,
                          rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Team-draft interleaving of two rankings per visit, vectorised over visits.

    In each round the team with fewer picks (a coin flip on a tie) adds its highest-ranked
    item not yet in the list, and that slot is credited to it.

    Args:
        list_a, list_b: ``(V, L)`` item ids ranked by rankers A and B (best first; distinct per row).
        k: length of the interleaved list (default ``L``).
        rng: random generator for the coin flips.

    Returns:
        ``(slates (V, k), team (V, k))`` with ``team`` 0 for A's picks and 1 for B's.
    """
    a, b = np.asarray(list_a, np.int64), np.asarray(list_b, np.int64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"list_a and list_b must both be (V, L); got {a.shape} and {b.shape}")
    rng = rng or np.random.default_rng()
    V, L = a.shape
    k = L if k is None else int(k)
    if k > L:
        raise ValueError(f"k={k} is longer than the rankings ({L})")
    slates = np.zeros((V, k), np.int64)
    team = np.zeros((V, k), np.int8)
    ptr = np.zeros((2, V), np.int64)
    picks = np.zeros((2, V), np.int64)
    lists = np.stack([a, b])                       # (2, V, L)
    rows = np.arange(V)
    for pos in range(k):
        coin = rng.random(V) < 0.5
        who = np.where(picks[0] < picks[1], 0, np.where(picks[1] < picks[0], 1, coin.astype(np.int64)))
        # advance the picking team's pointer past items already in the list
        for _ in range(L):
            p = ptr[who, rows]
            cand = lists[who, rows, np.minimum(p, L - 1)]
            dup = (slates[:, :pos] == cand[:, None]).any(axis=1) & (p < L)
            if not dup.any():
                break
            ptr[who[dup], rows[dup]] += 1
        p = ptr[who, rows]
        if (p >= L).any():
            raise ValueError("a ranker ran out of items: pass rankings at least as long as 2k, or distinct items")
        slates[:, pos] = lists[who, rows, p]
        team[:, pos] = who
        ptr[who, rows] += 1
        picks[who, rows] += 1
    return slates, team


def interleaving_credit(clicks: np.ndarray, team: np.ndarray) -> np.ndarray:
    """``(V,)`` the interleaving outcome of each visit: +1 if B's items got more clicks, -1 if A's, 0 on a tie."""
    clicks, team = np.asarray(clicks), np.asarray(team)
    cb = (clicks * (team == 1)).sum(axis=1)
    ca = (clicks * (team == 0)).sum(axis=1)
    return np.sign(cb - ca).astype(np.int8)
