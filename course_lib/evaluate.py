"""Full-ranking evaluation: score every item for every user, mask what they have seen, rank.

The default protocol of the course (and of the replicability literature): for each user,
the model scores the **whole catalogue**; items the user already interacted with (and the
padding column 0) are masked out; the held-out target's position in the top-k decides
HR@k, NDCG@k and MRR@k. With one target per user (leave-one-out):

* ``HR@k = 1[r ≤ k]``, ``NDCG@k = 1[r ≤ k] / log2(r + 1)``, ``MRR@k = 1[r ≤ k] / r``,

where ``r`` is the target's 1-based rank. :func:`evaluate_sampled` ranks the target among
100 sampled negatives instead — only to compare with papers that did so (it inflates
numbers and can change which model looks best; chapter 08 shows it).

A *model* here is a score matrix ``(n_users, n_items + 1)`` (NumPy or torch), any
:class:`~course_lib.scoring.Scorer` (every course model and baseline: pass the object
itself, ``evaluate(model, split)``), or a callable ``score_fn(users, histories) -> scores``
where ``users`` is a ``(B,)`` LongTensor of internal user ids, ``histories`` a
``(B, max_len)`` left-padded LongTensor of the items seen before the stage, and ``scores``
a ``(B, n_items + 1)`` tensor or array.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Literal, Sequence, Union

import numpy as np
import pandas as pd
import torch

from .data.protocol import PAD, LeaveOneOutSplit, pad_array, sample_negatives
from .device import get_device
from .scoring import NotAScorerError, ScoreFn, Scorer, as_score_fn

Model = Union[Scorer, ScoreFn, torch.Tensor, np.ndarray]
METRICS = ("HR", "NDCG", "MRR")


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks) if not isinstance(ks, int) else (ks,)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return tuple(sorted(set(int(k) for k in ks)))


def _as_model(model: Model, split: LeaveOneOutSplit) -> "ScoreFn | torch.Tensor | np.ndarray":
    """A score matrix as it is, anything else as its ``score_fn`` (checked against the split)."""
    if isinstance(model, (np.ndarray, torch.Tensor)):
        if model.ndim != 2 or model.shape[0] != split.n_users or model.shape[1] != split.n_items + 1:
            raise ValueError(f"the score matrix has shape {tuple(model.shape)}; expected "
                             f"({split.n_users}, {split.n_items + 1}) = (n_users, n_items + 1, column 0 being padding)")
        return model
    n_items = getattr(model, "n_items", None)
    if isinstance(n_items, (int, np.integer)) and int(n_items) != split.n_items:
        raise ValueError(f"the model scores {int(n_items)} items but the split has {split.n_items}; "
                         "evaluate a model on the split it was built for")
    try:
        return as_score_fn(model)
    except NotAScorerError as err:
        raise NotAScorerError(f"{err}; evaluate also takes a score matrix "
                              "or a callable score_fn(users, histories)") from None


def _batch_scores(model, users: torch.Tensor, histories: torch.Tensor, n_cols: int,
                  device: torch.device) -> torch.Tensor:
    if isinstance(model, (np.ndarray, torch.Tensor)):
        block = model[users.cpu().numpy()] if isinstance(model, np.ndarray) else model[users.to(model.device)]
    else:
        with torch.no_grad():
            block = model(users, histories)
    scores = torch.as_tensor(block, device=device).float().clone()
    if scores.shape != (len(users), n_cols):
        raise ValueError(
            f"the model returned scores of shape {tuple(scores.shape)}; expected "
            f"({len(users)}, {n_cols}) = (batch, n_items + 1, column 0 being padding)"
        )
    if torch.isnan(scores).any():
        bad = int(torch.isnan(scores).any(dim=1).nonzero()[0])
        raise ValueError(f"the model returned NaN scores (first for user {int(users[bad])}); "
                         "check the model (e.g. a fully masked attention row) before evaluating")
    return scores


def _mask_seen(scores: torch.Tensor, seen_indptr: np.ndarray, seen_indices: np.ndarray,
               users: np.ndarray) -> None:
    """Set scores of seen items (and padding) to -inf, in place."""
    starts, ends = seen_indptr[users], seen_indptr[users + 1]
    counts = ends - starts
    rows = np.repeat(np.arange(len(users)), counts)
    cols = np.concatenate([seen_indices[s:e] for s, e in zip(starts, ends)]) if counts.sum() else np.zeros(0, np.int64)
    rows_t = torch.from_numpy(rows).to(scores.device)
    cols_t = torch.from_numpy(cols.astype(np.int64)).to(scores.device)
    scores[rows_t, cols_t] = -torch.inf
    scores[:, PAD] = -torch.inf


def topk_items(
    model: Model,
    split: LeaveOneOutSplit,
    stage: Literal["valid", "test"] = "test",
    *,
    k: int = 10,
    users: Sequence[int] | None = None,
    batch_size: int = 1024,
    max_len: int = 200,
    mask_seen: bool = True,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """``(U, k)`` internal item ids of each user's top-``k`` list, best first (seen items and padding masked).

    Args:
        model: a :class:`~course_lib.scoring.Scorer`, a score matrix or a ``score_fn`` (as :func:`evaluate`).
        split, stage: whose histories are read and masked (``"valid"``: train; ``"test"``: train + valid).
        k: list length (at most ``n_items``).
        users: internal user ids (default: all ``U = n_users``, in order).
        batch_size, max_len, mask_seen, device: as :func:`evaluate`.
    """
    out = []
    for _, top, _ in _iterate(model, split, stage, k=_check_ks(k)[-1], users=users, batch_size=batch_size,
                              max_len=max_len, mask_seen=mask_seen, device=device):
        out.append(top)
    return np.concatenate(out)


def _iterate(model, split, stage, *, k, users, batch_size, max_len, mask_seen, device):
    device = get_device(device, verbose=False) if device is not None else (
        model.device if isinstance(model, torch.Tensor) else get_device(verbose=False))
    if isinstance(model, torch.Tensor) and model.device != device:
        model = model.to(device)
    model = _as_model(model, split)
    n_cols = split.n_items + 1
    if k > split.n_items:
        raise ValueError(f"k={k} is larger than the catalogue ({split.n_items} items)")
    user_idx = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
    if len(user_idx) == 0:
        raise ValueError("no users to evaluate")
    if user_idx.min() < 0 or user_idx.max() >= split.n_users:
        raise ValueError(f"user ids must be internal ids in [0, {split.n_users})")
    seen = split.seen_matrix(stage)
    history = split.history(stage)
    targets_all = split.targets(stage)
    for start in range(0, len(user_idx), batch_size):
        batch = user_idx[start:start + batch_size]
        hist = torch.from_numpy(pad_array([history[u] for u in batch], max_len)).to(device)
        users_t = torch.from_numpy(batch).to(device)
        scores = _batch_scores(model, users_t, hist, n_cols, device)
        if mask_seen:
            _mask_seen(scores, seen.indptr, seen.indices, batch)
        else:
            scores[:, PAD] = -torch.inf
        top = torch.topk(scores, k, dim=1).indices.cpu().numpy()
        yield batch, top, targets_all[batch]


def _by_k_then_metric(item: tuple[str, np.ndarray]) -> tuple[int, int]:
    """Sort key of a ``("ndcg@10", values)`` pair: by k, then in the order of ``METRICS``."""
    metric_k = item[0].split("@")
    return int(metric_k[1]), METRICS.index(metric_k[0])


def _metrics_from_positions(pos: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user metric values from the 0-based position of the target (-1: not in top-k_max)."""
    out = {}
    found = pos >= 0
    safe = np.where(found, pos, 0).astype(float)  # avoid 1/log2(1) for misses
    for k in ks:
        hit = found & (pos < k)
        out[f"HR@{k}"] = hit.astype(float)
        out[f"NDCG@{k}"] = np.where(hit, 1.0 / np.log2(safe + 2.0), 0.0)
        out[f"MRR@{k}"] = np.where(hit, 1.0 / (safe + 1.0), 0.0)
    return out


