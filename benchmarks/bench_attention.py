#!/usr/bin/env python
"""Attention: forward + backward time of the teaching path against torch's fused kernel.

    python benchmarks/bench_attention.py  # CPU (and CUDA if present) -> benchmarks/results/attention.json
    python benchmarks/bench_attention.py --repeats 5 --lengths 50 100 200

Times ``course_lib.attention.scaled_dot_product_attention(q, k, v)`` with ``fast=False``
(matmul, softmax, matmul: the ``(B, 1, T, T)`` weights are materialised and kept for backward)
and ``fast=True`` (``torch.nn.functional.scaled_dot_product_attention``) on ``(B, H=1, T, d)``
inputs, the layout ``MultiHeadAttention`` uses: one head of width d = 64, a batch of 128 and
T ∈ {50, 100, 200, 400, 800}. Each measurement is a warm-up run followed by ``--repeats`` timed
runs of forward + ``.backward()``; the JSON keeps the median and the minimum. It also records
the bytes autograd saves for the backward pass (exact, from ``saved_tensors_hooks``).

Timings on a shared machine are inflated by whatever else runs: the JSON records the load
average before and after the run so a reader can judge.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.attention import scaled_dot_product_attention

OUT = ROOT / "benchmarks" / "results" / "attention.json"


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for backward while fn() runs (each storage once)."""
    storages: dict = {}

    def pack(t):
        storages[(t.untyped_storage().data_ptr(), str(t.device))] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(sum(storages.values()))


def measure(device: torch.device, T: int, fast: bool, batch: int, d: int, repeats: int) -> dict:
    g = torch.Generator(device="cpu").manual_seed(T)
    q, k, v = (torch.randn(batch, 1, T, d, generator=g).to(device).requires_grad_() for _ in range(3))  # (B, H=1, T, d)

    def step():
        out, _ = scaled_dot_product_attention(q, k, v, fast=fast)
        out.sum().backward()
        q.grad = k.grad = v.grad = None

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()                                                  # warm-up (allocations, kernel choice)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    mem = saved_bytes(lambda: scaled_dot_product_attention(q, k, v, fast=fast))
    return {"device": device.type, "T": T, "path": "fused" if fast else "teaching",
            "ms_median": 1e3 * float(np.median(times)), "ms_min": 1e3 * float(np.min(times)),
            "repeats": repeats, "saved_for_backward_MB": mem / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = []
    for device in devices:
        for T in args.lengths:
            for fast in (False, True):
                rows.append(measure(device, T, fast, args.batch, args.dim, args.repeats))
                r = rows[-1]
                print(f"{r['device']:4s} T={T:4d} {r['path']:8s} {r['ms_median']:9.1f} ms "
                      f"(min {r['ms_min']:.1f})  saved {r['saved_for_backward_MB']:8.1f} MB", flush=True)
    load_after = os.getloadavg()

    speedups = {}
    for device in devices:
        for T in args.lengths:
            pair = {r["path"]: r["ms_median"] for r in rows if r["device"] == device.type and r["T"] == T}
            speedups[f"{device.type}:T={T}"] = pair["teaching"] / pair["fused"]
    result = {
        "benchmark": "attention forward + backward, teaching path vs fused kernel",
        "command": "python benchmarks/bench_attention.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {"batch": args.batch, "heads": 1, "d": args.dim, "lengths": args.lengths,
                   "repeats": args.repeats, "dtype": "float32", "mask": None},
        "machine": {"platform": platform.platform(terse=True), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
        "caveat": ("wall-clock times on a machine shared with other jobs; a load average above the core "
                   "count means the numbers are inflated. Compare the two paths within one run, not across runs."),
        "seconds": round(time.perf_counter() - started, 1),
        "results": rows,
        "speedup_fused_over_teaching": {k: round(v, 3) for k, v in speedups.items()},  # of the medians
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'device':6s} {'T':>5s} {'teaching ms (min)':>20s} {'fused ms (min)':>18s} {'speedup':>8s} "
          f"{'teaching MB':>12s} {'fused MB':>9s}")
    for device in devices:
        for T in args.lengths:
            t = next(r for r in rows if r["device"] == device.type and r["T"] == T and r["path"] == "teaching")
            f = next(r for r in rows if r["device"] == device.type and r["T"] == T and r["path"] == "fused")
            print(f"{device.type:6s} {T:5d} {t['ms_median']:10.1f} ({t['ms_min']:7.1f}) "
                  f"{f['ms_median']:9.1f} ({f['ms_min']:6.1f}) {t['ms_median'] / f['ms_median']:7.2f}x "
                  f"{t['saved_for_backward_MB']:12.1f} {f['saved_for_backward_MB']:9.1f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} cores); "
          f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
