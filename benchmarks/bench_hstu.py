"""HSTU against SASRec on ML-1M: the same split, recipe and budget of training seconds, full ranking.

    .venv/bin/python benchmarks/bench_hstu.py --budget 900 --threads 1      # one run each, one after the other

Both models use chapter 04's tuned SASRec recipe (full cross-entropy, AdamW at 3e-3, a cosine
schedule over the time budget, batch 128, max_len 200, d = 64, 2 layers/blocks, 2 heads); HSTU
replaces the softmax blocks by HSTU layers (:mod:`course_lib.models.hstu`), nothing else.
Validation NDCG@10 on all users every ``--eval-every`` steps (seconds of training on the x axis,
validation excluded), then test HR@10 / NDCG@10 of the best validation checkpoint.
Writes ``benchmarks/results/hstu.json`` and ``hstu_vs_sasrec_ml-1m.png``.

Published reference on this protocol (Zhai et al., ICML 2024, Table 2, ML-1M): HSTU-large test
NDCG@10 0.1893 / HR@10 0.3294; SASRec 0.1603 / 0.2853 in the same table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_sasrec import TUNED_MODEL, TUNED_TRAIN

from course_lib.data import leave_one_out, load_dataset
from course_lib.models.hstu import HSTU, HSTUConfig
from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.train import SequenceCollator, TrainConfig, Trainer

from _results import save_section

OUT = Path(__file__).resolve().parent / "results" / "hstu.json"
PAPER = {"HSTU-large": {"NDCG@10": 0.1893, "HR@10": 0.3294}, "SASRec": {"NDCG@10": 0.1603, "HR@10": 0.2853}}
TARGET = 0.18


def make_model(arch: str, n_items: int, max_len: int):
    if arch == "sasrec":
        return SASRec(SASRecConfig(n_items=n_items, max_len=max_len, **TUNED_MODEL))
    kw = {k: TUNED_MODEL[k] for k in ("d_model", "n_heads", "n_layers", "dropout", "init_std", "ce_chunk_size")}
    return HSTU(HSTUConfig(n_items=n_items, max_len=max_len, **kw))


def run(arch: str, split, budget_s: float, eval_every: int, seed: int = 0, max_len: int = 200) -> dict:
    torch.manual_seed(seed)
    model = make_model(arch, split.n_items, max_len)
    collate = SequenceCollator(split.n_items, max_len, loss="ce", trim=True, seed=seed)
    cfg = TrainConfig(epochs=1000, time_budget_s=budget_s, eval_every=1, eval_every_steps=eval_every, seed=seed,
                      progress=False, log_every=0, **TUNED_TRAIN)
    trainer = Trainer(model, split.train, collate=collate, split=split, config=cfg, device="cpu")
    load_before, wall0, started = os.getloadavg(), time.perf_counter(), time.strftime("%Y-%m-%d %H:%M:%S")
    history = trainer.fit()
    test = trainer.evaluate("test")
    xs, ys = history.valid_curve("NDCG@10", x="train_s")
    return {"arch": arch, "started": started, "parameters": model.num_parameters(), "budget_s": budget_s,
            "steps": trainer.step,
            "train_seconds": trainer.train_seconds, "seq_per_s": trainer.step * cfg.batch_size / trainer.train_seconds,
            "wall_seconds_incl_validation": time.perf_counter() - wall0,
            "valid_curve": {"train_s": xs.tolist(), "NDCG@10": ys.tolist()},
            "best_valid_NDCG@10": history.best_score, "test": test,
            "load_average_before": load_before, "load_average_after": os.getloadavg()}


def plot(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=80)
    for name, r in doc["runs"].items():
        ax.plot(r["valid_curve"]["train_s"], r["valid_curve"]["NDCG@10"], marker=".", label=name)
    ax.set_xlabel("training seconds (validation excluded)")
    ax.set_ylabel("validation NDCG@10 (all users)")
    ax.set_title("ML-1M: HSTU vs SASRec at equal budgets")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=900.0, help="seconds of training per model")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--eval-every", type=int, default=100, help="validate every this many steps")
    p.add_argument("--archs", default="hstu,sasrec")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = leave_one_out(load_dataset("ml-1m"), min_item_interactions=5)
    runs = {}
    # the command as it was run: the process's own niceness and OMP_NUM_THREADS, not the ones we ask people to use
    command = (f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} nice -n {os.nice(0)} "
               f".venv/bin/python benchmarks/bench_hstu.py --budget {args.budget:g} "
               f"--eval-every {args.eval_every}"
               + (f" --threads {args.threads}" if args.threads else "") + f" --archs {args.archs}")
    section = f"budget {args.budget:g} s"
    if OUT.exists():      # archs run in separate processes (--archs hstu, --archs sasrec) share one section
        runs.update(json.loads(OUT.read_text()).get(section, {}).get("runs", {}))
    for arch in args.archs.split(","):
        runs[arch] = run(arch, split, args.budget, args.eval_every)
        runs[arch]["command"] = command
        print(arch, runs[arch]["test"], f"{runs[arch]['steps']} steps", flush=True)
        doc = {"what": "ML-1M leave-one-out, full ranking; the tuned SASRec recipe for both; equal seconds of "
                       "training, one model after the other or each in its own process (see each run's command, "
                       "load and start)", "command": command,
               "torch_threads": torch.get_num_threads(), "paper_ml1m": PAPER, "target_test_ndcg": TARGET,
               "runs": runs}
        if OUT.exists():  # a run of another arch that finished meanwhile in its own process
            runs = {**json.loads(OUT.read_text()).get(section, {}).get("runs", {}), **runs}
            doc["runs"] = runs
        save_section(OUT, section, doc)
    plot(doc, OUT.with_name("hstu_vs_sasrec_ml-1m.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
