"""Explanations of a sequential recommender's top item, and how faithful they are.

For one user with history ``s_1 … s_L`` and the item ``r`` the model ranks first, every method
gives each history position a number: how much that item is *responsible* for ``r``'s score
``f(s) = h_L(s) · E[r]`` (chapter 04's SASRec):

* ``attention``: the last block's attention weights from the last position to each item,
  averaged over heads (what the model *looks at*; chapter 04 warns it is not an explanation);
* ``grad_x_input``: ``∂f/∂x_j · x_j`` summed over the embedding dimensions, where ``x_j`` is
  item ``j``'s embedding (a first-order Taylor term);
* ``integrated_gradients``: captum's Integrated Gradients from a *blank* history (every item
  vector zero, positions and padding unchanged) to the real one. Its attributions add up to
  ``f(x) − f(baseline)`` (completeness), up to the integration error captum reports;
* ``leave_one_out``: ``f(s) − f(s without s_j)``, the history re-scored with item ``j`` removed
  (the items before it move one place to the right, as if it had never been bought).

Faithfulness is measured, not assumed: a **deletion curve** removes the ``k`` items an
explanation ranks highest and records how much of ``r``'s probability is left; the faster it
falls, the more the explanation found what the model used. A random order is the yardstick.

Shapes: ``B`` users, ``T`` columns of a left-padded history (``≤ max_len``), ``d`` model size,
``V = n_items + 1`` score columns.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import stats

from .attention import causal_mask, padding_mask
from .data.protocol import PAD

METHODS = ("attention", "grad_x_input", "integrated_gradients", "leave_one_out")


def left_pad(histories: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """Histories (oldest first) → ``(B, width)`` LongTensor, cut to the last ``width`` items, left-padded with 0."""
    out = torch.zeros((len(histories), width), dtype=torch.long)
    for b, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)[-width:]
        if len(h):
            out[b, width - len(h):] = torch.from_numpy(h)
    return out


def top_items(model, histories: torch.Tensor, *, mask_seen: bool = True) -> torch.Tensor:
    """``(B,)`` each history's top-scored item (items in the history masked when ``mask_seen``)."""
    scores = model.score(histories).clone()                                     # (B, V)
    if mask_seen:
        scores.scatter_(1, histories, -math.inf)
    return scores.argmax(dim=1)


# ----------------------------------------------------------------------------- the model as f(x)

def sasrec_target_score(model, input_ids: torch.Tensor, item_vectors: torch.Tensor,
                        targets: torch.Tensor) -> torch.Tensor:
    """SASRec's score of ``targets`` computed from explicit item vectors (what attributions differentiate).

    Args:
        model: a :class:`course_lib.models.sasrec.SASRec` in eval mode.
        input_ids: ``(B, T)`` left-padded ids (they decide the padding mask and the positions).
        item_vectors: ``(B, T, d)`` the items' embeddings (``model.item_emb(input_ids)`` gives
            the model's own score; zeros give the blank baseline).
        targets: ``(B,)`` the item whose score is explained.

    Returns ``(B,)``: equal to ``model.score(input_ids)[b, targets[b]]`` for the model's own vectors.
    """
    c = model.config
    T = input_ids.shape[1]
    x = item_vectors * math.sqrt(c.d_model) if c.scale_embeddings else item_vectors
    x = x + model.pos_emb.embedding.weight[c.max_len - T:]                       # (B, T, d)
    x = x * (input_ids != PAD).unsqueeze(-1).to(x.dtype)
    mask = causal_mask(T, device=input_ids.device) & padding_mask(input_ids)     # (B, T, T)
    for block in model.blocks:
        x = block(x, mask, fast=False)
    h = model.final_norm(x)[:, -1]                                               # (B, d)
    return (h * model.item_embeddings[targets]).sum(-1)                          # (B,)


def _forward(model) -> Callable:
    """``f(item_vectors, ids, targets)`` in captum's argument order (captum repeats ids and targets per step)."""
    return lambda vectors, ids, targets: sasrec_target_score(model, ids, vectors, targets)


