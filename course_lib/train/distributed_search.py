"""Distributed hyper-parameter search: several worker processes share one optuna study in a database.

Each worker is an ordinary process (on this machine or another) that opens the **same** study
through an RDB storage URL — here a SQLite file, in production a MySQL/PostgreSQL server —
asks it for a trial, evaluates it, and reports the value. The database is the only thing the
workers share; they never talk to one another::

    study = create_shared_study("sqlite:///build/ch12/search.db", "ease-lam")
    launch_workers("sqlite:///build/ch12/search.db", "ease-lam", n_workers=2, trials_per_worker=4,
                   objective="ease", dataset="ml-100k")
    study = load_shared_study(...)     # every worker's trials, each with its user_attrs["worker"]

Objectives: ``"ease"`` (EASE's L2 penalty λ, log-uniform in [1, 5000], validation NDCG@10 with
full ranking: maximise) and ``"quadratic"`` (``-(x - 2)²``, a planted optimum for tests).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

OBJECTIVES = ("ease", "quadratic")


def create_shared_study(storage: str, study_name: str, *, seed: int = 0):
    """Create (or open) the study every worker will join; direction: maximise."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)


def load_shared_study(storage: str, study_name: str):
    """Open an existing shared study (raises ``KeyError`` from optuna if it does not exist)."""
    import optuna

    return optuna.load_study(storage=storage, study_name=study_name)


def _objective(kind: str, dataset: str, worker: int):
    if kind == "quadratic":
        def objective(trial):
            trial.set_user_attr("worker", worker)
            x = trial.suggest_float("x", -10.0, 10.0)
            return -(x - 2.0) ** 2
        return objective
    if kind != "ease":
        raise ValueError(f"unknown objective {kind!r}; choose one of: {', '.join(OBJECTIVES)}")
    from ..baselines import EASE
    from ..data import leave_one_out, load_dataset
    from ..evaluate import evaluate

    split = leave_one_out(load_dataset(dataset), min_item_interactions=5)

    def objective(trial):
        trial.set_user_attr("worker", worker)
        model = EASE(lam=trial.suggest_float("lam", 1.0, 5000.0, log=True)).fit(split)
        return float(evaluate(model.score, split, "valid", ks=(10,))["NDCG@10"])
    return objective


def run_worker(storage: str, study_name: str, *, n_trials: int, objective: str = "quadratic",
               dataset: str = "ml-100k", worker: int = 0, seed: int = 0) -> int:
    """Join the shared study and run ``n_trials`` trials in this process; returns the trials run."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(storage=storage, study_name=study_name,
                              sampler=optuna.samplers.TPESampler(seed=seed + 1000 * worker))
    study.optimize(_objective(objective, dataset, worker), n_trials=n_trials)
    return n_trials


def launch_workers(storage: str, study_name: str, *, n_workers: int = 2, trials_per_worker: int = 4,
                   objective: str = "quadratic", dataset: str = "ml-100k", seed: int = 0,
                   timeout_s: float = 600) -> list[int]:
    """Start ``n_workers`` worker processes on this machine, wait for them; returns their exit codes.

    Raises:
        RuntimeError: a worker failed (its output's tail is in the message).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    create_shared_study(storage, study_name, seed=seed)         # created once, before the workers race for it
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "course_lib.train.distributed_search", "--storage", storage,
                               "--study", study_name, "--trials", str(trials_per_worker), "--objective", objective,
                               "--dataset", dataset, "--worker", str(w), "--seed", str(seed)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for w in range(n_workers)]
    codes = []
    for w, p in enumerate(procs):
        out, _ = p.communicate(timeout=timeout_s)
        if p.returncode != 0:
            raise RuntimeError(f"search worker {w} failed with exit code {p.returncode}:\n{out[-2000:]}")
        codes.append(p.returncode)
    return codes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.train.distributed_search",
                                description="One worker of a shared optuna study (run several, anywhere).")
    p.add_argument("--storage", required=True, help="e.g. sqlite:///search.db or postgresql://host/db")
    p.add_argument("--study", required=True)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--objective", default="quadratic", choices=OBJECTIVES)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--worker", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    run_worker(a.storage, a.study, n_trials=a.trials, objective=a.objective, dataset=a.dataset, worker=a.worker,
               seed=a.seed)
    return 0


__all__ = ["OBJECTIVES", "create_shared_study", "launch_workers", "load_shared_study", "run_worker"]

if __name__ == "__main__":
    raise SystemExit(main())
