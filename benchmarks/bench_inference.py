#!/usr/bin/env python
"""Inference and serving speed: full-catalogue top-K, ANN, compression, ONNX, the HTTP service.

    .venv/bin/python benchmarks/bench_inference.py            # -> benchmarks/results/inference.json
    .venv/bin/python benchmarks/bench_inference.py --quick    # smaller, for a smoke check
    .venv/bin/python benchmarks/bench_inference.py --sections ladder --train-seconds 0   # one section

Targets (issue 13, 2 CPU cores):

* top-10 for all 6,040 ML-1M users from histories at max_len 200 ≤ 1 s, lists identical to the
  plain loop's (``topk_ladder``: one saving at a time, see :func:`ladder_section`);
* the service on the ML-1M max_len-200 bundle: p99 ≤ 50 ms and ≥ 300 requests/s at concurrency 8;
  at concurrency 64 micro-batching no worse than without; client and server sharing the cores
  and pinned apart (``service``).

The model is a SASRec of the size chapter 07 times (max_len 200, d 64, 2 layers, 2 heads) on
ML-1M (the papers' split: items with ≥ 5 ratings), trained for ``--train-seconds`` so that the
accuracy figures (NDCG@10 of each variant, ANN recall) are those of a model that has learned
something; the timings do not depend on the weights. Every timing is a median of several
runs and is recorded with the machine's load average: the machine is shared, and numbers
taken under load are slower than the hardware allows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from course_lib import infer, loadtest, serve
from course_lib.data import leave_one_out, load_dataset, pad_sequences
from course_lib.evaluate import evaluate
from course_lib.infer import Catalogue, Recommender
from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.train import SequenceCollator, TrainConfig, Trainer

OUT = Path(__file__).resolve().parent / "results" / "inference.json"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn, repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "runs_s": runs, "load_average": load()}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()[0]:.2f}] {msg}", flush=True)


def train_model(split, args) -> tuple[SASRec, dict]:
    config = SASRecConfig(n_items=split.n_items, max_len=200, d_model=64, n_layers=2, n_heads=2, dropout=0.2)
    model = SASRec(config)
    if args.train_seconds <= 0:
        return model.eval(), {"trained_s": 0}
    trainer = Trainer(model, split.train, collate=SequenceCollator(split.n_items, 200, loss="ce", seed=0), split=split,
                      config=TrainConfig(epochs=50, batch_size=128, lr=1e-3, time_budget_s=args.train_seconds,
                                         eval_every=0, seed=0, log_every=1, progress=False))
    start = time.perf_counter()
    trainer.fit()
    return trainer.model.cpu().eval(), {"trained_s": time.perf_counter() - start, "epochs": trainer.epoch,
                                        "steps": trainer.step}


def ladder_section(model, split, args, save=None, previous=None, command="") -> dict:
    """Top-10 for every ML-1M user from histories at max_len 200: one saving at a time (issue 13).

    Each step keeps the previous ones and adds one; each is timed 3× (median), in
    interleaved rounds so that a change of the shared machine's load hits every step alike,
    at 1 and at 2 torch threads. Wall time and the process's CPU time are both recorded:
    on a loaded machine the wall time counts other sessions' work too. Every step's lists
    are compared with the plain loop's: rows whose top-10 differ, and the largest score gap.
    """
    from course_lib.infer import mask_items

    hist = split.history("test")
    H = pad_sequences(hist, 200)                                                # (6040, 200)
    E = infer.item_vectors(model).detach()
    lengths = np.array([min(len(h), 200) for h in hist])
    order = np.argsort(lengths, kind="stable")
    catalogue = Catalogue.from_split(split)

    def rank(scores, rows):
        mask_items(scores, [hist[r] for r in rows])
        return torch.topk(scores, 10, dim=1)

    def collect(parts, n):
        ids, vals = torch.zeros((n, 10), dtype=torch.long), torch.zeros((n, 10))
        for rows, top in parts:
            ids[rows], vals[rows] = top.indices, top.values
        return ids, vals

    def plain():                       # what the issue measured: pad to 200, model.score, mask, topk
        parts = []
        with torch.no_grad():
            for i in range(0, len(H), 256):
                rows = np.arange(i, min(i + 256, len(H)))
                parts.append((rows, rank(model.score(H[rows]), rows)))
        return collect(parts, len(H))

    def inference_mode():              # + no autograd bookkeeping at all
        parts = []
        with torch.inference_mode():
            for i in range(0, len(H), 256):
                rows = np.arange(i, min(i + 256, len(H)))
                parts.append((rows, rank(model.score(H[rows]), rows)))
        return collect(parts, len(H))

    def buckets():                     # + users sorted by length, each batch only as wide as its longest
        parts = []
        with torch.inference_mode():
            for i in range(0, len(H), 256):
                rows = order[i:i + 256]
                width = int(lengths[rows].max())
                hidden = model(H[rows][:, -width:])[:, -1]                     # (B, d)
                parts.append((rows, rank(hidden @ E.T, rows)))
        return collect(parts, len(H))

    def encode(layout, batch_tokens=32_768):   # + the final block at the last position only (+ right padding, ...)
        def run():
            with torch.inference_mode():
                U = model.encode_last(H, layout=layout, batch_tokens=batch_tokens)
                parts = [(rows, rank(U[rows] @ E.T, rows))
                         for rows in np.array_split(np.arange(len(H)), max(1, len(H) // 1024))]
            return collect(parts, len(H))
        return run

    def recommender(fast, **options):
        rec = Recommender(model, catalogue, max_len=200, batch_size=1024, fast_path=fast)

        def run():
            top = rec.recommend_all(split, "test", k=10, **options)
            return top.ids, top.scores
        return run

    steps = [("1 plain loop (pad to 200, model.score, batches of 256, torch.no_grad)", plain),
             ("2 + torch.inference_mode", inference_mode),
             ("3 + length buckets (no padding to 200)", buckets),
             ("4 + final block at the last position only (encode_last, left padding + mask)", encode("left")),
             ("5 + right padding: fused SDPA with is_causal, no mask (encode_last default)", encode("right")),
             ("6 + buckets of 8,192 positions, not 32,768 (encode_last batch_tokens=8192)", encode("right", 8192)),
             ("7 + no per-batch Python: buckets encoded, then 1,024 users at a time scored, masked with one "
              "fill (all histories end to end) and ranked (recommend_all, workers=1)", recommender("auto", workers=1)),
             ("8 + 2 Python threads taking buckets, 1 torch thread each (inter-op, not intra-op; "
              "recommend_all, workers=2)", recommender("auto", workers=2)),
             ("Recommender.recommend_all (library, fast_path=auto)", recommender("auto")),
             ("Recommender.recommend_all, fast_path=False (the wrapper before)", recommender(False))]
    out = {"users": len(H), "max_len": 200, "mean_history_read": float(lengths.mean()),
           "load_average_start": load(), "target_s": 1.0,
           "note": "wall_s counts the other sessions' work on the shared machine too; cpu_s is this "
                   "process's CPU time (with 2 threads, both threads' time, spin-waiting included). "
                   "Step 8 runs 2 Python threads whatever the torch thread count: at threads=1 its wall "
                   "time uses both cores and only its cpu_s compares with the steps above. "
                   "Recommender.recommend_all's default is workers='auto' = torch.get_num_threads()"}
    if args.ladder_merge and isinstance(previous, dict):
        for key, value in previous.items():         # thread counts measured by an earlier command
            if key.startswith(("threads=", "command threads=")) and int(key.split("=")[1]) not in args.ladder_threads:
                out[key] = value
    ref = plain()                                     # the reference lists (untimed)
    slow = {steps[0][0], steps[1][0], steps[-1][0]}
    for threads in args.ladder_threads:
        torch.set_num_threads(threads)
        out[f"command threads={threads}"] = command
        todo = [(name, fn) for name, fn in steps if threads not in args.ladder_fast_only_threads or name not in slow]
        rows = {name: {"wall_s": [], "cpu_s": [], "load_average": []} for name, _ in todo}
        for r in range(args.repeats + 1):                                     # round 0 warms up
            for name, fn in todo:
                w0, c0 = time.perf_counter(), time.process_time()
                ids, vals = fn()
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                if r == 0:
                    rows[name]["rows_differing_from_plain"] = int((ids != ref[0]).any(dim=1).sum())
                    rows[name]["max_abs_score_diff"] = float((vals - ref[1]).abs().max())
                    log(f"threads {threads}, warm-up: {name}: {wall:.2f} s wall, rows differing from the plain "
                        f"loop {rows[name]['rows_differing_from_plain']}, max score gap "
                        f"{rows[name]['max_abs_score_diff']:.2e}")
                    continue
                rows[name]["wall_s"].append(wall)
                rows[name]["cpu_s"].append(cpu)
                rows[name]["load_average"].append(load()[0])
                log(f"threads {threads}, round {r}: {name}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        for name in rows:
            rows[name]["median_wall_s"] = statistics.median(rows[name]["wall_s"])
            rows[name]["median_cpu_s"] = statistics.median(rows[name]["cpu_s"])
        out[f"threads={threads}"] = rows
        out["load_average_end"] = load()
        if save is not None:
            save(out)                                   # a long run keeps what it measured so far
    return out


def onnx_section(model, split, args) -> dict:
    """Step 6 of the ladder: the same trimmed graph (``SASRec._encode_last_batch``, right padding) in
    ONNX Runtime with every graph optimisation, on the same length buckets as ``encode_last``.

    Both run the same batches at 1 thread, in interleaved rounds; the user vectors are compared.
    """
    import contextlib
    import io
    import logging
    import warnings

    import onnxruntime as ort

    from course_lib.models.sasrec import _right_aligned

    class LastBatch(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, n):
            return self.m._encode_last_batch(ids, n, "right")

    torch.set_num_threads(1)
    hist = split.history("test")
    ids, lengths = _right_aligned(pad_sequences(hist, 200), 200)
    order = torch.argsort(lengths, stable=True)
    sl = lengths[order].tolist()
    batches, start = [], 0
    while start < len(sl):                               # the buckets encode_last makes (batch_tokens=8192)
        stop = start + 1
        while stop < len(sl) and (stop - start + 1) * sl[stop] <= 8192:
            stop += 1
        rows = order[start:stop]
        batches.append((ids[rows][:, -max(2, sl[stop - 1]):], lengths[rows]))
        start = stop
    out = {"load_average_start": load()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encode_last.onnx"
        ex, n = torch.randint(1, 100, (8, 50)), torch.tensor([50, 40, 30, 20, 10, 5, 3, 1])
        dims = {"ids": {0: torch.export.Dim("batch", min=1, max=1 << 16), 1: torch.export.Dim("width", min=2, max=200)},
                "n": {0: torch.export.Dim("batch", min=1, max=1 << 16)}}
        t0 = time.perf_counter()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            program = torch.onnx.export(LastBatch(model.eval()), (ex, n), dynamo=True, input_names=["ids", "n"],
                                        output_names=["u"], dynamic_shapes=dims, external_data=False)
            program.save(str(path), external_data=False)
        out["export_s"] = time.perf_counter() - t0
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

        def run_ort():
            return torch.cat([torch.from_numpy(sess.run(None, {"ids": b.numpy(), "n": k.numpy()})[0])
                              for b, k in batches])

        def run_torch():
            with torch.inference_mode():
                return torch.cat([model._encode_last_batch(b, k, "right") for b, k in batches])

        runs = {"PyTorch (encode_last's batches)": run_torch, "ONNX Runtime (ORT_ENABLE_ALL)": run_ort}
        rows = {name: {"wall_s": [], "cpu_s": []} for name in runs}
        for r in range(args.repeats + 1):
            for name, fn in runs.items():
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                if r:
                    rows[name]["wall_s"].append(time.perf_counter() - w0)
                    rows[name]["cpu_s"].append(time.process_time() - c0)
                    log(f"{name}: {rows[name]['wall_s'][-1]:.2f} s wall, {rows[name]['cpu_s'][-1]:.2f} s CPU")
        for name in rows:
            rows[name]["median_wall_s"] = statistics.median(rows[name]["wall_s"])
            rows[name]["median_cpu_s"] = statistics.median(rows[name]["cpu_s"])
        out.update(rows)
        out["max_abs_diff_user_vectors"] = float((run_ort() - run_torch()).abs().max())
    out["threads"] = 1
    out["load_average_end"] = load()
    return out


def topk_section(model, split, args) -> dict:
    """Top-10 for every user: each variant's time (median) and accuracy."""
    catalogue = Catalogue.from_split(split)
    hist = split.history("test")
    out = {}

    def variant(name, scorer, repeats=3):
        rec = Recommender(scorer, catalogue, max_len=200, batch_size=args.batch_size)
        t = timed(lambda: rec.recommend_all(split, "test", k=10), repeats)
        metrics = evaluate(rec.score_fn, split, "test", ks=(10,), max_len=200, batch_size=args.batch_size, device="cpu")
        out[name] = {**t, "NDCG@10": metrics["NDCG@10"], "HR@10": metrics["HR@10"]}
        log(f"top-10 all users, {name}: {t['median_s']:.2f} s, NDCG@10 {metrics['NDCG@10']:.4f}")

    variant("fp32 (PyTorch)", model)
    variant("bf16 (PyTorch)", infer.to_bfloat16(model))
    variant("int8 dynamic (PyTorch)", infer.quantize_dynamic_int8(model))
    with tempfile.TemporaryDirectory() as tmp:
        path = infer.export_onnx(model, Path(tmp) / "m.onnx", max_len=200, n_items=split.n_items)
        onnx_model = infer.OnnxScorer(path)
        h = pad_sequences(hist[:256], 200)
        with torch.no_grad():
            ref = model.score(h)
        got = onnx_model.score(h)
        finite = torch.isfinite(ref)
        variant("fp32 (ONNX Runtime)", onnx_model)
        out["fp32 (ONNX Runtime)"]["max_abs_diff_vs_torch"] = float((got - ref)[finite].abs().max())

    # user vectors computed once (when a history changes) and stored: ranking only
    with torch.no_grad():
        U = torch.cat([infer.user_vectors(model, pad_sequences(hist[i:i + 512], 200))
                       for i in range(0, len(hist), 512)])
    exact = infer.ExactIndex(infer.item_vectors(model).detach())
    t = timed(lambda: exact.search(U, 10, exclude=hist), 5)
    out["stored user vectors: mask + top-10 only"] = t
    log(f"top-10 all users from stored user vectors: {t['median_s']:.3f} s")
    return out, U


