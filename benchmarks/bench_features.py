"""Chapter 09's measured tables: feature ablations of the two-tower (and SASRec on the same
split), the DCN-v2 ranker, the four cross-category set-ups and cold-category transfer.

Writes ``benchmarks/results/features.json`` with sections ``ablation``, ``ranker``,
``four_ways`` and ``transfer``; each records the command, its settings, the load average
before and after, and its wall-clock seconds. Training is step-budgeted, so the quality
figures do not depend on the machine's load (the seconds do).

    python benchmarks/bench_features.py --steps 900 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course_lib import domains as dm
from course_lib import ranking as R
from course_lib.data import leave_one_out, load_dataset
from course_lib.evaluate import evaluate
from course_lib.features import (
    TIME_CARDINALITIES,
    shop_item_features,
    split_time_features,
    stage_context,
    training_item_mask,
)
from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.text import TextEncoder, item_texts
from course_lib.towers import build_two_tower, examples, fit_two_tower, user_table
from course_lib.train import SequenceCollator, TrainConfig, Trainer

from _results import save_section

OUT = Path(__file__).resolve().parent / "results" / "features.json"


def _meta(args, t0, load0) -> dict:
    return {"command": "python benchmarks/bench_features.py " + " ".join(sys.argv[1:]), "settings": vars(args),
            "seconds": round(time.perf_counter() - t0, 1), "load_average_before": [round(x, 2) for x in load0],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=900, help="two-tower / SASRec training steps")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--ranker-steps", type=int, default=600)
    p.add_argument("--domain-steps", type=int, default=60)
    p.add_argument("--finetune-steps", type=int, default=30)
    p.add_argument("--cold-users", type=int, nargs="+", default=[0, 25, 100, 400])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", default=["ablation", "ranker", "four_ways", "transfer"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shop = load_dataset("shop")
    split = leave_one_out(shop)
    feats = shop_item_features(split)
    tf = split_time_features(split)
    vecs = TextEncoder().encode(item_texts(split.items.iloc[1:]))
    text = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
    base = dict(max_len=args.max_len, d_model=args.d_model)
    full_kw = dict(item_features=feats, text=text, user_cardinalities=TIME_CARDINALITIES, **base)
    train_len = np.array([len(s) for s in split.train])
    seen = training_item_mask(split)
    groups = {"all": np.ones(split.n_users, bool), "cold users (<=5)": train_len <= 5, "warm users": train_len > 5,
              "cold items": ~seen[split.test], "warm items": seen[split.test]}

    def by_group(pu):
        v = pu.sort_values("user")["NDCG@10"].to_numpy()
        return {g: {"NDCG@10": float(v[m].mean()), "users": int(m.sum())} for g, m in groups.items() if m.any()}

    tt = None
    if "ablation" in args.only or "ranker" in args.only:
        t0, load0 = time.perf_counter(), os.getloadavg()
        rows = {}
        variants = {"ids only": dict(**base),
                    "ids + features": dict(item_features=feats, user_cardinalities=TIME_CARDINALITIES, **base),
                    "ids + features + text": full_kw,
                    "features + text, no ids": dict(full_kw, use_ids=False),
                    "ids + features + text, no log-Q": dict(full_kw, logq=False)}
        for name, kw in variants.items():
            m = build_two_tower(split, seed=0, **kw)
            fit_two_tower(m, split, examples(split), steps=args.steps, batch_size=args.batch_size,
                          time_feats=tf if "user_cardinalities" in kw else None)
            m.set_user_features(user_table(split, "test", time_feats=tf) if "user_cardinalities" in kw else None)
            _, pu = evaluate(m.score_fn, split, "test", max_len=args.max_len, per_user=True)
            rows[name] = by_group(pu)
            print(name, rows[name]["all"], flush=True)
            if name == "ids + features + text":
                tt = m
        torch.manual_seed(0)
        sas = SASRec(SASRecConfig(n_items=split.n_items, max_len=args.max_len, d_model=args.d_model))
        Trainer(sas, split.train, collate=SequenceCollator(split.n_items, max_len=args.max_len, loss="ce", seed=0),
                config=TrainConfig(epochs=1000, batch_size=128, lr=2e-3, max_steps=args.steps, eval_every=0,
                                   progress=False, log_every=0), device="cpu").fit()
        _, pu = evaluate(sas.eval().score_fn, split, "test", max_len=args.max_len, per_user=True)
        rows["SASRec (ids, order)"] = by_group(pu)
        print("SASRec", rows["SASRec (ids, order)"]["all"], flush=True)
        if "ablation" in args.only:
            save_section(OUT, "ablation", {**_meta(args, t0, load0), "test NDCG@10 by group": rows})
    if "ranker" in args.only:
        t0, load0 = time.perf_counter(), os.getloadavg()
        pf = {}
        for stage in ("valid", "test"):
            tt.set_user_features(user_table(split, stage, time_feats=tf))
            cand, sc = R.retrieve(tt.score_fn, split, stage, args.candidates, max_len=args.max_len)
            pf[stage] = (cand, R.pair_features(split, stage, cand, sc, feats, context=stage_context(split, tf, stage),
                                               context_cardinalities=TIME_CARDINALITIES))
        idx, y = R.sample_pairs(pf["valid"][0], split.valid, 20, seed=0)
        ranker = R.fit_ranker(pf["valid"][1], idx, y, steps=args.ranker_steps)
        cand, f_t = pf["test"]
        idx_t, y_t = R.sample_pairs(cand, split.test, 20, seed=1)
        p_t = R.predict(ranker, f_t, idx_t)
        rr = R.rerank_scores(split, cand, R.predict(ranker, f_t).reshape(cand.shape))
        out = {"candidates": args.candidates, "recall@candidates": float((cand == split.test[:, None]).any(1).mean()),
               "AUC": R.roc_auc(p_t, y_t), "log_loss": R.log_loss(p_t, y_t),
               "log_loss_base_rate": R.log_loss(np.full_like(p_t, y_t.mean()), y_t),
               "ECE": R.expected_calibration_error(p_t, y_t)[0],
               "NDCG@10 two-tower": evaluate(tt.score_fn, split, "test", max_len=args.max_len)["NDCG@10"],
               "NDCG@10 two-tower + DCN-v2": evaluate(rr, split, "test")["NDCG@10"]}
        print(out, flush=True)
        save_section(OUT, "ranker", {**_meta(args, t0, load0), **out})
    doms, names = dm.item_domains(split)
    fit_kw = dict(time_feats=tf)
    if "four_ways" in args.only:
        t0, load0 = time.perf_counter(), os.getloadavg()
        table, _ = dm.four_ways(split, doms, names, steps=args.steps, domain_steps=args.domain_steps,
                                finetune_steps=args.finetune_steps, batch_size=args.batch_size,
                                tower_kwargs=full_kw, fit_kwargs=fit_kw, max_len=args.max_len)
        print(table.pivot_table(index="domain", columns="setup", values="NDCG@10").round(4), flush=True)
        save_section(OUT, "four_ways", {**_meta(args, t0, load0), "rows": table.to_dict(orient="records")})
    if "transfer" in args.only:
        t0, load0 = time.perf_counter(), os.getloadavg()
        cold = names.index(shop.truth["cold_category"]) + 1
        tr = dm.cold_domain_transfer(split, doms, cold, n_users=args.cold_users, seeds=args.seeds,
                                     pretrain_steps=args.steps, finetune_steps=args.finetune_steps,
                                     batch_size=args.batch_size, tower_kwargs=full_kw, fit_kwargs=fit_kw,
                                     max_len=args.max_len)
        summary = tr.groupby(["method", "n_users"])["NDCG@10"].agg(["mean", "std", "count"]).reset_index()
        print(summary.round(4), flush=True)
        save_section(OUT, "transfer", {**_meta(args, t0, load0), "cold_category": shop.truth["cold_category"],
                                       "runs": tr.to_dict(orient="records"),
                                       "summary": summary.to_dict(orient="records")})


if __name__ == "__main__":
    main()
