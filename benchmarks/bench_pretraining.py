#!/usr/bin/env python
"""Chapter 06 on a CPU: BERT4Rec and the GPT-style model on ML-1M, and MiniLM item-text encoding.

    .venv/bin/python benchmarks/bench_pretraining.py throughput   # ~5 min   -> results/pretraining.json
    .venv/bin/python benchmarks/bench_pretraining.py quality      # ~25 min  -> results/pretraining.json
    .venv/bin/python benchmarks/bench_pretraining.py quality --budget 3600 --archs bert4rec  # the full-scale run
    .venv/bin/python benchmarks/bench_pretraining.py minilm       # ~2 min   -> results/pretraining.json
    .venv/bin/python benchmarks/bench_pretraining.py all
    .venv/bin/python benchmarks/bench_pretraining.py all --sanity  # ~20 s: a 200-user slice, tiny budgets;
                                                                   # writes build/pretraining.sanity.json

Protocol: ML-1M, 5-core on items, chronological leave-one-out, full ranking (every item
scored, seen items masked), as in the papers and chapter 06. Each part adds its section to
the JSON and keeps the others, with the machine, the torch thread count and the load average
before and after (other work on a shared machine slows every figure).

* ``throughput``: training sequences per second (forward, loss, backward, AdamW step;
  batch 128, max_len 200, hidden 64, 2 layers) of BERT4Rec for a ladder of changes, each on
  top of the previous — the paper's model with ``BertForMaskedLM``'s head at every position
  → the MLM loss only at masked positions → no attention-weight dropout → trimmed, bucketed
  batches — and of the GPT-style model (``GPT2LMHeadModel``, trimmed batches). Variants are
  measured **interleaved** (round-robin, several rounds, median).
* ``quality``: time-budgeted runs (training seconds; validation not counted) of BERT4Rec and
  of the GPT-style model with chapter 06's settings: the validation NDCG@10 curve against
  training seconds and the final test HR@10 / NDCG@10, beside the published BERT4Rec figures
  (NDCG@10 0.1537, HR@10 0.2843, Klenitskiy & Vasilev 2023; 0.1516, Petrov & Macdonald 2022).
* ``minilm``: all-MiniLM-L6-v2 item texts per second on the shop catalogue (title +
  description, cache off), and the cache hit that follows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from course_lib.data import leave_one_out, load_dataset
from course_lib.models.bert4rec import BERT4Rec, MaskedItemCollator
from course_lib.models.gpt_rec import GPTRec, NextItemCollator
from course_lib.train import TrainConfig, Trainer

from _results import interleaved_rounds, machine, save_section

RESULTS = Path(__file__).resolve().parent / "results"
PUBLISHED = {"BERT4Rec (Klenitskiy & Vasilev 2023)": {"HR@10": 0.2843, "NDCG@10": 0.1537},
             "BERT4Rec (Petrov & Macdonald 2022)": {"NDCG@10": 0.1516}}

# chapter 06's settings
BERT_MODEL = dict(max_len=200, hidden_size=64, num_layers=2, num_heads=2, dropout=0.1, attn_dropout=0.0)
BERT_COLLATE = dict(mask_prob=0.2, last_item_prob=0.1, trim=True)
GPT_MODEL = dict(max_len=200, hidden_size=64, num_layers=2, num_heads=2, dropout=0.1, attn_dropout=0.0)
TRAIN = dict(batch_size=128, schedule="cosine", schedule_unit="time", warmup=0.05, min_lr_ratio=0.02,
             clip_norm=1.0, precision="auto", bucket_by_length=True)
LR = {"bert4rec": 2e-3, "gpt": 3e-3}
# BERT4Rec recipes for ``quality --recipe``: "paper" is chapter 06's model; "pass-through" adds what the plateau
# probes found takes it off the popularity plateau (attention starts as a copy of the nearby items: pass-through
# initialisation + a more local ALiBi, max bias m 4 or 2, and a 0.5 % warm-up; see PROBES)
RECIPES = {"paper": {},
           "pass-through-m4": dict(model=dict(pass_through_init=4.0, alibi=True, alibi_max_bias=4.0),
                                   train=dict(warmup=0.005)),
           "pass-through-m2": dict(model=dict(pass_through_init=4.0, alibi=True, alibi_max_bias=2.0),
                                   train=dict(warmup=0.005))}


def ml1m(sanity: bool):
    data = load_dataset("ml-1m")
    if not sanity:
        return leave_one_out(data, min_item_interactions=5)
    keep = np.random.default_rng(0).choice(data.interactions["user_id"].unique(), 200, replace=False)
    return leave_one_out(data.interactions[data.interactions["user_id"].isin(keep)], items=data.items,
                         min_item_interactions=5, name="ml-1m (200-user slice)")


save = save_section


# --------------------------------------------------------------------------- throughput
BERT_LADDER = [
    # name, model kwargs (on top of the previous), masked_only, trim
    ("BERT4Rec paper: BertForMaskedLM head at every position", dict(attn_dropout=0.1), False, False),
    ("+ MLM loss only at masked positions", {}, True, False),
    ("+ no attention-weight dropout", dict(attn_dropout=0.0), True, False),
    ("+ trimmed, bucketed batches", {}, True, True),
]


def _runner(split, arch: str, model_kw: dict, masked_only: bool, trim: bool, batch_size: int):
    torch.manual_seed(0)
    if arch == "bert4rec":
        model = BERT4Rec.for_items(split.n_items, **model_kw)
        collate = MaskedItemCollator(split.n_items, model_kw["max_len"], mask_prob=0.2, last_item_prob=0.1,
                                     trim=trim, seed=0)
        loss_fn = lambda m, b: m.mlm_loss(b["input_ids"], b["labels"], masked_only=masked_only)
    else:
        model = GPTRec.for_items(split.n_items, **model_kw)
        collate = NextItemCollator(split.n_items, model_kw["max_len"], trim=trim, seed=0)
        loss_fn = None
    cfg = TrainConfig(epochs=1000, batch_size=batch_size, precision="auto", bucket_by_length=trim, progress=False,
                      log_every=0, eval_every=0, warmup=0)
    trainer = Trainer(model, split.train, collate=collate, config=cfg, device="cpu", loss_fn=loss_fn)
    batches = trainer.batches(0)
    trainer.training_step(next(batches))                          # warm-up (allocations, kernels)
    epoch = [0]

    def run(n_batches: int) -> tuple[int, float]:
        nonlocal batches
        seqs, seconds = 0, 0.0
        for _ in range(n_batches):
            batch = next(batches, None)
            if batch is None:
                epoch[0] += 1
                batches = trainer.batches(epoch[0])
                batch = next(batches)
            t = time.perf_counter()
            trainer.training_step(batch)
            seconds += time.perf_counter() - t
            seqs += len(batch["input_ids"])
        return seqs, seconds

    return run


def throughput(split, rounds: int = 5, batches_per_round: int = 6, batch_size: int = 128) -> dict:
    load_before = os.getloadavg()
    variants, model_kw = [], dict(BERT_MODEL)
    for name, mk, masked_only, trim in BERT_LADDER:
        model_kw = {**model_kw, **mk}
        variants.append((name, "bert4rec", dict(model_kw), masked_only, trim))
    variants.append(("GPT-style (GPT2LMHeadModel), trimmed, bucketed batches", "gpt", dict(GPT_MODEL), True, True))
    runners = [(v[0], _runner(split, v[1], v[2], v[3], v[4], batch_size)) for v in variants]
    per = interleaved_rounds(runners, rounds, batches_per_round)
    result = {"what": f"training sequences/s on {split.name} (batch {batch_size}, max_len 200, hidden 64, 2 layers), "
                      f"median over {rounds} interleaved rounds of {batches_per_round} batches",
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "variants": [{"name": name, "arch": v[1], "model": v[2], "masked_only": v[3], "trim": v[4],
                            "seq_per_s": statistics.median(per[name]), "rounds": per[name]}
                           for (name, _), v in zip(runners, variants)]}
    base = result["variants"][0]["seq_per_s"]
    print(f"\n{'variant':58s} {'seq/s':>8s} {'× paper':>8s}")
    for v in result["variants"]:
        print(f"{v['name']:58s} {v['seq_per_s']:8.1f} {v['seq_per_s'] / base:8.2f}")
    return result


# --------------------------------------------------------------------------- quality
def train_budgeted(split, arch: str, *, budget_s: float, eval_every_steps: int | None, eval_users: int | None,
                   seed: int = 0, recipe: str = "paper") -> dict:
    torch.manual_seed(seed)
    change = RECIPES[recipe] if arch == "bert4rec" else {}
    model_kw = {**BERT_MODEL, **change.get("model", {})} if arch == "bert4rec" else GPT_MODEL
    train = {**TRAIN, **change.get("train", {})}
    if arch == "bert4rec":
        model = BERT4Rec.for_items(split.n_items, **model_kw)
        collate = MaskedItemCollator(split.n_items, BERT_MODEL["max_len"], seed=seed, **BERT_COLLATE)
    else:
        model = GPTRec.for_items(split.n_items, **GPT_MODEL)
        collate = NextItemCollator(split.n_items, GPT_MODEL["max_len"], trim=True, seed=seed)
    cfg = TrainConfig(epochs=100_000, time_budget_s=budget_s, lr=LR[arch], eval_every=1,
                      eval_every_steps=eval_every_steps, eval_users=eval_users, seed=seed, progress=False,
                      log_every=1, **train)
    trainer = Trainer(model, split.train, collate=collate, split=split, config=cfg, device="cpu")
    load_before = os.getloadavg()
    wall0 = time.perf_counter()
    history = trainer.fit()
    wall_s = time.perf_counter() - wall0
    test = trainer.evaluate("test")
    xs, ys = history.valid_curve("NDCG@10", x="train_s")
    return {"arch": arch, "recipe": recipe if arch == "bert4rec" else None, "model": model_kw, "lr": LR[arch],
            "train": train,
            "budget_s": budget_s, "epochs_done": trainer.epoch, "steps": trainer.step,
            "train_seconds": trainer.train_seconds, "seq_per_s": trainer.step * cfg.batch_size / trainer.train_seconds,
            "wall_seconds_incl_validation": wall_s,
            "valid_curve": {"train_s": xs.tolist(), "NDCG@10": ys.tolist()},
            "best_valid_NDCG@10": history.best_score, "test": test,
            "load_average_before": load_before, "load_average_after": os.getloadavg()}


def quality(split, out: Path, budget_s: float, eval_every_steps: int | None, eval_users: int | None,
            archs: tuple[str, ...] = ("bert4rec", "gpt"), recipe: str = "paper") -> dict:
    """Budgeted runs; each finished run is saved at once (an interrupted benchmark keeps what it has).

    Runs already in the JSON under another budget are kept: each run records its own budget.
    """
    previous = json.loads(out.read_text()).get("quality", {}) if out.exists() else {}
    result = {"what": f"{split.name}, seconds of training (validation excluded; each run's budget_s), "
                      "full-ranking metrics",
              "published": PUBLISHED, "runs": dict(previous.get("runs", {}))}
    for arch in archs:
        other = arch == "bert4rec" and recipe != "paper"
        run = train_budgeted(split, arch, budget_s=budget_s, eval_every_steps=eval_every_steps, eval_users=eval_users,
                             recipe=recipe)
        run["torch_threads"] = torch.get_num_threads()
        run["machine"] = machine()                       # each run its own; the top-level one is left alone
        threads = torch.get_num_threads()
        run["command"] = (f".venv/bin/python benchmarks/bench_pretraining.py quality --budget {budget_s:g}"
                          f" --archs {arch}" + (f" --recipe {recipe}" if other else "")
                          + (f" --threads {threads}" if threads != os.cpu_count() else ""))
        if out.exists():                                 # another process may have added runs meanwhile
            result["runs"] = {**json.loads(out.read_text()).get("quality", {}).get("runs", {}), **result["runs"]}
        result["runs"][f"{arch}{f' {recipe}' if other else ''}, {budget_s:g} s"] = run
        print(f"{arch}: {run['steps']} steps, test {run['test']}", flush=True)
        save(out, "quality", result, top_machine=False)
    return result


# --------------------------------------------------------------------------- plateau probes
# One change at a time from the long run's recipe (``quality --budget 3600``): the first minutes of
# that run, with its 60-minute schedule (warm-up = 5 % of the budget = 180 s), cut at a fixed number
# of optimiser steps so that probes on a busy machine still do the same work.
PROBES = {
    "long-run recipe (lr 2e-3, warm-up 180 s, mask 0.2, last item 0.1)": {},
    "warm-up 18 s instead of 180 s": dict(warmup=0.005),
    "peak lr 5e-3": dict(lr=5e-3),
    "mask rate 0.4": dict(collate=dict(mask_prob=0.4)),
    "last-item objective on half the sequences": dict(collate=dict(last_item_prob=0.5)),
    "output bias starts at log popularity": dict(bias="log_pop"),
    "output bias frozen at 0": dict(bias="frozen_zero"),
    "init std 0.1 (HF default 0.02)": dict(model=dict(initializer_range=0.1)),
    "all of the above at once (warm-up 18 s, lr 5e-3, mask 0.4, last item 0.5, log-popularity bias, init 0.1)":
        dict(warmup=0.005, lr=5e-3, collate=dict(mask_prob=0.4, last_item_prob=0.5), bias="log_pop",
             model=dict(initializer_range=0.1)),
    "no gradient clipping": dict(clip_norm=None),
    "no dropout": dict(model=dict(dropout=0.0)),
    "batch 32 instead of 128 (more, cheaper steps)": dict(batch_size=32),
    # the hypothesis after the 11 probes above: a masked position holds no item of its own, so BERT4Rec must first
    # learn to attend to its neighbours (SASRec's position t holds item t in its residual stream from the start)
    "ALiBi distance bias in attention (each head prefers nearby items from the start)": dict(model=dict(alibi=True)),
    "ALiBi + warm-up 18 s + lr 5e-3": dict(model=dict(alibi=True), warmup=0.005, lr=5e-3),
    # the second hypothesis: the masked position does attend to its neighbours, but what attention passes on is
    # W_O W_V x with random 0.02-scale matrices, scrambled and small; start W_V, W_O (x 4) and the head at the
    # identity, so that from step one it passes on the items themselves (with ALiBi: the nearby ones)
    "pass-through init (W_V, W_O x 4 and the head's dense layer start at the identity)":
        dict(model=dict(pass_through_init=4.0)),
    "pass-through init + ALiBi": dict(model=dict(pass_through_init=4.0, alibi=True)),
    "pass-through init + ALiBi + warm-up 18 s": dict(model=dict(pass_through_init=4.0, alibi=True), warmup=0.005),
    "more local ALiBi (m 4: slopes 1/4 and 1/16) + warm-up 18 s": dict(model=dict(alibi=True, alibi_max_bias=4.0),
                                                                   warmup=0.005),
    "pass-through init + more local ALiBi (m 4) + warm-up 18 s":
        dict(model=dict(pass_through_init=4.0, alibi=True, alibi_max_bias=4.0), warmup=0.005),
    "pass-through init + most local ALiBi (m 2: slopes 1/2 and 1/4) + warm-up 18 s":
        dict(model=dict(pass_through_init=4.0, alibi=True, alibi_max_bias=2.0), warmup=0.005),
}


def _probe_model(split, change: dict, seed: int):
    torch.manual_seed(seed)
    model = BERT4Rec.for_items(split.n_items, **{**BERT_MODEL, **change.get("model", {})})
    bias = model.cls.predictions.bias
    if change.get("bias") == "log_pop":
        counts = np.bincount(np.concatenate([np.asarray(s) for s in split.train]), minlength=bias.shape[0])
        with torch.no_grad():
            bias[1:split.n_items + 1] = torch.log(torch.as_tensor(counts[1:split.n_items + 1], dtype=torch.float) + 1.0)
            bias[1:split.n_items + 1] -= bias[1:split.n_items + 1].mean()
    elif change.get("bias") == "frozen_zero":
        with torch.no_grad():
            bias.zero_()
        bias.requires_grad_(False)
    return model


def plateau_probe(split, change: dict, *, steps: int, eval_every_steps: int, eval_users: int, seed: int = 0,
                  schedule_s: float = 3600.0) -> dict:
    """A short run of ``steps`` optimiser steps with the long run's schedule and one ``change``."""
    model = _probe_model(split, change, seed)
    collate = MaskedItemCollator(split.n_items, BERT_MODEL["max_len"], seed=seed,
                                 **{**BERT_COLLATE, **change.get("collate", {})})
    train = {**TRAIN, **{k: change[k] for k in ("warmup", "clip_norm", "batch_size") if k in change}}
    cfg = TrainConfig(epochs=100_000, time_budget_s=schedule_s, max_steps=steps, lr=change.get("lr", LR["bert4rec"]),
                      eval_every=0, eval_every_steps=eval_every_steps, eval_users=eval_users, seed=seed,
                      progress=False, log_every=1, **train)
    trainer = Trainer(model, split.train, collate=collate, split=split, config=cfg, device="cpu")
    history = trainer.fit()
    evals = history.evals
    return {"steps": trainer.step, "train_seconds": trainer.train_seconds,
            "curve": {"step": [e["step"] for e in evals], "train_s": [e["train_s"] for e in evals],
                      "NDCG@10": [e["NDCG@10"] for e in evals]},
            "loss_every_25_steps": [float(np.mean(history.steps["loss"][i:i + 25]))
                                    for i in range(0, len(history.steps["loss"]), 25)]}


