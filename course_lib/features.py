"""Feature pipelines: user, item and time features as model inputs, fitted on training data only.

Models so far read item ids (and, in chapter 06, item text). A shop knows more: an item's
category, brand and price; a user's age bracket or the hour they shop. This module turns
those columns into the two kinds of tensors a neural model eats:

* **categorical** columns → integer ids for an embedding table (:class:`CategoricalEncoder`).
  Id ``0`` is padding (the padding item row), id ``1`` is the *unknown* bucket: a value not
  seen when fitting (out of vocabulary, OOV), a value rarer than ``min_count``, or a missing
  value. Known values get ``2 ..`` in order of frequency.
* **numeric** columns → floats (:class:`NumericEncoder`): optionally ``log1p``-transformed,
  clipped at training quantiles (outliers), missing values filled with the training median
  (plus a 0/1 "was missing" flag), then standardised ``(x - mean) / std``; or cut into
  quantile **buckets** (ids, like a categorical column).

Every statistic (vocabulary, quantiles, mean, std, median) is fitted on **training data
only**. Fitting on all data leaks the future into the features. Two cases, measured in
chapter 09: :func:`item_count_feature`, an item popularity counted over the whole log, which
includes each held-out target but adds only one count to a count of dozens (a global
ranking hardly moves); and :func:`user_group_counts`, a per-user category profile counted
over the whole log, which puts each user's own test item into that user's profile (and
flatters a ranking by it measurably).

Dataset recipes: :func:`shop_item_features`, :func:`movielens_item_features`,
:func:`movielens_user_features`, and the per-event time features of a sequence,
:func:`time_features` (hour, weekday, position in the session, gap since the previous event).

Shapes: ``N = n_items + 1`` item rows (row 0 = padding), ``F`` feature columns.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .data.protocol import PAD, LeaveOneOutSplit

logger = logging.getLogger(__name__)

UNKNOWN = 1       # the id of the out-of-vocabulary / missing bucket
FIRST_KNOWN = 2   # the first id of a known value

SESSION_GAP_S = 30 * 60   # a gap longer than this starts a new session


# ============================================================================ encoders
@dataclass
class CategoricalEncoder:
    """Map a categorical column to embedding ids: 0 padding, 1 unknown, 2.. known values.

    Args:
        min_count: values seen fewer times than this when fitting go to the unknown bucket
            (rare values get an embedding that is never trained well; pooling them helps).
        max_size: keep at most this many known values (the most frequent).
    """

    min_count: int = 1
    max_size: int | None = None
    vocab: dict = field(default_factory=dict, repr=False)
    fitted: bool = field(default=False, repr=False)

    def fit(self, values: Sequence | pd.Series) -> "CategoricalEncoder":
        """Learn the vocabulary from training values (missing values are not counted)."""
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        counts = pd.Series(values).dropna().value_counts(sort=False)
        counts = counts[counts >= self.min_count]
        # most frequent first; ties by the value's text so the ids do not depend on row order
        order = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        if self.max_size is not None:
            order = order[: self.max_size]
        self.vocab = {v: FIRST_KNOWN + i for i, (v, _) in enumerate(order)}
        self.fitted = True
        return self

    @property
    def cardinality(self) -> int:
        """Rows the embedding table needs: padding + unknown + known values."""
        return FIRST_KNOWN + len(self.vocab)

    def transform(self, values: Sequence | pd.Series) -> np.ndarray:
        """``(n,)`` int64 ids; unseen, rare or missing values → 1 (unknown)."""
        if not self.fitted:
            raise RuntimeError("CategoricalEncoder is not fitted; call fit(training_values) first")
        s = pd.Series(values)
        return s.map(self.vocab).fillna(UNKNOWN).astype(np.int64).to_numpy().copy()

    def fit_transform(self, values: Sequence | pd.Series) -> np.ndarray:
        return self.fit(values).transform(values)


@dataclass
class NumericEncoder:
    """Standardise or bucketise a numeric column with statistics fitted on training values.

    Args:
        log: apply ``log1p`` first (prices, counts: long right tails). Needs values >= 0.
        clip: clip at these training quantiles ``(low, high)`` (outliers), or ``None``.
        missing: ``"median"`` (fill with the training median) or ``"mean"``; either way
            :meth:`missing_flag` tells a model which values were filled.
        n_buckets: for :meth:`bucketize`: quantile buckets (ids ``2 .. n_buckets + 1``;
            1 = missing).
    """

    log: bool = False
    clip: tuple[float, float] | None = (0.01, 0.99)
    missing: Literal["median", "mean"] = "median"
    n_buckets: int = 10
    stats: dict = field(default_factory=dict, repr=False)

    def _prep(self, values) -> np.ndarray:
        x = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=np.float64)
        if self.log:
            if np.nanmin(x, initial=0.0) < 0:
                raise ValueError("log=True needs values >= 0 (log1p); shift the column or use log=False")
            x = np.log1p(x)
        return x

    def fit(self, values) -> "NumericEncoder":
        """Learn clip bounds, fill value, mean, std and bucket edges from training values."""
        if self.missing not in ("median", "mean"):
            raise ValueError(f"missing must be 'median' or 'mean', got {self.missing!r}")
        x = self._prep(values)
        x = x[np.isfinite(x)]
        if len(x) == 0:
            raise ValueError("no finite training value to fit on; check the column")
        lo, hi = (np.quantile(x, self.clip[0]), np.quantile(x, self.clip[1])) if self.clip else (-np.inf, np.inf)
        xc = np.clip(x, lo, hi)
        fill = float(np.median(xc) if self.missing == "median" else xc.mean())
        std = float(xc.std())
        edges = np.unique(np.quantile(xc, np.linspace(0, 1, self.n_buckets + 1)[1:-1]))
        self.stats = {"lo": float(lo), "hi": float(hi), "fill": fill, "mean": float(xc.mean()),
                      "std": std if std > 0 else 1.0, "edges": edges}
        return self

    def _filled(self, values) -> tuple[np.ndarray, np.ndarray]:
        if not self.stats:
            raise RuntimeError("NumericEncoder is not fitted; call fit(training_values) first")
        x = self._prep(values)
        miss = ~np.isfinite(x)
        x = np.where(miss, self.stats["fill"], np.clip(x, self.stats["lo"], self.stats["hi"]))
        return x, miss

    def transform(self, values) -> np.ndarray:
        """``(n,)`` float32 standardised values (missing → the fill value, standardised)."""
        x, _ = self._filled(values)
        return ((x - self.stats["mean"]) / self.stats["std"]).astype(np.float32)

    def missing_flag(self, values) -> np.ndarray:
        """``(n,)`` float32: 1 where the value was missing (and filled), else 0."""
        return (~np.isfinite(self._prep(values))).astype(np.float32)

    def bucketize(self, values) -> np.ndarray:
        """``(n,)`` int64 bucket ids: ``2 ..`` by training quantiles, 1 for missing values."""
        x, miss = self._filled(values)
        ids = np.searchsorted(self.stats["edges"], x, side="right") + FIRST_KNOWN
        return np.where(miss, UNKNOWN, ids).astype(np.int64)

    @property
    def n_bucket_ids(self) -> int:
        """Rows an embedding of :meth:`bucketize` ids needs."""
        return FIRST_KNOWN + len(self.stats["edges"]) + 1


# ============================================================================ item features
@dataclass
class ItemFeatures:
    """Item features aligned with a split's internal ids.

    Attributes:
        categorical: ``(N, F_c)`` int64 ids (row 0 = padding = all zeros).
        numeric: ``(N, F_n)`` float32 (row 0 zeros).
        cat_names, num_names: the column names, in order.
        cardinalities: embedding rows each categorical column needs.
        encoders: the fitted encoders, by column (to transform new items the same way).
    """

    categorical: np.ndarray
    numeric: np.ndarray
    cat_names: list[str]
    num_names: list[str]
    cardinalities: list[int]
    encoders: dict = field(default_factory=dict, repr=False)

    def frame(self) -> pd.DataFrame:
        """The features as one table (for looking at)."""
        df = pd.DataFrame(self.categorical, columns=self.cat_names)
        for j, n in enumerate(self.num_names):
            df[n] = self.numeric[:, j]
        return df


def training_item_mask(split: LeaveOneOutSplit) -> np.ndarray:
    """``(N,)`` bool: items that occur in some training history (the only rows to fit on)."""
    mask = np.zeros(split.n_items + 1, dtype=bool)
    for seq in split.train:
        mask[seq] = True
    mask[PAD] = False
    return mask


def _item_table_features(split: LeaveOneOutSplit, cat_cols: dict[str, pd.Series], num_cols: dict[str, pd.Series],
                         *, fit_rows: np.ndarray | None, min_count: int, log_cols: Sequence[str] = ()) -> ItemFeatures:
    fit = training_item_mask(split) if fit_rows is None else np.asarray(fit_rows, dtype=bool)
    n = split.n_items + 1
    cats, cards, encs = [], [], {}
    for name, col in cat_cols.items():
        enc = CategoricalEncoder(min_count=min_count).fit(col[fit])
        ids = enc.transform(col)
        ids[PAD] = PAD
        cats.append(ids)
        cards.append(enc.cardinality)
        encs[name] = enc
    nums = []
    num_names = []
    for name, col in num_cols.items():
        enc = NumericEncoder(log=name in log_cols).fit(col[fit])
        encs[name] = enc
        nums.append(enc.transform(col))
        num_names.append(name)
        flag = enc.missing_flag(col)
        if flag[1:].any():
            nums.append(flag)
            num_names.append(f"{name}_missing")
    cat = np.stack(cats, axis=1) if cats else np.zeros((n, 0), np.int64)
    num = np.stack(nums, axis=1).astype(np.float32) if nums else np.zeros((n, 0), np.float32)
    num[PAD] = 0.0
    return ItemFeatures(cat, num, list(cat_cols), num_names, cards, encs)


def shop_item_features(split: LeaveOneOutSplit, *, fit_rows: np.ndarray | None = None,
                       min_count: int = 2) -> ItemFeatures:
    """The shop's item features: category, product type, brand, price bucket (categorical);
    log price standardised, and the item's age at the end of the log (numeric).

    Args:
        split: a split of the shop (its ``items`` table has category, product_type, brand,
            price, release_timestamp).
        fit_rows: ``(N,)`` bool rows to fit the encoders on (default: items seen in training).
            Items outside it, such as a category launched later, get the unknown bucket
            for values their training rows never had.
        min_count: rarer values go to the unknown bucket.
    """
    items = split.items
    need = {"category", "product_type", "brand", "price", "release_timestamp"}
    if not need <= set(items.columns):
        raise ValueError(f"shop_item_features needs item columns {sorted(need)}; found {list(items.columns)}")
    price = items["price"].astype(float)
    fit = training_item_mask(split) if fit_rows is None else np.asarray(fit_rows, dtype=bool)
    price_enc = NumericEncoder(log=True, n_buckets=8).fit(price[fit])
    end = max(int(t[-3]) if len(t) >= 3 else int(t[0]) for t in split.timestamps) if split.timestamps else 0
    age_days = (end - items["release_timestamp"].astype(float)) / 86400.0
    feats = _item_table_features(
        split,
        {"category": items["category"], "product_type": items["product_type"], "brand": items["brand"],
         "price_bucket": pd.Series(price_enc.bucketize(price)).astype(str)},
        {"log_price": price, "age_days": age_days.clip(lower=0)},
        fit_rows=fit, min_count=min_count, log_cols=("log_price",))
    feats.encoders["price_bucketizer"] = price_enc
    return feats


_YEAR = re.compile(r"\((\d{4})\)\s*$")


def movielens_item_features(split: LeaveOneOutSplit, *, fit_rows: np.ndarray | None = None,
                            max_genres: int = 3) -> ItemFeatures:
    """MovieLens item features: up to ``max_genres`` genre slots and the decade (categorical),
    the release year standardised (numeric; missing when neither a ``year`` column nor the
    title, as in ``"Toy Story (1995)"``, gives one). Genres are ``"A|B|C"``.
    """
    items = split.items
    if "title" not in items.columns or "genres" not in items.columns:
        raise ValueError(f"movielens_item_features needs 'title' and 'genres' columns; found {list(items.columns)}")
    titles = items["title"].fillna("").astype(str)
    year = titles.map(lambda t: float(m.group(1)) if (m := _YEAR.search(t)) else np.nan)
    if "year" in items.columns:           # a loader that already split the year off the title
        given = pd.to_numeric(items["year"], errors="coerce").astype("float64")
        year = given.where(given > 0).fillna(year)
    year = pd.Series(np.asarray(year, dtype=np.float64), index=items.index)
    genres = items["genres"].fillna("").astype(str).str.split("|")
    slots = {f"genre_{k}": genres.map(lambda g, k=k: g[k] if len(g) > k and g[k] else None) for k in range(max_genres)}
    decade = year.map(lambda y: None if np.isnan(y) else f"{int(y) // 10 * 10}s")
    return _item_table_features(split, {**slots, "decade": decade}, {"year": year}, fit_rows=fit_rows, min_count=1)


def movielens_user_features(split: LeaveOneOutSplit, users: pd.DataFrame) -> tuple[np.ndarray, list[int], list[str]]:
    """ML-1M user features aligned with the split's internal users.

    Gender, age bracket, occupation and the first digit of the zip code (a coarse region),
    as categorical ids. The vocabulary is fitted on the split's users (a user table holds no
    future: every user is known at training time).

    Returns:
        ``(U, 4)`` int64 ids, the cardinalities, the column names.
    """
    need = {"user_id", "gender", "age", "occupation", "zip_code"}
    if not need <= set(users.columns):
        raise ValueError(f"movielens_user_features needs columns {sorted(need)}; found {list(users.columns)}")
    table = users.set_index("user_id").reindex(split.user_ids)
    cols = {"gender": table["gender"], "age": table["age"].astype("Int64").astype(str),
            "occupation": table["occupation"].astype("Int64").astype(str),
            "zip1": table["zip_code"].astype(str).str[:1]}
    ids, cards = [], []
    for col in cols.values():
        enc = CategoricalEncoder().fit(col)
        ids.append(enc.transform(col))
        cards.append(enc.cardinality)
    return np.stack(ids, axis=1), cards, list(cols)


# ============================================================================ time features
TIME_FEATURES = ("hour", "weekday", "session_pos", "gap_bucket")
TIME_CARDINALITIES = (2 + 6, 2 + 7, 2 + 4, 2 + 6)


def time_features(timestamps: np.ndarray, *, utc_offset_h: int = 0) -> np.ndarray:
    """Per-event time features of one user's sequence, as categorical ids.

    For event ``t`` (Unix seconds): the hour in 4-hour blocks (6 values), the weekday (7),
    the position in its session (1, 2, 3, 4+; a session ends after a 30-minute gap) and the
    gap since the previous event in buckets (first event, < 5 min, < 1 h, < 1 day, < 1 week,
    longer). Ids start at 2 (0 = padding, 1 = unknown), as the encoders'.

    Args:
        timestamps: ``(L,)`` non-decreasing seconds.

    Returns:
        ``(L, 4)`` int64 ids, columns :data:`TIME_FEATURES`.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.ndim != 1:
        raise ValueError(f"timestamps must be 1-D, got shape {ts.shape}")
    if len(ts) and (np.diff(ts) < 0).any():
        raise ValueError("timestamps go backwards; sort the user's events by time first")
    local = ts + utc_offset_h * 3600
    hour = (local // 3600) % 24 // 4
    weekday = (local // 86400 + 3) % 7            # 1970-01-01 was a Thursday: Monday = 0
    gap = np.diff(ts, prepend=ts[:1] - 10**9) if len(ts) else ts
    new_session = gap > SESSION_GAP_S
    pos = np.zeros(len(ts), dtype=np.int64)
    run = 0
    for i, ns in enumerate(new_session):
        run = 0 if ns else run + 1
        pos[i] = min(run, 3)
    gap_b = np.searchsorted(np.array([300, 3600, 86400, 7 * 86400]), gap, side="right") + 1
    gap_b[:1] = 0                                  # the first event: no previous one
    out = np.stack([hour, weekday, pos, gap_b], axis=1) + FIRST_KNOWN
    return out.astype(np.int64)


def split_time_features(split: LeaveOneOutSplit) -> list[np.ndarray]:
    """Per user, :func:`time_features` of the whole sequence (train, valid, test): ``(L_u, 4)``."""
    if not split.timestamps:
        raise ValueError("the split has no timestamps; build it with course_lib.data.leave_one_out")
    return [time_features(t) for t in split.timestamps]


def context_at(time_feats: list[np.ndarray], positions: np.ndarray, users: np.ndarray) -> np.ndarray:
    """``(B, 4)`` the time features of each user's *last history event* before ``positions``.

    ``positions[b]`` is the index of the target in user ``users[b]``'s full sequence; the
    context is what is known when the request comes: the last event before it.
    """
    out = np.full((len(users), len(TIME_FEATURES)), UNKNOWN, dtype=np.int64)
    for b, (u, p) in enumerate(zip(users, positions)):
        if p >= 1:
            out[b] = time_feats[u][p - 1]
    return out


def stage_context(split: LeaveOneOutSplit, time_feats: list[np.ndarray], stage: str) -> np.ndarray:
    """``(U, 4)`` every user's context at ``stage`` (``"valid"``: target at L-2, ``"test"``: L-1)."""
    users = np.arange(split.n_users)
    offset = 2 if stage == "valid" else 1
    positions = np.array([len(t) - offset for t in split.timestamps])
    return context_at(time_feats, positions, users)


# ============================================================================ leakage
def item_count_feature(split: LeaveOneOutSplit, stage: str = "test", *,
                       fit_on: Literal["train", "all"] = "train") -> np.ndarray:
    """``(N,)`` an item-popularity feature: interactions per item, counted on ``fit_on``.

    ``"train"`` counts the histories available at ``stage`` (what a model may know);
    ``"all"`` counts every interaction in the split, including the held-out targets: the
    leak. A model that ranks by it sees each test target's own interaction.
    """
    if fit_on not in ("train", "all"):
        raise ValueError(f"fit_on must be 'train' or 'all', got {fit_on!r}")
    counts = np.zeros(split.n_items + 1, dtype=np.float64)
    for seq in split.history(stage):
        np.add.at(counts, seq, 1)
    if fit_on == "all":
        if stage == "valid":
            np.add.at(counts, split.valid, 1)
        np.add.at(counts, split.test, 1)
    counts[PAD] = 0
    return counts


def user_group_counts(split: LeaveOneOutSplit, groups: np.ndarray, stage: str = "test", *,
                      fit_on: Literal["train", "all"] = "train") -> np.ndarray:
    """``(U, G + 1)`` a user-profile feature: each user's interactions per item group (e.g. category).

    ``groups`` ``(N,)`` gives each item's group id (1..G, 0 = padding). ``"train"`` counts
    the history available at ``stage``; ``"all"`` also counts the held-out target(s) up to
    and including ``stage``: a profile built by a batch job over the whole log. Unlike a
    global count (:func:`item_count_feature`, where each target adds 1 to a count of dozens),
    here the leak lands on the one user it helps: the test item's category gains a share of
    that user's profile.
    """
    if fit_on not in ("train", "all"):
        raise ValueError(f"fit_on must be 'train' or 'all', got {fit_on!r}")
    groups = np.asarray(groups)
    if groups.shape != (split.n_items + 1,):
        raise ValueError(f"groups must have shape ({split.n_items + 1},), got {groups.shape}")
    U, G = split.n_users, int(groups.max())
    counts = np.zeros((U, G + 1), dtype=np.float64)
    for u, seq in enumerate(split.history(stage)):
        np.add.at(counts[u], groups[np.asarray(seq)], 1)
    if fit_on == "all":
        rows = np.arange(U)
        if stage == "valid":
            np.add.at(counts, (rows, groups[split.valid]), 1)
        np.add.at(counts, (rows, groups[split.test]), 1)
    counts[:, PAD] = 0
    return counts


__all__ = [
    "CategoricalEncoder", "FIRST_KNOWN", "ItemFeatures", "NumericEncoder", "SESSION_GAP_S", "TIME_CARDINALITIES",
    "TIME_FEATURES", "UNKNOWN", "context_at", "item_count_feature", "movielens_item_features",
    "movielens_user_features", "shop_item_features", "split_time_features", "stage_context", "time_features",
    "training_item_mask", "user_group_counts",
]
