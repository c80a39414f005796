"""Exercises of chapter 07 (inference and serving)."""

from __future__ import annotations

import numpy as np

from . import register


def _toy_lists(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    histories = [rng.choice(np.arange(1, 60), size=rng.integers(3, 15), replace=False) for _ in range(25)]
    top = np.stack([rng.choice(np.arange(1, 60), size=10, replace=False) for _ in range(25)])
    return {"top": top, "histories": histories}


@register(
    "07.1",
    "share of the unmasked top-k slots taken by items the user already has",
    "for each user count the items of their top-k list that are in their history (np.isin), "
    "add over users, divide by the number of slots (users × k)",
    example_context=_toy_lists,
)
def seen_share(top, histories) -> float:
    top = np.asarray(top)
    hits = sum(int(np.isin(row, np.asarray(h)).sum()) for row, h in zip(top, histories))
    return hits / top.size


def _recall(approx, exact) -> float:
    approx, exact = np.asarray(approx), np.asarray(exact)
    return float(np.mean([len(set(a.tolist()) & set(e.tolist())) / len(e) for a, e in zip(approx, exact)]))


@register(
    "07.2",
    "recall(approx, exact): mean share of each exact top-k list that the approximate list found",
    "per row: len(set(approx_row) & set(exact_row)) / k; then the mean over rows (the order inside a list does not matter)",
    cases=lambda: [([[1, 2, 3]], [[3, 2, 1]]), ([[1, 2, 3], [4, 5, 6]], [[1, 2, 9], [7, 8, 9]]),
                   (np.array([[10, 11], [12, 13], [14, 15]]), np.array([[11, 10], [12, 99], [98, 99]]))],
)
def recall_reference():
    return _recall


@register(
    "07.3",
    "Little's law: the throughput (requests/s) predicted from a load test's concurrency and mean latency",
    "in a closed loop each of the `concurrency` clients completes one request every mean latency: "
    "throughput = concurrency / (mean_ms / 1000)",
    rtol=1e-6,
    example_context=lambda: {"result": {"concurrency": 8, "mean_ms": 12.5, "throughput_rps": 610.0}},
)
def littles_law(result) -> float:
    return float(result["concurrency"]) / (float(result["mean_ms"]) / 1000.0)
