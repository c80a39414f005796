"""Exercises of chapter 00 (welcome and data)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import Dataset
from . import register


def _toy_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    n = 3500  # 29 users, about 120 interactions each
    inter = pd.DataFrame({"user_id": rng.integers(1, 30, n), "item_id": rng.integers(1, 40, n),
                          "timestamp": rng.integers(0, 10_000, n)})
    items = pd.DataFrame({"item_id": np.arange(1, 40), "title": [f"item {i}" for i in range(1, 40)],
                          "category": [["Books", "Toys", "Garden"][i % 3] for i in range(1, 40)],
                          "brand": [["Acme", "Brio", "Cora", "Dune", "Elm"][i % 5] for i in range(1, 40)]})
    return Dataset("toy", inter, items)


def _column_share(dataset: Dataset, column: str) -> float:
    """Share of the interactions on the most frequent value of an item column (a fraction)."""
    merged = dataset.interactions.merge(dataset.items[["item_id", column]], on="item_id")
    return float(merged[column].value_counts(normalize=True).iloc[0])


def _wrong_00_1(dataset: Dataset) -> list[tuple[str, object]]:
    share = _column_share(dataset, "brand")
    items_share = float(dataset.items["brand"].value_counts(normalize=True).iloc[0])
    merged = dataset.interactions.merge(dataset.items[["item_id", "brand"]], on="item_id")
    return [
        ("the most popular category's share (the chapter's bar chart)", _column_share(dataset, "category")),
        ("a percentage instead of a fraction", 100 * share),
        ("the brand's share of the catalogue's items, not of the interactions", items_share),
        ("the number of interactions instead of the share", float(merged["brand"].value_counts().iloc[0])),
        ("the least popular brand's share", float(merged["brand"].value_counts(normalize=True).iloc[-1])),
    ]


@register(
    "00.1",
    "share of the shop's interactions that go to its most popular brand (a fraction)",
    "join interactions with items on item_id, then value_counts(normalize=True) on brand and take the largest",
    example_context=lambda: {"dataset": _toy_dataset()},
    rtol=1e-6,
    wrong_answers=_wrong_00_1,
)
def most_popular_brand_share(dataset: Dataset) -> float:
    return _column_share(dataset, "brand")


def _wrong_00_2(dataset: Dataset) -> list[tuple[str, object]]:
    lengths = dataset.interactions.groupby("user_id").size()
    return [
        ("at least 100 (>= instead of >)", int((lengths >= 100).sum())),
        ("the users with at most 100", int((lengths <= 100).sum())),
        ("their share instead of their number", float((lengths > 100).mean())),
        ("their ratings instead of the users", int(lengths[lengths > 100].sum())),
        ("all users", len(lengths)),
    ]


@register(
    "00.2",
    "number of MovieLens-100K users with more than 100 ratings",
    "group the interactions by user_id, count with .size(), and count the users above 100",
    example_context=lambda: {"dataset": _toy_dataset()},
    wrong_answers=_wrong_00_2,
)
def users_over_100(dataset: Dataset) -> int:
    lengths = dataset.interactions.groupby("user_id").size()
    return int((lengths > 100).sum())


def _share_of_top(counts, top: int) -> float:
    counts = np.sort(np.asarray(counts, dtype=float))[::-1]
    return float(counts[:top].sum() / counts.sum())


def _top_share(counts, fraction: float) -> float:
    return _share_of_top(counts, int(np.ceil(fraction * len(counts))))


@register(
    "00.3",
    "top_share(counts, fraction): share of interactions on the most popular fraction of items",
    "sort the counts in decreasing order, keep the first ceil(fraction * n) and divide their sum by the total",
    cases=lambda: [([5, 1, 1, 1], 0.25), ([3, 3, 2, 2, 10], 0.5), ([1, 1, 1, 1, 1, 1, 1], 0.1),
                   (np.array([0, 9, 1]), 1 / 3), ([4, 1, 2, 8, 1, 3, 1, 1, 1, 6], 0.25)],
    wrong_answers=lambda: [
        ("rounding the number of items down", lambda c, f: _share_of_top(c, int(np.floor(f * len(c))))),
        ("rounding to the nearest", lambda c, f: _share_of_top(c, round(f * len(c)))),
        ("the counts not sorted", lambda c, f: float(np.asarray(c, float)[: int(np.ceil(f * len(c)))].sum()
                                                     / np.asarray(c, float).sum())),
        ("sorted increasing (the least popular items)", lambda c, f: float(
            np.sort(np.asarray(c, float))[: int(np.ceil(f * len(c)))].sum() / np.asarray(c, float).sum())),
        ("a percentage", lambda c, f: 100 * _top_share(c, f)),
    ],
)
def top_share_reference():
    return _top_share
