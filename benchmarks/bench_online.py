#!/usr/bin/env python
"""Offline vs online on the shop: NDCG@10 against simulated CTR, conversion and revenue per visit.

    .venv/bin/python benchmarks/bench_online.py                       # -> benchmarks/results/online.json
    .venv/bin/python benchmarks/bench_online.py --sasrec-budget 300 --visits 200000
    .venv/bin/python benchmarks/bench_online.py --section updates   # multi-task rankers + model updates

Protocol (chapter 10): the committed shop, chronological leave-one-out; every model fitted on
train + validation. *Offline*: full-ranking NDCG@10 of the test item (seen items masked), 95%
bootstrap interval over users. *Online*: each user's top-10 with the whole history masked, shown
to ``course_lib.simulator.ShopEnvironment`` (position-based clicks, price-elastic conversion,
users at the end of their drifting taste; parameters in ``datasets/shop/CARD.md``): expected
per-visit metrics over all users (exact, from the click model) and a simulated test of
``--visits`` visits with 95% intervals. Kendall's τ between the offline order and each online
order. The hyper-parameters are those the baselines benchmark chose on the shop's validation
stage (EASE λ = 30, item-kNN k = 200); SASRec trains for ``--sasrec-budget`` seconds.

``--section updates`` (section "multitask_and_updates"): chapter 10's sections 8 and 10 with
longer training than the notebook affords. Candidates: each user's top 30 from EASE; a
randomised impression log (``--mt-visits`` visits per user, 10 random candidates each) trains
a CTR-only model, a CVR model on the clicked impressions only, a shared bottom, MMoE and ESMM
for ``--mt-steps`` Adam steps each; each ranks the candidates (by pCTCVR × price) for every
user and the exact expected online metrics are recorded, with the CVR bias against the
simulator's true conversion probabilities on a fresh log. Then
``course_lib.updates.model_update_experiment`` over ``--rounds`` rounds of trending tastes.
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


def updates_section(args, argv) -> None:
    """Multi-task rankers and model updates with longer training (chapter 10, sections 8 and 10)."""
    import copy

    from course_lib.models.multitask import MultiTaskConfig, fit_multitask, make_multitask, predict_multitask
    from course_lib.simulator import serve_slates, trending_tastes
    from course_lib.updates import (
        STRATEGIES,
        impression_log,
        model_update_experiment,
        serve_from_candidates,
        user_category_mix,
    )

    load_before = os.getloadavg()
    t_start = time.perf_counter()
    shop = load_dataset("shop")
    split = leave_one_out(shop)
    env = ShopEnvironment(shop, split, seed=args.seed)
    users = np.arange(env.n_users)
    candidates = serve_slates(EASE(lam=30.0).fit(split, include_valid=True).score, split, 30, max_len=50)
    user_mix = user_category_mix(env)
    rng = np.random.default_rng(args.seed + 30)
    train_log = impression_log(env, candidates, rng.permutation(np.repeat(users, args.mt_visits)), 10, rng)
    test_log = impression_log(env, candidates, rng.permutation(np.repeat(users, 2)), 10, rng)
    cfg = MultiTaskConfig(env.n_users, split.n_items, env.taste.shape[1], d_embed=16, hidden=64, tower=32,
                          n_experts=3)
    kinds = {"CTR only": "click", "CVR on clicks only": "cvr", "shared bottom": "shared-bottom", "MMoE": "mmoe",
             "ESMM": "esmm"}
    models, seconds = {}, {}
    for name, kind in kinds.items():
        t = time.perf_counter()
        torch.manual_seed(args.seed)
        models[name] = make_multitask(kind, cfg, user_mix, env.category)
        fit_multitask(models[name], train_log["u"], train_log["i"], train_log["c"], train_log["b"],
                      steps=args.mt_steps, batch_size=2048, lr=1e-2, seed=args.seed, click_only=kind == "cvr")
        seconds[name] = time.perf_counter() - t
        print(f"{name}: {args.mt_steps} steps in {seconds[name]:.0f} s", flush=True)
    true_cvr = env.cvr[test_log["i"]]
    cvr_bias = {}
    for name, out in [("CVR on clicks only", "cvr"), ("ESMM", "cvr")]:
        p = predict_multitask(models[name], test_log["u"], test_log["i"])[out]
        cvr_bias[name] = {"bias": float((p - true_cvr).mean()), "mean_abs_error": float(np.abs(p - true_cvr).mean())}
    cu, ci = np.repeat(users, candidates.shape[1]), candidates.ravel()
    pred = {n: {k: v.reshape(candidates.shape) for k, v in predict_multitask(m, cu, ci).items()}
            for n, m in models.items()}
    price = env.price[candidates]
    rankings = {"pCTR (CTR only)": pred["CTR only"]["click"],
                "pCTR x pCVR(clicks only) x price": (pred["CTR only"]["click"] * pred["CVR on clicks only"]["cvr"]
                                                     * price),
                "shared bottom pCTCVR x price": pred["shared bottom"]["purchase"] * price,
                "MMoE pCTCVR x price": pred["MMoE"]["purchase"] * price,
                "ESMM pCTR x pCVR x price": pred["ESMM"]["purchase"] * price,
                "truth: a x cvr x price": env.attractiveness[users[:, None], candidates] * env.cvr[candidates] * price}
    online = {n: {m: float(v.mean()) for m, v in env.expected(users, serve_from_candidates(s, candidates, 10)).items()}
              for n, s in rankings.items()}
    for n, row in online.items():
        print(f"{n:36s} CTR {row['CTR']:.4f} revenue/visit {row['revenue/visit']:.3f}")
    env_drift = copy.copy(env)
    tastes = trending_tastes(env.taste, args.rounds, 3.0, seed=args.seed)
    initial_log = impression_log(env_drift, candidates, rng.permutation(np.repeat(users, args.mt_visits)), 10,
                                 np.random.default_rng(args.seed + 40))
    rounds, _ = model_update_experiment(env_drift, tastes, candidates, cfg, user_mix, initial_log, k=10,
                                        steps_full=args.steps_full, steps_finetune=args.steps_finetune, period=2,
                                        window=3, threshold=0.1, n_explore=2, seed=args.seed)
    summary = {n: {"mean_CTR": float(g["CTR"].mean()), "last_CTR": float(g["CTR"].iloc[-1]),
                   "first_CTR": float(g["CTR"].iloc[0]), "updates": int((g["updated"] != "").sum()),
                   "training_steps": int(g["steps"].iloc[-1])}
               for n, g in rounds.groupby("strategy", sort=False)}
    print(rounds.pivot(index="round", columns="strategy", values="CTR").round(4).to_string())
    print(summary)
    payload = {
        "protocol": {"candidates": "EASE top 30", "slate": 10, "mt_visits": args.mt_visits, "mt_steps": args.mt_steps,
                     "rounds": args.rounds, "trend_strength": 3.0, "steps_full": args.steps_full,
                     "steps_finetune": args.steps_finetune, "period": 2, "window": 3, "psi_threshold": 0.1,
                     "explore_slots": 2, "strategies": list(STRATEGIES)},
        "impressions": int(len(train_log["c"])), "clicks": int(train_log["c"].sum()),
        "purchases": int(train_log["b"].sum()), "train_seconds": seconds, "cvr_bias": cvr_bias,
        "multitask_online": online, "updates_rounds": rounds.to_dict(orient="records"), "updates_summary": summary,
        "wall_seconds": time.perf_counter() - t_start, "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": (".venv/bin/python benchmarks/bench_online.py "
                    + " ".join(argv if argv is not None else sys.argv[1:])),
    }
    save_section(OUT, "multitask_and_updates", payload)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=["offline_vs_online", "updates"], default="offline_vs_online")
    parser.add_argument("--mt-visits", type=int, default=10, help="(updates) logged visits per user")
    parser.add_argument("--mt-steps", type=int, default=1500, help="(updates) Adam steps per multi-task model")
    parser.add_argument("--rounds", type=int, default=12, help="(updates) rounds of drifting tastes")
    parser.add_argument("--steps-full", type=int, default=1000, help="(updates) steps of a training from scratch")
    parser.add_argument("--steps-finetune", type=int, default=250, help="(updates) steps of a fine-tuning")
    parser.add_argument("--sasrec-budget", type=float, default=120.0, help="SASRec training seconds")
    parser.add_argument("--visits", type=int, default=100_000, help="simulated visits per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section == "updates":
        return updates_section(args, argv)
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
