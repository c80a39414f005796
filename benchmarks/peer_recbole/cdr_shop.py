#!/usr/bin/env python
"""RecBole-CDR beside the course on two of the shop's categories (chapter 09's cross-domain anchor).

Runs in the *course's* environment, in two steps around RecBole-CDR's run::

    .venv/bin/python benchmarks/peer_recbole/cdr_shop.py export        # -> build/peer_recbole/data/shop-{src,tgt}/
    (RecBole-CDR's environment) run_recbole_cdr.py CMF --epochs 300; run_recbole_cdr.py BiTGCF --epochs 300
    .venv/bin/python benchmarks/peer_recbole/cdr_shop.py record CMF BiTGCF   # ours + theirs -> results/features.json

The two domains are the planted complement pair of the shop: **source** = Phones, **target**
= Phone Accessories (a phone's case is a complement drawn in the other category). Both
libraries see the same target split: every user's target-domain purchases in time order
(users with at least 3), the last one is the test item, the one before it validation
(chronological leave-one-out; the exported timestamps are 0, 1, 2, ... per user so that
RecBole's ``LS: valid_and_test, order: TO`` reproduces ours exactly, and a check file lets
the RecBole-CDR run assert it). The source domain is training data only (RecBole-CDR's
``source_split: False``). Metrics: full ranking over the target domain's items, seen
items masked, HR@10 and NDCG@10.

Ours: the chapter's two-tower (ids + item features + MiniLM text, in-batch softmax with
log-Q) trained on the target split alone (it does not read the source domain), and target
popularity; RecBole-CDR's models read both domains. RecBole-CDR 0.1.0 pins scipy==1.6.0,
which has no wheel for Python 3.11, and its wheel lacks its models; run_recbole_cdr.py
says how its own environment is made to run it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
BUILD = ROOT / "build" / "peer_recbole"
SOURCE, TARGET = "Phones", "Phone Accessories"
OUT = ROOT / "benchmarks" / "results" / "features.json"


def target_split():
    from course_lib.data import leave_one_out, load_dataset

    shop = load_dataset("shop")
    cat = shop.items.set_index("item_id")["category"]
    inter = shop.interactions
    in_cat = cat.reindex(inter["item_id"]).to_numpy()
    tgt = inter[in_cat == TARGET].reset_index(drop=True)
    src = inter[in_cat == SOURCE].reset_index(drop=True)
    split = leave_one_out(tgt, items=shop.items[shop.items["category"] == TARGET].reset_index(drop=True),
                          name="shop-phone-accessories")
    return shop, split, src


def export() -> None:
    _, split, src = target_split()
    out_t, out_s = BUILD / "data" / "shop-tgt", BUILD / "data" / "shop-src"
    out_t.mkdir(parents=True, exist_ok=True)
    out_s.mkdir(parents=True, exist_ok=True)
    users = split.user_ids
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(split.n_users):
        seq = list(split.train[u]) + [split.valid[u], split.test[u]]
        lines += [f"u{users[u]}\tt{int(i)}\t{t}" for t, i in enumerate(seq)]
    (out_t / "shop-tgt.inter").write_text("\n".join(lines) + "\n")
    s_lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    s_lines += [f"u{u}\ts{i}\t{t}" for u, i, t in src[["user_id", "item_id", "timestamp"]].itertuples(index=False)]
    (out_s / "shop-src.inter").write_text("\n".join(s_lines) + "\n")
    check = {"n_users": split.n_users, "n_items": split.n_items,
             "test": {f"u{users[u]}": f"t{int(split.test[u])}" for u in range(split.n_users)},
             "valid": {f"u{users[u]}": f"t{int(split.valid[u])}" for u in range(split.n_users)}}
    (BUILD / "data" / "shop-cdr-check.json").write_text(json.dumps(check))
    overlap = len(set(src["user_id"]) & set(users))
    print(f"{split}; source {SOURCE}: {len(src):,} interactions, {src['user_id'].nunique():,} users "
          f"({overlap:,} also in the target split) -> {BUILD / 'data'}")


def record(models: list[str], steps: int) -> None:
    import torch

    from course_lib.evaluate import evaluate
    from course_lib.features import shop_item_features
    from course_lib.text import TextEncoder, item_texts
    from course_lib.towers import build_two_tower, examples, fit_two_tower

    from _results import save_section

    peers = {}
    for model in models:
        peer_file = BUILD / f"recbole_cdr_{model}.json"
        if not peer_file.exists():
            raise SystemExit(f"{peer_file.relative_to(ROOT)} is missing: run run_recbole_cdr.py {model} first")
        peers[model] = json.loads(peer_file.read_text())
    torch.set_num_threads(1)
    t0, load0 = time.perf_counter(), os.getloadavg()
    _, split, src = target_split()
    feats = shop_item_features(split)
    vecs = TextEncoder().encode(item_texts(split.items.iloc[1:]), progress=False)
    text = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
    tt = build_two_tower(split, item_features=feats, text=text, seed=0, max_len=50, d_model=64)
    fit_two_tower(tt, split, examples(split), steps=steps, batch_size=512, seed=0)
    ours = evaluate(tt.score_fn, split, "test", max_len=50)
    counts = np.zeros(split.n_items + 1)
    for seq in split.train:
        np.add.at(counts, seq, 1)
    pop = evaluate(np.tile(counts, (split.n_users, 1)), split, "test")
    rows = {"two-tower, target only (ours)": {"HR@10": ours["HR@10"], "NDCG@10": ours["NDCG@10"]},
            "popularity, target only": {"HR@10": pop["HR@10"], "NDCG@10": pop["NDCG@10"]}}
    for model, peer in peers.items():
        rows[f"RecBole-CDR {model}, source + target"] = {"HR@10": peer["test"]["hit@10"],
                                                         "NDCG@10": peer["test"]["ndcg@10"]}
    for k, v in rows.items():
        print(f"{k:40s} HR@10 {v['HR@10']:.4f}  NDCG@10 {v['NDCG@10']:.4f}")
    save_section(OUT, "recbole_cdr", {
        "command": f"python benchmarks/peer_recbole/cdr_shop.py record {' '.join(models)} --steps {steps}",
        "source_domain": SOURCE, "target_domain": TARGET,
        "target_split": {"users": split.n_users, "items": split.n_items,
                         "train_interactions": int(sum(len(s) for s in split.train))},
        "source_interactions": int(len(src)), "our_steps": steps, "peers": peers, "test": rows,
        "seconds": round(time.perf_counter() - t0, 1), "load_average_before": [round(x, 2) for x in load0],
        "load_average_after": [round(x, 2) for x in os.getloadavg()]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("export", "record"))
    p.add_argument("models", nargs="*", default=["CMF", "BiTGCF"])
    p.add_argument("--steps", type=int, default=300, help="our two-tower's training steps")
    args = p.parse_args()
    if args.step == "export":
        export()
    else:
        record(args.models, args.steps)


if __name__ == "__main__":
    main()