def plateau(split, *, steps: int, eval_every_steps: int, eval_users: int, names: list[str] | None = None,
            out: Path | None = None) -> dict:
    """Which change takes BERT4Rec off the popularity plateau fastest (see ``PROBES``)."""
    from course_lib.baselines import MostPopular
    from course_lib.evaluate import evaluate

    rng = np.random.default_rng(0)                       # the Trainer's own choice of validation users
    users = np.sort(rng.choice(split.n_users, eval_users, replace=False))
    popular = evaluate(MostPopular().fit(split), split, "valid", users=users)["NDCG@10"]
    previous = json.loads(out.read_text()).get("plateau", {}) if out is not None and out.exists() else {}
    result = {"what": f"{split.name}: BERT4Rec's first optimiser steps (each probe's 'steps') under the 60-minute "
                      f"run's schedule, one change at a time; validation NDCG@10 on {eval_users} users every "
                      f"{eval_every_steps} steps; "
                      "'off the plateau' = the first validation at or above twice the most-popular ranking's",
              "most_popular_valid_NDCG@10": popular, "threshold": 2 * popular,
              "probes": dict(previous.get("probes", {}))}
    for name, change in PROBES.items():
        if names and not any(n == name or (n in name and n not in PROBES) for n in names):
            continue
        load_before = os.getloadavg()
        run = plateau_probe(split, change, steps=steps, eval_every_steps=eval_every_steps, eval_users=eval_users)
        ys = np.array(run["curve"]["NDCG@10"])
        off = np.flatnonzero(ys >= 2 * popular)
        run.update(change={k: v for k, v in change.items()}, load_average_before=load_before,
                   load_average_after=os.getloadavg(), torch_threads=torch.get_num_threads(), machine=machine(),
                   off_plateau_step=int(run["curve"]["step"][off[0]]) if len(off) else None,
                   off_plateau_train_s=float(run["curve"]["train_s"][off[0]]) if len(off) else None)
        if out is not None and out.exists():            # another process may have added probes meanwhile
            result["probes"] = {**json.loads(out.read_text()).get("plateau", {}).get("probes", {}),
                                **result["probes"]}
        # probes on more than one thread get their own key (chapter 06 compares the one-thread probes by name)
        key = name + (f", {run['torch_threads']} threads" if run["torch_threads"] > 1 else "")
        result["probes"][key] = run
        secs = run["off_plateau_train_s"]
        print(f"{key:70s} off the plateau at step {run['off_plateau_step']} "
              f"({'-' if secs is None else round(secs)} s); NDCG@10 at the end {ys[-1]:.4f}", flush=True)
        if out is not None:
            save(out, "plateau", result, top_machine=False)
    return result


