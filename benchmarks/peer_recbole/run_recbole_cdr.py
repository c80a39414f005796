#!/usr/bin/env python
"""Train one RecBole-CDR model on the shop's two exported categories (source Phones, target
Phone Accessories) and test it on the target domain.

Runs in RecBole-CDR's own environment, which needs three work-arounds on Python 3.11:

* RecBole-CDR 0.1.0 (its only release) pins ``scipy==1.6.0``, which has no wheel for
  Python 3.11: it goes in with ``--no-deps``, beside RecBole 1.0.1 (the version its
  requirements.txt names; RecBole 1.2.1 fails in ``CDRConfig`` with
  ``_set_eval_neg_sample_args() missing 1 required positional argument: 'phase'``);
* the PyPI wheel lacks the models themselves (``recbole_cdr/model/cross_domain_recommender/``
  has no ``__init__.py``, so packaging skipped it: ``No module named
  'recbole_cdr.model.cross_domain_recommender'``); the source tree of GitHub
  RUCAIBox/RecBole-CDR at commit d339918 is put first on ``PYTHONPATH`` instead;
* BiTGCF calls ``dok_matrix._update``, which newer SciPy removed: scipy 1.10.1.

::

    python3 -m venv build/venv-cdr
    build/venv-cdr/bin/pip install "recbole==1.2.1" "numpy<2" "pandas<3" "scipy<1.14" "setuptools<81" "torch==2.13.0"
    build/venv-cdr/bin/pip install --no-deps recbole==1.0.1 recbole-cdr==0.1.0 scipy==1.10.1
    git clone https://github.com/RUCAIBox/RecBole-CDR build/venv-cdr/src && git -C build/venv-cdr/src checkout d339918
    PYTHONPATH=build/venv-cdr/src TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 \
        build/venv-cdr/bin/python benchmarks/peer_recbole/run_recbole_cdr.py CMF --epochs 300

after ``cdr_shop.py export`` (course environment). Chronological leave-one-out on the target
domain (``LS: valid_and_test``, ``order: TO``), full ranking over the target items, HR@10
and NDCG@10; the split is checked against the course's. Writes
``build/peer_recbole/recbole_cdr_<model>.json``; ``cdr_shop.py record`` puts it beside ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "peer_recbole"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", default="CMF", nargs="?")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    from recbole.utils import init_logger, init_seed
    from recbole_cdr.config import CDRConfig
    from recbole_cdr.data import create_dataset, data_preparation
    from recbole_cdr.utils import get_model, get_trainer

    os.chdir(BUILD)  # RecBole writes log/ and saved/ into the working directory
    domain = {"data_path": str(BUILD / "data") + "/", "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id",
              "TIME_FIELD": "timestamp", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
              "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
              "val_interval": None, "drop_filter_field": False}
    config = CDRConfig(model=args.model, config_dict={
        "source_domain": {"dataset": "shop-src", **domain}, "target_domain": {"dataset": "shop-tgt", **domain},
        "train_epochs": [f"BOTH:{args.epochs}"], "epochs": args.epochs,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "eval_step": 1,
        "stopping_step": 10, "device": "cpu", "use_gpu": False, "gpu_id": "", "seed": 0,
        "reproducibility": True, "show_progress": False, "state": "INFO",
        "checkpoint_dir": str(BUILD / "saved")})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0, load0 = time.perf_counter(), os.getloadavg()
    dataset = create_dataset(config)
    print(dataset, flush=True)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check = json.loads((BUILD / "data" / "shop-cdr-check.json").read_text())
    tgt = test_data.dataset
    uid, iid = tgt.uid_field, tgt.iid_field
    def tokens(field):
        table = {i: t for t, i in tgt.field2token_id[field].items()}  # RecBole-CDR remaps ids of both domains
        return [table[int(i)] for i in tgt.inter_feat[field].numpy()]

    got = dict(zip(tokens(uid), tokens(iid)))
    assert got == check["test"], "RecBole-CDR's target test set differs from the course's split"
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best_valid_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    out = BUILD / f"recbole_cdr_{args.model}.json"
    out.write_text(json.dumps({
        "command": "PYTHONPATH=build/venv-cdr/src TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 build/venv-cdr/bin/python "
                   f"benchmarks/peer_recbole/run_recbole_cdr.py {' '.join(sys.argv[1:])}",
        "model": args.model, "epochs": args.epochs, "test_users": len(got),
        "settings": {k: str(config[k]) for k in ("embedding_size", "train_batch_size", "learning_rate",
                                                  "stopping_step", "valid_metric") if k in config},
        "best_valid": {k: float(v) for k, v in best_valid.items()}, "test": {k: float(v) for k, v in test.items()},
        "seconds": round(time.perf_counter() - t0, 1), "load_average_before": [round(x, 2) for x in load0],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "versions": {"recbole-cdr": "0.1.0 + GitHub d339918 models", "recbole": __import__("recbole").__version__,
                     "scipy": __import__("scipy").__version__, "torch": __import__("torch").__version__}},
        indent=2))
    print("test", test, "->", out)


if __name__ == "__main__":
    main()
