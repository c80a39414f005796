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
                          "category": [["Books", "Toys", "Garden"][i % 3] for i in range(1, 40)]})
    return Dataset("toy", inter, items)


@register(
    "00.1",
    "share of the shop's interactions that go to its most popular category",
    "join interactions with items on item_id, then value_counts(normalize=True) on category",
    example_context=lambda: {"dataset": _toy_dataset()},
)
def most_popular_category_share(dataset: Dataset) -> float:
    merged = dataset.interactions.merge(dataset.items[["item_id", "category"]], on="item_id")
    return float(merged["category"].value_counts(normalize=True).iloc[0])


@register(
    "00.2",
    "number of MovieLens-100K users with more than 100 ratings",
    "group the interactions by user_id, count with .size(), and count the users above 100",
    example_context=lambda: {"dataset": _toy_dataset()},
)
def users_over_100(dataset: Dataset) -> int:
    lengths = dataset.interactions.groupby("user_id").size()
    return int((lengths > 100).sum())


def _top_share(counts, fraction: float) -> float:
    counts = np.sort(np.asarray(counts, dtype=float))[::-1]
    top = int(np.ceil(fraction * len(counts)))
    return float(counts[:top].sum() / counts.sum())


@register(
    "00.3",
    "top_share(counts, fraction): share of interactions on the most popular fraction of items",
    "sort the counts in decreasing order, keep the first ceil(fraction * n) and divide their sum by the total",
    cases=lambda: [([5, 1, 1, 1], 0.25), ([3, 3, 2, 2, 10], 0.5), ([1, 1, 1, 1, 1, 1, 1], 0.1),
                   (np.array([0, 9, 1]), 1 / 3)],
)
def top_share_reference():
    return _top_share