def ann_section(model, U, args) -> dict:
    E = infer.item_vectors(model).detach()
    table = infer.sweep_ann(E, U, k=10, latency_queries=500)
    out = {"ml1m": table.drop(columns="params").to_dict("records"), "ml1m_load_average": load()}
    log("ANN sweep on ML-1M done")
    rng = np.random.default_rng(0)
    base = E[1:].numpy()
    n = args.big_catalogue
    big = np.vstack([np.zeros((1, base.shape[1]), np.float32),
                     base[rng.integers(0, len(base), n)] + 0.5 * base.std(0, keepdims=True)
                     * rng.standard_normal((n, base.shape[1]))]).astype(np.float32)
    table = infer.sweep_ann(big, U[:1000], k=10, nlist=int(4 * np.sqrt(n)), nprobes=(4, 8, 16, 32, 64), m=16,
                            ef_construction=64, ef_searches=(16, 32, 64, 128, 256), latency_queries=200)
    out[f"synthetic_{n}"] = table.drop(columns="params").to_dict("records")
    out["synthetic_load_average"] = load()
    log(f"ANN sweep on {n:,} synthetic items done")
    return out


LEVELS = (1, 8, 64)


def service_section(model, split, args) -> dict:
    """The HTTP service on the ML-1M max_len-200 bundle: closed-loop load at concurrency 1, 8, 64.

    Each server setting is measured with the client and the server on the same cores
    ("shared", the laptop case) and pinned apart ("pinned": the client on core 0, the server
    on core 1, as ``taskset`` does). Every level runs ``--repeats`` times; the median of each
    figure is kept, the runs are in ``runs``. 4 of 5 requests name a known user, 1 of 5 sends a
    history; with the cache on, a user asked for again is answered from their stored vector.
    """
    rng = np.random.default_rng(0)
    hist = split.history("test")
    out = {}
    settings = [("micro_batching=off, cache=off", dict(micro_batching=False, cache_size=0)),
                ("micro_batching=on, cache=off", dict(micro_batching=True, cache_size=0)),
                ("micro_batching=on, cache=on", dict(micro_batching=True, cache_size=100_000))]
    all_cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = serve.save_bundle(Path(tmp) / "bundle", model, Catalogue.from_split(split), max_len=200,
                                   user_ids=split.user_ids, histories=hist, name="SASRec (ML-1M)", onnx=False)
        bodies = []
        for i, u in enumerate(rng.choice(split.n_users, 4000)):
            if i % 5 == 4:
                bodies.append({"history": split.original_items(hist[u][-200:]).tolist(), "k": 10})
            else:
                bodies.append({"user_id": int(split.user_ids[u]), "k": 10})
        for pinning in args.pinning:
            pinned = pinning == "pinned" and len(all_cpus) >= 2
            for threads, client in [(t, c) for t in args.server_threads for c in args.client]:
                for name, options in settings:
                    key = f"{pinning}, threads={threads}, {name}" + (f", client={client}" if client != "aiohttp"
                                                                      else "")
                    cpus = [all_cpus[1]] if pinned else None
                    with serve.ServerProcess(bundle, threads=threads, cpus=cpus, **options) as srv:
                        if pinned:
                            os.sched_setaffinity(0, {all_cpus[0]})
                        try:
                            rows = []
                            for c in args.levels:
                                runs = []
                                for r in range(args.repeats):
                                    before = srv_health(srv)
                                    res = loadtest.load_test(srv.url, bodies, concurrency=c, n_requests=args.requests,
                                                             time_limit_s=120, warmup=2 * c, client=client)
                                    after = srv_health(srv)
                                    runs.append(res.row() | {
                                        "load_average": load(),
                                        "mean_batch": (after["requests"] - before["requests"])
                                        / max(1, after["batches"] - before["batches"]),
                                        "cache_hit_rate": (after["cache"] or {}).get("hit rate")})
                                    log(f"service {key}, concurrency {c}, run {r + 1}: {res.throughput_rps:.0f} req/s, "
                                        f"p50 {res.p50_ms:.1f} p99 {res.p99_ms:.1f} ms, 5xx {res.n_5xx}")
                                median = {f: statistics.median(run[f] for run in runs)
                                          for f in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "mean_ms",
                                                    "max_ms", "mean_batch")}
                                rows.append({"concurrency": c, **median, "5xx": sum(run["5xx"] for run in runs),
                                             "transport_errors": sum(run["transport_errors"] for run in runs),
                                             "runs": runs})
                                if c == max(args.levels):
                                    # the same level without warm-up: all c clients connect and send at once,
                                    # and that start-up burst is part of what is measured (the earlier method)
                                    cold = []
                                    for r in range(args.repeats):
                                        res = loadtest.load_test(srv.url, bodies, concurrency=c,
                                                                 n_requests=args.requests, time_limit_s=120,
                                                                 warmup=0, client=client)
                                        cold.append(res.row() | {"load_average": load()})
                                        log(f"service {key}, concurrency {c} from a cold start, run {r + 1}: "
                                            f"p50 {res.p50_ms:.1f} p99 {res.p99_ms:.1f} max {res.max_ms:.1f} ms")
                                    rows[-1]["cold_start"] = {
                                        **{f: statistics.median(run[f] for run in cold)
                                           for f in ("throughput_rps", "p50_ms", "p95_ms", "p99_ms", "max_ms")},
                                        "5xx": sum(run["5xx"] for run in cold), "runs": cold}
                        finally:
                            os.sched_setaffinity(0, all_cpus)
                    out[key] = rows
    out["client"] = ("course_lib.loadtest (aiohttp, one asyncio loop), in this process; keys ending "
                     "'client=httpx': httpx's AsyncClient instead (the earlier figures' client)")
    out["warmup"] = ("each measured run follows 2 x concurrency warm-up requests on the same connections, "
                     "without a pause (steady state); 'cold_start' at the highest level: the same run without "
                     "warm-up, all clients connecting and sending at once (before 2026-12-03 the warm-up ran on "
                     "other connections, so every run measured that start-up burst)")
    out["requests_per_level"] = args.requests
    return out


