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
    inputs[:, :3] = 0                                     # left padding, as the collator makes it
    hidden = (rng.random((6, 10)) < 0.25) & (inputs != 0)
    hidden[:, -1] |= ~hidden.any(axis=1)                  # at least one hidden item per row
    labels[hidden] = inputs[hidden]
    inputs[hidden] = 51
    return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}


def _masked_wrong_answers(batch: dict) -> list[tuple[str, object]]:
    labels = np.asarray(batch["labels"])
    inputs = np.asarray(batch["input_ids"])
    hidden = int((labels != IGNORE).sum())
    return [("labels != 0 (every position: -100 is not 0)", int((labels != 0).sum())),
            ("the non-padding positions (input_ids != 0)", int((inputs != 0).sum())),
            ("the share instead of the count", hidden / labels.size),
            ("the rows with a hidden item", int((labels != IGNORE).any(axis=1).sum())),
            ("the first row only", int((labels[0] != IGNORE).sum())),
            ("the positions that are not hidden", int((labels == IGNORE).sum()))]


@register(
    "06.1",
    "how many items did the masked-item collator hide in the batch (all rows together)?",
    "a hidden item is a position whose label is not -100: count them with (batch['labels'] != -100).sum()",
    example_context=lambda: {"batch": _toy_batch()},
    wrong_answers=_masked_wrong_answers,
)
def masked_count(batch: dict) -> int:
    return int((np.asarray(batch["labels"]) != IGNORE).sum())


def _toy_lists() -> dict:
    rng = np.random.default_rng(1)
    lists = np.stack([rng.choice(np.arange(1, 60), 10, replace=False) for _ in range(40)])
    targets = np.where(rng.random(40) < 0.5, lists[np.arange(40), rng.integers(0, 10, 40)], 60 + np.arange(40))
    return {"lists": lists, "targets": targets}


def _hits(lists, targets, k: int) -> np.ndarray:
    lists, targets = np.asarray(lists), np.asarray(targets)
    return (lists[:, :k] == targets[:, None]).any(axis=1)


def _hr5_wrong_answers(lists, targets) -> list[tuple[str, object]]:
    hr5 = float(_hits(lists, targets, 5).mean())
    return [("HR@10 (the whole list)", float(_hits(lists, targets, 10).mean())),
            ("the first 4 items (off by one)", float(_hits(lists, targets, 4).mean())),
            ("the first 6 items (off by one)", float(_hits(lists, targets, 6).mean())),
            ("the number of users with a hit", int(_hits(lists, targets, 5).sum())),
            ("a percentage", 100 * hr5), ("the share of users without a hit", 1 - hr5)]


@register(
    "06.2",
    "HR@5 of the greedy lists that generate() wrote: the share of users whose test item is among the first 5",
    "keep the first 5 columns and compare each row with its target: "
    "(lists[:, :5] == targets[:, None]).any(axis=1).mean()",
    example_context=_toy_lists,
    wrong_answers=_hr5_wrong_answers,
)
def hit_rate_at_5(lists, targets) -> float:
    return float(_hits(lists, targets, 5).mean())


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


def _neighbour_wrong_answers(**_) -> list[tuple[str, object]]:
    def dot_product(vectors, i, k):                         # not normalised: long rows win
        v = np.asarray(vectors, dtype=np.float64)
        sim = v @ v[i]
        sim[i] = -np.inf
        return np.argsort(-sim, kind="stable")[:k]

    def with_itself(vectors, i, k):                         # i is its own nearest neighbour
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return np.argsort(-(v @ v[i]), kind="stable")[:k]

    def least_similar(vectors, i, k):
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        sim = v @ v[i]
        sim[i] = np.inf
        return np.argsort(sim, kind="stable")[:k]

    def euclidean(vectors, i, k):                           # nearest by distance, rows not normalised
        v = np.asarray(vectors, dtype=np.float64)
        d = np.linalg.norm(v - v[i], axis=1)
        d[i] = np.inf
        return np.argsort(d, kind="stable")[:k]

    return [("dot products of unnormalised rows", dot_product), ("item i itself included", with_itself),
            ("least similar first", least_similar), ("Euclidean distance of unnormalised rows", euclidean),
            ("k + 1 neighbours", lambda vectors, i, k: _text_neighbours(vectors, i, k + 1))]


@register(
    "06.3",
    "text_neighbours(vectors, i, k): the k items whose text vectors are most cosine-similar to item i's "
    "(not i itself), most similar first",
    "normalise the rows to length 1, take dot products with row i, set row i's own similarity to -inf, "
    "argsort descending",
    cases=lambda: _neighbour_cases(),
    wrong_answers=_neighbour_wrong_answers,
)
def text_neighbours_reference():
    return _text_neighbours
