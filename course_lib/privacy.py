"""Privacy: re-identification and k-anonymity, DP-SGD with opacus, and a membership-inference attack.

**Re-identification.** A table with no names can still single people out: if only one user
in ML-1M is a woman aged 25-34 living in zip area 021**, anyone who knows those three facts
about her finds her rows, and with them every film she rated. A release is *k-anonymous* on
some quasi-identifiers (QIs) when every combination of their values that occurs, occurs at
least ``k`` times. Generalising (fewer zip digits, wider age brackets) buys ``k`` and costs
information, measured here as the entropy of the QI combination in bits.

**DP-SGD** (Abadi et al., 2016) clips each *user's* gradient to norm ``C``, adds Gaussian noise
``N(0, σ²C²)`` to the sum, and steps. opacus does the per-sample gradients and the
accounting; its accountant turns ``(σ, sampling rate, steps, δ)`` into the ``ε`` of an
``(ε, δ)`` guarantee. One *sample* is one user's whole sequence, so the guarantee is about
users, not single clicks. SASRec itself does not fit opacus: its position table is indexed
directly (not called as a module) and its output layer reuses the input embedding (tied), so
opacus' per-sample hooks would miss part of the gradient. :class:`DPSeqRec` is the same kind of
causal transformer built only from modules opacus knows (``nn.Embedding`` called on ids for
items *and* positions, the course's ``TransformerBlock`` = ``nn.Linear`` + ``nn.LayerNorm``,
and an untied ``nn.Linear`` output), which ``opacus.validators.ModuleValidator`` accepts.

**Membership inference** (Yeom et al., 2018): a model's loss is lower on the users it was
trained on; an attacker who thresholds the loss guesses membership better than chance. Its
*advantage* ``TPR − FPR`` is bounded under ``(ε, δ)``-DP by ``(e^ε − 1 + 2δ)/(e^ε + 1)``.

**The right to be forgotten** (machine unlearning): after user ``u`` asks to be erased, the
model should look as if it had never seen ``u``. :func:`retrain_without` is *exact*
unlearning — train again, same recipe and seed, on everyone else — and the reference the
cheaper :func:`fine_tune_away` (a few steps of gradient *ascent* on the forgotten users'
loss, each paired with a descent step on the retained users so that the model does not
forget everything else) is measured against, by the membership attack above run on the
forgotten users.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .attention import TransformerBlock, causal_mask, padding_mask
from .data.protocol import PAD
from .scoring import ScorerMixin

# ----------------------------------------------------------------------------- re-identification

AGE_BRACKETS_ML1M = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}


def age_bracket(age) -> np.ndarray:
    """ML-1M's seven age brackets as ranks 0..6, from ML-1M's codes (1, 18, 25, …) or from ages in years (ML-100k)."""
    return np.digitize(np.asarray(age, dtype=float), [18, 25, 35, 45, 50, 56])


def equivalence_class_sizes(table: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """For every row, how many rows share its values on ``columns`` (its equivalence class)."""
    cols = list(columns)
    return table.groupby(cols, dropna=False)[cols[0]].transform("size").astype(int)


def uniqueness(table: pd.DataFrame, columns: Sequence[str]) -> float:
    """Share of rows that are alone in their equivalence class (re-identifiable by these columns)."""
    return float((equivalence_class_sizes(table, columns) == 1).mean())


def k_anonymity(table: pd.DataFrame, columns: Sequence[str]) -> int:
    """The ``k`` of the table: the size of its smallest equivalence class on ``columns``."""
    return int(equivalence_class_sizes(table, columns).min())


def qi_entropy_bits(table: pd.DataFrame, columns: Sequence[str]) -> float:
    """Entropy (bits) of the combination of ``columns``: the information the QIs carry about a row."""
    p = table.groupby(list(columns), dropna=False).size().to_numpy() / len(table)
    return float(-(p * np.log2(p)).sum())


def generalise(users: pd.DataFrame, *, zip_digits: int, age_width: int = 1, gender: bool = True) -> pd.DataFrame:
    """ML-1M's users with generalised QIs: the first ``zip_digits`` of the zip code, ``age_width``
    neighbouring age codes merged into one bracket, and gender kept or suppressed.

    Returns a frame with ``zip``, ``age``, ``gender`` columns (strings).
    """
    age_rank = pd.Series(age_bracket(users["age"]), index=users.index)
    group = (age_rank // max(1, age_width)).astype(int)
    return pd.DataFrame({
        "zip": users["zip_code"].astype(str).str.slice(0, zip_digits) if zip_digits > 0 else "*",
        "age": group.astype(str),
        "gender": users["gender"].astype(str) if gender else "*",
    }, index=users.index)


# ----------------------------------------------------------------------------- a DP-trainable model

@dataclass
class DPSeqRecConfig:
    """Hyper-parameters of :class:`DPSeqRec`."""

    n_items: int
    max_len: int = 50
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 1
    dropout: float = 0.0


class DPSeqRec(ScorerMixin, nn.Module):
    """A causal-transformer next-item model made of modules opacus can clip per sample.

    ``forward(ids)``: ``(B, T)`` left-padded ids → ``(B, T, V)`` next-item logits.
    """

    def __init__(self, config: DPSeqRecConfig) -> None:
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.n_items + 1, c.d_model)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        self.blocks = nn.ModuleList(TransformerBlock(c.d_model, c.n_heads, d_ff=c.d_model, dropout=c.dropout)
                                    for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(c.d_model)
        self.out = nn.Linear(c.d_model, c.n_items + 1)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def n_items(self) -> int:
        return self.config.n_items

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        pos = torch.arange(self.config.max_len - T, self.config.max_len, device=ids.device).expand(B, T)
        x = (self.item_emb(ids) + self.pos_emb(pos)) * (ids != PAD).unsqueeze(-1).float()   # (B, T, d)
        mask = causal_mask(T, device=ids.device) & padding_mask(ids)
        for block in self.blocks:
            x = block(x, mask, fast=False)
        return self.out(self.final_norm(x))                                    # (B, T, V)

    def _scores(self, histories: torch.Tensor) -> torch.Tensor:
        ids = histories[:, -self.config.max_len:]
        if ids.shape[1] < self.config.max_len:
            ids = nn.functional.pad(ids, (self.config.max_len - ids.shape[1], 0), value=PAD)
        return self(ids)[:, -1]                                                # (B, V)


def next_item_tensors(sequences: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences → ``(inputs, labels)`` ``(N, max_len)`` each: ``s_1..s_{n-1}`` and ``s_2..s_n``, left-padded."""
    from .explain import left_pad

    inputs = left_pad([np.asarray(s)[:-1] for s in sequences], max_len)
    labels = left_pad([np.asarray(s)[1:] for s in sequences], max_len)
    return inputs, labels