def srv_health(srv) -> dict:
    import httpx

    return httpx.get(f"{srv.url}/health", timeout=10).json()


SECTIONS = ("ladder", "onnx", "variants", "ann", "service")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=[s for s in SECTIONS if s != "onnx"], choices=SECTIONS,
                        help="what to measure; the other sections of the JSON file are kept")
    parser.add_argument("--train-seconds", type=float, default=300)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--big-catalogue", type=int, default=500_000)
    parser.add_argument("--requests", type=int, default=2000, help="requests per load-test level")
    parser.add_argument("--server-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--ladder-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ladder-fast-only-threads", type=int, nargs="*", default=[],
                        help="at these thread counts skip the slow steps (plain loop, inference_mode, the old "
                             "wrapper); their lists are still compared with the plain loop's")
    parser.add_argument("--ladder-merge", action="store_true",
                        help="keep the ladder's other thread counts from the JSON file (measured by an earlier "
                             "command, recorded under 'command threads=N')")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per ladder step (the median is kept)")
    parser.add_argument("--pinning", nargs="+", default=["shared", "pinned"], choices=["shared", "pinned"],
                        help="service: client and server on the same cores, or pinned to different ones")
    parser.add_argument("--client", nargs="+", default=["aiohttp"], choices=list(loadtest.CLIENTS),
                        help="service: the load test's HTTP client (httpx's pool is slow at concurrency 64)")
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS),
                        help="service: the concurrencies measured (the highest also from a cold start)")
    parser.add_argument("--service-key", default="service",
                        help="service: the JSON section to write (e.g. service_c64 for a run of one level)")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.quick:
        args.train_seconds, args.big_catalogue, args.requests, args.server_threads = 20, 20_000, 200, [1]
        args.repeats = 1

    command = "benchmarks/bench_inference.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result["machine"] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "platform": platform.platform(terse=True), "python": sys.version.split()[0],
                         "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                         "load_average_start": load()}
    result.setdefault("commands", {})
    split = leave_one_out(load_dataset("ml-1m"), min_item_interactions=5)
    log(f"{split}")
    model, train_info = train_model(split, args)
    model_info = {"class": "SASRec", "max_len": 200, "d_model": 64, "n_layers": 2, "n_heads": 2,
                  "parameters": sum(p.numel() for p in model.parameters()), **train_info}
    log(f"model ready: {model_info}")

    def save(section: str, payload: dict) -> None:
        # each section records the machine it was measured on (sections of one file come from different runs)
        machine = {k: v for k, v in result["machine"].items() if k != "load_average_end"}
        result[section] = {**payload, "model": model_info, "machine": machine} if isinstance(payload, dict) else payload
        result["commands"][section] = command
        result["machine"]["load_average_end"] = load()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=float))
        tmp.replace(out)
        print(f"-> {out} [{section}]", flush=True)

    threads = torch.get_num_threads()
    if "ladder" in args.sections:
        save("topk_ladder", ladder_section(model, split, args, save=lambda part: save("topk_ladder", part),
                                           previous=result.get("topk_ladder"), command=command))
        torch.set_num_threads(threads)
    if "onnx" in args.sections:
        save("topk_onnx", onnx_section(model, split, args))
        torch.set_num_threads(threads)
    U = None
    if "variants" in args.sections:
        variants, U = topk_section(model, split, args)
        save("topk_all_users", {**variants, "target_s": 1.0})
    if "ann" in args.sections:
        if U is None:
            with torch.inference_mode():
                U = model.encode_last(split.history("test"))
        save("ann", ann_section(model, U, args))
    if "service" in args.sections:
        save(args.service_key, {**service_section(model, split, args), "target": "p99 <= 50 ms and >= 300 requests/s "
                         "at concurrency 8; at concurrency 64 micro-batching no worse than without"})


if __name__ == "__main__":
    main()
