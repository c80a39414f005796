"""Embeddings learned from behaviour: item2vec (skip-gram with negative sampling).

Chapter 02 derives it; later chapters reuse the vectors (neighbours, cold start, transfer)::

    sessions = split_sessions(shop.interactions)              # list of item-id arrays
    model, history = train_item2vec(sessions, n_items=3000, dim=32, epochs=10)
    ids, sims = nearest_neighbours(model.item_vectors(), [42], k=5)

Item2vec (Barkan and Koenigstein, 2016) is word2vec's skip-gram (Mikolov et al., 2013) with
items as words and sessions (or histories) as sentences: items bought near each other get
similar vectors. Skip-gram with negative sampling (SGNS) maximises, for each observed
(center ``c``, context ``o``) pair and ``K`` noise items ``n_1..n_K`` drawn from the unigram
distribution raised to 0.75::

    log σ(u_c · v_o) + Σ_k log σ(-u_c · v_{n_k})

where ``u`` are the *input* ("center") vectors and ``v`` the *output* ("context") vectors.
Item id 0 is padding and never sampled.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Item2Vec",
    "category_agreement",
    "nearest_neighbours",
    "noise_distribution",
    "skipgram_pairs",
    "split_sessions",
    "train_item2vec",
]


def split_sessions(interactions: pd.DataFrame, gap_seconds: float = 1800.0) -> list[np.ndarray]:
    """Cut each user's time-ordered history where two events are more than ``gap_seconds`` apart.

    Args:
        interactions: ``user_id, item_id, timestamp`` rows.
        gap_seconds: a longer pause starts a new session (default 30 minutes, a common web
            analytics convention).

    Returns:
        One ``int64`` array of item ids per session, users in id order, sessions in time order.
    """
    missing = {"user_id", "item_id", "timestamp"} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions lack the column(s) {sorted(missing)}")
    if gap_seconds <= 0:
        raise ValueError(f"gap_seconds must be positive, got {gap_seconds}")
    df = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    user = df["user_id"].to_numpy()
    time = df["timestamp"].to_numpy()
    items = df["item_id"].to_numpy(dtype=np.int64)
    new = np.ones(len(df), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (np.diff(time) > gap_seconds)
    starts = np.flatnonzero(new)
    return np.split(items, starts[1:]) if len(items) else []


def skipgram_pairs(sequences: Sequence[Sequence[int]], window: int = 2) -> np.ndarray:
    """All ``(center, context)`` pairs at distance 1..``window`` inside each sequence.

    Returns an ``(N, 2)`` int64 array; both orders of a pair appear (``a→b`` and ``b→a``).

    >>> skipgram_pairs([[1, 2, 3]], window=1).tolist()
    [[1, 2], [2, 3], [2, 1], [3, 2]]
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) > 1]
    chunks = []
    for offset in range(1, window + 1):
        fwd = [np.stack([s[:-offset], s[offset:]], 1) for s in seqs if len(s) > offset]
        if fwd:
            f = np.concatenate(fwd)
            chunks.append((f, f[:, ::-1]))
    if not chunks:
        return np.zeros((0, 2), dtype=np.int64)
    forward = np.concatenate([c[0] for c in chunks])
    backward = np.concatenate([c[1] for c in chunks])
    return np.ascontiguousarray(np.concatenate([forward, backward]))


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """Negative-sampling distribution ``p(i) ∝ count(i)^power`` (word2vec's 0.75); entry 0 (padding) is 0."""
    c = np.asarray(counts, dtype=np.float64).copy()
    if c.ndim != 1 or (c < 0).any():
        raise ValueError("counts must be a 1-D array of non-negative numbers, indexed by item id")
    c[0] = 0.0
    p = c ** power
    if p.sum() <= 0:
        raise ValueError("no item has a positive count; nothing to sample negatives from")
    return p / p.sum()