def _inputs(model, histories: torch.Tensor) -> torch.Tensor:
    return model._inputs(histories)                                              # (B, max_len), left-padded


# ----------------------------------------------------------------------------- the four methods

def attention_attribution(model, histories: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, max_len)``: the last block's attention from the last position, averaged over heads (0 at padding)."""
    ids = _inputs(model, histories)
    weights = model.attention_maps(ids)[-1]                                      # (B, H, T, T)
    att = weights[:, :, -1, :].mean(dim=1)                                       # (B, T)
    return att * (ids != PAD)


def grad_x_input(model, histories: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, max_len)``: gradient × input of the target's score, summed over the embedding dimensions."""
    from captum.attr import InputXGradient

    ids = _inputs(model, histories)
    model.eval()
    vectors = model.item_emb(ids).detach()
    attr = InputXGradient(_forward(model)).attribute(vectors, additional_forward_args=(ids, targets))
    return attr.sum(-1).detach() * (ids != PAD)


def integrated_gradients(model, histories: torch.Tensor, targets: torch.Tensor, *, n_steps: int = 32,
                         return_delta: bool = False):
    """``(B, max_len)`` Integrated Gradients (captum) from the blank history, summed over dimensions.

    With ``return_delta=True`` also captum's ``(B,)`` convergence delta:
    ``Σ attributions − (f(x) − f(baseline))``, small when ``n_steps`` is large enough.
    """
    from captum.attr import IntegratedGradients

    ids = _inputs(model, histories)
    model.eval()
    vectors = model.item_emb(ids).detach()
    ig = IntegratedGradients(_forward(model))
    attr, delta = ig.attribute(vectors, baselines=torch.zeros_like(vectors), n_steps=n_steps,
                               additional_forward_args=(ids, targets),
                               method="gausslegendre", return_convergence_delta=True)
    out = attr.sum(-1).detach() * (ids != PAD)
    return (out, delta.detach()) if return_delta else out