def per_user_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(N,)`` each user's mean next-item cross-entropy over their labelled positions."""
    logits = model(inputs)                                                     # (N, T, V)
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none",
                                      ignore_index=PAD).view(labels.shape)
    n = (labels != PAD).sum(1).clamp(min=1)
    return ce.sum(1) / n


@torch.no_grad()
def per_user_loss_batched(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                          batch_size: int = 512) -> np.ndarray:
    model.eval()
    return torch.cat([per_user_loss(model, inputs[s:s + batch_size], labels[s:s + batch_size])
                      for s in range(0, len(inputs), batch_size)]).numpy()


def validate_for_dp(model: nn.Module) -> list:
    """opacus' ``ModuleValidator`` errors for ``model`` (an empty list: opacus can train it privately)."""
    from opacus.validators import ModuleValidator

    return list(ModuleValidator.validate(model, strict=False))


def train_next_item(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch_size: int,
                    lr: float, target_epsilon: float | None = None, delta: float | None = None,
                    max_grad_norm: float = 1.0, seed: int = 0) -> dict:
    """Train ``model`` on next-item cross-entropy, privately (opacus DP-SGD) when ``target_epsilon`` is given.

    One sample = one user's sequence (user-level privacy). With ``target_epsilon``, opacus'
    ``make_private_with_epsilon`` picks the noise multiplier σ that spends exactly that budget
    over ``epochs`` with Poisson-sampled batches of expected size ``batch_size``; the returned
    ``epsilon`` is what its RDP accountant reports after training.

    Returns ``{"model", "epsilon", "noise_multiplier", "steps", "losses"}`` (``epsilon`` = ``inf`` without DP).
    """
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model.train()
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=batch_size, shuffle=True, generator=g)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    engine, sigma = None, 0.0
    if target_epsilon is not None:
        from opacus import PrivacyEngine

        if delta is None:
            raise ValueError("a private run needs delta (e.g. 1 / number of users)")
        errors = validate_for_dp(model)
        if errors:
            raise ValueError(f"opacus cannot train this model privately: {errors}")
        engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=target_epsilon,
            target_delta=delta, epochs=epochs, max_grad_norm=max_grad_norm)
        sigma = float(optimizer.noise_multiplier)
    model.train()
    losses, steps = [], 0
    for _ in range(epochs):
        for x, y in loader:
            if len(x) == 0:                                                    # Poisson sampling can draw none
                continue
            optimizer.zero_grad()
            loss = per_user_loss(model, x, y).mean()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            steps += 1
    model.eval()
    plain = model._module if engine is not None else model                    # opacus wraps the module
    eps = float(engine.get_epsilon(delta)) if engine is not None else math.inf
    return {"model": plain, "epsilon": eps, "noise_multiplier": sigma, "steps": steps, "losses": losses}


