"""The evaluation protocol: implicit feedback, k-core, chronological leave-one-out, padding.

The protocol the SASRec and BERT4Rec papers (and the replicability studies after them)
use, step by step:

1. **Implicit feedback**: every rating counts as an interaction (``implicit``).
2. **k-core** (optional): repeatedly drop users and items with fewer than k interactions
   (``k_core``). On ML-1M, items with fewer than 5 ratings go: 3,706 → 3,416 items.
3. **Chronological sequences**: each user's items sorted by time (ties broken by item id,
   so the order does not depend on the source file's row order).
4. **Leave-one-out**: the last item is the test target, the second-to-last the validation
   target, the rest is training history (``leave_one_out``). Users with fewer than three
   interactions cannot be split and are dropped.
5. **Re-indexing**: users become ``0 .. n_users-1`` and items ``1 .. n_items``; item id ``0``
   is reserved for padding and is never recommended.
6. **Padding**: histories become left-padded, left-truncated tensors of length ``max_len``
   (``pad_sequences``): the most recent item is always in the last column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .core import Dataset, check_chronological, validate_interactions

PAD = 0
Stage = Literal["valid", "test"]


def implicit(interactions: pd.DataFrame, *, min_rating: float | None = None) -> pd.DataFrame:
    """Turn explicit ratings into implicit interactions.

    By default every rating is an interaction (what SASRec and BERT4Rec do: a rating of 1
    still says the user watched the film). With ``min_rating`` only ratings ≥ it are kept.
    Duplicate (user, item) pairs keep their first occurrence in time.
    """
    df = validate_interactions(interactions, name="implicit")
    if min_rating is not None:
        if "rating" not in df.columns:
            raise ValueError("min_rating was given but the interactions have no 'rating' column")
        df = df[df["rating"] >= min_rating]
        if df.empty:
            raise ValueError(f"no interaction has rating >= {min_rating}; lower min_rating")
    df = df.drop_duplicates(["user_id", "item_id"], keep="first")
    return df.reset_index(drop=True)


def k_core(interactions: pd.DataFrame, *, min_user: int = 5, min_item: int = 5) -> pd.DataFrame:
    """Repeatedly drop users with < ``min_user`` and items with < ``min_item`` interactions.

    Repeats until nothing changes (dropping items can push a user under the threshold).
    """
    if min_user < 0 or min_item < 0:
        raise ValueError("k-core thresholds must be >= 0")
    df = interactions
    while True:
        item_counts = df["item_id"].map(df["item_id"].value_counts())
        user_counts = df["user_id"].map(df["user_id"].value_counts())
        keep = (item_counts >= min_item) & (user_counts >= min_user)
        if keep.all():
            break
        df = df[keep]
        if df.empty:
            raise ValueError(
                f"the {min_user}/{min_item}-core is empty: no user and item survive; lower the thresholds"
            )
    return df.reset_index(drop=True)


@dataclass
class LeaveOneOutSplit:
    """Chronological leave-one-out split with contiguous ids (item 0 = padding).

    Attributes:
        name: the dataset's name.
        user_ids: ``(n_users,)`` original id of each internal user.
        item_ids: ``(n_items + 1,)`` original id of each internal item (index 0 is padding).
        train: per user, the training history (internal item ids, oldest first).
        valid: ``(n_users,)`` the validation target (second-to-last item).
        test: ``(n_users,)`` the test target (last item).
        items: the item table indexed by internal id (row 0 is the padding row).
        timestamps: per user, the timestamps of the whole sequence (train, valid, test).
    """

    name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    train: list[np.ndarray]
    valid: np.ndarray
    test: np.ndarray
    items: pd.DataFrame
    timestamps: list[np.ndarray] = field(repr=False, default_factory=list)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Real items; score tensors have ``n_items + 1`` columns (column 0 = padding)."""
        return len(self.item_ids) - 1

    def __repr__(self) -> str:
        n_train = sum(len(s) for s in self.train)
        return (f"LeaveOneOutSplit({self.name!r}: {self.n_users:,} users, {self.n_items:,} items, "
                f"{n_train:,} training interactions + {self.n_users:,} valid + {self.n_users:,} test)")

    # ------------------------------------------------------------------ per stage
    def history(self, stage: Stage) -> list[np.ndarray]:
        """The input each user has at ``stage``: train for ``"valid"``, train + valid for ``"test"``."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return self._test_history
        raise ValueError(f"unknown stage {stage!r}; choose 'valid' or 'test'")

    @cached_property
    def _test_history(self) -> list[np.ndarray]:
        return [np.append(seq, v) for seq, v in zip(self.train, self.valid)]

    def targets(self, stage: Stage) -> np.ndarray:
        """``(n_users,)`` the held-out item of each user at ``stage``."""
        if stage == "valid":
            return self.valid
        if stage == "test":
            return self.test
        raise ValueError(f"unknown stage {stage!r}; choose 'valid' or 'test'")

    def seen_matrix(self, stage: Stage) -> sp.csr_matrix:
        """``(n_users, n_items + 1)`` binary CSR of the items each user has seen before ``stage``."""
        return sequences_to_csr(self.history(stage), self.n_items)

    def train_matrix(self, *, include_valid: bool = False) -> sp.csr_matrix:
        """The user–item training matrix (CSR, float32, ``n_items + 1`` columns, column 0 empty)."""
        return self.seen_matrix("test" if include_valid else "valid").astype(np.float32)

    def item_popularity(self, *, include_valid: bool = False) -> np.ndarray:
        """``(n_items + 1,)`` interaction counts in the training data (index 0 = padding = 0)."""
        return np.asarray(self.train_matrix(include_valid=include_valid).sum(axis=0)).ravel()

    def padded(self, stage: Stage, max_len: int, users: Sequence[int] | None = None) -> torch.Tensor:
        """Left-padded ``(n_users, max_len)`` LongTensor of the histories at ``stage``."""
        hist = self.history(stage)
        if users is not None:
            hist = [hist[u] for u in users]
        return pad_sequences(hist, max_len)

    def original_items(self, internal: np.ndarray | torch.Tensor) -> np.ndarray:
        """Map internal item ids (any shape) back to the dataset's item ids."""
        internal = np.asarray(internal.cpu() if isinstance(internal, torch.Tensor) else internal)
        return self.item_ids[internal]

    def internal_items(self, original: Sequence) -> np.ndarray:
        """Map the dataset's item ids to internal ids; unknown ids raise ``KeyError`` naming them."""
        index = self._item_index
        missing = [o for o in original if o not in index]
        if missing:
            raise KeyError(f"item id(s) not in {self.name}'s split: {missing[:5]}")
        return np.array([index[o] for o in original], dtype=np.int64)

    @cached_property
    def _item_index(self) -> dict:
        return {orig: i for i, orig in enumerate(self.item_ids) if i != PAD}

    def stats(self) -> dict[str, float]:
        lengths = np.array([len(s) + 2 for s in self.train])
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": int(lengths.sum()),
            "mean sequence": float(lengths.mean()),
            "median sequence": float(np.median(lengths)),
        }


