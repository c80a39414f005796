#!/usr/bin/env python
"""Offline vs online on the shop: NDCG@10 against simulated CTR, conversion and revenue per visit.

    .venv/bin/python benchmarks/bench_online.py                       # -> benchmarks/results/online.json
    .venv/bin/python benchmarks/bench_online.py --sasrec-budget 300 --visits 200000

Protocol (chapter 10): the committed shop, chronological leave-one-out; every model fitted on
train + validation. *Offline*: full-ranking NDCG@10 of the test item (seen items masked), 95%
bootstrap interval over users. *Online*: each user's top-10 with the whole history masked, shown
to ``course_lib.simulator.ShopEnvironment`` (position-based clicks, price-elastic conversion,
users at the end of their drifting taste; parameters in ``datasets/shop/CARD.md``): expected
per-visit metrics over all users (exact, from the click model) and a simulated test of
``--visits`` visits with 95% intervals. Kendall's τ between the offline order and each online
order. The hyper-parameters are those the baselines benchmark chose on the shop's validation
stage (EASE λ = 30, item-kNN k = 200); SASRec trains for ``--sasrec-budget`` seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from course_lib.baselines import BPRMF, EASE, ItemKNN, MostPopular
from course_lib.data import leave_one_out, load_dataset
from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.simulator import ShopEnvironment, offline_online_table
from course_lib.train import SequenceCollator, TrainConfig, Trainer

from _results import machine, save_section

OUT = Path(__file__).resolve().parent / "results" / "online.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sasrec-budget", type=float, default=120.0, help="SASRec training seconds")
    parser.add_argument("--visits", type=int, default=100_000, help="simulated visits per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    shop = load_dataset("shop")
    split = leave_one_out(shop)
    env = ShopEnvironment(shop, split, seed=args.seed)
    models = {"MostPopular": MostPopular(), "ItemKNN": ItemKNN(k=200), "EASE": EASE(lam=30.0),
              "BPR-MF": BPRMF(dim=64, epochs=20, seed=args.seed)}
    fit_s = {}
    for name, m in models.items():
        t = time.perf_counter()
        m.fit(split, include_valid=True)
        fit_s[name] = time.perf_counter() - t
    torch.manual_seed(args.seed)
    sasrec = SASRec(SASRecConfig(n_items=split.n_items, max_len=50, d_model=64, n_heads=2, n_layers=2, dropout=0.2,
                                 attn_dropout=0.0))
    seqs = [np.concatenate([split.train[u], [split.valid[u]]]) for u in range(split.n_users)]
    trainer = Trainer(sasrec, seqs, collate=SequenceCollator(split.n_items, 50, loss="ce", trim=True, seed=args.seed),
                      config=TrainConfig(epochs=10_000, time_budget_s=args.sasrec_budget, schedule_unit="time",
                                         batch_size=128, lr=3e-3, warmup=0.05, min_lr_ratio=0.02, clip_norm=1.0,
                                         precision="auto", bucket_by_length=True, eval_every=0, seed=args.seed,
                                         log_every=0, progress=False), device="cpu")
    trainer.fit()
    fit_s["SASRec"] = trainer.train_seconds
    rng = np.random.default_rng(args.seed + 1)
    score_fns = {"Random": lambda u, h: torch.from_numpy(rng.random((len(u), split.n_items + 1))),
                 **{n: m.score for n, m in models.items()}, "SASRec": trainer.model.cpu().eval().score_fn}
    table, _ = offline_online_table(score_fns, split, env, visits=env.sample_users(args.visits), max_len=50,
                                    seed=args.seed)
    real = table.dropna(subset=["NDCG@10"])
    taus = {m: float(stats.kendalltau(real["NDCG@10"], real[m]).statistic)
            for m in ["CTR", "conversion", "revenue/visit"]}
    print(table.round(4).to_string())
    print("Kendall tau vs offline NDCG@10:", {k: round(v, 3) for k, v in taus.items()})
    payload = {
        "split": repr(split), "click_model": {"attraction": env.attraction, "position_bias": env.position_bias,
                                              "cvr0": env.cvr0, "price_elasticity": env.price_elasticity,
                                              "at": env.at},
        "table": {name: {k: (None if isinstance(v, float) and np.isnan(v) else float(v)) for k, v in row.items()}
                  for name, row in table.iterrows()},
        "kendall_tau_vs_ndcg": taus, "fit_seconds": fit_s, "sasrec_steps": trainer.step,
        "visits": args.visits, "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": (".venv/bin/python benchmarks/bench_online.py "
                    + " ".join(argv if argv is not None else sys.argv[1:])),
    }
    save_section(OUT, "offline_vs_online", payload)


if __name__ == "__main__":
    main()
