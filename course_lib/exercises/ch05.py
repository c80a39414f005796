"""Exercises of chapter 05 (the training loop)."""

from __future__ import annotations

import math

import numpy as np

from . import register


def _lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps`` ((step + 1) / W), then cosine from peak to min_ratio × peak."""
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    p = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def _lr_wrong_answers(**_) -> list[tuple[str, object]]:
    """Plausible mistakes in a warm-up + cosine schedule."""

    def warmup_from_zero(step, total, w, peak, m):          # step / W: the first step has rate 0
        return peak * step / w if step < w else _lr_at(step, total, w, peak, m)

    def no_floor(step, total, w, peak, m):                  # decays to 0, ignoring min_ratio
        return _lr_at(step, total, w, peak, 0.0)

    def progress_over_total(step, total, w, peak, m):       # p = (step - W) / total instead of / (total - W)
        if step < w:
            return peak * (step + 1) / w
        p = min(1.0, (step - w) / total)
        return peak * (m + (1 - m) * 0.5 * (1 + math.cos(math.pi * p)))

    def linear_decay(step, total, w, peak, m):              # linear instead of cosine
        if step < w:
            return peak * (step + 1) / w
        p = min(1.0, (step - w) / max(1, total - w))
        return peak * (1 - (1 - m) * p)

    def no_warmup(step, total, w, peak, m):                 # cosine from step 0
        return _lr_at(step, total, 0, peak, m)

    return [("warm-up (step / W) starting at 0", warmup_from_zero), ("cosine to 0, min_ratio ignored", no_floor),
            ("progress over total_steps, not total - W", progress_over_total), ("linear decay", linear_decay),
            ("no warm-up", no_warmup)]


@register(
    "05.1",
    "lr_at(step, total_steps, warmup_steps, peak_lr, min_ratio): warm-up then cosine, as LRSchedule",
    "during warm-up: peak_lr * (step + 1) / warmup_steps; after: p = (step - W) / (total - W) and "
    "peak_lr * (m + (1 - m) * (1 + cos(pi * p)) / 2)",
    cases=lambda: [(0, 100, 10, 1e-3, 0.0), (9, 100, 10, 1e-3, 0.0), (55, 100, 10, 1e-3, 0.0),
                   (100, 100, 10, 1e-3, 0.1), (30, 200, 0, 3e-3, 0.05), (199, 200, 20, 2e-3, 0.0)],
    rtol=1e-9,
    atol=1e-15,
    wrong_answers=_lr_wrong_answers,
)
def lr_at_reference():
    return _lr_at


def _stop_epoch(valid_scores, patience: int) -> int:
    """The epoch (1-based) after which early stopping ends the run (the last epoch if it never does)."""
    best, bad = -math.inf, 0
    for epoch, score in enumerate(valid_scores, start=1):
        if score > best:
            best, bad = score, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch
    return len(valid_scores)


def _stop_wrong_answers(**_) -> list[tuple[str, object]]:
    """Plausible mistakes in early stopping."""

    def zero_based(scores, patience):
        return _stop_epoch(scores, patience) - 1

    def ties_improve(scores, patience):                     # >= counts a tie as a new best
        best, bad = -math.inf, 0
        for epoch, s in enumerate(scores, start=1):
            if s >= best:
                best, bad = s, 0
            else:
                bad += 1
                if bad >= patience:
                    return epoch
        return len(scores)

    def never_reset(scores, patience):                      # the counter is not reset on a new best
        best, bad = -math.inf, 0
        for epoch, s in enumerate(scores, start=1):
            if s > best:
                best = s
            else:
                bad += 1
                if bad >= patience:
                    return epoch
        return len(scores)

    def one_too_late(scores, patience):                     # stops when bad > patience
        return _stop_epoch(scores, patience + 1)

    def against_previous(scores, patience):                 # compares with the previous epoch, not the best
        prev, bad = -math.inf, 0
        for epoch, s in enumerate(scores, start=1):
            bad = 0 if s > prev else bad + 1
            prev = s
            if bad >= patience:
                return epoch
        return len(scores)

    return [("epochs counted from 0", zero_based), ("a tie counted as a new best", ties_improve),
            ("counter never reset", never_reset), ("stops one evaluation late", one_too_late),
            ("compared with the previous epoch instead of the best", against_previous),
            ("never stops early", lambda scores, patience: len(scores))]


@register(
    "05.2",
    "stop_epoch(valid_scores, patience): the epoch after which early stopping ends training",
    "keep the best score so far and a counter of evaluations without improvement; reset it on a new "
    "best (strictly higher), stop when it reaches patience; epochs count from 1",
    cases=lambda: [([0.1, 0.2, 0.3], 2), ([0.1, 0.2, 0.19, 0.18, 0.3], 2), ([0.1, 0.1, 0.1], 1),
                   ([0.3, 0.2, 0.25, 0.31, 0.3, 0.29, 0.28], 3), ([0.5], 1), ([0.5, 0.3, 0.4, 0.35, 0.45], 2)],
    wrong_answers=_stop_wrong_answers,
)
def stop_epoch_reference():
    return _stop_epoch


def _clip_scale(grad_norm: float, max_norm: float) -> float:
    return float(min(1.0, max_norm / (grad_norm + 1e-6)))


def _global_norm(grads: list) -> float:
    return math.sqrt(sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for g in grads))


def _clipped(grads: list, max_norm: float) -> float:
    """Global L2 norm of the gradients after clipping them to ``max_norm``."""
    total = _global_norm(grads)
    return total * _clip_scale(total, max_norm)


def _clip_wrong_answers(**_) -> list[tuple[str, object]]:
    """Plausible mistakes in gradient clipping."""

    def per_tensor(grads, max_norm):                        # each tensor clipped on its own
        clipped = [np.asarray(g, dtype=np.float64) * _clip_scale(_global_norm([g]), max_norm) for g in grads]
        return _global_norm(clipped)

    def l1(grads, max_norm):
        total = sum(float(np.abs(np.asarray(g, dtype=np.float64)).sum()) for g in grads)
        return total * _clip_scale(total, max_norm)

    return [("the norm before clipping", lambda grads, max_norm: _global_norm(grads)),
            ("each tensor clipped separately", per_tensor),
            ("always max_norm", lambda grads, max_norm: float(max_norm)),
            ("max(norm, max_norm)", lambda grads, max_norm: max(_global_norm(grads), max_norm)),
            ("the L1 norm", l1)]


@register(
    "05.3",
    "clipped_norm(grads, max_norm): the global gradient norm after clip_grad_norm_",
    "the global norm is sqrt of the sum of squares of *all* entries of all tensors; clipping multiplies every "
    "gradient by min(1, max_norm / (norm + 1e-6))",
    cases=lambda: [([np.array([3.0, 4.0])], 1.0), ([np.array([3.0, 4.0])], 10.0),
                   ([np.ones((2, 2)), np.array([1.0, 1.0, 1.0, 1.0, 1.0])], 2.0), ([np.zeros(3)], 1.0)],
    rtol=1e-6,
    atol=1e-9,
    wrong_answers=_clip_wrong_answers,
)
def clipped_norm_reference():
    return _clipped