def leave_one_out(
    data: Dataset | pd.DataFrame,
    *,
    min_user_interactions: int = 3,
    min_item_interactions: int = 0,
    min_rating: float | None = None,
    items: pd.DataFrame | None = None,
    name: str | None = None,
) -> LeaveOneOutSplit:
    """Chronological leave-one-out split.

    Args:
        data: a :class:`Dataset` or an interaction table (``user_id``, ``item_id``, ``timestamp``).
        min_user_interactions: users with fewer interactions are dropped (at least 3, so
            that train, valid and test each get an item).
        min_item_interactions: k-core threshold for items (5 reproduces the ML-1M setting of
            the SASRec / BERT4Rec papers: 3,416 items); 0 keeps every item.
        min_rating: keep only ratings ≥ this (default: every rating is an interaction).
        items: the item table, when ``data`` is a bare interaction table.
        name: a name for the split (default: the dataset's).
    """
    if isinstance(data, Dataset):
        inter, items, name = data.interactions, data.items, name or data.name
    else:
        inter, name = data, name or "interactions"
    if min_user_interactions < 3:
        raise ValueError("leave-one-out needs min_user_interactions >= 3 (train, valid and test)")
    check_chronological(validate_interactions(inter, name=name), name=name)
    df = implicit(inter, min_rating=min_rating)
    df = k_core(df, min_user=min_user_interactions, min_item=min_item_interactions)

    # Contiguous ids: items sorted by their original id get 1..n_items (0 = padding).
    item_ids = np.sort(df["item_id"].unique())
    user_ids = np.sort(df["user_id"].unique())
    item_codes = np.searchsorted(item_ids, df["item_id"].to_numpy()) + 1
    user_codes = np.searchsorted(user_ids, df["user_id"].to_numpy())

    # df is sorted by (user, time, item): split the flat arrays at user boundaries.
    bounds = np.flatnonzero(np.diff(user_codes)) + 1
    seqs = np.split(item_codes.astype(np.int64), bounds)
    times = np.split(df["timestamp"].to_numpy(), bounds)
    train = [s[:-2] for s in seqs]
    valid = np.array([s[-2] for s in seqs], dtype=np.int64)
    test = np.array([s[-1] for s in seqs], dtype=np.int64)

    all_item_ids = np.empty(len(item_ids) + 1, dtype=object)
    all_item_ids[0] = None
    all_item_ids[1:] = item_ids
    if items is not None:
        table = items.set_index("item_id").reindex(item_ids).reset_index()
    else:
        table = pd.DataFrame({"item_id": item_ids, "title": [str(i) for i in item_ids]})
    pad_row = pd.DataFrame({"item_id": [None], "title": ["<pad>"]})
    table = pd.concat([pad_row, table], ignore_index=True)
    table.index.name = "idx"
    return LeaveOneOutSplit(name=name, user_ids=user_ids, item_ids=all_item_ids, train=train,
                            valid=valid, test=test, items=table, timestamps=times)


