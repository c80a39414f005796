#!/usr/bin/env python
"""Inference and serving speed: full-catalogue top-K, ANN, compression, ONNX, the HTTP service.

    .venv/bin/python benchmarks/bench_inference.py            # -> benchmarks/results/inference.json
    .venv/bin/python benchmarks/bench_inference.py --quick    # smaller, for a smoke check

Targets (issue "Chapter 07", 2 CPU cores):

* full-catalogue top-10 for all 6,040 ML-1M users with a SASRec-size model ≤ 1 s (model load
  excluded);
* the service: p99 ≤ 50 ms at concurrency 8 on loopback, throughput at concurrency 1/8/64.

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


def service_section(model, split, args) -> dict:
    rng = np.random.default_rng(0)
    hist = split.history("test")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = serve.save_bundle(Path(tmp) / "bundle", model, Catalogue.from_split(split), max_len=200,
                                   user_ids=split.user_ids, histories=hist, name="SASRec (ML-1M)", onnx=False)
        bodies = []
        for i, u in enumerate(rng.choice(split.n_users, 4000)):
            if i % 5 == 4:
                bodies.append({"history": split.original_items(hist[u][-200:]).tolist(), "k": 10})
            else:
                bodies.append({"user_id": int(split.user_ids[u]), "k": 10})
        for threads in args.server_threads:
            for batching in (False, True):
                key = f"threads={threads}, micro_batching={'on' if batching else 'off'}"
                with serve.ServerProcess(bundle, micro_batching=batching, threads=threads) as srv:
                    rows = []
                    for c in (1, 8, 64):
                        before = srv_health(srv)
                        r = loadtest.load_test(srv.url, bodies, concurrency=c, n_requests=args.requests,
                                               time_limit_s=120, warmup=2 * c)
                        after = srv_health(srv)
                        row = r.row() | {"load_average": load(), "mean_batch": (after["requests"] - before["requests"])
                                         / max(1, after["batches"] - before["batches"])}
                        rows.append(row)
                        log(f"service {key}, concurrency {c}: {r.throughput_rps:.0f} req/s, p50 {r.p50_ms:.1f} "
                            f"p95 {r.p95_ms:.1f} p99 {r.p99_ms:.1f} ms, 5xx {r.n_5xx}")
                out[key] = rows
    return out


def srv_health(srv) -> dict:
    import httpx

    return httpx.get(f"{srv.url}/health", timeout=10).json()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-seconds", type=float, default=300)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--big-catalogue", type=int, default=500_000)
    parser.add_argument("--requests", type=int, default=2000, help="requests per load-test level")
    parser.add_argument("--server-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.quick:
        args.train_seconds, args.big_catalogue, args.requests, args.server_threads = 20, 20_000, 200, [1]

    result = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform(terse=True), "python": sys.version.split()[0],
                          "torch": torch.__version__, "load_average_start": load()},
              "command": "benchmarks/bench_inference.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    split = leave_one_out(load_dataset("ml-1m"), min_item_interactions=5)
    log(f"{split}")
    model, train_info = train_model(split, args)
    result["model"] = {"class": "SASRec", "max_len": 200, "d_model": 64, "n_layers": 2, "n_heads": 2,
                       "parameters": sum(p.numel() for p in model.parameters()), **train_info}
    log(f"model ready: {result['model']}")
    result["topk_all_users"], U = topk_section(model, split, args)
    result["topk_all_users"]["target_s"] = 1.0
    result["ann"] = ann_section(model, U, args)
    result["service"] = service_section(model, split, args)
    result["service"]["target"] = "p99 <= 50 ms at concurrency 8"
    result["machine"]["load_average_end"] = load()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