class Item2Vec(nn.Module):
    """Two embedding tables: ``center`` (the item vectors we keep) and ``context``.

    ``loss(center, context, negatives)``: ids ``(B,)``, ``(B,)``, ``(B, K)`` → mean SGNS loss
    ``-log σ(u_c·v_o) - Σ_k log σ(-u_c·v_k)`` over the batch.
    """

    def __init__(self, n_items: int, dim: int = 32):
        super().__init__()
        self.n_items, self.dim = n_items, dim
        self.center = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.context = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.uniform_(self.center.weight, -0.5 / dim, 0.5 / dim)   # word2vec's initialisation
        nn.init.zeros_(self.context.weight)
        with torch.no_grad():
            self.center.weight[0].zero_()

    def loss(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        u = self.center(center)                                        # (B, d)
        v_pos = self.context(context)                                  # (B, d)
        v_neg = self.context(negatives)                                # (B, K, d)
        pos = (u * v_pos).sum(-1)                                      # (B,)  u_c · v_o
        neg = torch.einsum("bd,bkd->bk", u, v_neg)                     # (B, K) u_c · v_k
        return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()

    def item_vectors(self) -> np.ndarray:
        """The center vectors as a ``(n_items + 1, dim)`` array; row 0 is padding."""
        return self.center.weight.detach().cpu().numpy().copy()


def train_item2vec(
    sequences: Sequence[Sequence[int]],
    n_items: int,
    dim: int = 32,
    window: int = 2,
    negatives: int = 5,
    epochs: int = 5,
    batch_size: int = 1024,
    lr: float = 0.01,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Item2Vec, list[float]]:
    """Train :class:`Item2Vec` with Adam on all skip-gram pairs of ``sequences``.

    Args:
        sequences: item-id sequences (ids ``1..n_items``; sessions or whole histories).
        n_items: the largest item id.
        dim, window, negatives: vector size, context window, noise items per pair.
        epochs, batch_size, lr, seed: optimisation (pairs are shuffled each epoch).
        progress: show a ``tqdm`` bar over epochs.

    Returns:
        ``(model, history)`` with the mean loss of each epoch.
    """
    pairs = skipgram_pairs(sequences, window)
    if len(pairs) == 0:
        raise ValueError("the sequences give no skip-gram pairs; they need at least two items each")
    if pairs.max() > n_items or pairs.min() < 1:
        raise ValueError(f"item ids must lie in 1..n_items={n_items}; found {pairs.min()}..{pairs.max()}")
    counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]), minlength=n_items + 1)
    noise = torch.as_tensor(noise_distribution(counts))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Item2Vec(n_items, dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    pairs_t = torch.as_tensor(pairs)
    history: list[float] = []
    epochs_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs_iter = tqdm(epochs_iter, desc="item2vec", unit="epoch")
    for _ in epochs_iter:
        order = torch.randperm(len(pairs_t), generator=gen)
        total, n = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = pairs_t[order[start:start + batch_size]]                        # (b, 2)
            neg = torch.multinomial(noise, len(batch) * negatives, replacement=True, generator=gen)
            loss = model.loss(batch[:, 0], batch[:, 1], neg.view(len(batch), negatives))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
            n += len(batch)
        history.append(total / n)
        if progress:
            epochs_iter.set_postfix(loss=f"{history[-1]:.3f}")
    return model, history


def nearest_neighbours(vectors: np.ndarray, item_ids: Sequence[int], k: int = 10,
                       candidates: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items with the highest cosine similarity to each query item (itself excluded).

    Args:
        vectors: ``(n_items + 1, d)``, row = item id.
        item_ids: the query items.
        k: neighbours per query.
        candidates: ids that may be returned (default: every id except 0).

    Returns:
        ``(ids, sims)``, both ``(len(item_ids), k)``, most similar first.
    """
    V = np.asarray(vectors, dtype=np.float64)
    q = np.asarray(item_ids, dtype=np.int64)
    cand = np.arange(1, len(V)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if k > len(cand) - 1:
        raise ValueError(f"k={k} is larger than the number of candidates minus one ({len(cand) - 1})")
    unit = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    sims = unit[q] @ unit[cand].T                                       # (Q, C)
    sims[cand[None, :] == q[:, None]] = -np.inf                         # never return the query itself
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return cand[top], np.take_along_axis(sims, top, 1)


def category_agreement(vectors: np.ndarray, labels: pd.Series, k: int = 10) -> tuple[float, float]:
    """How often an item's ``k`` nearest neighbours share its label, and what chance would give.

    Args:
        vectors: ``(n_items + 1, d)`` item vectors.
        labels: item id → label (e.g. category), for the items to evaluate.
        k: neighbours per item.

    Returns:
        ``(agreement, chance)``: the mean share of same-label neighbours, and the share a random
        neighbour would have, ``Σ_c p_c (n_c - 1) / (n - 1)`` over the labelled items.
    """
    ids = labels.index.to_numpy(dtype=np.int64)
    nbr, _ = nearest_neighbours(vectors, ids, k=k, candidates=ids)
    lab = labels.to_numpy()
    lookup = pd.Series(lab, index=ids)
    same = lookup.loc[nbr.ravel()].to_numpy().reshape(nbr.shape) == lab[:, None]
    n = len(ids)
    sizes = labels.value_counts().to_numpy(dtype=np.float64)
    chance = float((sizes * (sizes - 1)).sum() / (n * (n - 1)))
    return float(same.mean()), chance
