"""Multi-task rankers for clicks and purchases: shared bottom, MMoE and ESMM (chapter 10).

A shop wants more than clicks: a click that never becomes a purchase earns nothing. The logs
hold, for every *impression* (an item shown to a user), two labels: clicked (0/1) and bought
(0/1, only possible after a click). Three ways to learn both at once, all over the same input
``x`` of an impression (the embedded user and item features, see :class:`RankingInput`):

* **Shared bottom** (Caruana, 1997): one network ``h = f(x)`` shared by all tasks, a small
  tower per task on top: ``logit_t = g_t(h)``.
* **MMoE** (Ma et al., KDD 2018): ``E`` experts ``f_e(x)``; each task mixes them with its own
  softmax gate ``w_t(x) = softmax(W_t x)`` (the weights sum to 1):
  ``h_t = Σ_e w_{t,e}(x) f_e(x)``, ``logit_t = g_t(h_t)``. Tasks that disagree can use
  different experts instead of fighting over one bottom.
* **ESMM** (Ma et al., SIGIR 2018): the purchase of an impression is "click, then buy":

      pCTCVR = P(click, buy | x) = P(click | x) · P(buy | click, x) = pCTR · pCVR.

  A CVR model trained only on clicked impressions learns ``P(buy | click, x)`` from a small,
  selected part of the data and is then asked about *all* impressions at serving time
  (*sample selection bias*, plus *data sparsity*: purchases are rare). ESMM never trains pCVR
  on its own: it trains pCTR on the click labels and the product ``pCTR · pCVR`` on the
  purchase labels, both over **all** impressions, and the two towers share the embeddings,
  which the plentiful click labels train for the rare purchase task.

For the shared bottom and MMoE the two tasks are ``"click"`` (P(click | x)) and ``"purchase"``
(P(click, buy | x)), both over all impressions; ESMM's outputs are named ``"click"``,
``"cvr"`` and ``"purchase"`` (= click × cvr). :func:`fit_multitask` trains any of them with
summed binary cross-entropies; ``click_only=True`` trains a one-task model of ``"cvr"`` on the
clicked impressions only: the baseline ESMM was built to replace.

Shapes: ``B`` impressions; ``U`` users, ``N`` items (ids ``1..N``, 0 = padding), ``C`` categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ESMM", "MMoE", "MultiTaskConfig", "RankingInput", "SharedBottom", "fit_multitask", "predict_multitask",
           "make_multitask"]


@dataclass
class MultiTaskConfig:
    """Sizes of the multi-task rankers.

    Attributes:
        n_users, n_items, n_categories: table sizes (items ``1..n_items``, row 0 = padding).
        d_embed: width of each embedded feature.
        hidden: width of the shared bottom / each expert.
        tower: width of each task tower's hidden layer.
        n_experts: MMoE experts.
        dropout: dropout after the bottom / experts.
    """

    n_users: int
    n_items: int
    n_categories: int
    d_embed: int = 16
    hidden: int = 64
    tower: int = 32
    n_experts: int = 4
    dropout: float = 0.0


class RankingInput(nn.Module):
    """The embedded features of an impression ``(user, item)``: ``x`` of width ``4 d + 1``.

    ``[item embedding, category embedding, user embedding, projected user category mix,
    user's share of the item's category]``. ``user_mix`` ``(U, C)`` is each user's history
    over categories (shares, rows sum to 1) and ``item_category`` ``(N + 1,)`` each item's
    category (-1 or anything for the padding row 0); both are fixed buffers, not learned.
    """

    def __init__(self, config: MultiTaskConfig, user_mix: torch.Tensor, item_category: torch.Tensor) -> None:
        super().__init__()
        c = config
        user_mix = torch.as_tensor(np.asarray(user_mix), dtype=torch.float32)
        item_category = torch.as_tensor(np.asarray(item_category), dtype=torch.long).clamp(min=0)
        if user_mix.shape != (c.n_users, c.n_categories):
            raise ValueError(f"user_mix must be (n_users, n_categories) = {(c.n_users, c.n_categories)}, "
                             f"got {tuple(user_mix.shape)}")
        if item_category.shape != (c.n_items + 1,):
            raise ValueError(f"item_category must be (n_items + 1,) = ({c.n_items + 1},) with row 0 for padding, "
                             f"got {tuple(item_category.shape)}")
        self.register_buffer("user_mix", user_mix)
        self.register_buffer("item_category", item_category)
        self.item = nn.Embedding(c.n_items + 1, c.d_embed, padding_idx=0)
        self.category = nn.Embedding(c.n_categories, c.d_embed)
        self.user = nn.Embedding(c.n_users, c.d_embed)
        self.mix = nn.Linear(c.n_categories, c.d_embed)
        for emb in (self.item, self.category, self.user):
            nn.init.normal_(emb.weight, std=0.05)
        self.width = 4 * c.d_embed + 1

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B,)`` users and ``(B,)`` items -> ``(B, 4 d + 1)``."""
        cat = self.item_category[items]
        mix = self.user_mix[users]
        share = mix.gather(1, cat[:, None])                                  # (B, 1): the cross feature
        return torch.cat([self.item(items), self.category(cat), self.user(users), self.mix(mix), share], dim=-1)


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


