"""Hyper-parameter search: grid, random, and Bayesian (TPE, with optuna).

Every search maximises ``objective(params) -> float`` (e.g. validation NDCG@10 of a model
trained with ``params``) over a *space*, a dict from name to one of::

    LogUniform(1e-4, 1e-2)     # a float whose logarithm is uniform (learning rates)
    Uniform(0.0, 0.5)          # a float (dropout)
    Choice([32, 64, 128])      # one of a few values (sizes)

* :func:`grid_search` tries every combination of a few values per name (``itertools.product``):
  simple, but the number of trials multiplies with every name, and each name only ever
  takes the few values on the grid.
* :func:`random_search` draws every name independently in every trial (Bergstra & Bengio,
  JMLR 2012): with the same budget each name gets as many *different* values as trials.
* :func:`tpe_search`: after a few random trials, optuna's Tree-structured Parzen Estimator
  models which values led to good trials and draws the next trial where good trials are
  dense (Bergstra et al., NeurIPS 2011).

All three return a :class:`SearchResult` with the trials as a DataFrame, the best, and a
``plot()`` of the best value found against the number of trials.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

Objective = Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def grid(self, n: int) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, n)]

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got ({self.low}, {self.high})")

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def grid(self, n: int) -> list[float]:
        return [float(v) for v in np.geomspace(self.low, self.high, n)]

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def __init__(self, options: Sequence) -> None:
        if len(options) == 0:
            raise ValueError("Choice needs at least one option")
        object.__setattr__(self, "options", tuple(options))

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def grid(self, n: int) -> list:
        return list(self.options)

    def suggest(self, trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.options))


Space = Mapping[str, "Uniform | LogUniform | Choice"]


@dataclass
class SearchResult:
    """The trials of one search (``value`` is what the objective returned; higher is better)."""

    method: str
    trials: pd.DataFrame

    @property
    def best(self) -> pd.Series:
        return self.trials.loc[self.trials["value"].idxmax()]

    @property
    def best_params(self) -> dict[str, Any]:
        params = [c for c in self.trials.columns if c not in ("trial", "value", "seconds")]
        return {k: _plain(self.best[k]) for k in params}

    @property
    def best_value(self) -> float:
        return float(self.trials["value"].max())

    def best_so_far(self) -> np.ndarray:
        """``(n_trials,)`` the best value among the first 1, 2, ... trials."""
        return np.maximum.accumulate(self.trials["value"].to_numpy(dtype=float))

    def plot(self, ax=None, label: str | None = None):
        """Best value found against the number of trials (a step curve) and each trial's value."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        n = np.arange(1, len(self.trials) + 1)
        line, = ax.step(n, self.best_so_far(), where="post", label=label or self.method)
        ax.scatter(n, self.trials["value"], s=12, alpha=0.5, color=line.get_color())
        ax.set(xlabel="trials", ylabel="best value so far", title="Hyper-parameter search")
        ax.legend(fontsize=8)
        return ax


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _run(method: str, objective: Objective, param_list, progress: bool) -> SearchResult:
    from tqdm.auto import tqdm

    rows = []
    for i, params in enumerate(tqdm(param_list, desc=method, disable=not progress, leave=False)):
        start = time.perf_counter()
        value = float(objective(dict(params)))
        rows.append({"trial": i, **params, "value": value, "seconds": time.perf_counter() - start})
    return SearchResult(method, pd.DataFrame(rows))


def grid_search(objective: Objective, grid: Mapping[str, Sequence], *, progress: bool = True) -> SearchResult:
    """Try every combination of ``grid`` (a dict from name to a list of values)."""
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise ValueError("grid needs at least one name and one value per name")
    names = list(grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    return _run("grid", objective, combos, progress)


def random_search(objective: Objective, space: Space, n_trials: int, *, seed: int = 0,
                  progress: bool = True) -> SearchResult:
    """``n_trials`` trials, each name drawn independently from its distribution in ``space``."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    rng = np.random.default_rng(seed)
    params = [{name: dist.sample(rng) for name, dist in space.items()} for _ in range(n_trials)]
    return _run("random", objective, params, progress)


def tpe_search(objective: Objective, space: Space, n_trials: int, *, seed: int = 0,
               n_startup_trials: int | None = None, progress: bool = True) -> SearchResult:
    """``n_trials`` trials proposed by optuna's TPE sampler (the first ``n_startup_trials`` random)."""
    import optuna

    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = n_startup_trials if n_startup_trials is not None else max(2, min(10, n_trials // 3))
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rows = []

    def wrapped(trial):
        params = {name: dist.suggest(trial, name) for name, dist in space.items()}
        start = time.perf_counter()
        value = float(objective(dict(params)))
        rows.append({"trial": trial.number, **params, "value": value, "seconds": time.perf_counter() - start})
        return value

    study.optimize(wrapped, n_trials=n_trials, show_progress_bar=False)
    result = SearchResult("TPE", pd.DataFrame(rows))
    result.study = study  # type: ignore[attr-defined]  # optuna's own plots work on it
    return result


__all__ = ["Choice", "LogUniform", "SearchResult", "Uniform", "grid_search", "random_search", "tpe_search"]
