"""Inference: from a trained model to fast, filtered, explainable top-K answers.

A trained sequential model answers one question — "how much does this user want each item
next?" — with a score for **every** item. Serving turns those scores into a short list that
a shop can show, quickly. This module holds the pieces, in the order chapter 07 teaches them:

1. **Scoring and ranking** (:class:`Catalogue`, :class:`Filters`, :class:`Recommender`):
   batched full-catalogue scoring, masking the items a user already has, business filters
   (category, in stock, price range), ``torch.topk``, and answers with titles.
2. **Retrieval** (:func:`user_vectors`, :func:`item_vectors`, :class:`ExactIndex`,
   :class:`FaissIndex`, :func:`ann_recall`, :func:`sweep_ann`): when a model scores items
   by an inner product ``s(u, i) = h_u · e_i``, recommending is a *maximum inner-product
   search* for the user vector ``h_u`` among the item vectors ``e_i``; ``faiss`` answers it
   exactly (flat) or approximately (IVF, HNSW), trading recall for speed.
3. **Caching** (:class:`LRUCache`, :func:`history_fingerprint`): keep user vectors (or
   results) that were computed before, and throw them away when the history changes.
4. **Compression and export** (:func:`quantize_dynamic_int8`, :func:`to_bfloat16`,
   :func:`quantize_rows_int8`, :func:`export_onnx`, :class:`OnnxScorer`,
   :func:`prune_linear`, :func:`distillation_loss`, :func:`model_size_bytes`).

The model interface
-------------------
:class:`Recommender` wraps anything that scores (:func:`course_lib.scoring.as_score_fn`):
a :class:`course_lib.scoring.Scorer` (every course model and baseline: ``score(users,
histories) -> (B, n_items + 1)``, ``histories`` a ``(B, L)`` LongTensor of left-padded
internal item ids, 0 = padding, most recent item in the last column; column 0 of the
scores is ``-inf``), an object with the older ``score(histories)``, or a callable
``score_fn(users, histories)``. For histories that belong to no known user, ``users`` is ``-1``.

Retrieval also needs ``user_vector(histories) -> (B, d)`` and an item table
``item_embeddings`` ``(n_items + 1, d)`` (a tensor attribute, a property or a method) such that
``score(h) == user_vector(h) @ item_embeddings.T``. For models without ``user_vector``,
:func:`user_vectors` falls back on ``hidden(histories)[:, -1]`` or
``encode(histories)[:, -1]`` when the model has one of those.

Shapes: ``B`` users in a batch, ``L`` history length (``max_len``), ``N = n_items + 1``
score columns, ``d`` the embedding size, ``k`` the list length.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.protocol import PAD, LeaveOneOutSplit, pad_sequences
from .scoring import as_score_fn, check_users, mask_padding

NEG_INF = float("-inf")


# ============================================================================ catalogue
@dataclass(frozen=True)
class Filters:
    """Business rules a list must obey (all optional; they combine with AND).

    Attributes:
        categories: keep only items of these categories (for multi-valued columns such as
            MovieLens' ``genres`` "Comedy|Drama", an item qualifies if any of its values does).
        exclude_categories: drop items of these categories.
        min_price, max_price: keep items with ``min_price <= price <= max_price``.
        in_stock: keep only items the catalogue marks as in stock.
        exclude_items: internal ids never to recommend (e.g. items hidden by the shop).
    """

    categories: tuple[str, ...] | None = None
    exclude_categories: tuple[str, ...] | None = None
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool = False
    exclude_items: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("categories", "exclude_categories"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif value is not None:
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "exclude_items", tuple(int(i) for i in self.exclude_items))
        for name in ("min_price", "max_price"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or math.isnan(value) or value < 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price ({self.min_price}) is larger than max_price ({self.max_price}); "
                             "no item can satisfy both")

    @property
    def active(self) -> bool:
        """Whether any rule is set."""
        return bool(self.categories is not None or self.exclude_categories is not None
                    or self.min_price is not None or self.max_price is not None
                    or self.in_stock or self.exclude_items)


class Catalogue:
    """The item table by internal id (row 0 = padding), with what filters and answers need.

    Args:
        items: one row per internal id ``0..n_items`` (``LeaveOneOutSplit.items``), with at
            least ``item_id`` and ``title``; optionally a category column and ``price``.
        in_stock: ``(n_items + 1,)`` booleans (default: everything in stock). Real shops read
            this from an inventory system; the course simulates it.
        category_column: which column holds categories (default ``"category"`` if present,
            else ``"genres"``); values may be multi-valued, separated by ``|``.
        popularity: ``(n_items + 1,)`` interaction counts, used as the answer for users with
            no history (the cold-start fallback).
    """

    def __init__(self, items: pd.DataFrame, *, in_stock: np.ndarray | None = None,
                 category_column: str | None = None, popularity: np.ndarray | None = None) -> None:
        if "item_id" not in items.columns or "title" not in items.columns:
            raise ValueError(f"the item table needs item_id and title columns (found {list(items.columns)})")
        if len(items) < 2:
            raise ValueError("the item table must hold the padding row 0 and at least one item")
        self.items = items.reset_index(drop=True).copy()
        # Ids as plain Python values (a padding row of None turns an int column into floats).
        ids = [None] + [int(v) if isinstance(v, (np.integer, int)) and not isinstance(v, bool)
                        else int(v) if isinstance(v, (float, np.floating)) and float(v).is_integer()
                        else v for v in self.items["item_id"].tolist()[1:]]
        self.items["item_id"] = pd.Series(ids, dtype=object)
        n = len(self.items)
        if in_stock is None:
            in_stock = np.ones(n, dtype=bool)
        in_stock = np.asarray(in_stock, dtype=bool)
        if in_stock.shape != (n,):
            raise ValueError(f"in_stock must have shape ({n},) = (n_items + 1,), got {in_stock.shape}")
        self.in_stock = in_stock.copy()
        self.in_stock[PAD] = False
        if category_column is None:
            category_column = next((c for c in ("category", "genres") if c in self.items.columns), None)
        elif category_column not in self.items.columns:
            raise ValueError(f"no column {category_column!r} in the item table (found {list(self.items.columns)})")
        self.category_column = category_column
        if popularity is not None:
            popularity = np.asarray(popularity, dtype=np.float64)
            if popularity.shape != (n,):
                raise ValueError(f"popularity must have shape ({n},), got {popularity.shape}")
        self.popularity = popularity
        self._category_sets: list[frozenset[str]] | None = None
        self._masks: dict[Filters, torch.Tensor] = {}
        self._index: dict | None = None

    @classmethod
    def from_split(cls, split: LeaveOneOutSplit, *, in_stock: np.ndarray | None = None,
                   category_column: str | None = None, stage: str = "test") -> "Catalogue":
        """The catalogue of a split, with popularity counted on the histories of ``stage``."""
        pop = split.item_popularity(include_valid=(stage == "test")).astype(np.float64)
        return cls(split.items, in_stock=in_stock, category_column=category_column, popularity=pop)

    # ------------------------------------------------------------------ ids
    @property
    def n_items(self) -> int:
        """Real items (the score tensors have ``n_items + 1`` columns)."""
        return len(self.items) - 1

    @property
    def item_ids(self) -> np.ndarray:
        """``(n_items + 1,)`` the dataset's item id of each internal id (index 0 = padding)."""
        return self.items["item_id"].to_numpy(dtype=object)

    @property
    def id_kind(self) -> str:
        """``"int"`` when the dataset's item ids are integers, else ``"str"``."""
        first = self.items["item_id"].iloc[1]
        return "int" if isinstance(first, (int, np.integer)) else "str"

    def _id_index(self) -> dict:
        if self._index is None:
            ids = self.item_ids
            self._index = {(int(v) if isinstance(v, np.integer) else v): i for i, v in enumerate(ids) if i != PAD}
        return self._index

    def lookup(self, original: Sequence) -> tuple[np.ndarray, list]:
        """Map the dataset's item ids to internal ids: ``(internal ids, unknown ids)``.

        Unknown ids (wrong type included: ``"5"`` is not the integer ``5``) are returned, not
        raised, so that a caller can say which ones were wrong.
        """
        index = self._id_index()
        known, unknown = [], []
        for item in original:
            key = int(item) if isinstance(item, np.integer) else item
            if isinstance(key, bool) or not isinstance(key, (int, str)) or key not in index:
                unknown.append(item)
            else:
                known.append(index[key])
        return np.asarray(known, dtype=np.int64), unknown

    def internal(self, original: Sequence) -> np.ndarray:
        """Map the dataset's item ids to internal ids; unknown ids raise ``KeyError`` naming them."""
        ids, unknown = self.lookup(original)
        if unknown:
            raise KeyError(f"unknown item id(s): {unknown[:5]}; item ids are the dataset's "
                           f"({self.id_kind}), e.g. {self.items['item_id'].iloc[1]!r}")
        return ids

    # ------------------------------------------------------------------ filters
    @property
    def categories(self) -> list[str]:
        """Every category value in the catalogue, sorted."""
        return sorted(set().union(*self._categories()[1:])) if self.category_column else []

    def _categories(self) -> list[frozenset[str]]:
        if self._category_sets is None:
            col = self.items[self.category_column]
            self._category_sets = [frozenset() if (i == PAD or not isinstance(v, str)) else frozenset(v.split("|"))
                                   for i, v in enumerate(col)]
        return self._category_sets

    def check(self, filters: Filters) -> None:
        """Raise ``ValueError`` (saying what is wrong) if ``filters`` do not fit this catalogue."""
        for name in ("categories", "exclude_categories"):
            wanted = getattr(filters, name)
            if wanted is None:
                continue
            if self.category_column is None:
                raise ValueError(f"this catalogue has no category column; {name} cannot be used")
            unknown = sorted(set(wanted) - set(self.categories))
            if unknown:
                raise ValueError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                                 f"choose from: {', '.join(self.categories)}")
        if (filters.min_price is not None or filters.max_price is not None) and "price" not in self.items.columns:
            raise ValueError("this catalogue has no price column; min_price/max_price cannot be used")
        bad = [i for i in filters.exclude_items if not 1 <= i <= self.n_items]
        if bad:
            raise ValueError(f"exclude_items holds internal id(s) outside 1..{self.n_items}: {bad[:5]}")

    def allowed(self, filters: Filters | None) -> torch.Tensor:
        """``(n_items + 1,)`` BoolTensor: True where an item passes ``filters`` (padding never does).

        Masks are cached per ``Filters`` (they are frozen, hence hashable).
        """
        filters = filters or Filters()
        mask = self._masks.get(filters)
        if mask is not None:
            return mask
        self.check(filters)
        keep = np.ones(len(self.items), dtype=bool)
        if filters.categories is not None or filters.exclude_categories is not None:
            sets = self._categories()
            if filters.categories is not None:
                wanted = frozenset(filters.categories)
                keep &= np.fromiter((bool(s & wanted) for s in sets), dtype=bool, count=len(sets))
            if filters.exclude_categories is not None:
                banned = frozenset(filters.exclude_categories)
                keep &= np.fromiter((not (s & banned) for s in sets), dtype=bool, count=len(sets))
        if filters.min_price is not None or filters.max_price is not None:
            price = self.items["price"].to_numpy(dtype=np.float64, na_value=np.nan)
            lo = -np.inf if filters.min_price is None else filters.min_price
            hi = np.inf if filters.max_price is None else filters.max_price
            keep &= (price >= lo) & (price <= hi)          # NaN prices fail both comparisons
        if filters.in_stock:
            keep &= self.in_stock
        if filters.exclude_items:
            keep[list(filters.exclude_items)] = False
        keep[PAD] = False
        mask = torch.from_numpy(keep)
        if len(self._masks) > 256:       # a service sees many filter combinations; stay bounded
            self._masks.clear()
        self._masks[filters] = mask
        return mask

    # ------------------------------------------------------------------ answers
    def describe(self, ids: Sequence[int] | np.ndarray | torch.Tensor, scores: Sequence[float] | None = None,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
        """A table of items (rank, item_id, title, ... , score) for internal ``ids``."""
        ids = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
        if columns is None:
            columns = [c for c in ("item_id", "title", self.category_column, "price") if c and c in self.items.columns]
        table = self.items.iloc[ids][list(columns)].reset_index(drop=True)
        if "price" in table.columns:
            table["in_stock"] = self.in_stock[ids]
        if scores is not None:
            table["score"] = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
        table.insert(0, "rank", np.arange(1, len(ids) + 1))
        return table


# ============================================================================ ranking
@dataclass
class TopK:
    """Ranked lists: ``ids`` and ``scores`` are ``(B, k)``, best first.

    When filters leave fewer than ``k`` items for a row, its tail holds id 0 and score
    ``-inf``; ``valid`` is False there. ``source`` says per row whether the model answered
    (``"model"``) or the popularity fallback did (``"popularity"``, for empty histories).
    """

    ids: torch.Tensor
    scores: torch.Tensor
    source: list[str] = field(default_factory=list)

    @property
    def valid(self) -> torch.Tensor:
        return torch.isfinite(self.scores)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The valid ``(ids, scores)`` of row ``i`` as NumPy arrays."""
        keep = self.valid[i]
        return self.ids[i][keep].cpu().numpy(), self.scores[i][keep].cpu().numpy()

    def __len__(self) -> int:
        return len(self.ids)


def mask_items(scores: torch.Tensor, items: Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
    """Set ``scores[r, i] = -inf`` for every item ``i`` of row ``r`` (and for padding), in place.

    Args:
        scores: ``(B, N)`` float scores.
        items: per row, the internal ids to mask: a ``(B, L)`` LongTensor (padding 0 is
            harmless: column 0 is masked anyway) or a list of ``B`` integer arrays of any length.

    Returns ``scores`` (the same tensor).
    """
    n_cols = scores.shape[1]
    if isinstance(items, torch.Tensor):
        if items.shape[0] != scores.shape[0]:
            raise ValueError(f"items has {items.shape[0]} rows but scores has {scores.shape[0]}")
        idx = items.to(scores.device).long()
        if idx.numel() and (idx.min() < 0 or idx.max() >= n_cols):
            raise ValueError(f"item ids must be in 0..{n_cols - 1}; got {int(idx.min())}..{int(idx.max())}")
        scores.scatter_(1, idx, NEG_INF)
    else:
        if len(items) != scores.shape[0]:
            raise ValueError(f"items has {len(items)} rows but scores has {scores.shape[0]}")
        lengths = np.fromiter((len(s) for s in items), dtype=np.int64, count=len(items))
        if lengths.sum():
            cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in items])
            if cols.min() < 0 or cols.max() >= n_cols:
                raise ValueError(f"item ids must be in 0..{n_cols - 1}; got {cols.min()}..{cols.max()}")
            rows = np.repeat(np.arange(len(items)), lengths)
            scores[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = NEG_INF
    scores[:, PAD] = NEG_INF
    return scores


def _check_k(k: int, n_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n_items:
        raise ValueError(f"k={k} is larger than the catalogue ({n_items} items)")
    return int(k)


class Recommender:
    """A model plus its catalogue: scores, masks, filters and ranks, in batches.

    Args:
        model: a :class:`~course_lib.scoring.Scorer` (any course model or baseline), or a
            callable ``score_fn(users, histories)`` (see the module docstring).
        catalogue: the :class:`Catalogue` (or a ``LeaveOneOutSplit``, whose catalogue is used).
        max_len: histories are left-padded / left-truncated to this many items.
        device: where to compute (default: the model's device, else CPU).
        batch_size: users scored per forward pass.
        cache_size: keep this many users' vectors (or score rows, for models without
            ``user_vector``) in an :class:`LRUCache`; 0 = no cache. Cached rows are keyed by a
            user key and checked against the fingerprint of the history they were computed
            from, so a changed history is never answered from the cache.
        trim_padding: batch histories of similar length together and cut the columns that
            are padding in every row of a batch (less work for short histories). ``"auto"``
            (default) turns it on only after checking, on the first batch, that the model
            gives the same scores with and without the cut (true for models whose output
            does not depend on how much padding precedes a history); ``False`` never cuts.

    >>> rec = Recommender(model, Catalogue.from_split(split), max_len=50)   # doctest: +SKIP
    >>> rec.recommend([12, 7, 99], k=5, filters=Filters(categories=["Books"]))   # doctest: +SKIP
    """

    def __init__(self, model: Any, catalogue: Catalogue | LeaveOneOutSplit, *, max_len: int,
                 device: torch.device | str | None = None, batch_size: int = 1024, cache_size: int = 0,
                 trim_padding: bool | str = "auto") -> None:
        if isinstance(catalogue, LeaveOneOutSplit):
            catalogue = Catalogue.from_split(catalogue)
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n_items = getattr(model, "n_items", None)
        if isinstance(n_items, (int, np.integer)) and int(n_items) != catalogue.n_items:
            raise ValueError(f"the model scores {int(n_items)} items but the catalogue has {catalogue.n_items}; "
                             "build the catalogue from the split the model was trained on")
        self.model = model
        self.catalogue = catalogue
        self.max_len = int(max_len)
        self.batch_size = int(batch_size)
        if device is None:
            params = next(model.parameters(), None) if isinstance(model, nn.Module) else None
            device = params.device if params is not None else torch.device("cpu")
        self.device = torch.device(device)
        if isinstance(model, nn.Module):
            model.eval()
        self._score = as_score_fn(model)
        self.cache = LRUCache(cache_size) if cache_size > 0 else None
        self._retrieval: bool | None = None       # decided on the first cache miss
        self._items_t: torch.Tensor | None = None
        if trim_padding not in (True, False, "auto"):
            raise ValueError(f"trim_padding must be True, False or 'auto', got {trim_padding!r}")
        self.trim_padding: bool | None = None if trim_padding == "auto" else bool(trim_padding)

    def _check_trim(self, h: torch.Tensor, users: torch.Tensor) -> bool:
        """Whether cutting all-padding columns leaves the scores unchanged (checked on a few rows)."""
        lengths = (h != PAD).sum(dim=1)
        rows = torch.nonzero((lengths > 0) & (lengths < self.max_len)).flatten()[:16]
        if len(rows) == 0:
            return False
        width = int(lengths[rows].max())
        try:
            full = self._forward(users[rows], h[rows])
            cut = self._forward(users[rows], h[rows][:, -width:])
        except Exception:  # the model insists on max_len columns (e.g. an ONNX graph): no trimming
            return False
        same_inf = torch.equal(torch.isfinite(full), torch.isfinite(cut))
        finite = torch.isfinite(full)
        return bool(same_inf and torch.allclose(full[finite], cut[finite], rtol=1e-4, atol=1e-5))

    def _batches(self, h: torch.Tensor, todo: torch.Tensor) -> Iterable[tuple[torch.Tensor, int]]:
        """``(rows, width)`` per forward pass: consecutive rows, or rows sorted by length when trimming."""
        if not self.trim_padding:
            for start in range(0, len(todo), self.batch_size):
                yield todo[start:start + self.batch_size], self.max_len
            return
        lengths = (h[todo] != PAD).sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        for start in range(0, len(todo), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield todo[idx], max(1, int(lengths[idx].max()))

    @property
    def n_items(self) -> int:
        return self.catalogue.n_items

    # ------------------------------------------------------------------ inputs
    def pad(self, histories: torch.Tensor | Sequence[Sequence[int]]) -> torch.Tensor:
        """``(B, max_len)`` LongTensor of left-padded, left-truncated internal ids."""
        if isinstance(histories, torch.Tensor):
            if histories.ndim != 2:
                raise ValueError(f"histories must be (B, L), got shape {tuple(histories.shape)}")
            h = histories.long()
            if h.shape[1] > self.max_len:
                h = h[:, -self.max_len:]
            elif h.shape[1] < self.max_len:
                h = F.pad(h, (self.max_len - h.shape[1], 0), value=PAD)
        else:
            h = pad_sequences(histories, self.max_len)
        if h.numel() and (h.min() < 0 or h.max() > self.n_items):
            raise ValueError(f"histories hold internal item ids in 0..{self.n_items}; got "
                             f"{int(h.min())}..{int(h.max())} (map the dataset's ids with catalogue.internal)")
        return h

    # ------------------------------------------------------------------ scores
    def _forward(self, users: torch.Tensor | None, h: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = self._score(users, h.to(self.device))
        out = torch.as_tensor(out).float()
        if out.shape != (len(h), self.n_items + 1):
            raise ValueError(f"the model returned scores of shape {tuple(out.shape)}; expected "
                             f"({len(h)}, {self.n_items + 1}) = (batch, n_items + 1)")
        return out

    def score(self, users: Any, histories: Any = None, *, keys: Sequence[Hashable] | None = None) -> torch.Tensor:
        """Raw ``(B, n_items + 1)`` float32 scores, computed ``batch_size`` rows at a time (the
        :class:`~course_lib.scoring.Scorer` method; column 0 is ``-inf``).

        ``score(users, histories)`` or ``score(histories)`` (every user unknown, ``-1``).
        ``histories``: ``(B, L)`` left-padded internal ids, or ``B`` sequences of them.
        Rows whose history is empty get the catalogue's popularity (if it has one; else
        ``ValueError``). ``users`` (internal ids, or -1) are passed to models that read them.
        ``keys`` (one hashable per row, e.g. a user id) turn on the cache for those rows.
        """
        if histories is None:
            users, histories = None, users
        h = self.pad(histories)
        B = len(h)
        u = check_users(users, B)
        if u is None:
            u = torch.full((B,), -1, dtype=torch.long)
        empty = (h == PAD).all(dim=1)
        out = torch.empty((B, self.n_items + 1), dtype=torch.float32, device=self.device)
        todo = torch.nonzero(~empty).flatten()
        if keys is not None and self.cache is not None:
            if len(keys) != B:
                raise ValueError(f"keys has {len(keys)} entries for {B} histories")
            self._from_cache(h, keys, todo, out, u)
        else:
            if self.trim_padding is None and len(todo):
                self.trim_padding = self._check_trim(h[todo], u[todo])
            for rows, width in self._batches(h, todo):
                out[rows.to(self.device)] = self._forward(u[rows], h[rows][:, -width:]).to(self.device)
        if empty.any():
            if self.catalogue.popularity is None:
                raise ValueError(f"row {int(empty.nonzero()[0])} has an empty history; give the catalogue "
                                 "a popularity array (the cold-start fallback) or drop such rows")
            pop = torch.as_tensor(self.catalogue.popularity, dtype=torch.float32, device=self.device)
            out[empty.to(self.device)] = pop
        if torch.isnan(out).any():
            bad = int(torch.isnan(out).any(dim=1).nonzero()[0])
            raise RuntimeError(f"the model returned NaN scores for row {bad}; check the model "
                               "(e.g. a fully masked attention row)")
        return mask_padding(out)

    def _items(self) -> torch.Tensor:
        if self._items_t is None:
            self._items_t = item_vectors(self.model).detach().float().to(self.device)
        return self._items_t

    def _from_cache(self, h: torch.Tensor, keys: Sequence[Hashable], todo: torch.Tensor, out: torch.Tensor,
                    users: torch.Tensor) -> None:
        """Fill ``out`` rows from cached user vectors / score rows; compute and cache the misses.

        User vectors (``d`` floats) are cached when the model's scores are ``user_vector @
        item_table.T`` (checked once with :func:`retrieval_matches_scores`); otherwise whole
        score rows (``n_items + 1`` floats each) are.
        """
        cache = self.cache
        assert cache is not None
        missing, vectors = [], {}
        prints = {}
        for r in todo.tolist():
            fp = history_fingerprint(h[r])
            prints[r] = fp
            hit = cache.get(keys[r], fingerprint=fp)
            if hit is None:
                missing.append(r)
            else:
                vectors[r] = hit
        if missing and self._retrieval is None:
            self._retrieval = retrieval_matches_scores(self.model, h[missing[:8]].to(self.device))
        for start in range(0, len(missing), self.batch_size):
            rows = missing[start:start + self.batch_size]
            hb = h[rows].to(self.device)
            with torch.inference_mode():
                rep = (user_vectors(self.model, hb).float() if self._retrieval
                       else self._forward(users[rows], h[rows]))
            for j, r in enumerate(rows):
                vectors[r] = rep[j].clone()
                cache.put(keys[r], vectors[r], fingerprint=prints[r])
        if vectors:
            rows = sorted(vectors)
            rep = torch.stack([vectors[r] for r in rows]).to(self.device)
            out[torch.tensor(rows, device=self.device)] = rep @ self._items().T if self._retrieval else rep

    # ------------------------------------------------------------------ ranking
    def rank(self, scores: torch.Tensor, k: int = 10, *, filters: Filters | None = None,
             exclude: Sequence[np.ndarray] | torch.Tensor | None = None, source: list[str] | None = None) -> TopK:
        """Mask, filter and take the top ``k`` of ``(B, n_items + 1)`` scores (modifies them in place)."""
        k = _check_k(k, self.n_items)
        if exclude is not None:
            mask_items(scores, exclude)
        scores[:, PAD] = NEG_INF
        if filters is not None and filters.active:
            scores.masked_fill_(~self.catalogue.allowed(filters).to(scores.device), NEG_INF)
        top_scores, top_ids = torch.topk(scores, k, dim=1)
        top_ids = top_ids.masked_fill(~torch.isfinite(top_scores), PAD)
        return TopK(ids=top_ids, scores=top_scores, source=source or ["model"] * len(scores))

    def topk(self, histories: torch.Tensor | Sequence[Sequence[int]], k: int = 10, *, filters: Filters | None = None,
             exclude_seen: bool = True, seen: Sequence[np.ndarray] | None = None, users: Sequence[int] | None = None,
             keys: Sequence[Hashable] | None = None) -> TopK:
        """Top-``k`` lists for a batch of histories.

        Args:
            histories: ``(B, L)`` left-padded internal ids, or ``B`` sequences of internal ids.
            k: list length (1 ≤ k ≤ n_items).
            filters: business rules (:class:`Filters`).
            exclude_seen: mask the items of each history (True: what a shop wants, and
                what the full-ranking protocol does).
            seen: per row, the items to mask when they differ from ``histories`` (e.g. the
                *full* history when ``histories`` keeps only the last ``max_len`` items).
            users: internal user ids for ``score_fn`` models.
            keys: cache keys (see :meth:`score`).
        """
        k = _check_k(k, self.n_items)
        if filters is not None:
            self.catalogue.check(filters)
        if seen is None and exclude_seen and not isinstance(histories, torch.Tensor):
            seen = [np.asarray(s, dtype=np.int64) for s in histories]
        h = self.pad(histories)
        scores = self.score(users, h, keys=keys)
        source = ["popularity" if e else "model" for e in (h == PAD).all(dim=1).tolist()]
        exclude = (seen if seen is not None else h) if exclude_seen else None
        return self.rank(scores, k, filters=filters, exclude=exclude, source=source)

    def recommend(self, history: Sequence[int], k: int = 10, *, filters: Filters | None = None,
                  exclude_seen: bool = True, key: Hashable | None = None, user: int = -1) -> pd.DataFrame:
        """One user's list as a table (rank, item_id, title, category, price, in_stock, score).

        ``history`` holds internal ids, oldest first; ``user`` is the internal user id for
        models that read it (BPR-MF; ``-1``: not a known user). Rows that filters could not
        fill are dropped.
        """
        top = self.topk([np.asarray(history, dtype=np.int64)], k, filters=filters, exclude_seen=exclude_seen,
                        users=[int(user)], keys=None if key is None else [key])
        ids, scores = top.row(0)
        return self.catalogue.describe(ids, scores)

    def recommend_all(self, split: LeaveOneOutSplit, stage: str = "test", k: int = 10, *,
                      filters: Filters | None = None, exclude_seen: bool = True,
                      users: Sequence[int] | None = None) -> TopK:
        """Top-``k`` for every user of ``split`` (or ``users``) at ``stage``.

        The model reads the last ``max_len`` items; with ``exclude_seen`` the *whole* history
        is masked (as the evaluator does).
        """
        k = _check_k(k, self.n_items)
        if split.n_items != self.n_items:
            raise ValueError(f"the split has {split.n_items} items but the catalogue has {self.n_items}")
        history = split.history(stage)
        users = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
        ids = torch.zeros((len(users), k), dtype=torch.long)
        scores = torch.full((len(users), k), NEG_INF)
        source = [""] * len(users)
        # Users with similar history lengths share a batch (less padding to cut, see trim_padding).
        order = np.argsort([min(len(history[u]), self.max_len) for u in users], kind="stable") \
            if self.trim_padding is not False else np.arange(len(users))
        for start in range(0, len(users), self.batch_size):
            pos = order[start:start + self.batch_size]
            batch = users[pos]
            seqs = [history[u] for u in batch]
            top = self.topk(pad_sequences(seqs, self.max_len), k, filters=filters, exclude_seen=exclude_seen,
                            seen=seqs if exclude_seen else None, users=batch)
            ids[torch.from_numpy(pos)] = top.ids.cpu()
            scores[torch.from_numpy(pos)] = top.scores.cpu()
            for j, p in enumerate(pos):
                source[p] = top.source[j]
        return TopK(ids=ids, scores=scores, source=source)

    def score_fn(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """The evaluator's interface (``course_lib.evaluate.evaluate``): raw scores."""
        return self.score(users, histories)


