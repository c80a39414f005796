"""Exercises of chapter 13 (language models as recommenders: re-ranking, semantic IDs, HSTU)."""

from __future__ import annotations

import numpy as np

from . import register


def _codes_context() -> dict:
    rng = np.random.default_rng(0)
    return {"codes": rng.integers(0, 4, (60, 3))}


def _collision_rate(codes) -> float:
    codes = np.asarray(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.ravel()] > 1).mean())


@register(
    "13.1",
    "the collision rate of `codes` (n_items, L): the share of items whose whole code tuple another item also has",
    "np.unique(codes, axis=0, return_inverse=True, return_counts=True) gives each item's tuple count; "
    "an item collides when its tuple's count is > 1 (course_lib.semantic_ids.collision_rate does this)",
    example_context=_codes_context,
    wrong_answers=lambda codes: [
        ("1 - distinct tuples / items (counts one item per tuple as fine)",
         1 - len(np.unique(np.asarray(codes), axis=0)) / len(codes)),
        ("collisions of the first level only", _collision_rate(np.asarray(codes)[:, :1])),
        ("after the suffix (always 0)", 0.0),
    ],
)
def collision_rate_answer(codes) -> float:
    return _collision_rate(codes)


def _attention_context() -> dict:
    rng = np.random.default_rng(1)
    T = 6
    logits = rng.normal(0, 2, (T, T))
    return {"logits": logits, "n": 10}


def _silu(x):
    return x / (1 + np.exp(-x))


@register(
    "13.2",
    "the total attention weight of the LAST query in HSTU: sum over keys j <= i of SiLU(logits[i, j]) / n",
    "take row i = T - 1 of `logits` (causal: every key j <= i is allowed), apply SiLU(x) = x·sigmoid(x), "
    "divide by n and sum. Unlike softmax, the result need not be 1",
    example_context=_attention_context,
    wrong_answers=lambda logits, n: [
        ("softmax instead (always 1)", 1.0),
        ("without the 1/n", float(_silu(np.asarray(logits)[-1]).sum())),
        ("the first query instead of the last", float(_silu(np.asarray(logits)[0, :1]).sum() / n)),
        ("ReLU instead of SiLU", float(np.maximum(np.asarray(logits)[-1], 0).sum() / n)),
    ],
)
def hstu_row_mass(logits, n) -> float:
    row = np.asarray(logits, dtype=float)[-1]                      # the last query sees every key
    return float(_silu(row).sum() / n)


def _rerank_context() -> dict:
    rng = np.random.default_rng(2)
    B, C = 40, 20
    candidates = np.stack([rng.permutation(np.arange(1, 200))[:C] for _ in range(B)])
    targets = np.where(rng.random(B) < 0.7, candidates[np.arange(B), rng.integers(0, C, B)], 999)
    scores = rng.normal(size=(B, C)) + 1.5 * (candidates == targets[:, None])
    return {"candidates": candidates, "scores": scores, "targets": targets}


def _ndcg(lists, targets, k=10):
    hits = lists[:, :k] == np.asarray(targets)[:, None]
    pos = np.where(hits.any(1), hits.argmax(1), -1)
    return np.where(pos >= 0, 1.0 / np.log2(pos + 2.0), 0.0)


@register(
    "13.3",
    "the mean NDCG@10 after re-ranking each row of `candidates` by `scores` (highest first); one target per row",
    "order = np.argsort(-scores, axis=1); lists = np.take_along_axis(candidates, order, axis=1); then NDCG@10 "
    "with one relevant item is 1/log2(rank + 1) if the target is in the top 10, else 0 "
    "(course_lib.rerank.rerank and ndcg_of_lists)",
    example_context=_rerank_context,
    wrong_answers=lambda candidates, scores, targets: [
        ("before re-ranking", float(_ndcg(np.asarray(candidates), targets).mean())),
        ("lowest score first", float(_ndcg(np.take_along_axis(np.asarray(candidates), np.argsort(scores, 1), 1),
                                           targets).mean())),
        ("HR@10 instead of NDCG@10",
         float((np.take_along_axis(np.asarray(candidates), np.argsort(-scores, 1), 1)[:, :10]
                == np.asarray(targets)[:, None]).any(1).mean())),
    ],
)
def reranked_ndcg(candidates, scores, targets) -> float:
    lists = np.take_along_axis(np.asarray(candidates), np.argsort(-np.asarray(scores), axis=1, kind="stable"), axis=1)
    return float(_ndcg(lists, targets).mean())
