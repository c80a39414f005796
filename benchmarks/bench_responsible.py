#!/usr/bin/env python
"""Chapter 11's tables: faithfulness of explanations, the DP-SGD privacy–utility curve, and forgetting a user.

    .venv/bin/python benchmarks/bench_responsible.py                 # -> benchmarks/results/responsible.json
    .venv/bin/python benchmarks/bench_responsible.py --only privacy --dp-epochs 20 --dp-items 1000
    .venv/bin/python benchmarks/bench_responsible.py --only forgetting --forget-users 300

**faithfulness** (the committed shop, chronological leave-one-out): SASRec (chapter 04's
recipe, full cross-entropy) trained for ``--sasrec-steps`` steps on train + validation;
for ``--n-explain`` random users, the top item (history masked) is explained by attention,
gradient × input, Integrated Gradients (captum) and leave-one-out
(:mod:`course_lib.explain`); each explanation's deletion curve (``k = 0..--deletion-k`` items
removed, most important first) against a random order; the area under the curve of the
top item's probability (lower = more faithful) with a 95% bootstrap interval over users, the
share of users whose top item survives 1 and 3 removals, and the mean Spearman agreement of
each method with leave-one-out.

**privacy** (MovieLens-1M, restricted to the ``--dp-items`` most rated items, histories
cut to the last ``--dp-max-len``; half the users train the model, the other half are the
non-members of the attack): :class:`course_lib.privacy.DPSeqRec` trained without privacy
and with DP-SGD (opacus, RDP accountant, user-level, δ = 1/members) at each ``--eps``;
full-ranking NDCG@10 of the members' test items, opacus' reported ε and noise multiplier,
and the loss-threshold membership attack's advantage and AUC next to the DP bound.

**forgetting** (the same subset and non-private model): ``--forget-users`` random members
ask to be erased; (a) retrain from scratch without them (:func:`course_lib.privacy.retrain_without`,
same recipe and seed), (b) fine-tune them away (:func:`course_lib.privacy.fine_tune_away`:
``--forget-steps`` steps of gradient ascent on their loss paired with descent on the rest),
or fine-tune on the rest for one epoch, (c) do nothing. For each: the membership attack's
AUC and advantage on the forgotten users against the non-members (0.5 = looks never
seen), the mean loss gap, the remaining members' full-ranking NDCG@10, optimiser steps.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from course_lib import explain as X
from course_lib import privacy as PV
from course_lib.analysis import bootstrap_ci
from course_lib.data import leave_one_out, load_dataset
from course_lib.evaluate import evaluate
from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.train import SequenceCollator, TrainConfig, Trainer

from _results import save_section

OUT = Path(__file__).resolve().parent / "results" / "responsible.json"


def faithfulness(args) -> dict:
    split = leave_one_out(load_dataset("shop"))
    seqs = [np.concatenate([split.train[u], [split.valid[u]]]) for u in range(split.n_users)]
    torch.manual_seed(args.seed)
    model = SASRec(SASRecConfig(n_items=split.n_items, max_len=args.max_len, d_model=64, n_heads=2, n_layers=2,
                                dropout=0.2, attn_dropout=0.0))
    cfg = TrainConfig(epochs=10_000, max_steps=args.sasrec_steps, schedule_unit="steps", batch_size=128, lr=3e-3,
                      warmup=0.05, min_lr_ratio=0.02, clip_norm=1.0, bucket_by_length=True, eval_every=0,
                      seed=args.seed, log_every=0, progress=False)
    trainer = Trainer(model, seqs, collate=SequenceCollator(split.n_items, args.max_len, loss="ce", trim=True,
                                                            seed=args.seed), config=cfg, device="cpu")
    trainer.fit()
    model = trainer.model.cpu().eval()
    ndcg = evaluate(model, split, "test", max_len=args.max_len, device="cpu")["NDCG@10"]
    users = np.sort(np.random.default_rng(args.seed).choice(split.n_users, size=args.n_explain, replace=False))
    hist = X.left_pad([seqs[u] for u in users], args.max_len)
    targets = X.top_items(model, hist)
    ids = model._inputs(hist)
    attr, seconds = {}, {}
    for m in X.METHODS:
        t = time.perf_counter()
        attr[m] = X.attribute(model, hist, targets, m, batch_size=128,
                              **({"n_steps": args.ig_steps} if m == "integrated_gradients" else {}))
        seconds[m] = time.perf_counter() - t
    ks = list(range(args.deletion_k + 1))
    orders = {m: X.deletion_order(attr[m], ids) for m in X.METHODS}
    orders["random"] = X.deletion_order(attr["attention"], ids, random=True, seed=args.seed)
    rows = {}
    for m, order in orders.items():
        c = X.deletion_curve(model, hist, targets, order, ks)
        area = X.area_under_curve(c["prob"])
        ci = bootstrap_ci(area, n_boot=1000, seed=args.seed)
        rows[m] = {"auc_prob": float(area.mean()), "auc_low": ci["low"], "auc_high": ci["high"],
                   "top1_kept_after_1": float(c["top1"][1].mean()), "top1_kept_after_3": float(c["top1"][3].mean()),
                   "curve_prob": c["prob"].mean(1).round(5).tolist(),
                   "spearman_with_loo": (float(np.nanmean(X.rank_agreement(attr[m], attr["leave_one_out"], ids)))
                                         if m in attr else None),
                   "seconds": seconds.get(m)}
    best = min(rows, key=lambda m: rows[m]["auc_prob"])
    print(f"SASRec NDCG@10 {ndcg:.4f} ({trainer.step} steps); most faithful: {best}")
    for m, r in rows.items():
        print(f"  {m:>22}: area {r['auc_prob']:.4f} [{r['auc_low']:.4f}, {r['auc_high']:.4f}], "
              f"top-1 kept after 1 removal {r['top1_kept_after_1']:.3f}")
    return {"sasrec_ndcg10": ndcg, "sasrec_steps": trainer.step, "users": int(args.n_explain), "ks": ks,
            "ig_steps": args.ig_steps, "most_faithful": best, "methods": rows}


def _dp_subset(args):
    """ML-1M's ``--dp-items`` most rated items; members / non-members; next-item tensors (as the notebook)."""
    ml = load_dataset("ml-1m")
    inter = ml.interactions
    keep = set(inter["item_id"].value_counts().index[:args.dp_items])
    split = leave_one_out(inter[inter["item_id"].isin(keep)], min_user_interactions=5, name="ml-1m-subset")
    perm = np.random.default_rng(args.seed + 2).permutation(split.n_users)
    members, non = np.sort(perm[: split.n_users // 2]), np.sort(perm[split.n_users // 2:])
    seqs = [np.concatenate([split.train[u], [split.valid[u]]]) for u in range(split.n_users)]
    x, y = PV.next_item_tensors(seqs, args.dp_max_len)
    return split, members, non, x, y


def privacy(args) -> dict:
    split, members, non, x, y = _dp_subset(args)
    delta = 1.0 / len(members)
    rows = []
    for eps in [None, *args.eps]:
        torch.manual_seed(args.seed)
        model = PV.DPSeqRec(PV.DPSeqRecConfig(n_items=split.n_items, max_len=args.dp_max_len, d_model=args.dp_d))
        t = time.perf_counter()
        res = PV.train_next_item(model, x[members], y[members], epochs=args.dp_epochs, batch_size=args.dp_batch,
                                 lr=3e-3, target_epsilon=eps, delta=delta, max_grad_norm=1.0, seed=args.seed)
        ndcg = evaluate(res["model"], split, "test", users=members, max_len=args.dp_max_len, device="cpu")["NDCG@10"]
        mia = PV.membership_advantage(PV.per_user_loss_batched(res["model"], x[members], y[members]),
                                      PV.per_user_loss_batched(res["model"], x[non], y[non]))
        row = {"target_epsilon": eps, "epsilon_opacus": None if eps is None else res["epsilon"],
               "noise_multiplier": res["noise_multiplier"], "steps": res["steps"], "ndcg10": ndcg,
               "attack_advantage": mia["advantage"], "attack_auc": mia["auc"],
               "dp_bound": None if eps is None else PV.dp_advantage_bound(res["epsilon"], delta),
               "seconds": time.perf_counter() - t}
        rows.append(row)
        print(f"  ε target {eps}: opacus ε {row['epsilon_opacus']}, NDCG@10 {ndcg:.4f}, "
              f"advantage {mia['advantage']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return {"dataset": f"ml-1m, {args.dp_items} most rated items", "users": split.n_users,
            "members": len(members), "delta": delta, "epochs": args.dp_epochs, "batch_size": args.dp_batch,
            "max_len": args.dp_max_len, "d_model": args.dp_d, "rows": rows}


def forgetting(args) -> dict:
    split, members, non, x, y = _dp_subset(args)

    def make_model():
        torch.manual_seed(args.seed)
        return PV.DPSeqRec(PV.DPSeqRecConfig(n_items=split.n_items, max_len=args.dp_max_len, d_model=args.dp_d))

    recipe = dict(epochs=args.dp_epochs, batch_size=args.dp_batch, lr=3e-3, seed=args.seed)
    original = PV.train_next_item(make_model(), x[members], y[members], **recipe)
    forget = np.sort(np.random.default_rng(args.seed + 5).choice(members, size=args.forget_users, replace=False))
    rest = np.setdiff1d(members, forget)
    options = {}
    t = time.perf_counter()
    options["do nothing"] = (original["model"], 0, 0.0)
    re = PV.retrain_without(make_model, x[members], y[members], np.searchsorted(members, forget), **recipe)
    options["retrain without them"] = (re["model"], re["steps"], time.perf_counter() - t)
    for steps in args.forget_steps:
        t = time.perf_counter()
        m = PV.fine_tune_away(original["model"], x[forget], y[forget], steps=steps, lr=1e-3, retain_inputs=x[rest],
                              retain_labels=y[rest], batch_size=args.dp_batch, seed=args.seed)
        options[f"fine-tune away, {steps} steps"] = (m, steps, time.perf_counter() - t)
    t = time.perf_counter()
    on_rest = PV.train_next_item(copy.deepcopy(original["model"]), x[rest], y[rest], epochs=1,
                                 batch_size=args.dp_batch, lr=1e-3, seed=args.seed)
    options["fine-tune on the rest, 1 epoch"] = (on_rest["model"], on_rest["steps"], time.perf_counter() - t)
    rows = []
    for name, (m, steps, seconds) in options.items():
        lf, ln = PV.per_user_loss_batched(m, x[forget], y[forget]), PV.per_user_loss_batched(m, x[non], y[non])
        mia = PV.membership_advantage(lf, ln)
        ndcg = evaluate(m, split, "test", users=rest, max_len=args.dp_max_len, device="cpu")["NDCG@10"]
        rows.append({"option": name, "membership_auc_forgotten": mia["auc"], "advantage_forgotten": mia["advantage"],
                     "loss_gap_forgotten_minus_nonmembers": float(lf.mean() - ln.mean()), "ndcg10_rest": ndcg,
                     "optimiser_steps": steps, "seconds": seconds})
        print(f"  {name:>32}: membership AUC {mia['auc']:.3f}, advantage {mia['advantage']:.3f}, "
              f"NDCG@10 (rest) {ndcg:.4f}, {steps} steps", flush=True)
    return {"dataset": f"ml-1m, {args.dp_items} most rated items", "members": len(members), "non_members": len(non),
            "forgotten": len(forget), "epochs": args.dp_epochs, "batch_size": args.dp_batch,
            "max_len": args.dp_max_len, "d_model": args.dp_d, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["faithfulness", "privacy", "forgetting"], default=None)
    parser.add_argument("--sasrec-steps", type=int, default=250, help="SASRec training steps (the notebook's)")
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--n-explain", type=int, default=600)
    parser.add_argument("--ig-steps", type=int, default=64)
    parser.add_argument("--deletion-k", type=int, default=10)
    parser.add_argument("--dp-items", type=int, default=300)
    parser.add_argument("--dp-max-len", type=int, default=20)
    parser.add_argument("--dp-d", type=int, default=32)
    parser.add_argument("--dp-epochs", type=int, default=6)
    parser.add_argument("--dp-batch", type=int, default=512)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    parser.add_argument("--forget-users", type=int, default=300, help="members who ask to be forgotten")
    parser.add_argument("--forget-steps", type=int, nargs="+", default=[2, 5, 10], help="gradient-ascent steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name, fn in (("faithfulness", faithfulness), ("privacy", privacy), ("forgetting", forgetting)):
        if args.only and args.only != name:
            continue
        load_before = os.getloadavg()
        t = time.perf_counter()
        payload = fn(args)
        payload.update({"command": " ".join([Path(sys.executable).name, *sys.argv]), "seconds": time.perf_counter() - t,
                        "load_before": load_before, "load_after": os.getloadavg(), "seed": args.seed})
        save_section(OUT, name, payload)


if __name__ == "__main__":
    main()
