"""Chapter 12's measurements: model size vs quality on ML-1M, 1 vs 2 data-parallel processes, IVF-PQ memory.

Parts (each writes its section of ``benchmarks/results/scaling.json``):

* ``sizes``: SASRec on ML-1M (max_len 50, batch 128, the tuned recipe) for d in {32, 64, 128, 256}
  and layers in {1, 2, 4}, each trained for the same number of steps (= the same training
  tokens) and, separately, the same seconds of training; full-ranking test NDCG@10, parameters,
  training FLOPs. ``--steps`` and ``--seconds`` set the two budgets.
* ``throughput``: the same training script under ``torchrun --nproc_per_node=1`` and ``=2`` (gloo,
  one torch thread per process), sequences per second at equal global batch.
* ``ivfpq``: a faiss IVF-PQ index on ``--vectors`` synthetic 64-d vectors: serialized bytes against
  the formula, and the extrapolation to 10^8 items.

    .venv/bin/python benchmarks/bench_scaling.py sizes --steps 150 --seconds 40
    .venv/bin/python benchmarks/bench_scaling.py throughput
    .venv/bin/python benchmarks/bench_scaling.py ivfpq --vectors 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from course_lib.data import leave_one_out, load_dataset
from course_lib.scaling import ivfpq_bytes, measure_ivfpq
from course_lib.train.size_sweep import train_point

from _results import machine, save_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scaling.json"


def _command(args: list[str]) -> str:
    return ".venv/bin/python benchmarks/bench_scaling.py " + " ".join(args)


def sizes(steps: int, seconds: float, dims, layers, batch_size: int, eval_users: int, argv) -> None:
    split = leave_one_out(load_dataset("ml-1m"), min_item_interactions=5)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    rows = {k: list(v) for k, v in doc.get("sizes", {}).get("rows", {}).items()}
    for budget, amount in (("steps", steps), ("seconds", seconds)):
        key = f"{budget}={amount:g}"
        planned = {(d, n) for d in dims for n in layers}
        rows[key] = [r for r in rows.get(key, []) if (r["d"], r["layers"]) not in planned]   # other models kept
        for n in layers:
            for d in dims:
                rec = train_point(split, d, n, budget=budget, amount=amount, max_len=50, batch_size=batch_size,
                                  eval_users=eval_users)
                rec["load"] = os.getloadavg()[0]
                rec["command"] = _command(argv)
                rows[key].append(rec)
                print(key, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}, flush=True)
                save_section(OUT, "sizes", {"what": f"SASRec on ML-1M, max_len 50, batch {batch_size}, lr 3e-3 cosine, "
                                                    f"dropout 0.1; each row one model (its command); full-ranking "
                                                    f"NDCG@10 on {eval_users} fixed random users (all items scored)",
                                            "rows": rows})


def throughput(steps: int, argv) -> None:
    runs = {}
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for n in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [str(torchrun), "--standalone", f"--nproc_per_node={n}", "-m", "course_lib.train.distributed",
                   "--dataset", "ml-1m", "--max-len", "50", "--d-model", "64", "--layers", "2", "--batch-size", "128",
                   "--epochs", "1", "--max-steps", str(steps), "--dropout", "0.1", "--threads", "1", "--out", tmp]
            load0 = os.getloadavg()[0]
            subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
            r = json.loads((Path(tmp) / "result.json").read_text())
        runs[str(n)] = {"processes": n, "backend": r["backend"], "steps": r["steps"], "seconds": r["seconds"],
                        "seq_per_s": r["sequences"] / r["seconds"], "parameters": r["parameters"],
                        "load_before": load0, "load_after": os.getloadavg()[0]}
        print(runs[str(n)], flush=True)
    save_section(OUT, "throughput", {"what": "SASRec d=64 L=2 max_len 50 on ML-1M, global batch 128, one torch thread "
                                             "per process, gloo on the CPU; seconds of fit() including the first steps",
                                     "command": _command(argv), "runs": runs})


def ivfpq(n: int, argv) -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    dim, nlist, m = 64, 256, 16
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    got = measure_ivfpq(x, nlist=nlist, m=m, train_size=20_000)
    want = ivfpq_bytes(n, dim, nlist=nlist, m=m)
    big = ivfpq_bytes(10 ** 8, dim, nlist=65_536, m=m)
    payload = {"n": n, "dim": dim, "nlist": nlist, "m": m, "nbits": 8, "measured_bytes": got["bytes"],
               "formula_bytes": want["total"], "train_s": got["train_s"], "add_s": got["add_s"],
               "per_vector_bytes": want["per_vector"], "flat_fp32_bytes": n * dim * 4.0,
               "extrapolated_1e8_bytes": big["total"], "extrapolated_1e8_flat_bytes": 1e8 * dim * 4.0,
               "command": _command(argv)}
    print(payload, flush=True)
    save_section(OUT, "ivfpq", payload)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("sizes", "throughput", "ivfpq"))
    p.add_argument("--steps", type=int, default=150, help="sizes: the equal-tokens budget (optimizer steps)")
    p.add_argument("--seconds", type=float, default=40, help="sizes: the equal-time budget (seconds of training)")
    p.add_argument("--dims", default="32,64,128,256")
    p.add_argument("--layers", default="1,2,4")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-users", type=int, default=1500, help="sizes: users evaluated (full ranking of all items)")
    p.add_argument("--tp-steps", type=int, default=40, help="throughput: optimizer steps per run")
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    argv = sys.argv[1:]
    torch.set_num_threads(args.threads)
    print("machine:", machine(), "load:", os.getloadavg(), flush=True)
    if args.part == "sizes":
        sizes(args.steps, args.seconds, [int(v) for v in args.dims.split(",")],
              [int(v) for v in args.layers.split(",")], args.batch_size, args.eval_users, argv)
    elif args.part == "throughput":
        throughput(args.tp_steps, argv)
    else:
        ivfpq(args.vectors, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
