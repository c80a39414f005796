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


@register(
    "05.1",
    "lr_at(step, total_steps, warmup_steps, peak_lr, min_ratio): warm-up then cosine, as LRSchedule",
    "during warm-up: peak_lr * (step + 1) / warmup_steps; after: p = (step - W) / (total - W) and "
    "peak_lr * (m + (1 - m) * (1 + cos(pi * p)) / 2)",
    cases=lambda: [(0, 100, 10, 1e-3, 0.0), (9, 100, 10, 1e-3, 0.0), (55, 100, 10, 1e-3, 0.0),
                   (100, 100, 10, 1e-3, 0.1), (30, 200, 0, 3e-3, 0.05), (199, 200, 20, 2e-3, 0.0)],
    rtol=1e-9,
    atol=1e-15,
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


@register(
    "05.2",
    "stop_epoch(valid_scores, patience): the epoch after which early stopping ends training",
    "keep the best score so far and a counter of evaluations without improvement; reset it on a new "
    "best (strictly higher), stop when it reaches patience; epochs count from 1",
    cases=lambda: [([0.1, 0.2, 0.3], 2), ([0.1, 0.2, 0.19, 0.18, 0.3], 2), ([0.1, 0.1, 0.1], 1),
                   ([0.3, 0.2, 0.25, 0.31, 0.3, 0.29, 0.28], 3), ([0.5], 1)],
)
def stop_epoch_reference():
    return _stop_epoch


def _clip_scale(grad_norm: float, max_norm: float) -> float:
    return float(min(1.0, max_norm / (grad_norm + 1e-6)))


def _clipped(grads: list, max_norm: float) -> float:
    """Global L2 norm of the gradients after clipping them to ``max_norm``."""
    total = math.sqrt(sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for g in grads))
    return total * _clip_scale(total, max_norm)


@register(
    "05.3",
    "clipped_norm(grads, max_norm): the global gradient norm after clip_grad_norm_",
    "the global norm is sqrt of the sum of squares of *all* entries of all tensors; clipping multiplies every "
    "gradient by min(1, max_norm / (norm + 1e-6))",
    cases=lambda: [([np.array([3.0, 4.0])], 1.0), ([np.array([3.0, 4.0])], 10.0),
                   ([np.ones((2, 2)), np.array([1.0, 1.0, 1.0, 1.0, 1.0])], 2.0), ([np.zeros(3)], 1.0)],
    rtol=1e-6,
    atol=1e-9,
)
def clipped_norm_reference():
    return _clipped
