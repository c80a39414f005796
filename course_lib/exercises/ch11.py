"""Exercises of chapter 11 (responsible recommendation)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import register


def _qi_context() -> dict:
    table = pd.DataFrame({"zip": ["021**", "021**", "021**", "100**", "100**"],
                          "age": ["25-34", "25-34", "25-34", "18-24", "25-34"],
                          "gender": ["F", "F", "M", "F", "F"]})
    return {"table": table}


def _unique_share(table: pd.DataFrame, cols: list[str]) -> float:
    sizes = table.groupby(cols)[cols[0]].transform("size")
    return float((sizes == 1).mean())


@register(
    "11.1",
    "the share of rows of `table` that are alone in their equivalence class on (zip, age, gender)",
    "group the rows by all three columns at once; a row is unique when its group has size 1 "
    "(here 3 of the 5 rows)",
    example_context=_qi_context,
    rtol=1e-9,
    wrong_answers=lambda table: [
        ("k, the smallest class size", float(table.groupby(["zip", "age", "gender"]).size().min())),
        ("unique on zip and age only", _unique_share(table, ["zip", "age"])),
        ("the number of unique rows, not the share", 3.0),
    ],
)
def unique_share(table) -> float:
    return _unique_share(table, ["zip", "age", "gender"])


def _bound(epsilon: float, delta: float) -> float:
    return (math.exp(epsilon) - 1 + 2 * delta) / (math.exp(epsilon) + 1)


@register(
    "11.2",
    "the largest membership-inference advantage (TPR − FPR) possible against an (epsilon, delta)-DP model",
    "TPR ≤ e^ε FPR + δ and (1 − FPR) ≤ e^ε (1 − TPR) + δ together give "
    "TPR − FPR ≤ (e^ε − 1 + 2δ) / (e^ε + 1)",
    example_context=lambda: {"epsilon": 1.0, "delta": 1e-5},
    rtol=1e-6,
    wrong_answers=lambda epsilon, delta: [
        ("e^ε − 1 (only the first inequality)", math.exp(epsilon) - 1 + delta),
        ("ε itself", epsilon),
        ("the bound at ε = 2 (the next budget)", _bound(2 * epsilon, delta)),
    ],
)
def dp_advantage(epsilon: float, delta: float) -> float:
    return float(_bound(epsilon, delta))


def _tail_share(lists, tail, weighted=True) -> float:
    lists = np.asarray(lists)
    w = 1 / np.log2(np.arange(2, lists.shape[1] + 2)) if weighted else np.ones(lists.shape[1])
    w = np.broadcast_to(w, lists.shape)
    return float((w * np.isin(lists, tail)).sum() / w.sum())


@register(
    "11.3",
    "the share of the position-weighted exposure (1/log2(k+1) at position k) that the `tail` items get in `lists`",
    "sum the weights 1, 1/log2(3), 1/log2(4), … of the positions holding tail items, over all users, "
    "and divide by the sum of all weights",
    example_context=lambda: {"lists": np.array([[1, 4, 2], [5, 1, 6]]), "tail": np.array([4, 5, 6])},
    rtol=1e-6,
    wrong_answers=lambda lists, tail: [
        ("counting positions without weights", _tail_share(lists, tail, weighted=False)),
        ("the head's share", 1 - _tail_share(lists, tail)),
        ("weights 1/k instead of 1/log2(k+1)",
         float(sum(1 / (k + 1) for row in np.asarray(lists) for k, i in enumerate(row) if i in set(tail))
               / (len(lists) * sum(1 / (k + 1) for k in range(np.asarray(lists).shape[1]))))),
    ],
)
def tail_exposure(lists, tail) -> float:
    return _tail_share(lists, tail)


@register(
    "11.4",
    "the leave-one-out attributions of the history items: the score `full` minus each score `without` the item",
    "attribution_j = f(history) − f(history without item j); a large value means the item mattered",
    example_context=lambda: {"full": 2.0, "without": [1.2, 1.9, 0.5]},
    rtol=1e-9,
    wrong_answers=lambda full, without: [
        ("the scores without each item", list(map(float, without))),
        ("the sign flipped", [float(w - full) for w in without]),
        ("shares of the total", [float((full - w) / sum(full - x for x in without)) for w in without]),
    ],
)
def leave_one_out_values(full: float, without) -> list[float]:
    return [float(full - w) for w in without]
