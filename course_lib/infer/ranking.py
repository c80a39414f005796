"""Scoring and ranking: the catalogue, business filters, masking, top-K, and :class:`Recommender`.

Chapter 07's first part: batched full-catalogue scoring of any
:class:`~course_lib.scoring.Scorer`, masking the items a user already has, filters
(category, in stock, price range), ``torch.topk``, and answers with titles.

Shapes: ``B`` users in a batch, ``L`` history length (``max_len``), ``N = n_items + 1``
score columns, ``k`` the list length.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.protocol import PAD, LeaveOneOutSplit, pad_sequences
from ..scoring import as_score_fn, check_users, mask_padding
from .cache import LRUCache, history_fingerprint

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
        batch_size: users scored per forward pass (in ``recommend_all``'s fast path: users
            scored and ranked per step; its forward passes are sized by ``batch_tokens``).
        cache_size: keep this many users' vectors (or score rows, for models without
            ``user_vector``) in an :class:`LRUCache`; 0 = no cache. Cached rows are keyed by a
            user key and checked against the fingerprint of the history they were computed
            from, so a changed history is never answered from the cache.
        trim_padding: batch histories of similar length together and cut the columns that
            are padding in every row of a batch (less work for short histories). ``"auto"``
            (default) turns it on only after checking, on the first batch, that the model
            gives the same scores with and without the cut (true for models whose output
            does not depend on how much padding precedes a history); ``False`` never cuts.
        fast_path: score through the model's ``encode_last(histories) -> (B, d)`` times its
            item table (SASRec: length buckets, the final block at the last position only,
            the fused causal kernel; see :meth:`course_lib.models.sasrec.SASRec.encode_last`)
            instead of its ``score``. ``"auto"`` (default) turns it on when the model has
            ``encode_last`` and an item table and, checked once on the first batch, the two
            give the same scores (``rtol=1e-4, atol=1e-5``); ``False`` always calls ``score``.

    >>> rec = Recommender(model, Catalogue.from_split(split), max_len=50)   # doctest: +SKIP
    >>> rec.recommend([12, 7, 99], k=5, filters=Filters(categories=["Books"]))   # doctest: +SKIP
    """

    def __init__(self, model: Any, catalogue: Catalogue | LeaveOneOutSplit, *, max_len: int,
                 device: torch.device | str | None = None, batch_size: int = 1024, cache_size: int = 0,
                 trim_padding: bool | str = "auto", fast_path: bool | str = "auto") -> None:
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
        if fast_path not in (True, False, "auto"):
            raise ValueError(f"fast_path must be True, False or 'auto', got {fast_path!r}")
        if fast_path is True and not callable(getattr(model, "encode_last", None)):
            raise ValueError(f"fast_path=True needs a model with encode_last(histories); {type(model).__name__} "
                             "has none")
        self.fast_path: bool | None = None if fast_path == "auto" else bool(fast_path)

    def _check_fast(self, h: torch.Tensor, users: torch.Tensor) -> bool:
        """Whether ``encode_last(h) @ item_table.T`` equals the model's scores (checked on a few rows)."""
        from .retrieval import _get_items_attr  # retrieval builds on ranking, not the other way round

        if not callable(getattr(self.model, "encode_last", None)) or _get_items_attr(self.model) is None:
            return False
        lengths = (h != PAD).sum(dim=1)
        rows = torch.argsort(lengths, descending=True)[:16]             # the longest: all of max_len read
        try:
            full = self._forward(users[rows], h[rows])
            fast = self._fast_scores(h[rows])
        except Exception:  # a wrapped or exported model whose encode_last does not fit: the plain path
            return False
        full, fast = full[:, 1:], fast[:, 1:]                          # column 0 (padding) is masked later
        finite = torch.isfinite(full)
        return bool(torch.equal(finite, torch.isfinite(fast))
                    and torch.allclose(full[finite], fast[finite], rtol=1e-4, atol=1e-5))

    def _fast_scores(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` histories → ``(B, n_items + 1)`` scores via ``encode_last`` (column 0 not yet masked)."""
        with torch.inference_mode():
            vectors = self.model.encode_last(h.to(self.device)).float()          # (B, d)
            return vectors @ self._items().T                                   # (B, N)

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
            if self.fast_path is None and len(todo):
                self.fast_path = self._check_fast(h[todo], u[todo])
            if self.fast_path:                           # encode_last makes its own length buckets
                out[todo.to(self.device)] = self._fast_scores(h[todo])
                todo = todo[:0]
            elif self.trim_padding is None and len(todo):
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
        from .retrieval import item_vectors  # retrieval builds on ranking (mask_items), not the other way round

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
        from .retrieval import retrieval_matches_scores, user_vectors

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
                      users: Sequence[int] | None = None, workers: int | str = "auto",
                      batch_tokens: int = 8192) -> TopK:
        """Top-``k`` for every user of ``split`` (or ``users``) at ``stage``.

        The model reads the last ``max_len`` items; with ``exclude_seen`` the *whole* history
        is masked (as the evaluator does).

        With the fast path on (see ``fast_path``), users are sorted by history length and cut
        into buckets of at most ``batch_tokens`` positions (rows × the bucket's longest
        history read), each encoded in one pass; then ``batch_size`` users at a time are
        scored, masked (one fill over their slice of all histories laid end to end) and
        ranked. ``workers`` threads (``"auto"``: ``torch.get_num_threads()``) take buckets and
        chunks with one torch thread apiece (the ops release the GIL): at ``d = 64`` splitting
        the users scales better than splitting each matrix product. While they run, torch's thread
        count is 1 process-wide; it is restored afterwards. The lists equal the plain
        path's (measured in ``benchmarks/bench_inference.py``, tested in ``tests/test_infer.py``).
        """
        k = _check_k(k, self.n_items)
        if split.n_items != self.n_items:
            raise ValueError(f"the split has {split.n_items} items but the catalogue has {self.n_items}")
        if filters is not None:
            self.catalogue.check(filters)
        if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                  or workers < 1):
            raise ValueError(f"workers must be a positive integer or 'auto', got {workers!r}")
        if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, (int, np.integer)) or batch_tokens < 1:
            raise ValueError(f"batch_tokens must be a positive integer, got {batch_tokens!r}")
        history = split.history(stage)
        users = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
        read = np.fromiter((min(len(history[u]), self.max_len) for u in users), dtype=np.int64, count=len(users))
        if self.fast_path is None and (read > 0).any():
            last = np.argsort(read, kind="stable")[-16:]                      # the longest: all of max_len read
            longest = users[last[read[last] > 0]]
            self.fast_path = self._check_fast(pad_sequences([history[u] for u in longest], self.max_len),
                                              torch.as_tensor(longest, dtype=torch.long))
        if self.fast_path:
            return self._recommend_all_fast(history, users, read, k, filters, exclude_seen,
                                            torch.get_num_threads() if workers == "auto" else int(workers),
                                            int(batch_tokens))
        ids = torch.zeros((len(users), k), dtype=torch.long)
        scores = torch.full((len(users), k), NEG_INF)
        source = [""] * len(users)
        # Users with similar history lengths share a batch (less padding to cut, see trim_padding).
        order = np.argsort(read, kind="stable") if self.trim_padding is not False else np.arange(len(users))
        for start in range(0, len(users), self.batch_size):
            pos = order[start:start + self.batch_size]
            self._recommend_rows(history, users, pos, k, filters, exclude_seen, ids, scores, source)
        return TopK(ids=ids, scores=scores, source=source)

    def _recommend_rows(self, history, users, pos, k, filters, exclude_seen, ids, scores, source) -> None:
        """The generic path for the users at positions ``pos``: ``topk`` of their padded histories."""
        batch = users[pos]
        seqs = [history[u] for u in batch]
        top = self.topk(pad_sequences(seqs, self.max_len), k, filters=filters, exclude_seen=exclude_seen,
                        seen=seqs if exclude_seen else None, users=batch)
        ids[torch.from_numpy(pos)] = top.ids.cpu()
        scores[torch.from_numpy(pos)] = top.scores.cpu()
        for j, p in enumerate(pos):
            source[p] = top.source[j]

    def _recommend_all_fast(self, history, users, read, k, filters, exclude_seen, workers, batch_tokens) -> TopK:
        """``recommend_all`` through ``encode_last``: length buckets, one pass each, on ``workers`` threads."""
        from concurrent.futures import ThreadPoolExecutor

        n = len(users)
        ids = torch.zeros((n, k), dtype=torch.long)
        scores = torch.full((n, k), NEG_INF)
        source = ["model"] * n
        order = np.argsort(read, kind="stable")
        n_empty = int((read == 0).sum())
        if n_empty:                                   # no history: the popularity fallback of score
            self._recommend_rows(history, users, order[:n_empty], k, filters, exclude_seen, ids, scores, source)
        order = order[n_empty:]
        m = len(order)
        width = read[order]                            # ascending
        buckets, start = [], 0
        while start < m:                               # consecutive rows, ≤ batch_tokens positions (rows × widest)
            end = min(m, start + batch_tokens)         # never more rows than positions
            fits = np.arange(1, end - start + 1) * width[start:end] <= batch_tokens   # True, then False
            stop = start + max(1, int(fits.sum()))
            buckets.append((start, stop))
            start = stop
        chunks = [(start, min(start + self.batch_size, m)) for start in range(0, m, self.batch_size)]
        seen = [history[u] for u in users[order]] if exclude_seen else None
        if seen is not None:                           # every history end to end; a chunk reads one slice
            seen_len = np.fromiter((len(s) for s in seen), dtype=np.int64, count=len(seen))
            seen_ptr = np.concatenate([[0], np.cumsum(seen_len)])
            seen_flat = torch.from_numpy(np.concatenate(seen)) if len(seen) else torch.zeros(0, dtype=torch.long)
        items = self._items()
        N = items.shape[0]
        banned = (~self.catalogue.allowed(filters).to(self.device)) if filters is not None and filters.active \
            else None
        vectors: list[torch.Tensor | None] = [None] * len(buckets)

        def encode(i: int) -> None:                     # one length bucket → its users' vectors
            a, b = buckets[i]
            with torch.inference_mode():
                vectors[i] = self.model.encode_last([history[u][-self.max_len:] for u in users[order[a:b]]])

        def rank(a: int, b: int, U: torch.Tensor):      # batch_size users → scores, mask, top-k
            with torch.inference_mode():
                s = U[a:b] @ items.T                                                   # (B, N)
                if seen is not None:
                    rows = torch.from_numpy(np.repeat(np.arange(b - a) * N, seen_len[a:b]))
                    s.view(-1).index_fill_(0, (rows + seen_flat[seen_ptr[a]:seen_ptr[b]]).to(self.device),
                                           NEG_INF)
                s[:, PAD] = NEG_INF
                if banned is not None:
                    s.masked_fill_(banned, NEG_INF)
                top_scores, top_ids = torch.topk(s, k, dim=1)
            return top_ids.masked_fill(~torch.isfinite(top_scores), PAD), top_scores

        workers = max(1, min(workers, len(buckets)))
        # The biggest buckets first, so that no thread is left with a long one at the end.
        todo = np.argsort([(b - a) * int(width[b - 1]) for a, b in buckets], kind="stable")[::-1].tolist()
        threads = torch.get_num_threads()
        if workers > 1:
            torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) \
                    if workers > 1 else contextlib.nullcontext() as pool:
                run = pool.map if pool is not None else map
                list(run(encode, todo))
                U = torch.cat(vectors).to(self.device).float() if vectors else torch.zeros((0, 1))   # (m, d)
                parts = list(run(lambda ab: rank(*ab, U), chunks))
        finally:
            torch.set_num_threads(threads)
        sorted_ids = torch.cat([t[0] for t in parts]).cpu() if parts else ids[:0]
        sorted_scores = torch.cat([t[1] for t in parts]).cpu() if parts else scores[:0]
        ids[torch.from_numpy(order)] = sorted_ids
        scores[torch.from_numpy(order)] = sorted_scores
        return TopK(ids=ids, scores=scores, source=source)

    def score_fn(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """The evaluator's interface (``course_lib.evaluate.evaluate``): raw scores."""
        return self.score(users, histories)
