"""Cross-category recommendation: the shop's categories as domains.

* :func:`item_domains` gives every item a domain id (its category); :func:`in_domain`
  restricts a scorer to one domain's items (and optionally its history to that domain);
  :func:`evaluate_by_domain` measures each domain on the users whose target lies in it.
* :func:`four_ways` trains and compares, on one split: one model per domain, one pooled
  model, a shared bottom with per-domain gates (MMoE), and the pooled model fine-tuned per domain.
* :func:`cold_domain_transfer`: a domain held out of training, then fine-tuned with the
  interactions of 0 / 25 / 100 / 400 users, from the pooled model (transfer) or from scratch.
* :func:`complement_users` finds the test steps the shop's generator drew as a complement
  of an item in *another* category (phone → case); :func:`category_mix_distance` compares
  the categories of each user's recommendations with the taste the generator planted.

Shapes: ``N = n_items + 1``, ``D`` domains (ids ``1..D``; 0 = padding).
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .data.core import Dataset
from .data.protocol import PAD, LeaveOneOutSplit
from .evaluate import evaluate, topk_items
from .towers import build_two_tower, examples, filter_histories, fit_two_tower, training_counts

logger = logging.getLogger(__name__)


def item_domains(split: LeaveOneOutSplit, column: str = "category") -> tuple[np.ndarray, list[str]]:
    """``(N,)`` domain ids (1..D, 0 for padding) and the domain names (``names[d - 1]``)."""
    if column not in split.items.columns:
        raise ValueError(f"the split's items have no {column!r} column (found {list(split.items.columns)})")
    values = split.items[column].iloc[1:].astype(str)
    names = sorted(values.unique())
    ids = np.zeros(split.n_items + 1, dtype=np.int64)
    ids[1:] = values.map({n: i + 1 for i, n in enumerate(names)}).to_numpy()
    return ids, names


def in_domain(score_fn: Callable, keep: np.ndarray, *, filter_history: bool = False) -> Callable:
    """A scorer that gives ``-inf`` to items outside ``keep`` ``(N,)`` (and, with
    ``filter_history``, reads only the history items inside it: a per-domain model)."""
    keep_t = torch.as_tensor(np.asarray(keep, dtype=bool))

    def fn(users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        h = filter_histories(histories, keep) if filter_history else histories
        s = torch.as_tensor(score_fn(users, h)).float().clone()
        s[:, ~keep_t.to(s.device)] = -torch.inf
        return s

    return fn


def domain_users(split: LeaveOneOutSplit, domains: np.ndarray, d: int, stage: str = "test") -> np.ndarray:
    """Internal ids of the users whose ``stage`` target is in domain ``d``."""
    return np.flatnonzero(domains[split.targets(stage)] == d)


def evaluate_by_domain(scorers: dict[int, Callable] | Callable, split: LeaveOneOutSplit, domains: np.ndarray,
                       names: list[str], *, stage: str = "test", max_len: int = 50,
                       filter_history: bool = False, only: list[int] | None = None) -> pd.DataFrame:
    """NDCG@10 and HR@10 of each domain, ranking only that domain's items.

    Args:
        scorers: one ``score_fn`` for all domains, or ``{domain id: score_fn}``.
        filter_history: each domain's scorer reads only the history items of that domain.
        only: evaluate only these domain ids.

    Returns:
        One row per domain: ``domain``, ``users`` (whose target is there), ``items``,
        ``train_interactions`` (of the domain), ``NDCG@10``, ``HR@10``.
    """
    counts = training_counts(split)
    rows = []
    for d in (only or range(1, len(names) + 1)):
        users = domain_users(split, domains, d, stage)
        if len(users) == 0:
            continue
        keep = domains == d
        fn = scorers[d] if isinstance(scorers, dict) else scorers
        m = evaluate(in_domain(fn, keep, filter_history=filter_history), split, stage, users=users, max_len=max_len)
        rows.append({"domain": names[d - 1], "users": len(users), "items": int(keep.sum()),
                     "train_interactions": int(counts[keep].sum()), "NDCG@10": m["NDCG@10"], "HR@10": m["HR@10"]})
    return pd.DataFrame(rows)


def four_ways(split: LeaveOneOutSplit, domains: np.ndarray, names: list[str], *, steps: int, domain_steps: int,
              finetune_steps: int, batch_size: int = 256, seed: int = 0, tower_kwargs: dict | None = None,
              fit_kwargs: dict | None = None, stage: str = "test", max_len: int = 50) -> tuple[pd.DataFrame, dict]:
    """Train the four cross-domain set-ups on one split and evaluate each domain.

    1. ``per-category``: one model per domain, trained on that domain's examples with
       histories reduced to that domain, ``domain_steps`` steps each;
    2. ``pooled``: one model on every example, ``steps`` steps;
    3. ``MMoE gates``: a pooled model with a shared bottom and per-domain expert gates;
    4. ``pooled + fine-tune``: the pooled model, then ``finetune_steps`` more steps on each
       domain's examples (a copy per domain).

    Returns:
        A long table (``setup``, ``domain``, ``users``, ``train_interactions``, ``NDCG@10``,
        ``HR@10``) and the pooled and MMoE models.
    """
    tk, fk = dict(tower_kwargs or {}), dict(fit_kwargs or {})
    ex_all = examples(split)
    tables = []
    per_domain = {}
    for d in range(1, len(names) + 1):
        keep = domains == d
        ex = examples(split, target_mask=keep)
        if len(ex) < 2:
            continue
        m = build_two_tower(split, seed=seed, **tk)
        fit_two_tower(m, split, ex, steps=domain_steps, batch_size=min(batch_size, len(ex)), seed=seed,
                      history_keep=keep, **fk)
        _set_users(m, split, stage, fk)
        per_domain[d] = m.score_fn
    tables.append(evaluate_by_domain(per_domain, split, domains, names, stage=stage, max_len=max_len,
                                     filter_history=True, only=sorted(per_domain)).assign(setup="per-category"))
    pooled = build_two_tower(split, seed=seed, **tk)
    fit_two_tower(pooled, split, ex_all, steps=steps, batch_size=batch_size, seed=seed, **fk)
    _set_users(pooled, split, stage, fk)
    tables.append(evaluate_by_domain(pooled.score_fn, split, domains, names, stage=stage, max_len=max_len)
                  .assign(setup="pooled"))
    mmoe = build_two_tower(split, seed=seed, domains=domains, n_domains=len(names), **tk)
    fit_two_tower(mmoe, split, ex_all, steps=steps, batch_size=batch_size, seed=seed, **fk)
    _set_users(mmoe, split, stage, fk)
    tables.append(evaluate_by_domain(mmoe.score_fn, split, domains, names, stage=stage, max_len=max_len)
                  .assign(setup="MMoE gates"))
    tuned = {}
    for d in range(1, len(names) + 1):
        ex = examples(split, target_mask=domains == d)
        if len(ex) < 2:
            continue
        m = copy.deepcopy(pooled).train()
        fit_two_tower(m, split, ex, steps=finetune_steps, batch_size=min(batch_size, len(ex)), seed=seed,
                      lr=fk.get("lr", 3e-3) / 3, **{k: v for k, v in fk.items() if k != "lr"})
        _set_users(m, split, stage, fk)
        tuned[d] = m.score_fn
    tables.append(evaluate_by_domain(tuned, split, domains, names, stage=stage, max_len=max_len, only=sorted(tuned))
                  .assign(setup="pooled + fine-tune"))
    return pd.concat(tables, ignore_index=True), {"pooled": pooled, "mmoe": mmoe}


def _set_users(model, split, stage, fit_kwargs) -> None:
    from .towers import user_table

    model.set_user_features(user_table(split, stage, static_user=fit_kwargs.get("static_user"),
                                       time_feats=fit_kwargs.get("time_feats")))


def cold_domain_transfer(split: LeaveOneOutSplit, domains: np.ndarray, cold: int, *, n_users: list[int],
                         seeds: list[int], pretrain_steps: int, finetune_steps: int, batch_size: int = 256,
                         tower_kwargs: dict | None = None, fit_kwargs: dict | None = None,
                         stage: str = "test", max_len: int = 50) -> pd.DataFrame:
    """Transfer into a domain that training never saw.

    The pooled model is trained on every example whose target is *not* in domain ``cold``
    (histories keep their cold items: a user's other purchases are known). Then, for each
    size ``n`` in ``n_users`` and each seed: ``n`` users (drawn from those with cold-domain
    training interactions, never an evaluated user) lend their cold-domain examples, and

    * ``transfer``: a copy of the pooled model is fine-tuned on them (``n = 0``: zero-shot);
    * ``scratch``: a fresh model with the same features is trained on them only.

    Both are evaluated on the users whose ``stage`` target is in the cold domain, ranking
    the cold domain's items. Item ids of the cold domain are unknown to the pooled model,
    so it places those items from their features and text alone (``item_known``).

    Returns:
        One row per (method, n_users, seed): ``NDCG@10``, ``HR@10``, ``examples``.
    """
    tk, fk = dict(tower_kwargs or {}), dict(fit_kwargs or {})
    keep = domains == cold
    eval_users = domain_users(split, domains, cold, stage)
    ex_warm = examples(split, target_mask=~keep)
    counts = training_counts(split)
    counts_warm = counts.copy()
    counts_warm[keep] = 0
    known_warm = np.zeros(split.n_items + 1, dtype=bool)
    for seq in split.train:
        known_warm[seq] = True
    known_warm &= ~keep
    known_warm[PAD] = False
    base = build_two_tower(split, seed=0, known=known_warm, counts=counts_warm, **tk)
    fit_two_tower(base, split, ex_warm, steps=pretrain_steps, batch_size=batch_size, seed=0, **fk)
    pool = np.setdiff1d(np.array([u for u in range(split.n_users) if keep[split.train[u][1:]].any()]), eval_users)
    rows = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(pool)
        for n in n_users:
            users = order[: min(n, len(order))]
            ex = examples(split, target_mask=keep, users=users) if n else np.zeros((0, 2), np.int64)
            for method in ("transfer", "scratch"):
                if method == "transfer":
                    m = copy.deepcopy(base)
                    if len(ex):
                        m.train()
                        fit_two_tower(m, split, ex, steps=finetune_steps, batch_size=min(batch_size, len(ex)),
                                      seed=seed, lr=fk.get("lr", 3e-3) / 3,
                                      **{k: v for k, v in fk.items() if k != "lr"})
                else:
                    if not len(ex):
                        continue
                    m = build_two_tower(split, seed=seed, known=known_warm, counts=counts, **tk)
                    fit_two_tower(m, split, ex, steps=finetune_steps, batch_size=min(batch_size, len(ex)), seed=seed,
                                  **fk)
                _set_users(m, split, stage, fk)
                met = evaluate(in_domain(m.score_fn, keep), split, stage, users=eval_users, max_len=max_len)
                rows.append({"method": method, "n_users": int(n), "users_used": int(len(users)), "seed": seed,
                             "examples": int(len(ex)), "NDCG@10": met["NDCG@10"], "HR@10": met["HR@10"]})
    return pd.DataFrame(rows)


def complement_users(dataset: Dataset, split: LeaveOneOutSplit, *, cross_category: bool = True,
                     stage: str = "test") -> np.ndarray:
    """Internal users whose ``stage`` target the shop's generator drew as a complement of an
    item they had (with ``cross_category``: an item of another category, e.g. phone → case)."""
    ev = dataset.truth.get("events")
    if ev is None:
        raise ValueError("the dataset has no truth['events']; complements are known only for the shop")
    inter = dataset.interactions
    table = pd.DataFrame({"user_id": inter["user_id"].to_numpy(), "item_id": inter["item_id"].to_numpy(),
                          "reason": ev["reason"].to_numpy(), "anchor": ev["anchor_item_id"].to_numpy()})
    table = table.drop_duplicates(["user_id", "item_id"]).set_index(["user_id", "item_id"])
    targets = split.original_items(split.targets(stage))
    keys = pd.MultiIndex.from_arrays([split.user_ids, targets])
    got = table.reindex(keys)
    is_comp = (got["reason"] == "complement").to_numpy().copy()
    if cross_category:
        cat = dataset.items.set_index("item_id")["category"]
        anchor_cat = cat.reindex(got["anchor"].to_numpy()).to_numpy()
        target_cat = cat.reindex(targets).to_numpy()
        is_comp &= anchor_cat != target_cat
    return np.flatnonzero(is_comp)


def category_mix_distance(top_items: np.ndarray, domains: np.ndarray, names: list[str], taste: pd.DataFrame,
                          split: LeaveOneOutSplit) -> np.ndarray:
    """``(U,)`` total-variation distance between the category mix of each user's top-k
    ``(U, k)`` and the taste the generator planted (``taste``: user_id × category)."""
    D = len(names)
    mix = np.zeros((len(top_items), D))
    for r, row in enumerate(top_items):
        mix[r] = np.bincount(domains[row] - 1, minlength=D)[:D]
    mix /= mix.sum(1, keepdims=True)
    t = taste.reindex(index=split.user_ids, columns=names).fillna(0).to_numpy(dtype=float, copy=True)
    t /= t.sum(1, keepdims=True)
    return 0.5 * np.abs(mix - t).sum(1)


__all__ = ["category_mix_distance", "cold_domain_transfer", "complement_users", "domain_users", "evaluate_by_domain",
           "four_ways", "in_domain", "item_domains", "topk_items"]