class SharedBottom(nn.Module):
    """One shared network under one tower per task; ``forward`` returns ``{task: probability (B,)}``."""

    def __init__(self, config: MultiTaskConfig, user_mix, item_category, tasks=("click", "purchase")) -> None:
        super().__init__()
        self.config, self.tasks = config, tuple(tasks)
        self.input = RankingInput(config, user_mix, item_category)
        self.bottom = nn.Sequential(nn.Linear(self.input.width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout))
        self.towers = nn.ModuleDict({t: _mlp(config.hidden, config.tower, 1) for t in self.tasks})

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.bottom(self.input(users, items))
        return {t: tower(h).squeeze(-1) for t, tower in self.towers.items()}

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: torch.sigmoid(v) for t, v in self.logits(users, items).items()}


class MMoE(nn.Module):
    """Multi-gate mixture of experts; ``gates(users, items)`` returns ``{task: (B, E)}`` rows that sum to 1."""

    def __init__(self, config: MultiTaskConfig, user_mix, item_category, tasks=("click", "purchase")) -> None:
        super().__init__()
        self.config, self.tasks = config, tuple(tasks)
        self.input = RankingInput(config, user_mix, item_category)
        d = self.input.width
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, config.hidden), nn.ReLU(), nn.Dropout(config.dropout))
                                     for _ in range(config.n_experts))
        self.gate = nn.ModuleDict({t: nn.Linear(d, config.n_experts) for t in self.tasks})
        self.towers = nn.ModuleDict({t: _mlp(config.hidden, config.tower, 1) for t in self.tasks})

    def gates(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input(users, items)
        return {t: torch.softmax(g(x), dim=-1) for t, g in self.gate.items()}

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input(users, items)
        experts = torch.stack([e(x) for e in self.experts], dim=1)            # (B, E, hidden)
        out = {}
        for t in self.tasks:
            w = torch.softmax(self.gate[t](x), dim=-1)                        # (B, E), sums to 1
            out[t] = self.towers[t]((w[:, :, None] * experts).sum(dim=1)).squeeze(-1)
        return out

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: torch.sigmoid(v) for t, v in self.logits(users, items).items()}


class ESMM(nn.Module):
    """Entire-space multi-task model: a CTR tower and a CVR tower on shared embeddings.

    ``forward`` returns ``{"click": pCTR, "cvr": pCVR, "purchase": pCTR · pCVR}``; the loss of
    :func:`fit_multitask` uses ``click`` and ``purchase`` only, over all impressions.
    """

    tasks = ("click", "purchase")

    def __init__(self, config: MultiTaskConfig, user_mix, item_category) -> None:
        super().__init__()
        self.config = config
        self.input = RankingInput(config, user_mix, item_category)
        self.ctr = _mlp(self.input.width, config.hidden, 1, config.dropout)
        self.cvr = _mlp(self.input.width, config.hidden, 1, config.dropout)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.input(users, items)
        p_ctr = torch.sigmoid(self.ctr(x).squeeze(-1))
        p_cvr = torch.sigmoid(self.cvr(x).squeeze(-1))
        return {"click": p_ctr, "cvr": p_cvr, "purchase": p_ctr * p_cvr}


