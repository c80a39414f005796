"""Exercises of chapter 07 (inference and serving)."""

from __future__ import annotations

import numpy as np

from . import register


def _toy_lists(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    histories = [rng.choice(np.arange(1, 60), size=rng.integers(3, 15), replace=False) for _ in range(25)]
    top = np.stack([rng.choice(np.arange(1, 60), size=10, replace=False) for _ in range(25)])
    return {"top": top, "histories": histories}


def _seen_counts(top, histories) -> np.ndarray:
    return np.array([int(np.isin(row, np.asarray(h)).sum()) for row, h in zip(np.asarray(top), histories)])


def _seen_wrong_answers(top, histories) -> list[tuple[str, object]]:
    top = np.asarray(top)
    counts = _seen_counts(top, histories)
    share = counts.sum() / top.size
    last5 = _seen_counts(top, [np.asarray(h)[-5:] for h in histories])
    return [("the number of slots, not the share", int(counts.sum())), ("a percentage", 100 * share),
            ("the share of useful slots (1 - share)", 1 - share),
            ("the share of users with at least one seen item", float((counts > 0).mean())),
            ("only the last 5 items of each history", last5.sum() / top.size),
            ("divided by the number of users, not of slots", counts.sum() / len(top))]


@register(
    "07.1",
    "share of the unmasked top-k slots taken by items the user already has",
    "for each user count the items of their top-k list that are in their history (np.isin), "
    "add over users, divide by the number of slots (users × k)",
    example_context=_toy_lists,
    wrong_answers=_seen_wrong_answers,
)
def seen_share(top, histories) -> float:
    top = np.asarray(top)
    return int(_seen_counts(top, histories).sum()) / top.size


def _recall(approx, exact) -> float:
    approx, exact = np.asarray(approx), np.asarray(exact)
    return float(np.mean([len(set(a.tolist()) & set(e.tolist())) / len(e) for a, e in zip(approx, exact)]))


def _recall_wrong_answers(**_) -> list[tuple[str, object]]:
    def positional(approx, exact):                          # the same item at the same position
        return float((np.asarray(approx) == np.asarray(exact)).mean())

    def overlap_count(approx, exact):                       # not divided by k
        return float(np.mean([len(set(a) & set(e)) for a, e in zip(np.asarray(approx).tolist(),
                                                                    np.asarray(exact).tolist())]))

    def summed(approx, exact):                              # summed over rows instead of averaged
        return _recall(approx, exact) * len(np.asarray(exact))

    def any_found(approx, exact):                           # share of rows with at least one exact item found
        return float(np.mean([bool(set(a) & set(e)) for a, e in zip(np.asarray(approx).tolist(),
                                                                    np.asarray(exact).tolist())]))

    return [("position by position", positional), ("the overlap count, not divided by k", overlap_count),
            ("summed over rows", summed), ("rows with any exact item found", any_found)]


@register(
    "07.2",
    "recall(approx, exact): mean share of each exact top-k list that the approximate list found",
    "per row: len(set(approx_row) & set(exact_row)) / k; then the mean over rows "
    "(the order inside a list does not matter)",
    cases=lambda: [([[1, 2, 3]], [[3, 2, 1]]), ([[1, 2, 3], [4, 5, 6]], [[1, 2, 9], [7, 8, 9]]),
                   (np.array([[10, 11], [12, 13], [14, 15]]), np.array([[11, 10], [12, 99], [98, 99]]))],
    wrong_answers=_recall_wrong_answers,
)
def recall_reference():
    return _recall


def _little_wrong_answers(result) -> list[tuple[str, object]]:
    c, mean_ms = float(result["concurrency"]), float(result["mean_ms"])
    out = [("the measured throughput, not the prediction", float(result["throughput_rps"])),
           ("milliseconds not converted to seconds", c / mean_ms),
           ("one client only (concurrency left out)", 1000.0 / mean_ms),
           ("latency / concurrency", mean_ms / 1000.0 / c)]
    for key in ("p50_ms", "p99_ms"):
        if key in result:
            out.append((f"{key[:3]} instead of the mean latency", c / (float(result[key]) / 1000.0)))
    return out


@register(
    "07.3",
    "Little's law: the throughput (requests/s) predicted from a load test's concurrency and mean latency",
    "in a closed loop each of the `concurrency` clients completes one request every mean latency: "
    "throughput = concurrency / (mean_ms / 1000)",
    rtol=1e-6,
    example_context=lambda: {"result": {"concurrency": 8, "mean_ms": 12.5, "throughput_rps": 610.0,
                                        "p50_ms": 10.5, "p99_ms": 41.0}},
    wrong_answers=_little_wrong_answers,
)
def littles_law(result) -> float:
    return float(result["concurrency"]) / (float(result["mean_ms"]) / 1000.0)
