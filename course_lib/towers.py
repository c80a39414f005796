"""Training data and fitting for the two-tower model of chapter 09.

* :func:`examples` lists the training examples ``(user, position)``: the item at
  ``position`` of the user's training history is the target, the items before it the input.
* :class:`TowerCollator` turns a list of examples into a batch (left-padded histories,
  targets, the user's static features plus the time context of the last history event),
  optionally keeping only the history items of some domain (a per-category model).
* :func:`build_two_tower` wires a split's item features, text vectors, training counts and
  domains into a :class:`~course_lib.models.two_tower.TwoTower`; :func:`fit_two_tower`
  trains it with the course's :class:`~course_lib.train.Trainer` for a number of steps;
  :func:`user_table` gives the per-stage user feature table the evaluator needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .data.protocol import PAD, LeaveOneOutSplit
from .features import UNKNOWN, ItemFeatures, stage_context
from .models.two_tower import TwoTower, TwoTowerConfig
from .train import TrainConfig, Trainer

logger = logging.getLogger(__name__)


def examples(split: LeaveOneOutSplit, *, target_mask: np.ndarray | None = None,
             users: np.ndarray | None = None, min_position: int = 1) -> np.ndarray:
    """``(M, 2)`` int64 ``(user, position)`` pairs of the training histories.

    Args:
        target_mask: ``(N,)`` bool: keep only examples whose target item is allowed.
        users: keep only these internal users.
        min_position: the first target position (1: at least one history item).
    """
    us = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
    rows = []
    for u in us:
        seq = split.train[u]
        pos = np.arange(min_position, len(seq))
        if target_mask is not None and len(pos):
            pos = pos[np.asarray(target_mask)[seq[pos]]]
        if len(pos):
            rows.append(np.stack([np.full(len(pos), u), pos], axis=1))
    if not rows:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def _left_pad_filtered(seqs: list[np.ndarray], max_len: int, keep: np.ndarray | None) -> torch.Tensor:
    out = np.zeros((len(seqs), max_len), dtype=np.int64)
    for r, s in enumerate(seqs):
        if keep is not None:
            s = s[keep[s]]
        s = s[-max_len:]
        if len(s):
            out[r, max_len - len(s):] = s
    return torch.from_numpy(out)


def filter_histories(histories: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """``(B, T)`` histories with the items outside ``keep`` ``(N,)`` removed, re-left-padded."""
    h = histories.cpu().numpy()
    seqs = [row[row != PAD] for row in h]
    return _left_pad_filtered(seqs, h.shape[1], np.asarray(keep, dtype=bool)).to(histories.device)


@dataclass
class TowerCollator:
    """Examples ``(user, position)`` → a batch dict for :meth:`TwoTower.training_loss`.

    Args:
        split: the split whose training histories the examples index.
        max_len: history length.
        static_user: ``(U, F_s)`` static user feature ids (or ``None``).
        time_feats: per user ``(L_u, F_t)`` per-event time ids (see
            :func:`course_lib.features.split_time_features`) or ``None``.
        history_keep: ``(N,)`` bool: keep only these items in the input histories.
    """

    split: LeaveOneOutSplit
    max_len: int
    static_user: np.ndarray | None = None
    time_feats: list[np.ndarray] | None = None
    history_keep: np.ndarray | None = None

    def __call__(self, batch: list) -> dict[str, torch.Tensor]:
        ex = np.asarray(batch, dtype=np.int64).reshape(-1, 2)
        seqs = [self.split.train[u][:p] for u, p in ex]
        targets = np.array([self.split.train[u][p] for u, p in ex], dtype=np.int64)
        out = {"histories": _left_pad_filtered(seqs, self.max_len, self.history_keep),
               "targets": torch.from_numpy(targets)}
        parts = []
        if self.static_user is not None:
            parts.append(self.static_user[ex[:, 0]])
        if self.time_feats is not None:
            parts.append(np.stack([self.time_feats[u][p - 1] if p >= 1 else
                                   np.full(self.time_feats[u].shape[1], UNKNOWN) for u, p in ex]))
        if parts:
            out["user_cat"] = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.int64))
        return out


def user_table(split: LeaveOneOutSplit, stage: str, *, static_user: np.ndarray | None = None,
               time_feats: list[np.ndarray] | None = None) -> np.ndarray | None:
    """``(U, F_u)`` each user's features at ``stage`` in the collator's column order."""
    parts = []
    if static_user is not None:
        parts.append(static_user)
    if time_feats is not None:
        parts.append(stage_context(split, time_feats, stage))
    return np.concatenate(parts, axis=1).astype(np.int64) if parts else None


def training_counts(split: LeaveOneOutSplit) -> np.ndarray:
    """``(N,)`` how often each item is a training target (position >= 1)."""
    counts = np.zeros(split.n_items + 1, dtype=np.float64)
    for seq in split.train:
        np.add.at(counts, seq[1:], 1)
    return counts


def build_two_tower(split: LeaveOneOutSplit, *, item_features: ItemFeatures | None = None,
                    text: np.ndarray | None = None, user_cardinalities: tuple[int, ...] = (),
                    domains: np.ndarray | None = None, known: np.ndarray | None = None,
                    counts: np.ndarray | None = None, seed: int = 0, **config) -> TwoTower:
    """A :class:`TwoTower` for ``split`` with its item data loaded.

    Args:
        item_features: categorical and numeric item features (``None``: ids / text only).
        text: ``(N, text_dim)`` item text vectors (row 0 = padding).
        user_cardinalities: the user table's field sizes (static + time context).
        domains: ``(N,)`` domain id of each item (1..D; 0 = padding) for an MMoE model.
        known: ``(N,)`` items whose id embedding may be used (default: seen in training).
        counts: ``(N,)`` training target counts for log-Q (default: :func:`training_counts`).
        seed: initialisation seed.
        **config: any :class:`TwoTowerConfig` field (``d_model``, ``use_ids``, ``n_domains`` ...).
    """
    from .features import training_item_mask

    torch.manual_seed(seed)
    cfg = TwoTowerConfig(
        n_items=split.n_items,
        item_cardinalities=tuple(item_features.cardinalities) if item_features is not None else (),
        n_item_numeric=item_features.numeric.shape[1] if item_features is not None else 0,
        text_dim=0 if text is None else int(np.asarray(text).shape[1]),
        user_cardinalities=tuple(user_cardinalities), **config)
    model = TwoTower(cfg)
    model.set_item_data(
        categorical=item_features.categorical if item_features is not None else None,
        numeric=item_features.numeric if item_features is not None else None,
        text=text, known=training_item_mask(split) if known is None else known,
        domain=domains, counts=training_counts(split) if counts is None else counts)
    return model


def fit_two_tower(model: TwoTower, split: LeaveOneOutSplit, train_examples: np.ndarray, *, steps: int,
                  batch_size: int = 256, lr: float = 3e-3, seed: int = 0, static_user: np.ndarray | None = None,
                  time_feats: list[np.ndarray] | None = None, history_keep: np.ndarray | None = None,
                  weight_decay: float = 0.0) -> Trainer:
    """Train ``model`` for ``steps`` optimizer steps (deterministic: a step budget, not seconds).

    Returns the :class:`~course_lib.train.Trainer` (its ``history`` holds the losses).
    """
    if len(train_examples) == 0:
        raise ValueError("no training examples; check target_mask / users of examples()")
    epochs = max(1, int(np.ceil(steps * batch_size / len(train_examples))))
    collate = TowerCollator(split, model.max_len, static_user=static_user, time_feats=time_feats,
                            history_keep=history_keep)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_steps=steps, eval_every=0, progress=False,
                      log_every=0, seed=seed, warmup=0.05, schedule="cosine", weight_decay=weight_decay,
                      drop_last=len(train_examples) >= batch_size)
    trainer = Trainer(model, list(map(tuple, train_examples)), collate=collate, config=cfg, device="cpu")
    trainer.fit()
    model.eval()
    return trainer


__all__ = ["TowerCollator", "build_two_tower", "examples", "filter_histories", "fit_two_tower", "training_counts",
           "user_table"]