# ----------------------------------------------------------------------------- the right to be forgotten

def retrain_without(make_model, inputs: torch.Tensor, labels: torch.Tensor, forget: Sequence[int],
                    **train_kw) -> dict:
    """Exact unlearning: :func:`train_next_item` on a fresh ``make_model()`` with the rows ``forget`` removed.

    ``inputs``/``labels`` are ``(N, T)`` (one row per user); ``forget`` the row indices to erase;
    ``train_kw`` the recipe (epochs, batch_size, lr, seed, …) of the original model. Returns
    :func:`train_next_item`'s dict.
    """
    drop = np.zeros(len(inputs), dtype=bool)
    drop[np.asarray(forget, dtype=np.int64)] = True
    keep = torch.from_numpy(np.flatnonzero(~drop))
    return train_next_item(make_model(), inputs[keep], labels[keep], **train_kw)


def fine_tune_away(model: nn.Module, forget_inputs: torch.Tensor, forget_labels: torch.Tensor, *, steps: int,
                   lr: float = 1e-3, retain_inputs: torch.Tensor | None = None,
                   retain_labels: torch.Tensor | None = None, batch_size: int = 256, seed: int = 0) -> nn.Module:
    """Approximate unlearning: a *copy* of ``model`` after ``steps`` Adam steps on
    ``−loss(forget) + loss(retain batch)``.

    The first term is gradient ascent on the forgotten users' next-item loss (all of them
    every step: the set is small); the second, when ``retain_*`` are given, a descent step on a
    random batch of ``batch_size`` retained users, which keeps the model useful for them.
    ``steps = 0`` returns an unchanged copy. ``model`` itself is not modified.
    """
    out = copy.deepcopy(model)
    if steps <= 0:
        return out.eval()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(out.parameters(), lr=lr)
    out.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = -per_user_loss(out, forget_inputs, forget_labels).mean()
        if retain_inputs is not None:
            rows = torch.randint(len(retain_inputs), (min(batch_size, len(retain_inputs)),), generator=g)
            loss = loss + per_user_loss(out, retain_inputs[rows], retain_labels[rows]).mean()
        loss.backward()
        opt.step()
    return out.eval()


# ----------------------------------------------------------------------------- membership inference

def membership_advantage(member_losses: Sequence[float], nonmember_losses: Sequence[float]) -> dict[str, float]:
    """The loss-threshold attack ("member if loss ≤ t") at its best threshold.

    Returns ``{"advantage": max_t TPR(t) − FPR(t), "auc": P(member loss < non-member loss)}``.
    The best threshold is chosen with the answers known: an upper estimate of what an
    attacker achieves (and the number the DP bound speaks about).
    """
    m, n = np.asarray(member_losses, float), np.asarray(nonmember_losses, float)
    t = np.unique(np.concatenate([m, n]))
    tpr = np.searchsorted(np.sort(m), t, side="right") / len(m)
    fpr = np.searchsorted(np.sort(n), t, side="right") / len(n)
    adv = float(max(0.0, np.max(tpr - fpr)))
    ranks = pd.Series(np.concatenate([-m, -n])).rank().to_numpy()            # higher = more member-like
    auc = float((ranks[:len(m)].sum() - len(m) * (len(m) + 1) / 2) / (len(m) * len(n)))
    return {"advantage": adv, "auc": auc}


def dp_advantage_bound(epsilon: float, delta: float) -> float:
    """Upper bound on any membership attack's advantage under ``(ε, δ)``-DP: ``(e^ε − 1 + 2δ)/(e^ε + 1)``."""
    if math.isinf(epsilon):
        return 1.0
    return float(min(1.0, (math.exp(epsilon) - 1 + 2 * delta) / (math.exp(epsilon) + 1)))


__all__ = [
    "AGE_BRACKETS_ML1M", "DPSeqRec", "age_bracket", "DPSeqRecConfig", "dp_advantage_bound", "equivalence_class_sizes",
    "fine_tune_away", "generalise", "k_anonymity", "membership_advantage", "next_item_tensors", "per_user_loss",
    "per_user_loss_batched", "qi_entropy_bits", "retrain_without", "train_next_item", "uniqueness", "validate_for_dp",
]
