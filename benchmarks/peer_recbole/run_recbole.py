#!/usr/bin/env python
"""Train RecBole 1.2.1's SASRec on the course's split, with validation every few minutes of training.

Runs in RecBole's own environment (``bash benchmarks/peer_recbole/setup.sh`` first, and
``export_split.py`` from the course's environment)::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 build/peer_recbole/.venv/bin/python \
        benchmarks/peer_recbole/run_recbole.py ml-100k --budget 1200 --every 240

Writes ``build/peer_recbole/recbole_<dataset>.json``: validation NDCG@10 against seconds of
training (validation time excluded), and the final test HR@10 / NDCG@10 of the best
validated weights. ``benchmarks/peer_recbole/compare.py`` puts it beside ours.

Settings (the issue's): SASRec, CE loss, ``MAX_ITEM_LIST_LENGTH`` 200, hidden size 64, 2 layers,
2 heads, RecBole's other defaults (inner size 256, dropout 0.5, lr 1e-3, batch 2048 — RecBole
trains on every prefix of every sequence, with the loss at its last position). Full-ranking
evaluation with seen items masked, on RecBole's chronological leave-one-out split of the
exported file, which the script checks to be identical to ours.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class TimedValidation:
    """Wrap RecBole's training DataLoader: every ``every`` seconds of training, validate (not timed)."""

    def __init__(self, loader, trainer, valid_data, every: float, budget: float, log: list):
        self._loader, self._trainer, self._valid = loader, trainer, valid_data
        self.every, self.budget, self.log = every, budget, log
        self.train_seconds, self._next = 0.0, every
        self.out_of_time = False

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        start = time.perf_counter()
        for batch in self._loader:
            yield batch
            now = time.perf_counter()
            self.train_seconds += now - start
            if self.train_seconds >= self._next or self.train_seconds >= self.budget:
                self._next += self.every
                score, result = self._trainer._valid_epoch(self._valid, show_progress=False)
                self.log.append({"train_s": self.train_seconds, **{k: float(v) for k, v in result.items()}})
                print(f"[{self.train_seconds:7.0f} s] valid {result}", flush=True)
                if score > self._trainer.best_valid_score:
                    self._trainer.best_valid_score = score
                    self._trainer._save_checkpoint(0, verbose=False)
                self._trainer.model.train()
                if self.train_seconds >= self.budget:
                    self.out_of_time = True
                    return
            start = time.perf_counter()


def main() -> None:
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", default="ml-100k")
    parser.add_argument("--budget", type=float, default=1200.0, help="seconds of training")
    parser.add_argument("--every", type=float, default=240.0, help="validate every this many seconds of training")
    args = parser.parse_args()
    os.chdir(ROOT / "build" / "peer_recbole")  # RecBole writes log/ and log_tensorboard/ into the working directory
    name = f"{args.dataset}-loo"
    data_dir = ROOT / "build" / "peer_recbole" / "data"
    config = Config(model="SASRec", dataset=name, config_dict={
        "data_path": str(data_dir), "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 200, "hidden_size": 64, "n_layers": 2, "n_heads": 2, "loss_type": "CE",
        "train_neg_sample_args": None, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                                                    "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "epochs": 1000, "eval_step": 1000,
        "device": "cpu", "use_gpu": False, "seed": 0, "reproducibility": True, "show_progress": False,
        "checkpoint_dir": str(ROOT / "build" / "peer_recbole" / "saved"), "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check = json.loads((data_dir / name / "check.json").read_text())
    assert dataset.user_num - 1 == check["n_users"] and dataset.item_num - 1 == check["n_items"], \
        "RecBole's dataset differs from the course's split"
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    log: list[dict] = []
    wrapped = TimedValidation(train_data, trainer, valid_data, args.every, args.budget, log)
    trainer.best_valid_score = -1.0
    epoch = 0
    load = os.getloadavg()
    while not wrapped.out_of_time:
        trainer._train_epoch(wrapped, epoch, show_progress=False)
        epoch += 1
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    out = ROOT / "build" / "peer_recbole" / f"recbole_{args.dataset}.json"
    out.write_text(json.dumps({"dataset": args.dataset, "budget_s": args.budget, "epochs_started": epoch,
                               "valid_curve": log, "test": {k: float(v) for k, v in test.items()},
                               "load_average_before": load, "load_average_after": os.getloadavg(),
                               "config": {k: str(config[k]) for k in ("MAX_ITEM_LIST_LENGTH", "hidden_size",
                                                                      "n_layers", "n_heads", "inner_size",
                                                                      "hidden_dropout_prob", "learning_rate",
                                                                      "train_batch_size", "loss_type")}},
                              indent=2))
    print("test", test, "->", out)


if __name__ == "__main__":
    main()
