"""Exercises of chapter 06 (pretraining and fine-tuning)."""

from __future__ import annotations

import numpy as np

from . import register

IGNORE = -100  # the collator's label for positions that are not masked


def _toy_batch() -> dict:
    import torch

    rng = np.random.default_rng(0)
    labels = np.full((6, 10), IGNORE)
    inputs = rng.integers(1, 50, size=(6, 10))
    hidden = rng.random((6, 10)) < 0.25
    labels[hidden] = inputs[hidden]
    inputs[hidden] = 51
    return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}


@register(
    "06.1",
    "how many items did the masked-item collator hide in `batch` (all rows together)?",
    "a hidden item is a position whose label is not -100: count them with (batch['labels'] != -100).sum()",
    example_context=lambda: {"batch": _toy_batch()},
)
def masked_count(batch: dict) -> int:
    return int((np.asarray(batch["labels"]) != IGNORE).sum())


def _toy_lists() -> dict:
    rng = np.random.default_rng(1)
    lists = np.stack([rng.choice(np.arange(1, 60), 10, replace=False) for _ in range(40)])
    targets = np.where(rng.random(40) < 0.4, lists[np.arange(40), rng.integers(0, 10, 40)], 60 + np.arange(40))
    return {"lists": lists, "targets": targets}


@register(
    "06.2",
    "HR@10 of the greedy lists that generate() wrote: the share of users whose test item is in their list",
    "compare each row of lists with its target: (lists == targets[:, None]).any(axis=1).mean()",
    example_context=_toy_lists,
)
def hit_rate_of_lists(lists, targets) -> float:
    lists, targets = np.asarray(lists), np.asarray(targets)
    return float((lists[:, :10] == targets[:, None]).any(axis=1).mean())


def _text_neighbours(vectors, i, k):
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v[i]
    sim[i] = -np.inf
    return np.argsort(-sim, kind="stable")[:k]


def _neighbour_cases():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 8))
    b = rng.normal(size=(12, 384)) * rng.random((12, 1)) * 5  # rows of different lengths: cosine, not dot
    return [(a, 0, 3), (a, 17, 5), (b, 4, 4), (b, 11, 1)]


@register(
    "06.3",
    "text_neighbours(vectors, i, k): the k items whose text vectors are most cosine-similar to item i's (not i itself), most similar first",
    "normalise the rows to length 1, take dot products with row i, set row i's own similarity to -inf, argsort descending",
    cases=lambda: _neighbour_cases(),
)
def text_neighbours_reference():
    return _text_neighbours
