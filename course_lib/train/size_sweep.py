"""Model size against quality at a fixed budget: train SASRec at several widths and depths.

Each point of the sweep is one SASRec trained with the same recipe and **the same budget**,
either the same number of optimizer steps (hence the same batches and the same training
tokens: ``budget="steps"``) or the same seconds of training (``budget="seconds"``; the cosine
schedule spans the budget, so every run ends annealed). Each point records its parameters
(total and without the item table), the target tokens it trained on, its training FLOPs
(tokens × :func:`course_lib.scaling.sasrec_train_flops`), its seconds and its full-ranking
validation and test metrics.

>>> frame = size_sweep(split, dims=(32, 64), layers=(1, 2), budget="steps", amount=200)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

import pandas as pd
import torch

from ..data.protocol import LeaveOneOutSplit
from ..device import set_seed
from ..models.sasrec import SASRec, SASRecConfig
from ..scaling import sasrec_parameters, sasrec_train_flops
from .batches import SequenceCollator
from .trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)

BUDGETS = ("steps", "seconds")


def train_point(split: LeaveOneOutSplit, d_model: int, n_layers: int, *, budget: str, amount: float,
                max_len: int = 50, batch_size: int = 128, lr: float = 3e-3, dropout: float = 0.1,
                eval_users: int | None = None, seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Train one SASRec of width ``d_model`` and depth ``n_layers`` for ``amount`` steps or seconds.

    Heads: ``max(1, d_model // 32)`` (head size 32). Returns a flat record: ``d``, ``layers``,
    ``params``, ``non_embedding_params``, ``tokens``, ``train_flops``, ``steps``, ``train_s``,
    ``valid_NDCG@10``, ``NDCG@10``, ``HR@10`` (test, full ranking; ``eval_users`` users if given).
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of: {', '.join(BUDGETS)}")
    if not amount > 0:
        raise ValueError(f"amount must be > 0 (steps or seconds), got {amount}")
    set_seed(seed)
    cfg = SASRecConfig(n_items=split.n_items, max_len=max_len, d_model=d_model, n_heads=max(1, d_model // 32),
                       n_layers=n_layers, dropout=dropout, attn_dropout=0.0, ce_chunk_size=256)
    model = SASRec(cfg)
    tokens = [0]

    def loss_fn(m, batch):
        tokens[0] += int((batch["labels"] > 0).sum())
        return m.training_loss(batch)

    common = dict(epochs=10_000, batch_size=batch_size, lr=lr, warmup=0.03, min_lr_ratio=0.02, clip_norm=1.0,
                  bucket_by_length=True, eval_every=0, progress=progress, log_every=0, seed=seed)
    if budget == "steps":
        tcfg = TrainConfig(max_steps=int(amount), **common)
    else:
        tcfg = TrainConfig(time_budget_s=float(amount), schedule_unit="time", **common)
    collate = SequenceCollator(split.n_items, max_len, loss="ce", trim=True, seed=seed)
    trainer = Trainer(model, split.train, collate=collate, split=split, config=tcfg, loss_fn=loss_fn)
    t0 = time.perf_counter()
    trainer.fit()
    users = None
    if eval_users is not None and eval_users < split.n_users:
        users = torch.randperm(split.n_users, generator=torch.Generator().manual_seed(seed))[:eval_users].sort().values
        users = users.tolist()
    valid = trainer.evaluate("valid", users=users)
    test = trainer.evaluate("test", users=users)
    parts = sasrec_parameters(split.n_items, max_len, d_model, n_layers)
    record = {"d": d_model, "layers": n_layers, "params": parts["total"],
              "non_embedding_params": parts["total"] - parts["item_table"] - parts["positions"],
              "tokens": tokens[0], "train_flops": tokens[0] * sasrec_train_flops(split.n_items, max_len, d_model,
                                                                               n_layers)["train"],
              "steps": trainer.step, "train_s": trainer.train_seconds, "wall_s": time.perf_counter() - t0,
              "valid_NDCG@10": valid["NDCG@10"], "NDCG@10": test["NDCG@10"], "HR@10": test["HR@10"]}
    logger.info("d=%d L=%d: %d params, %d steps, test NDCG@10 %.4f", d_model, n_layers, record["params"],
                record["steps"], record["NDCG@10"])
    return record


def size_sweep(split: LeaveOneOutSplit, *, dims: Iterable[int] = (32, 64, 128, 256), layers: Iterable[int] = (1, 2, 4),
               budget: str = "steps", amount: float = 300, progress: bool = True, **kwargs) -> pd.DataFrame:
    """:func:`train_point` for every ``(d, layers)`` pair; one row per model (see :func:`train_point`)."""
    from tqdm.auto import tqdm

    pairs = [(d, n) for n in layers for d in dims]
    rows = [train_point(split, d, n, budget=budget, amount=amount, **kwargs)
            for d, n in tqdm(pairs, desc=f"size sweep ({budget})", disable=not progress)]
    return pd.DataFrame(rows)


__all__ = ["BUDGETS", "size_sweep", "train_point"]
