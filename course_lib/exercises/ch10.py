"""Exercises of chapter 10 (from offline to online)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from . import register


def _ab_context() -> dict:
    return {"p_control": 0.12, "lift": 0.05}


def _n_per_arm(p1: float, p2: float, z: float) -> int:
    return int(np.ceil(z * z * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2))


@register(
    "10.1",
    "users per arm for a two-sided A/B test (α = 0.05, power 0.8) to detect a relative lift `lift` "
    "of a click rate `p_control`",
    "p2 = p_control × (1 + lift); n = (z_0.975 + z_0.8)² (p1(1-p1) + p2(1-p2)) / (p2 - p1)², rounded up — "
    "per arm, not for both arms together, and the lift is relative, not absolute",
    example_context=_ab_context,
    rtol=1e-3,
    wrong_answers=lambda p_control, lift: [
        ("both arms together", 2 * _n_per_arm(p_control, p_control * (1 + lift),
                                              stats.norm.ppf(0.975) + stats.norm.ppf(0.8))),
        ("a one-sided z (1.645)", _n_per_arm(p_control, p_control * (1 + lift),
                                             stats.norm.ppf(0.95) + stats.norm.ppf(0.8))),
        ("no power term (z_0.975 only)", _n_per_arm(p_control, p_control * (1 + lift), stats.norm.ppf(0.975))),
    ],
)
def ab_sample_size(p_control: float, lift: float) -> int:
    p2 = p_control * (1 + lift)
    return _n_per_arm(p_control, p2, stats.norm.ppf(0.975) + stats.norm.ppf(0.8))


def _ope_context() -> dict:
    rng = np.random.default_rng(10)
    n = 500
    logging_prob = rng.uniform(0.02, 0.5, n)
    target_prob = np.clip(logging_prob * rng.lognormal(0, 1, n), 1e-4, 1)
    rewards = (rng.random(n) < 0.1 + 0.3 * target_prob).astype(float)
    return {"rewards": rewards, "target_prob": target_prob, "logging_prob": logging_prob}


@register(
    "10.2",
    "the self-normalised IPS (SNIPS) estimate of the new policy's click rate from the logs "
    "`rewards`, `target_prob` (π₁ of each logged item) and `logging_prob` (π₀, the logged propensities)",
    "w = target_prob / logging_prob; SNIPS = sum(rewards × w) / sum(w) "
    "(plain IPS divides by the number of visits instead of sum(w))",
    example_context=_ope_context,
    rtol=1e-6,
    wrong_answers=lambda rewards, target_prob, logging_prob: [
        ("plain IPS", float(np.mean(rewards * target_prob / logging_prob))),
        ("the logged click rate", float(np.mean(rewards))),
        ("weights upside down",
         float(np.sum(rewards * logging_prob / target_prob) / np.sum(logging_prob / target_prob))),
    ],
)
def snips_estimate(rewards, target_prob, logging_prob) -> float:
    w = np.asarray(target_prob, float) / np.asarray(logging_prob, float)
    return float(np.sum(np.asarray(rewards, float) * w) / np.sum(w))


def _slate_context() -> dict:
    return {"attractiveness": np.array([0.30, 0.25, 0.10, 0.40, 0.05]), "position_bias": 1.0}


@register(
    "10.3",
    "the probability that a visit has at least one click on a slate whose items (in display order) have "
    "`attractiveness` a_k, under the position-based model θ_k = k^(-position_bias)",
    "clicks at different positions are independent: P(no click) = Π_k (1 - θ_k a_k), so "
    "P(at least one) = 1 - Π_k (1 - θ_k a_k); θ_1 = 1, θ_2 = 1/2, ... for position_bias 1",
    example_context=_slate_context,
    rtol=1e-6,
    wrong_answers=lambda attractiveness, position_bias: [
        ("expected clicks (a sum, not at least one)",
         float(np.sum(np.arange(1, len(attractiveness) + 1) ** (-position_bias) * attractiveness))),
        ("position bias ignored", float(1 - np.prod(1 - np.asarray(attractiveness)))),
        ("the slate read backwards (θ on the wrong positions)",
         float(1 - np.prod(1 - np.arange(1, len(attractiveness) + 1) ** (-position_bias)
                           * np.asarray(attractiveness)[::-1]))),
    ],
)
def slate_ctr(attractiveness, position_bias: float) -> float:
    a = np.asarray(attractiveness, float)
    theta = np.arange(1, len(a) + 1, dtype=float) ** (-float(position_bias))
    return float(1 - np.prod(1 - theta * a))


def _esmm_context() -> dict:
    rng = np.random.default_rng(14)
    n = 400
    p_ctr = rng.uniform(0.01, 0.3, n)
    p_cvr = rng.uniform(0.02, 0.4, n)
    clicks = (rng.random(n) < p_ctr).astype(float)
    purchases = clicks * (rng.random(n) < p_cvr)
    return {"p_ctr": p_ctr, "p_cvr": p_cvr, "clicks": clicks, "purchases": purchases}


def _bce(p, y) -> float:
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    y = np.asarray(y, float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@register(
    "10.4",
    "ESMM's training loss on a batch of impressions: the model predicts `p_ctr` and `p_cvr` for every impression; "
    "the labels are `clicks` and `purchases` (a purchase only after a click)",
    "loss = BCE(p_ctr, clicks) + BCE(p_ctr × p_cvr, purchases), each the mean over ALL impressions "
    "(BCE(p, y) = -mean(y log p + (1 - y) log(1 - p))); pCVR is never fitted on the clicked rows alone — "
    "that is the clicked-only model ESMM replaces",
    example_context=_esmm_context,
    rtol=1e-6,
    wrong_answers=lambda p_ctr, p_cvr, clicks, purchases: [
        ("the CVR term on the clicked impressions only (the clicked-only model)",
         _bce(p_ctr, clicks) + _bce(np.asarray(p_cvr)[np.asarray(clicks) > 0],
                                    np.asarray(purchases)[np.asarray(clicks) > 0])),
        ("pCVR itself against the purchases (not the product)", _bce(p_ctr, clicks) + _bce(p_cvr, purchases)),
        ("the click term only", _bce(p_ctr, clicks)),
        ("the purchase term only", _bce(np.asarray(p_ctr) * np.asarray(p_cvr), purchases)),
    ],
)
def esmm_loss(p_ctr, p_cvr, clicks, purchases) -> float:
    return _bce(p_ctr, clicks) + _bce(np.asarray(p_ctr, float) * np.asarray(p_cvr, float), purchases)