def make_multitask(kind: str, config: MultiTaskConfig, user_mix, item_category) -> nn.Module:
    """``kind``: ``"shared-bottom"``, ``"mmoe"``, ``"esmm"``, ``"click"`` (a one-task CTR model) or
    ``"cvr"`` (a one-task CVR model, to be trained on clicked impressions only)."""
    if kind == "shared-bottom":
        return SharedBottom(config, user_mix, item_category)
    if kind == "mmoe":
        return MMoE(config, user_mix, item_category)
    if kind == "esmm":
        return ESMM(config, user_mix, item_category)
    if kind in ("click", "cvr"):
        return SharedBottom(config, user_mix, item_category, tasks=(kind,))
    raise ValueError(f"unknown multi-task model {kind!r}; choose shared-bottom, mmoe, esmm, click or cvr")


def _bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), y)


def fit_multitask(model: nn.Module, users, items, clicks, purchases, *, steps: int, batch_size: int = 2048,
                  lr: float = 3e-3, weight_decay: float = 0.0, click_only: bool = False, seed: int = 0,
                  optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train on logged impressions with Adam for ``steps`` minibatches (sampled with replacement, seeded).

    Args:
        model: from :func:`make_multitask` (or any module whose ``forward(users, items)`` returns the
            probabilities of its ``tasks``).
        users, items, clicks, purchases: ``(M,)`` one row per impression (0/1 labels).
        steps: optimiser steps (the cost this chapter counts).
        click_only: train a one-task ``"cvr"`` model on the clicked impressions only (label: purchase).
        optimizer: continue with this optimiser (a warm start keeps Adam's moments); default: a new Adam.

    Returns:
        ``{"loss": [per-step summed BCE], "steps": steps, "optimizer": the optimiser}``.
    """
    users = torch.as_tensor(np.asarray(users), dtype=torch.long)
    items = torch.as_tensor(np.asarray(items), dtype=torch.long)
    clicks = torch.as_tensor(np.asarray(clicks), dtype=torch.float32)
    purchases = torch.as_tensor(np.asarray(purchases), dtype=torch.float32)
    if not (len(users) == len(items) == len(clicks) == len(purchases)):
        raise ValueError("users, items, clicks and purchases must have one row per impression")
    if bool((purchases > clicks).any()):
        raise ValueError("a purchase without a click: purchases must be a subset of clicks")
    if click_only:
        keep = clicks > 0
        users, items, clicks, purchases = users[keep], items[keep], clicks[keep], purchases[keep]
    if len(users) == 0:
        raise ValueError("no impressions to train on" + (" (no clicks)" if click_only else ""))
    gen = torch.Generator().manual_seed(seed)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for _ in range(int(steps)):
        idx = torch.randint(0, len(users), (min(batch_size, len(users)),), generator=gen)
        out = model(users[idx], items[idx])
        if click_only:
            loss = _bce(out["cvr"], purchases[idx])
        else:
            loss = sum(_bce(out[t], clicks[idx] if t == "click" else purchases[idx]) for t in model.tasks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return {"loss": losses, "steps": int(steps), "optimizer": opt}


@torch.no_grad()
def predict_multitask(model: nn.Module, users, items, batch_size: int = 65_536) -> dict[str, np.ndarray]:
    """``{output: (M,) probabilities}`` of a trained model for ``M`` impressions, in batches."""
    model.eval()
    users = torch.as_tensor(np.asarray(users), dtype=torch.long)
    items = torch.as_tensor(np.asarray(items), dtype=torch.long)
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(users), batch_size):
        for k, v in model(users[s:s + batch_size], items[s:s + batch_size]).items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}