def evaluate(
    model: Model,
    split: LeaveOneOutSplit,
    stage: Literal["valid", "test"] = "test",
    *,
    ks: Iterable[int] = (10,),
    users: Sequence[int] | None = None,
    batch_size: int = 1024,
    max_len: int = 200,
    mask_seen: bool = True,
    device: torch.device | str | None = None,
    per_user: bool = False,
) -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
    """Full-ranking HR@k, NDCG@k and MRR@k of a model on a leave-one-out split.

    Args:
        model: a :class:`~course_lib.scoring.Scorer` (any course model or baseline), a
            score matrix ``(n_users, n_items + 1)`` or a callable
            ``score_fn(users, histories) -> (B, n_items + 1) scores`` (see the module docstring).
        split: the :class:`~course_lib.data.LeaveOneOutSplit`.
        stage: ``"valid"`` (history = train, target = valid item) or ``"test"`` (history =
            train + valid, target = test item).
        ks: cut-offs, e.g. ``(5, 10, 20)``.
        users: evaluate only these internal user ids (default: all).
        batch_size: users scored at once (memory ~ batch_size × n_items floats).
        max_len: length of the padded histories passed to ``score_fn``.
        mask_seen: mask the items the user has seen (the standard protocol).
        device: where to score (default: :func:`course_lib.device.get_device`).
        per_user: also return a DataFrame with each user's target, rank and metric values.

    Returns:
        ``{"HR@5": ..., "NDCG@5": ..., "MRR@5": ..., "HR@10": ...}`` (floats), and with
        ``per_user=True`` a ``(metrics, DataFrame)`` pair; the DataFrame's ``rank`` is the
        target's 1-based rank, or NaN when it is not in the top ``max(ks)``.
    """
    ks = _check_ks(ks)
    positions, all_users, all_targets = [], [], []
    for batch, top, targets in _iterate(model, split, stage, k=ks[-1], users=users, batch_size=batch_size,
                                        max_len=max_len, mask_seen=mask_seen, device=device):
        hits = top == targets[:, None]
        pos = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
        positions.append(pos)
        all_users.append(batch)
        all_targets.append(targets)
    pos = np.concatenate(positions)
    if mask_seen:
        seen = split.seen_matrix(stage)
        users_arr = np.concatenate(all_users)
        repeat = np.asarray(seen[users_arr, np.concatenate(all_targets)]).ravel() > 0
        if repeat.any():
            warnings.warn(f"{int(repeat.sum())} user(s) have their target among the items they have "
                          "seen; masking seen items makes those targets unreachable", stacklevel=2)
    per = _metrics_from_positions(pos, ks)
    result = {name: float(values.mean()) for name, values in sorted(per.items(), key=_by_k_then_metric)}
    if not per_user:
        return result
    frame = pd.DataFrame({"user": np.concatenate(all_users), "target": np.concatenate(all_targets),
                          "rank": np.where(pos >= 0, pos + 1.0, np.nan), **per})
    return result, frame