# --------------------------------------------------------------------------- MiniLM
def minilm(n_texts: int | None) -> dict:
    import tempfile

    from course_lib.text import TextEncoder, item_texts

    texts = item_texts(load_dataset("shop").items)[:n_texts]
    load_before = os.getloadavg()
    enc = TextEncoder(cache=False, device="cpu")
    t = time.perf_counter()
    enc.encode(texts[:8])                                          # loads the model
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    enc.encode(texts)
    encode_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as folder:
        cached = TextEncoder(cache=folder, device="cpu")
        cached.model, cached.tokenizer = enc.model, enc.tokenizer
        cached.encode(texts)
        t = time.perf_counter()
        cached.encode(texts)
        hit_s = time.perf_counter() - t
    result = {"what": "all-MiniLM-L6-v2 on shop item texts (title + description), batch 64, max_length 128, CPU",
              "texts": len(texts), "model_load_s": load_s, "encode_s": encode_s, "items_per_s": len(texts) / encode_s,
              "cache_hit_s": hit_s, "load_average_before": load_before, "load_average_after": os.getloadavg()}
    print(f"MiniLM: {len(texts)} texts in {encode_s:.1f} s = {result['items_per_s']:.0f} items/s; "
          f"cache hit {hit_s * 1000:.0f} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["throughput", "quality", "minilm", "plateau", "all"])
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of training per quality run")
    parser.add_argument("--archs", default="bert4rec,gpt", help="quality: comma-separated, of bert4rec, gpt")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="paper", help="quality: the BERT4Rec recipe")
    parser.add_argument("--sanity", action="store_true",
                        help="a few seconds: 200-user slice, tiny budgets, separate output file")
    parser.add_argument("--probe-steps", type=int, default=300, help="plateau: optimiser steps per probe")
    parser.add_argument("--probes", default="", help="plateau: comma-separated probe names, or substrings of them "
                                                     "(a whole name runs only that probe; default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = RESULTS.parents[1] / "build" / "pretraining.sanity.json" if args.sanity else RESULTS / "pretraining.json"
    parts = ["throughput", "quality", "minilm"] if args.part == "all" else [args.part]
    split = ml1m(args.sanity) if {"throughput", "quality", "plateau"} & set(parts) else None
    for part in parts:
        if part == "throughput":
            save(out, part, throughput(split, rounds=1 if args.sanity else 5, batches_per_round=1 if args.sanity else 6,
                                       batch_size=32 if args.sanity else 128))
        elif part == "quality":
            quality(split, out, budget_s=2.0 if args.sanity else args.budget,
                    eval_every_steps=None if args.sanity else 40 * max(1, round(args.budget / 600)),
                    eval_users=None if args.sanity else 2000,
                    archs=tuple(a for a in args.archs.split(",") if a), recipe=args.recipe)
        elif part == "plateau":
            plateau(split, steps=10 if args.sanity else args.probe_steps, eval_every_steps=5 if args.sanity else 25,
                    eval_users=50 if args.sanity else 1000, names=[n for n in args.probes.split(",") if n], out=out)
        else:
            save(out, part, minilm(32 if args.sanity else None))


if __name__ == "__main__":
    main()
