"""From item sequences to training batches for next-item models (SASRec, GRU4Rec).

One training example is one user's training sequence ``s_1 … s_n`` (internal item ids,
oldest first). The model reads ``s_1 … s_{n-1}`` and must predict, at every position, the
item that came next: inputs ``x = s[:-1]`` and labels ``y = s[1:]`` (see
:func:`course_lib.data.shifted_sequences`). Rows are left-padded to ``max_len`` so that the
most recent item is always in the last column; a label 0 marks padding (no loss there).

Histories longer than ``max_len + 1`` items lose their oldest items (``crop="last"``, what
the papers do), or contribute a random window of ``max_len + 1`` consecutive items each
time they are drawn (``crop="random"``: over the epochs every item is used).

The negatives each loss needs are drawn here, with the collator's own NumPy generator (its
state goes into checkpoints, so a resumed run draws the same negatives):

* ``loss="ce"``: none — every item is a candidate;
* ``loss="bce"``: ``negatives`` ``(B, T)`` (or ``(B, T, K)``), one per position, never an item of
  the user's sequence (as the SASRec paper samples them);
* ``loss="sampled"``: ``negatives`` ``(K,)`` shared by every position of the batch (one
  matrix product) and ``log_q`` ``(n_items + 1,)`` for the log-Q correction.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..data.protocol import PAD, pad_sequences
from ..losses import LOSSES, NegativeSampler


class SequenceCollator:
    """Callable: a list of item sequences → a next-item batch (a dict of tensors).

    Args:
        n_items: items are ``1..n_items``.
        max_len: ``T``, the columns of the batch.
        loss: ``"ce"``, ``"bce"`` or ``"sampled"`` (decides which negatives are drawn).
        n_negatives: ``K``: per position for ``"bce"`` (default 1, the paper), shared by the
            batch for ``"sampled"`` (default 256).
        sampler: how negatives are drawn (default uniform over items).
        crop: ``"last"`` or ``"random"`` (see the module docstring).
        trim: drop the leading columns that are padding in every row (a batch of short
            histories becomes narrower than ``max_len``: less work, the same loss). Pair it
            with ``TrainConfig(bucket_by_length=True)`` so that histories of similar length
            share a batch. Models must then take ``W ≤ max_len`` columns (SASRec, GRU4Rec do).
        seed: seed of the collator's generator.

    Returns (``__call__``): ``{"input_ids": (B, T), "labels": (B, T)}`` LongTensors, plus
    ``"negatives"`` and ``"log_q"`` as the loss needs.
    """

    def __init__(self, n_items: int, max_len: int, *, loss: str = "ce", n_negatives: int | None = None,
                 sampler: NegativeSampler | None = None, crop: str = "last", trim: bool = False,
                 seed: int | None = 0) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")
        if crop not in ("last", "random"):
            raise ValueError(f"crop must be 'last' or 'random', got {crop!r}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.n_items, self.max_len, self.loss, self.crop, self.trim = int(n_items), int(max_len), loss, crop, trim
        self.n_negatives = int(n_negatives if n_negatives is not None else {"ce": 0, "bce": 1, "sampled": 256}[loss])
        if loss != "ce" and self.n_negatives < 1:
            raise ValueError(f"loss {loss!r} needs n_negatives >= 1")
        self.sampler = sampler or NegativeSampler(n_items)
        if self.sampler.n_items != self.n_items:
            raise ValueError(f"the sampler draws from {self.sampler.n_items} items but n_items is {n_items}")
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ state (for checkpoints)
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    # ------------------------------------------------------------------ batches
    def _window(self, seq: np.ndarray) -> np.ndarray:
        width = self.max_len + 1
        if self.crop == "random" and len(seq) > width:
            start = int(self.rng.integers(0, len(seq) - width + 1))
            return seq[start:start + width]
        return seq[-width:]

    def __call__(self, seqs: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        full = [np.asarray(s, dtype=np.int64) for s in seqs]
        if any(len(s) < 2 for s in full):
            raise ValueError("a training sequence has fewer than 2 items, so it has no (input, next item) "
                             "pair; drop such users (e.g. [s for s in split.train if len(s) >= 2])")
        windows = [self._window(s) for s in full]
        inputs = pad_sequences([w[:-1] for w in windows], self.max_len)        # (B, T)
        labels = pad_sequences([w[1:] for w in windows], self.max_len)         # (B, T)
        if self.trim:
            width = max(len(w) - 1 for w in windows)
            inputs, labels = inputs[:, -width:], labels[:, -width:]            # (B, W)
        batch = {"input_ids": inputs, "labels": labels}
        if self.loss == "bce":
            shape = labels.shape if self.n_negatives == 1 else (*labels.shape, self.n_negatives)
            neg = self._negatives_not_in(full, shape)
            neg[labels.numpy() == PAD] = PAD                                   # no negative where no target
            batch["negatives"] = torch.from_numpy(neg)
        elif self.loss == "sampled":
            batch["negatives"] = torch.from_numpy(self.sampler.sample(self.n_negatives, self.rng))   # (K,)
            if self.sampler.strategy != "uniform":
                batch["log_q"] = self.sampler.log_q
        return batch

    def _negatives_not_in(self, seqs: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        """Negatives of ``shape`` (row b first), none of them an item of row b's whole sequence."""
        neg = self.sampler.sample(shape, self.rng)
        for row, seq in enumerate(seqs):
            bad = np.isin(neg[row], seq)
            for _ in range(100):
                if not bad.any():
                    break
                neg[row][bad] = self.sampler.sample(int(bad.sum()), self.rng)
                bad = np.isin(neg[row], seq)
            else:
                raise ValueError(f"cannot draw negatives outside row {row}'s sequence: it holds almost "
                                 "every item of the catalogue")
        return neg


def move_to(batch: Any, device: torch.device) -> Any:
    """Move a batch (a tensor, or a dict / list / tuple of them) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


__all__ = ["LOSSES", "SequenceCollator", "move_to"]