# ============================================================================ retrieval
def _get_items_attr(model: Any) -> torch.Tensor | None:
    for name in ("item_embeddings", "item_embedding", "item_emb"):
        value = getattr(model, name, None)
        if value is None:
            continue
        if callable(value) and not isinstance(value, (torch.Tensor, nn.Module)):
            value = value()
        if isinstance(value, nn.Embedding):
            value = value.weight
        if isinstance(value, torch.Tensor):
            return value
    return None


def has_retrieval(model: Any) -> bool:
    """Whether ``model`` exposes an item table and a way to compute user vectors.

    (That ``user_vector(h) @ item_table.T`` really equals ``score(h)`` is checked by
    :func:`retrieval_matches_scores`.)
    """
    if _get_items_attr(model) is None:
        return False
    return isinstance(model, nn.Module) or any(callable(getattr(model, n, None)) for n in ("user_vector", "hidden", "encode"))


def item_vectors(model: Any) -> torch.Tensor:
    """``(n_items + 1, d)`` the item table a model scores against (row 0 = padding)."""
    table = _get_items_attr(model)
    if table is None:
        raise TypeError(f"{type(model).__name__} has no item table: give it an `item_embeddings` "
                        "attribute, property or method returning (n_items + 1, d)")
    return table


def user_vectors(model: Any, histories: torch.Tensor) -> torch.Tensor:
    """``(B, d)`` user vectors: the model's representation of each history.

    In order: ``model.user_vector(histories)``; else the last position of the ``(B, L, d)``
    hidden states from ``model.hidden(histories)``, ``model.encode(histories)`` or
    ``model(histories)`` (the course's SASRec and GRU4Rec return hidden states from
    ``forward``). For a causal model reading left-padded histories, the last position has
    read the whole history: its hidden state is the user vector. Histories are cut to the
    model's ``max_len`` (if it has one) as its ``score`` does.
    """
    max_len = getattr(model, "max_len", None)
    if isinstance(max_len, int) and histories.shape[1] > max_len:
        histories = histories[:, -max_len:]
    with torch.no_grad():
        fn = getattr(model, "user_vector", None)
        if callable(fn):
            return fn(histories)
        for name in ("hidden", "encode"):
            fn = getattr(model, name, None)
            if callable(fn):
                return fn(histories)[:, -1]
        if isinstance(model, nn.Module):
            out = model(histories)
            if isinstance(out, torch.Tensor) and out.ndim == 3:
                return out[:, -1]
    raise TypeError(f"{type(model).__name__} has no user_vector(histories) (nor hidden/encode, nor a forward "
                    "returning (B, L, d)); retrieval needs h such that score = h @ item_embeddings.T")