def remove_positions(ids: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` left-padded ids with the positions where ``drop`` (``(B, T)`` bool) is True removed.

    The remaining items keep their order and are left-padded again (as if never bought).
    """
    B, T = ids.shape
    keep = (~drop) & (ids != PAD)
    out = torch.zeros_like(ids)
    n_keep = keep.sum(dim=1)                                                      # (B,)
    # position of each kept item in the output: right-aligned
    rank = torch.cumsum(keep.long(), dim=1) - 1                                   # 0.. within row
    col = T - n_keep.unsqueeze(1) + rank                                          # (B, T)
    rows = torch.arange(B).unsqueeze(1).expand(B, T)
    out[rows[keep], col[keep]] = ids[keep]
    return out


@torch.no_grad()
def _target_scores(model, ids: torch.Tensor, targets: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    out = []
    for s in range(0, len(ids), batch_size):
        sc = model.score(ids[s:s + batch_size])                                   # (b, V)
        out.append(sc.gather(1, targets[s:s + batch_size, None]).squeeze(1))
    return torch.cat(out)


@torch.no_grad()
def leave_one_out(model, histories: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """``(B, max_len)``: ``f(history) − f(history without item j)`` for every real position ``j`` (0 at padding)."""
    ids = _inputs(model, histories)
    B, T = ids.shape
    full = _target_scores(model, ids, targets, batch_size)                        # (B,)
    out = torch.zeros((B, T))
    real = (ids != PAD)
    for j in range(T):
        rows = torch.nonzero(real[:, j]).squeeze(1)
        if len(rows) == 0:
            continue
        drop = torch.zeros((len(rows), T), dtype=torch.bool)
        drop[:, j] = True
        without = remove_positions(ids[rows], drop)
        out[rows, j] = full[rows] - _target_scores(model, without, targets[rows], batch_size)
    return out


ATTRIBUTIONS: dict[str, Callable] = {
    "attention": attention_attribution,
    "grad_x_input": grad_x_input,
    "integrated_gradients": integrated_gradients,
    "leave_one_out": leave_one_out,
}


def attribute(model, histories: torch.Tensor, targets: torch.Tensor, method: str, *, batch_size: int = 256,
              **options) -> torch.Tensor:
    """One method's ``(B, max_len)`` attributions, computed ``batch_size`` users at a time."""
    if method not in ATTRIBUTIONS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(ATTRIBUTIONS)}")
    fn = ATTRIBUTIONS[method]
    parts = [fn(model, histories[s:s + batch_size], targets[s:s + batch_size], **options)
             for s in range(0, len(histories), batch_size)]
    return torch.cat(parts)


# ----------------------------------------------------------------------------- faithfulness

def deletion_order(attributions: torch.Tensor, ids: torch.Tensor, *, random: bool = False,
                   seed: int = 0) -> torch.Tensor:
    """``(B, T)`` positions, most important first (padding last); ``random=True`` a random order of the real ones."""
    real = ids != PAD
    if random:
        g = torch.Generator().manual_seed(seed)
        key = torch.rand(ids.shape, generator=g)
    else:
        key = attributions.float().clone()
    key = key.masked_fill(~real, -math.inf)
    return torch.argsort(key, dim=1, descending=True, stable=True)


@torch.no_grad()
def deletion_curve(model, histories: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, ks: Sequence[int],
                   *, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Remove the first ``k`` positions of ``order`` from each history, for each ``k`` in ``ks``.

    Returns ``{"prob": (len(ks), B), "top1": (len(ks), B)}``: the target's softmax probability
    over all items after the removal, divided by its probability before (1 at ``k = 0``), and
    whether the target is still ranked first among the items not in the original history (a
    removed item is hidden from the model, not offered back to the user).
    Users with fewer than ``k`` items lose all of them.
    """
    ids = _inputs(model, histories)
    B, T = ids.shape
    base = None
    probs, top1 = [], []
    for k in ks:
        drop = torch.zeros((B, T), dtype=torch.bool)
        if k > 0:
            drop.scatter_(1, order[:, :k], True)
        cut = remove_positions(ids, drop & (ids != PAD))
        p_k, t_k = [], []
        for s in range(0, B, batch_size):
            sc = model.score(cut[s:s + batch_size]).clone()                       # (b, V)
            logp = torch.log_softmax(sc[:, 1:], dim=1)
            tg = targets[s:s + batch_size]
            p_k.append(logp.gather(1, (tg - 1)[:, None]).squeeze(1).exp())
            sc.scatter_(1, ids[s:s + batch_size], -math.inf)                     # the whole original history
            t_k.append(sc.argmax(1) == tg)
        p = torch.cat(p_k)
        if base is None:
            base = p.clone() if k == 0 else _probs(model, ids, targets, batch_size)
        probs.append((p / base).numpy())
        top1.append(torch.cat(t_k).numpy())
    return {"prob": np.stack(probs), "top1": np.stack(top1).astype(float)}


def _probs(model, ids, targets, batch_size):
    out = []
    for s in range(0, len(ids), batch_size):
        logp = torch.log_softmax(model.score(ids[s:s + batch_size])[:, 1:], dim=1)
        out.append(logp.gather(1, (targets[s:s + batch_size] - 1)[:, None]).squeeze(1).exp())
    return torch.cat(out)


def area_under_curve(curve: np.ndarray) -> np.ndarray:
    """``(K+1, B)`` curve over ``k = 0..K`` → ``(B,)`` mean over ``k`` (lower = the explanation found more)."""
    return np.asarray(curve, dtype=float).mean(axis=0)


def rank_agreement(a: torch.Tensor, b: torch.Tensor, ids: torch.Tensor, *, min_items: int = 3) -> np.ndarray:
    """Per user, Spearman's ρ between two attributions over the real history positions (NaN if < ``min_items``)."""
    real = (ids != PAD).numpy()
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = np.full(len(real), np.nan)
    for u in range(len(real)):
        m = real[u]
        if m.sum() >= min_items:
            out[u] = stats.spearmanr(a[u, m], b[u, m]).statistic
    return out


def counterfactual_size(curve_top1: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """``(B,)`` the smallest ``k`` in ``ks`` at which the top item changed (``NaN`` if it never did).

    With a leave-one-out order this is a greedy counterfactual explanation: "remove these
    ``k`` items and the model recommends something else".
    """
    ks = np.asarray(ks)
    changed = np.asarray(curve_top1) < 0.5                                         # (K, B)
    first = np.where(changed.any(axis=0), changed.argmax(axis=0), -1)
    return np.where(first >= 0, ks[np.clip(first, 0, None)], np.nan).astype(float)


# ----------------------------------------------------------------------------- "because you bought X"

def because_you_bought(histories: Sequence[Sequence[int]], recommended: Sequence[int],
                       similarity: Callable[[np.ndarray, int], np.ndarray], *, last: int | None = None) -> np.ndarray:
    """For each user, the history item that best explains the recommendation (``0`` for an empty history).

    ``similarity(history_items, rec)`` → one number per history item (e.g. cosine of item
    vectors, co-occurrence counts, or leave-one-out attributions); ties go to the most recent.
    ``last``: only the user's last ``last`` items are candidates.
    """
    out = np.zeros(len(recommended), dtype=np.int64)
    for u, (h, r) in enumerate(zip(histories, recommended)):
        h = np.asarray(h, dtype=np.int64)
        if last is not None:
            h = h[-last:]
        if len(h) == 0:
            continue
        s = np.asarray(similarity(h, int(r)), dtype=float)
        out[u] = h[len(h) - 1 - int(np.argmax(s[::-1]))]                          # latest of the best
    return out


def cosine_similarity_fn(vectors: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    """``similarity`` for :func:`because_you_bought` from an ``(n_items + 1, d)`` item table."""
    v = np.asarray(vectors, dtype=float)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return lambda h, r: v[h] @ v[r]


def cooccurrence_similarity_fn(histories: Sequence[Sequence[int]], n_items: int, *,
                               window: int = 3) -> Callable[[np.ndarray, int], np.ndarray]:
    """``similarity``: how often ``x`` was followed by ``r`` within ``window`` steps, over all histories.

    The classic "customers who bought x next bought r" count, from the training data alone.
    """
    from scipy import sparse

    rows, cols = [], []
    for h in histories:
        h = np.asarray(h, dtype=np.int64)
        for lag in range(1, window + 1):
            if len(h) > lag:
                rows.append(h[:-lag])
                cols.append(h[lag:])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    m = sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(n_items + 1, n_items + 1)).tocsc()
    return lambda h, rec: m[:, rec].toarray().ravel()[h]


def explanation_precision(histories: Sequence[Sequence[int]], recommended: Sequence[int], explained: Sequence[int],
                          anchors_of: Callable[[int], set], *, last: int | None = None) -> dict[str, float]:
    """How often "because you bought X" names a planted anchor of the recommended item.

    Only pairs where the recommendation *is* a planted complement of some item among the
    candidates count. Returns the precision, the number of such pairs, and the precision of
    a random candidate (the expected share of anchors among the candidates).
    """
    hits, chance, n = 0, 0.0, 0
    for h, r, x in zip(histories, recommended, explained):
        h = np.asarray(h, dtype=np.int64)
        if last is not None:
            h = h[-last:]
        anchors = anchors_of(int(r))
        in_hist = [i for i in h if int(i) in anchors]
        if not in_hist:
            continue
        n += 1
        hits += int(int(x) in anchors)
        chance += len(in_hist) / len(h)
    return {"precision": hits / n if n else float("nan"), "pairs": n, "chance": chance / n if n else float("nan")}


__all__ = [
    "ATTRIBUTIONS", "METHODS", "area_under_curve", "attention_attribution", "attribute", "because_you_bought",
    "cooccurrence_similarity_fn", "cosine_similarity_fn", "counterfactual_size", "deletion_curve",
    "deletion_order", "explanation_precision", "grad_x_input", "integrated_gradients", "leave_one_out",
    "left_pad", "rank_agreement", "remove_positions", "sasrec_target_score", "top_items",
]