def evaluate_sampled(
    model: Model,
    split: LeaveOneOutSplit,
    stage: Literal["valid", "test"] = "test",
    *,
    n_negatives: int = 100,
    strategy: Literal["uniform", "popularity"] = "uniform",
    ks: Iterable[int] = (10,),
    seed: int = 0,
    batch_size: int = 1024,
    max_len: int = 200,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Sampled metrics: rank the target among ``n_negatives`` items the user has not seen.

    ``model`` is anything :func:`evaluate` takes. Only for comparing with papers that used this
    protocol. Ties between the target and a negative count against the target (a constant model
    scores 0, not 1). Negatives are drawn with ``seed``, so the same call gives the same numbers.
    """
    ks = _check_ks(ks)
    if max(ks) > n_negatives + 1:
        raise ValueError(f"k={max(ks)} exceeds the {n_negatives + 1} candidates per user")
    device = get_device(device, verbose=False) if device is not None else get_device(verbose=False)
    history = split.history(stage)
    targets = split.targets(stage)
    rng = np.random.default_rng(seed)
    popularity = split.item_popularity(include_valid=(stage == "test"))
    negatives = sample_negatives([np.append(h, t) for h, t in zip(history, targets)], n_negatives,
                                 split.n_items, strategy=strategy, popularity=popularity, rng=rng)
    ranks = []
    model = _as_model(model, split)
    for start in range(0, split.n_users, batch_size):
        batch = np.arange(start, min(start + batch_size, split.n_users))
        hist = torch.from_numpy(pad_array([history[u] for u in batch], max_len)).to(device)
        scores = _batch_scores(model, torch.from_numpy(batch).to(device), hist, split.n_items + 1, device)
        cand = torch.from_numpy(np.concatenate([targets[batch, None], negatives[batch]], axis=1)).to(device)
        s = scores.gather(1, cand)
        ranks.append(((s[:, 1:] >= s[:, :1]).sum(dim=1)).cpu().numpy())
    pos = np.concatenate(ranks)
    per = _metrics_from_positions(pos, ks)
    return {name: float(v.mean()) for name, v in per.items()}


__all__ = ["METRICS", "evaluate", "evaluate_sampled", "topk_items"]
