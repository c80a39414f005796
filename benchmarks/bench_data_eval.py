#!/usr/bin/env python
"""Data and evaluation speed: ML-1M load from cache, LOO split, full-ranking evaluation.

    .venv/bin/python benchmarks/bench_data_eval.py   # -> benchmarks/results/data_eval.json

Targets (issue "Foundation", 2 CPU cores): ML-1M load from cache ≤ 3 s; full-ranking
evaluation of a random score matrix, 6,040 users × 3,706 items, k ∈ {5, 10, 20}, ≤ 2 s.
Each figure is the median of several runs (the first load warms the OS file cache).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from course_lib.data import leave_one_out, load_dataset
from course_lib.evaluate import evaluate

OUT = Path(__file__).resolve().parent / "results" / "data_eval.json"


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def main() -> None:
    load_dataset("ml-1m")  # make sure it is cached and the page cache is warm
    load_s, load_all, ds = timed(lambda: load_dataset("ml-1m"), 5)
    split_s, split_all, split = timed(lambda: leave_one_out(ds), 3)
    scores = torch.rand(split.n_users, split.n_items + 1, generator=torch.Generator().manual_seed(0))
    eval_s, eval_all, metrics = timed(lambda: evaluate(scores, split, ks=(5, 10, 20), device="cpu"), 5)
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(terse=True), "load_average": os.getloadavg()},
        "ml1m_load_from_cache_s": {"median": load_s, "runs": load_all, "target": 3.0},
        "loo_split_s": {"median": split_s, "runs": split_all, "users": split.n_users, "items": split.n_items},
        "full_ranking_eval_random_scores_s": {"median": eval_s, "runs": eval_all, "target": 2.0,
                                              "users": split.n_users, "items": split.n_items,
                                              "ks": [5, 10, 20], "metrics": metrics},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"ML-1M load from cache  {load_s:6.2f} s  (target ≤ 3 s)")
    print(f"leave-one-out split    {split_s:6.2f} s")
    print(f"full-ranking eval      {eval_s:6.2f} s  (target ≤ 2 s; {split.n_users} × {split.n_items}, k = 5/10/20)")
    print(f"-> {OUT.relative_to(OUT.parents[2])}")


if __name__ == "__main__":
    main()