# --------------------------------------------------------------------------- tensors
def pad_array(seqs: Sequence[Sequence[int]], max_len: int, *, pad_id: int = PAD) -> np.ndarray:
    """Left-pad and left-truncate sequences into a ``(len(seqs), max_len)`` int64 NumPy array.

    The one implementation of left padding in the course (:func:`pad_sequences` is the
    same as a LongTensor). The most recent item ends up in the last column; older items
    are cut when a sequence is longer than ``max_len``.

    >>> pad_array([[5, 6, 7], [8]], 4).tolist()
    [[0, 5, 6, 7], [0, 0, 0, 8]]
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    out = np.full((len(seqs), max_len), pad_id, dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = np.asarray(seq, dtype=np.int64)[-max_len:]
        if len(tail):
            out[row, max_len - len(tail):] = tail
    return out


def pad_sequences(seqs: Sequence[Sequence[int]], max_len: int, *, pad_id: int = PAD) -> torch.Tensor:
    """Left-pad and left-truncate sequences into a ``(len(seqs), max_len)`` LongTensor.

    The most recent item ends up in the last column; older items are cut when a sequence is
    longer than ``max_len``.

    >>> pad_sequences([[5, 6, 7], [8]], 4).tolist()
    [[0, 5, 6, 7], [0, 0, 0, 8]]
    """
    return torch.from_numpy(pad_array(seqs, max_len, pad_id=pad_id))


def shifted_sequences(seqs: Sequence[Sequence[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-item training pairs: inputs ``s[:-1]`` and targets ``s[1:]``, both ``(N, max_len)``.

    Position t of the input predicts position t of the target (the item that came next);
    padded positions have target 0 and are ignored by the losses.
    """
    inputs = pad_sequences([np.asarray(s)[:-1] for s in seqs], max_len)
    targets = pad_sequences([np.asarray(s)[1:] for s in seqs], max_len)
    return inputs, targets


def sequences_to_csr(seqs: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """``(len(seqs), n_items + 1)`` binary CSR matrix with a 1 where a user has an item."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(seqs).astype(np.int64) if len(seqs) and indptr[-1] else np.zeros(0, np.int64)
    data = np.ones(len(indices), dtype=np.float32)
    mat = sp.csr_matrix((data, indices, indptr), shape=(len(seqs), n_items + 1))
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


# --------------------------------------------------------------------------- negatives
def sample_negatives(
    exclude: Sequence[np.ndarray],
    n_negatives: int,
    n_items: int,
    *,
    strategy: Literal["uniform", "popularity"] = "uniform",
    popularity: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Sample ``n_negatives`` items per row that are not in that row's ``exclude`` set.

    Args:
        exclude: per row, the internal item ids that may not be drawn (e.g. the history
            and the target).
        n_negatives: how many per row (drawn without replacement within a row).
        n_items: items are ``1..n_items`` (0 = padding is never drawn).
        strategy: ``"uniform"`` over items, or ``"popularity"`` proportional to
            ``popularity`` (an ``(n_items + 1,)`` array of counts).
        rng: a NumPy Generator or a seed.

    Returns:
        ``(len(exclude), n_negatives)`` int64 array.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    if strategy == "uniform":
        p = None
    elif strategy == "popularity":
        if popularity is None or len(popularity) != n_items + 1:
            raise ValueError("popularity sampling needs popularity counts of shape (n_items + 1,)")
        w = np.asarray(popularity, dtype=np.float64).copy()
        w[PAD] = 0.0
        if w.sum() <= 0:
            raise ValueError("popularity counts are all zero")
        p = w / w.sum()
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose 'uniform' or 'popularity'")
    out = np.empty((len(exclude), n_negatives), dtype=np.int64)
    for row, ex in enumerate(exclude):
        banned = set(np.asarray(ex).tolist())
        banned.add(PAD)
        available = n_items - len(banned - {PAD})
        if available < n_negatives:
            raise ValueError(
                f"row {row} excludes {len(banned) - 1} of {n_items} items: fewer than "
                f"n_negatives={n_negatives} remain"
            )
        chosen: list[int] = []
        seen = set(banned)
        while len(chosen) < n_negatives:
            draw = rng.choice(np.arange(n_items + 1), size=2 * (n_negatives - len(chosen)) + 8, p=p) \
                if p is not None else rng.integers(1, n_items + 1, size=2 * (n_negatives - len(chosen)) + 8)
            for item in draw.tolist():
                if item not in seen:
                    seen.add(item)
                    chosen.append(item)
                    if len(chosen) == n_negatives:
                        break
        out[row] = chosen
    return out
