#!/usr/bin/env python
"""Our SASRec beside RecBole's, on the identical split and the same wall-clock budget.

Runs in the *course's* environment, after RecBole's run (``run_recbole.py``) has written
``build/peer_recbole/recbole_<dataset>.json``::

    .venv/bin/python benchmarks/peer_recbole/compare.py ml-100k --budget 1200
    .venv/bin/python benchmarks/peer_recbole/compare.py ml-1m --budget 2700

Trains the course's SASRec with the tuned recipe of ``benchmarks/bench_sasrec.py`` (full CE,
max_len 200, d 64, 2 layers, 2 heads; cosine schedule spread over the budget; validation on
every user after every epoch, not counted in the budget; early stopping after ``--patience``
validations without improvement, best weights restored), then writes both curves of
validation NDCG@10 against seconds of training, the final test HR@10 / NDCG@10 of each
(best validated weights), the seconds each needs to reach RecBole's best validation score,
and the ratio, into ``benchmarks/results/sasrec_vs_recbole.json`` (one section per dataset)
with a plot ``benchmarks/results/sasrec_vs_recbole_<dataset>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

OUT = ROOT / "benchmarks" / "results" / "sasrec_vs_recbole.json"


def first_reach(xs, ys, level: float) -> float | None:
    """Seconds at which a curve first reaches ``level`` (``None`` if it never does)."""
    return next((float(x) for x, y in zip(xs, ys) if y >= level), None)


def main() -> None:
    from bench_sasrec import TUNED_MODEL, TUNED_TRAIN, machine, train_budgeted

    from course_lib.data import leave_one_out, load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("ml-100k", "ml-1m"))
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds of training (as RecBole's run)")
    parser.add_argument("--patience", type=int, default=15, help="validations without improvement before stopping")
    parser.add_argument("--eval-every-steps", type=int, default=None,
                        help="also validate every this many optimizer steps (default: after every epoch only)")
    parser.add_argument("--reuse-ours", action="store_true",
                        help="use our run saved by an earlier call with the same budget (build/peer_recbole/)")
    args = parser.parse_args()

    peer_file = ROOT / "build" / "peer_recbole" / f"recbole_{args.dataset}.json"
    ours_file = ROOT / "build" / "peer_recbole" / f"ours_{args.dataset}_{args.budget:g}.json"
    if args.reuse_ours and ours_file.exists():
        ours = json.loads(ours_file.read_text())
        print(f"ours: read {ours_file.relative_to(ROOT)} (trained earlier with the same budget)", flush=True)
    else:
        if not peer_file.exists():
            print(f"note: {peer_file.relative_to(ROOT)} is missing: ours trains now (it can run beside RecBole); "
                  f"then rerun with --reuse-ours once RecBole's run has written its file", flush=True)
        split = leave_one_out(load_dataset(args.dataset), min_item_interactions=5)
        print(split, "load:", os.getloadavg(), flush=True)
        ours = train_budgeted(split, TUNED_MODEL, dict(TUNED_TRAIN, patience=args.patience), budget_s=args.budget,
                              epochs=100_000, eval_every_steps=args.eval_every_steps)
        ours_file.parent.mkdir(parents=True, exist_ok=True)
        ours_file.write_text(json.dumps(ours, indent=2, default=float))
    if not peer_file.exists():
        raise SystemExit(f"{peer_file.relative_to(ROOT)} is missing: run RecBole (run_recbole.py), then this "
                         f"script again with --reuse-ours")
    peer = json.loads(peer_file.read_text())
    if abs(peer["budget_s"] - args.budget) > 1e-6:
        print(f"note: RecBole ran {peer['budget_s']:.0f} s, ours gets {args.budget:.0f} s", flush=True)

    peer_x = [p["train_s"] for p in peer["valid_curve"]]
    peer_y = [p["ndcg@10"] for p in peer["valid_curve"]]
    peer_best = max(peer_y)
    ours_x, ours_y = ours["valid_curve"]["train_s"], ours["valid_curve"]["NDCG@10"]
    t_peer = first_reach(peer_x, peer_y, peer_best)
    t_ours = first_reach(ours_x, ours_y, peer_best)
    import torch

    threads = torch.get_num_threads()
    env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    section = {
        "what": f"SASRec on {args.dataset} (5-core items, chronological leave-one-out, full ranking), "
                f"{args.budget:.0f} s of training each, validation not counted",
        "command": f"{env}.venv/bin/python benchmarks/peer_recbole/compare.py {args.dataset} --budget {args.budget:g} "
                   f"--patience {args.patience}",
        "peer_command": f"{env}TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 build/peer_recbole/.venv/bin/python "
                        f"benchmarks/peer_recbole/run_recbole.py {args.dataset} --budget {peer['budget_s']:g}",
        "machine": machine(),
        "recbole": {"config": peer["config"], "valid_curve": {"train_s": peer_x, "NDCG@10": peer_y},
                    "best_valid_NDCG@10": peer_best, "seconds_to_best": t_peer,
                    "test": {"HR@10": peer["test"]["hit@10"], "NDCG@10": peer["test"]["ndcg@10"]},
                    "epochs_started": peer["epochs_started"],
                    "load_average": [peer["load_average_before"], peer["load_average_after"]]},
        "ours": {"model": ours["model"], "train": ours["train"],
                 "valid_curve": {"train_s": ours_x, "NDCG@10": ours_y},
                 "best_valid_NDCG@10": ours["best_valid_NDCG@10"], "train_seconds": ours["train_seconds"],
                 "epochs_done": ours["epochs_done"], "seq_per_s": ours["seq_per_s"],
                 "seconds_to_recbole_best": t_ours, "test": ours["test"],
                 "load_average": [ours["load_average_before"], ours["load_average_after"]]},
        "time_ratio_to_recbole_best": (t_ours / t_peer) if (t_ours is not None and t_peer) else None,
    }
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[args.dataset] = section
    OUT.write_text(json.dumps(doc, indent=2))
    print(f"RecBole best valid NDCG@10 {peer_best:.4f} at {t_peer:.0f} s; ours reaches it at "
          f"{'never' if t_ours is None else f'{t_ours:.0f} s'}; ours best {ours['best_valid_NDCG@10']:.4f}")
    print(f"test NDCG@10: RecBole {section['recbole']['test']['NDCG@10']:.4f}, ours {ours['test']['NDCG@10']:.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=80)
    ax.plot(ours_x, ours_y, marker="o", ms=2, label="course_lib SASRec (full CE)")
    ax.plot(peer_x, peer_y, marker="s", ms=4, label="RecBole 1.2.1 SASRec (CE)")
    ax.axhline(peer_best, ls=":", color="grey", lw=1)
    ax.set(xlabel=f"seconds of training ({threads} CPU thread{'s' if threads > 1 else ''} each, validation excluded)",
           ylabel="validation NDCG@10",
           title=f"SASRec on {args.dataset}: the same split, the same budget")
    ax.legend()
    fig.tight_layout()
    png = OUT.with_name(f"sasrec_vs_recbole_{args.dataset}.png")
    fig.savefig(png)
    print("->", OUT.relative_to(ROOT), png.relative_to(ROOT))


if __name__ == "__main__":
    main()
