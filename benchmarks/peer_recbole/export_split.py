#!/usr/bin/env python
"""Write the course's leave-one-out split as a RecBole atomic file, so both libraries see the same data.

    .venv/bin/python benchmarks/peer_recbole/export_split.py ml-100k   # -> build/peer_recbole/data/ml-100k-loo/

Runs in the *course's* environment. Each user's sequence (train + valid + test, internal ids)
is written with timestamps 0, 1, 2, ... so RecBole's chronological leave-one-out
(``eval_args: {split: {LS: valid_and_test}, order: TO}``) reproduces exactly our train /
valid / test, ties included. The check file lists every user's (valid, test) items so the
RecBole run can assert the splits agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from course_lib.data import leave_one_out, load_dataset

ROOT = Path(__file__).resolve().parents[2]


def main(name: str) -> None:
    split = leave_one_out(load_dataset(name), min_item_interactions=5)
    out = ROOT / "build" / "peer_recbole" / "data" / f"{name}-loo"
    out.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(split.n_users):
        seq = list(split.train[u]) + [split.valid[u], split.test[u]]
        lines += [f"{u}\t{int(i)}\t{t}" for t, i in enumerate(seq)]
    (out / f"{name}-loo.inter").write_text("\n".join(lines) + "\n")
    (out / "check.json").write_text(json.dumps({"n_users": split.n_users, "n_items": split.n_items,
                                                "valid": split.valid.tolist(), "test": split.test.tolist()}))
    print(f"{split} -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ml-100k")