def retrieval_matches_scores(model: Any, histories: torch.Tensor, *, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    """Whether ``user_vectors(model, h) @ item_vectors(model).T`` equals ``model.score(h)``.

    Compared on the finite entries (models set the padding column to ``-inf``). A model
    with a bias per item, or an output layer that is not the item table, fails.
    """
    if not has_retrieval(model) or not callable(getattr(model, "score", None)):
        return False
    with torch.no_grad():
        try:
            via = user_vectors(model, histories).float() @ item_vectors(model).float().T
        except (TypeError, RuntimeError):
            return False
        direct = as_score_fn(model)(None, histories).float()
    if via.shape != direct.shape:
        return False
    finite = torch.isfinite(direct)
    return bool(torch.allclose(via[finite], direct[finite], rtol=rtol, atol=atol))


def _as_numpy_f32(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _filter_rows(ids: np.ndarray, scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None,
                 allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep each row's first ``k`` ids that are valid, not excluded and allowed. Returns short-row count."""
    B = len(ids)
    out_ids = np.zeros((B, k), dtype=np.int64)
    out_scores = np.full((B, k), NEG_INF, dtype=np.float32)
    short = 0
    for r in range(B):
        row_ids, row_scores = ids[r], scores[r]
        keep = row_ids > 0
        if allowed is not None:
            keep &= allowed[np.maximum(row_ids, 0)]
        if exclude is not None and len(exclude[r]):
            keep &= ~np.isin(row_ids, exclude[r])
        got_ids, got_scores = row_ids[keep][:k], row_scores[keep][:k]
        out_ids[r, :len(got_ids)] = got_ids
        out_scores[r, :len(got_ids)] = got_scores
        short += len(got_ids) < k
    return out_scores, out_ids, short


class ExactIndex:
    """Exact maximum inner-product search with torch: ``scores = Q @ E.T``, then ``topk``.

    Args:
        item_vectors: ``(n_items + 1, d)`` (row 0 = padding, never returned).
    """

    kind = "exact"

    def __init__(self, item_vectors: torch.Tensor | np.ndarray) -> None:
        self.items = torch.as_tensor(_as_numpy_f32(item_vectors))
        self.n_items = len(self.items) - 1
        self.d = self.items.shape[1]

    def search(self, queries: torch.Tensor | np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               allowed: np.ndarray | torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, both ``(B, k)``; ids are internal (0 and ``-inf`` where nothing is left)."""
        k = _check_k(k, self.n_items)
        q = torch.as_tensor(_as_numpy_f32(queries))
        scores = q @ self.items.T                                             # (B, N)
        if exclude is not None:
            mask_items(scores, [np.asarray(e, dtype=np.int64) for e in exclude])
        scores[:, PAD] = NEG_INF
        if allowed is not None:
            scores.masked_fill_(~torch.as_tensor(np.asarray(allowed, dtype=bool)), NEG_INF)
        s, i = torch.topk(scores, k, dim=1)
        i = i.masked_fill(~torch.isfinite(s), PAD)
        return s.numpy(), i.numpy()


class FaissIndex:
    """Inner-product search with ``faiss``: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate).

    * **flat** (``IndexFlatIP``): compares the query with every item — exact, O(n d) per query.
    * **IVF** (``IndexIVFFlat``): k-means splits the items into ``nlist`` cells; a query
      visits only the ``nprobe`` cells whose centroids score highest. Recall grows with
      ``nprobe``; ``nprobe = nlist`` is exact again.
    * **HNSW** (``IndexHNSWFlat``): a layered graph whose nodes link to ``m`` near
      neighbours; a query walks the graph greedily, keeping ``ef_search`` candidates. Recall
      grows with ``ef_search``.

    Args:
        item_vectors: ``(n_items + 1, d)``; row 0 (padding) is left out of the index.
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        nlist: IVF cells (default ``round(4 sqrt(n))``).
        nprobe: IVF cells visited per query.
        m: HNSW neighbours per node; ``ef_construction``, ``ef_search``: HNSW beam widths.
        threads: faiss's OpenMP threads (default: leave as is).

    Search parameters can be changed after building (``index.nprobe = 16``,
    ``index.ef_search = 128``); ids returned are internal item ids.
    """

    KINDS = ("flat", "ivf", "hnsw")

    def __init__(self, item_vectors: torch.Tensor | np.ndarray, kind: str = "hnsw", *, nlist: int | None = None,
                 nprobe: int = 8, m: int = 32, ef_construction: int = 80, ef_search: int = 64,
                 threads: int | None = None, seed: int = 0) -> None:
        import faiss

        if kind not in self.KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of: {', '.join(self.KINDS)}")
        self._faiss = faiss
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))
        x = _as_numpy_f32(item_vectors)[1:]
        n, d = x.shape
        if n < 1:
            raise ValueError("the index needs at least one item")
        self.kind, self.n_items, self.d = kind, n, d
        start = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = int(nlist or max(1, round(4 * math.sqrt(n))))
            if nlist > n:
                raise ValueError(f"nlist={nlist} exceeds the {n} items; use at most n_items cells")
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.cp.min_points_per_centroid = 1          # small catalogues: no warning spam
            index.train(x)
            self.nlist = nlist
            self._quantizer = quantizer                     # keep it alive with the index
        else:
            index = faiss.IndexHNSWFlat(d, int(m), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(ef_construction)
            self.m = int(m)
        index.add(x)
        self.build_s = time.perf_counter() - start
        self.index = index
        self.nprobe = int(nprobe)
        self.ef_search = int(ef_search)

    def _params(self, selector=None):
        faiss = self._faiss
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.nprobe, self.nlist))
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries: torch.Tensor | np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               allowed: np.ndarray | torch.Tensor | None = None, fetch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, both ``(B, k)``, internal ids (0 and ``-inf`` where nothing is left).

        ``allowed`` (``(n_items + 1,)`` booleans, a shared filter) is applied *inside* the search
        with a faiss ID selector. Per-row ``exclude`` lists (the items each user has seen) are
        removed *after* it: the index is asked for ``fetch`` candidates (default ``k`` plus the
        longest exclusion list) and the first ``k`` survivors kept.
        """
        k = _check_k(k, self.n_items)
        q = _as_numpy_f32(queries)
        if q.ndim != 2 or q.shape[1] != self.d:
            raise ValueError(f"queries must be (B, {self.d}), got {q.shape}")
        selector, allowed_np = None, None
        if allowed is not None:
            allowed_np = np.asarray(allowed.cpu() if isinstance(allowed, torch.Tensor) else allowed, dtype=bool)
            ok = np.flatnonzero(allowed_np[1:]).astype(np.int64)         # faiss ids are internal - 1
            selector = self._faiss.IDSelectorBatch(ok)
        longest = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        fetch = min(self.n_items, int(fetch or k + longest))
        scores, ids = self.index.search(q, fetch, params=self._params(selector))
        ids = np.where(ids >= 0, ids + 1, 0)
        out_scores, out_ids, short = _filter_rows(ids, scores, k, exclude, allowed_np)
        self.last_short_rows = short
        return out_scores, out_ids

    def __repr__(self) -> str:
        extra = {"ivf": lambda: f", nlist={self.nlist}, nprobe={self.nprobe}",
                 "hnsw": lambda: f", m={self.m}, ef_search={self.ef_search}"}.get(self.kind, lambda: "")()
        return f"FaissIndex({self.kind}, {self.n_items} items, d={self.d}{extra})"


def ann_recall(approx_ids: np.ndarray | torch.Tensor, exact_ids: np.ndarray | torch.Tensor) -> float:
    """Recall of approximate top-k lists against exact ones: ``mean_u |A_u ∩ E_u| / |E_u|``.

    Both are ``(B, k)`` arrays of item ids; id 0 (nothing found) never counts as a hit.
    """
    a = np.asarray(approx_ids.cpu() if isinstance(approx_ids, torch.Tensor) else approx_ids)
    e = np.asarray(exact_ids.cpu() if isinstance(exact_ids, torch.Tensor) else exact_ids)
    if a.shape[0] != e.shape[0] or a.ndim != 2 or e.ndim != 2:
        raise ValueError(f"approx_ids and exact_ids must be (B, k) with the same B; got {a.shape} and {e.shape}")
    values = []
    for ar, er in zip(a, e):
        truth = set(er[er > 0].tolist())
        if truth:
            values.append(len(truth & set(ar[ar > 0].tolist())) / len(truth))
    if not values:
        raise ValueError("the exact lists are all empty; nothing to compare with")
    return float(np.mean(values))


def time_call(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _latency_per_query(index, queries: np.ndarray, k: int, n: int) -> float:
    """Median milliseconds of a one-query search over the first ``n`` queries."""
    times = []
    for r in range(min(n, len(queries))):
        q = queries[r:r + 1]
        start = time.perf_counter()
        index.search(q, k)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def sweep_ann(item_table: torch.Tensor | np.ndarray, queries: torch.Tensor | np.ndarray, k: int = 10, *,
              nlist: int | None = None, nprobes: Sequence[int] = (1, 2, 4, 8, 16, 32),
              m: int = 32, ef_construction: int = 80, ef_searches: Sequence[int] = (8, 16, 32, 64, 128),
              latency_queries: int = 200, threads: int | None = None) -> pd.DataFrame:
    """Recall@k against exact search and latency for flat, IVF and HNSW settings.

    Args:
        item_table: ``(n_items + 1, d)`` item vectors (row 0 = padding).
        queries: ``(Q, d)`` user vectors.
        k: list length.
        nprobes, ef_searches: the search settings to try (IVF and HNSW).
        latency_queries: how many one-query searches to time (the median is reported).

    Returns a DataFrame: ``index``, ``setting``, ``recall@k`` (vs exact, no masking),
    ``ms/query`` (one query at a time, median), ``queries/s`` (all queries in one batch),
    ``build s``, and ``params`` (the keyword arguments that rebuild the setting:
    ``FaissIndex(items, row["index"], **row["params"])``).
    """
    q = _as_numpy_f32(queries)
    exact = ExactIndex(item_table)
    _, truth = exact.search(q, k)
    rows = []

    def measure(index, name: str, setting: str, build_s: float, params: dict) -> None:
        batch_s = time_call(lambda: index.search(q, k), repeat=3)
        _, ids = index.search(q, k)
        rows.append({"index": name, "setting": setting, f"recall@{k}": ann_recall(ids, truth),
                     "ms/query": _latency_per_query(index, q, k, latency_queries),
                     "queries/s": len(q) / batch_s, "build s": build_s, "params": params})

    measure(exact, "exact (torch)", "-", 0.0, {})
    flat = FaissIndex(item_table, "flat", threads=threads)
    measure(flat, "flat", "-", flat.build_s, {})
    ivf = FaissIndex(item_table, "ivf", nlist=nlist, threads=threads)
    for p in nprobes:
        if p > ivf.nlist:
            continue
        ivf.nprobe = p
        measure(ivf, "ivf", f"nlist={ivf.nlist}, nprobe={p}", ivf.build_s, {"nlist": ivf.nlist, "nprobe": p})
    hnsw = FaissIndex(item_table, "hnsw", m=m, ef_construction=ef_construction, threads=threads)
    for ef in ef_searches:
        hnsw.ef_search = ef
        measure(hnsw, "hnsw", f"M={m}, efSearch={ef}", hnsw.build_s,
                {"m": m, "ef_construction": ef_construction, "ef_search": ef})
    return pd.DataFrame(rows)


# ============================================================================ caching
def history_fingerprint(history: Sequence[int] | np.ndarray | torch.Tensor) -> str:
    """A short hash of a history's real items (padding ignored): equal histories, equal prints."""
    arr = history.detach().cpu().numpy() if isinstance(history, torch.Tensor) else np.asarray(history)
    arr = np.ascontiguousarray(arr[arr != PAD], dtype=np.int64)
    return hashlib.blake2b(arr.tobytes(), digest_size=12).hexdigest()


class LRUCache:
    """A least-recently-used cache with fingerprint checks, safe to share between threads.

    ``get(key, fingerprint=fp)`` returns the value only if it was stored with the same
    fingerprint; a different one means the entry is **stale** (the user's history changed
    since): it is dropped and counted in ``stale``. Beyond ``capacity`` entries the least
    recently used one is evicted.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._data: OrderedDict[Hashable, tuple[str | None, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.stale = self.evictions = 0

    def get(self, key: Hashable, *, fingerprint: str | None = None) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            if entry[0] != fingerprint:
                del self._data[key]
                self.stale += 1
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: Any, *, fingerprint: str | None = None) -> None:
        with self._lock:
            self._data[key] = (fingerprint, value)
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
                self.evictions += 1

    def invalidate(self, key: Hashable) -> bool:
        """Drop ``key``; True if it was there."""
        with self._lock:
            return self._data.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def stats(self) -> dict[str, float]:
        total = self.hits + self.misses
        return {"size": len(self), "capacity": self.capacity, "hits": self.hits, "misses": self.misses,
                "stale": self.stale, "evictions": self.evictions, "hit rate": self.hits / total if total else 0.0}


# ============================================================================ compression
def _linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, mod) for name, mod in model.named_modules() if type(mod) is nn.Linear]


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` (and ``nn.GRU``/``nn.LSTM``) layers compute in int8.

    Dynamic quantisation: weights are stored as int8 with one scale per tensor
    (``w ≈ scale · q``, ``q`` in [-128, 127]); activations are quantised on the fly, batch by
    batch, and the int8 products accumulate in int32. Embedding tables (and so a score layer
    tied to them) stay float32: see :func:`quantize_rows_int8` for the item table. Uses
    ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of ``torchao``, still
    shipped with the course's torch; its deprecation warnings are silenced here). CPU only.
    """
    kinds = {nn.Linear, nn.GRU, nn.LSTM}
    if not any(type(m) in kinds for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no nn.Linear, nn.GRU or nn.LSTM layer to quantise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        present = {k for k in kinds if any(type(m) is k for m in model.modules())}
        q = quantize_dynamic(copy.deepcopy(model).cpu().eval(), present, dtype=torch.qint8)
    return q


def quantize_rows_int8(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantisation of an embedding table.

    For each row ``x``: ``scale = max|x| / 127``, ``q = round(x / scale)`` in [-127, 127]; the
    row is stored as ``q`` (1 byte per value) plus one float scale: ~4x smaller than float32.

    Returns ``(q, scale)``: ``(N, d)`` int8 and ``(N, 1)`` float32; ``q * scale`` approximates ``table``.
    """
    t = table.detach().float()
    scale = t.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    q = torch.round(t / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_rows_int8`: ``q * scale`` as float32."""
    return q.float() * scale


class CastScorer(nn.Module):
    """Run a model in another floating dtype (e.g. bfloat16) and return float32 scores.

    The wrapped copy keeps its weights in ``dtype`` (half the memory of float32 for bf16) and
    runs under ``torch.autocast`` for that dtype, so that a float32 tensor made inside the
    model (a mask turned into floats, say) does not clash with the low-precision weights.
    Integer inputs (item ids) pass unchanged.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inner = copy.deepcopy(model).to(dtype).eval()
        self.dtype = dtype

    @property
    def n_items(self) -> int:
        return int(self.inner.n_items)

    def score(self, users: Any, histories: Any = None) -> torch.Tensor:
        """``score(users, histories)`` (or ``score(histories)``) of the wrapped model, as float32."""
        if histories is None:
            users, histories = None, users
        h = torch.as_tensor(histories)
        device_type = h.device.type if h.device.type in ("cpu", "cuda") else "cpu"
        with torch.autocast(device_type, dtype=self.dtype):
            return as_score_fn(self.inner)(users, h).float()

    def score_fn(self, users: torch.Tensor | None, histories: torch.Tensor) -> torch.Tensor:
        return self.score(users, histories)

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        return self.score(None, histories)


def to_bfloat16(model: nn.Module) -> CastScorer:
    """A bfloat16 copy of ``model`` (8 exponent bits like float32, 7 mantissa bits): see :class:`CastScorer`."""
    return CastScorer(model, torch.bfloat16)


class ScoreModule(nn.Module):
    """``forward(histories)`` = the model's scores, column 0 ``-inf``: the graph that :func:`export_onnx` traces.

    Models with :class:`~course_lib.scoring.ScorerMixin` are traced through their
    ``_static_scores`` (no input checks, no data-dependent shapes such as BERT4Rec's
    length buckets); other models through ``score(histories)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, histories: torch.Tensor) -> torch.Tensor:
        static = getattr(self.model, "_static_scores", None)
        scores = static(histories) if callable(static) else as_score_fn(self.model)(None, histories)
        return mask_padding(scores.float())


def export_onnx(model: nn.Module, path: str | os.PathLike, *, max_len: int, example_batch: int = 4,
                opset_version: int | None = None, n_items: int | None = None) -> Path:
    """Export ``model.score`` to ONNX with a dynamic batch dimension; returns the file's path.

    Uses ``torch.onnx.export(..., dynamo=True)`` (the exporter built on ``torch.export``; it
    needs ``onnxscript``). The graph takes ``histories`` ``(batch, max_len)`` int64 and returns
    ``scores`` ``(batch, n_items + 1)`` float32. Weights are stored inside the file (no
    external-data side files), so the one file is the whole model.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ScoreModule(copy.deepcopy(model).cpu().float().eval()).eval()
    if n_items is None:
        with torch.no_grad():
            n_items = module(torch.ones((1, max_len), dtype=torch.long)).shape[1] - 1
    hi = int(n_items)
    gen = torch.Generator().manual_seed(0)
    example = torch.randint(1, max(2, hi + 1), (example_batch, max_len), generator=gen)
    example[0, : max_len // 2] = PAD                     # padding in the example, as in real input
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        import contextlib
        import logging

        quiet = logging.getLogger("torch.onnx")
        old = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                program = torch.onnx.export(module, (example,), dynamo=True, input_names=["histories"],
                                            output_names=["scores"], dynamic_shapes={"histories": {0: batch}},
                                            opset_version=opset_version, external_data=False)
                program.save(str(path), external_data=False)
        finally:
            quiet.setLevel(old)
    import onnx

    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        raise ValueError(f"the exported graph has a fixed batch size of {dim.dim_value}: the model's score() turns "
                         "the batch size into a Python number (len(h), int(h.shape[0]), a Python loop over rows); "
                         "use tensor operations that keep it symbolic")
    return path


class OnnxScorer:
    """Score with an exported ONNX model in ``onnxruntime`` (the :func:`export_onnx` format).

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime's intra-op threads (default: all cores).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.max_len = inp.shape[1] if isinstance(inp.shape[1], int) else None
        cols = self.session.get_outputs()[0].shape[-1]
        self.n_items: int | None = cols - 1 if isinstance(cols, int) else None

    def score(self, users: Any, histories: Any = None) -> torch.Tensor:
        """``score(users, histories)`` (users are not read) or ``score(histories)``: ``(B, max_len)``
        int64 histories → ``(B, n_items + 1)`` float32 scores (a torch tensor)."""
        if histories is None:
            users, histories = None, users
        check_users(users, len(histories))
        h = torch.as_tensor(histories).detach().cpu().numpy().astype(np.int64, copy=False)
        if h.ndim != 2:
            raise ValueError(f"histories must be 2-D (B, max_len), got shape {h.shape}")
        if self.max_len is not None and h.shape[1] != self.max_len:
            raise ValueError(f"this ONNX model takes histories of length {self.max_len}, got {h.shape[1]}")
        (out,) = self.session.run(None, {self.input_name: h})
        return torch.from_numpy(out)

    def score_fn(self, users: torch.Tensor | None, histories: torch.Tensor) -> torch.Tensor:
        return self.score(users, histories)

    __call__ = score_fn


def model_size_bytes(model: nn.Module | str | os.PathLike) -> int:
    """Bytes of a model's weights: ``numel × bytes per element`` over its ``state_dict`` (a file: its size).

    int8 weights count 1 byte, bfloat16 2, float32 4; the packed weights of dynamically
    quantised layers are included. Nothing else (pickle or graph overhead) is counted, so
    the numbers compare precisions fairly.
    """
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stat().st_size

    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (tuple, list)):
            return sum(size(v) for v in value)
        return 0

    total = 0
    for key, value in model.state_dict().items():
        if "_packed_params" in key and not isinstance(value, torch.Tensor):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                weight, bias = value if isinstance(value, tuple) else (value, None)
                total += size(weight) + size(bias)
        else:
            total += size(value)
    return total


def prune_linear(model: nn.Module, amount: float) -> tuple[nn.Module, float]:
    """A copy of ``model`` with the smallest-magnitude ``amount`` of each ``nn.Linear`` weight set to 0.

    Unstructured L1 magnitude pruning (``torch.nn.utils.prune.l1_unstructured``), made
    permanent. Returns ``(pruned copy, share of zero weights among all Linear weights)``.
    Dense kernels do not skip zeros: the file compresses, the speed does not change.
    """
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    pruned = copy.deepcopy(model)
    layers = _linear_layers(pruned)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to prune")
    zeros = total = 0
    for _, layer in layers:
        if amount > 0:
            prune.l1_unstructured(layer, name="weight", amount=amount)
            prune.remove(layer, "weight")
        zeros += int((layer.weight == 0).sum())
        total += layer.weight.numel()
    return pruned, zeros / total


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                      temperature: float = 2.0, alpha: float = 0.5, ignore_index: int = PAD) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): match the teacher's softened scores.

    ``loss = alpha · T² · KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) · CE(s, y)``

    Args:
        student_logits, teacher_logits: ``(N, C)`` scores over the same items.
        targets: ``(N,)`` true next items; rows whose target is ``ignore_index`` are left out.
        temperature: ``T`` > 0; higher T exposes more of the teacher's ranking of the
            non-top items (its "dark knowledge"); ``T²`` keeps the gradients' scale.
        alpha: weight of the teacher term (0 = plain cross-entropy, 1 = teacher only).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} "
                         "logits must have the same shape")
    keep = targets != ignore_index
    s, t, y = student_logits[keep], teacher_logits[keep].detach(), targets[keep]
    if len(y) == 0:
        return student_logits.sum() * 0.0
    kd = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                  log_target=True, reduction="batchmean") * temperature ** 2
    ce = F.cross_entropy(s, y)
    return alpha * kd + (1 - alpha) * ce


__all__ = [
    "Catalogue", "CastScorer", "ExactIndex", "FaissIndex", "Filters", "LRUCache", "OnnxScorer", "Recommender",
    "ScoreModule", "TopK", "ann_recall", "dequantize_rows", "distillation_loss", "export_onnx", "has_retrieval",
    "history_fingerprint", "item_vectors", "mask_items", "prune_linear", "quantize_dynamic_int8",
    "quantize_rows_int8", "retrieval_matches_scores", "model_size_bytes", "sweep_ann", "time_call", "to_bfloat16", "user_vectors",
]
