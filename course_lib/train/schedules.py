"""Learning-rate schedules: a multiplier of the peak learning rate for each optimizer step.

``lr(step) = peak_lr × factor(step)`` with, for ``W`` warm-up steps and ``S`` steps in all:

* warm-up (``step < W``): ``factor = (step + 1) / W`` — a linear ramp that keeps the first
  updates small, while Adam's moment estimates are still noisy;
* then, with progress ``p = (step - W) / max(1, S - W)`` clipped to [0, 1]:

  - ``"constant"``: ``1``
  - ``"linear"``: ``1 - (1 - m) p``
  - ``"cosine"``: ``m + (1 - m) (1 + cos(π p)) / 2``

  where ``m`` is ``min_ratio`` (the floor, as a fraction of the peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    """A warm-up + decay schedule (see the module docstring for the formulas).

    Attributes:
        kind: ``"constant"``, ``"linear"`` or ``"cosine"``.
        total_steps: ``S``, the optimizer steps of the whole run.
        warmup_steps: ``W`` (0: no warm-up).
        min_ratio: ``m``, the final factor of ``"linear"`` and ``"cosine"``.
    """

    kind: str = "cosine"
    total_steps: int = 1
    warmup_steps: int = 0
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"warmup_steps must be in [0, total_steps={self.total_steps}], got {self.warmup_steps}")
        if not 0.0 <= self.min_ratio <= 1.0:
            raise ValueError(f"min_ratio must be in [0, 1], got {self.min_ratio}")

    def factor(self, step: int) -> float:
        """The multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        p = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        m = self.min_ratio
        if self.kind == "constant":
            return 1.0
        if self.kind == "linear":
            return 1.0 - (1.0 - m) * p
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * p))

    def values(self, peak_lr: float = 1.0) -> np.ndarray:
        """``(total_steps,)`` the learning rate at every step (for plots)."""
        return np.array([peak_lr * self.factor(s) for s in range(self.total_steps)])


def warmup_steps_from(warmup: int | float, total_steps: int) -> int:
    """``warmup`` as steps: an int is a number of steps, a float in [0, 1) a fraction of the run."""
    if isinstance(warmup, float) and 0.0 <= warmup < 1.0:
        return int(round(warmup * total_steps))
    if isinstance(warmup, (int, np.integer)) and not isinstance(warmup, bool) and warmup >= 0:
        return min(int(warmup), total_steps)
    raise ValueError(f"warmup must be a number of steps (int >= 0) or a fraction in [0, 1); got {warmup!r}")


__all__ = ["LRSchedule", "SCHEDULES", "warmup_steps_from"]
