"""Impression logs from the simulator, and keeping a ranker up to date while tastes drift (chapter 10).

A ranking stage re-orders a few dozen *candidates* per user (from a retrieval model, here EASE)
and is trained on *impressions*: (user, item shown, clicked, bought). :func:`impression_log`
shows random slates of candidates to the simulated users and returns such a log, the data the
multi-task rankers of :mod:`course_lib.models.multitask` learn from.

:func:`model_update_experiment` runs the question every shop with a model in production has:
the users' tastes drift (:func:`course_lib.simulator.trending_tastes`), so how should the model
follow? Three strategies, each serving its own slates to the same drifting users, round after
round (every user visits once per round):

* **frozen**: the model trained before the first round, never touched again;
* **periodic full retraining**: every ``period`` rounds a new model from scratch on the last
  ``window`` rounds of logs (``steps_full`` optimiser steps each time);
* **drift-triggered fine-tuning**: after each round the monitor compares the categories of this
  round's clicks with those of the data the model last learned from (PSI,
  :func:`course_lib.monitoring.psi`); above ``threshold``, the current model is fine-tuned on
  the last round's log for ``steps_finetune`` steps (a warm start), and the reference moves on.

Every strategy shows ``n_explore`` random candidates in the last slots (without them, a model
only ever learns about what it already ranks high: the feedback loop of section 7). Cost is
counted in optimiser steps; the online metric is the exact expected CTR of the served slates
under that round's tastes.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from .models.multitask import MultiTaskConfig, fit_multitask, make_multitask, predict_multitask
from .monitoring import psi
from .simulator import ShopEnvironment, full_histories

__all__ = ["impression_log", "user_category_mix", "serve_from_candidates", "model_update_experiment", "STRATEGIES"]

STRATEGIES = ("frozen", "periodic retrain", "drift-triggered fine-tune")


def user_category_mix(env: ShopEnvironment) -> np.ndarray:
    """``(U, C)`` each user's logged history (train, valid, test) as shares over categories."""
    n_cat = env.taste.shape[1]
    mix = np.zeros((env.n_users, n_cat))
    for u, h in enumerate(full_histories(env.split)):
        np.add.at(mix[u], env.category[h], 1.0)
    return mix / np.maximum(mix.sum(axis=1, keepdims=True), 1.0)


def impression_log(env: ShopEnvironment, candidates: np.ndarray, users: np.ndarray, k: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Show each visiting user ``k`` of their candidates drawn at random, in random order.

    Args:
        env: the simulator.
        candidates: ``(U, C)`` candidate items per user (``C >= k``).
        users: ``(V,)`` visiting users.
        rng: draws the slates and the clicks.

    Returns:
        ``{"u", "i", "c", "b", "p_click"}``: ``(V k,)`` users, items, clicks, purchases (0/1 floats)
        and the simulator's click probabilities, one row per impression.
    """
    users = np.asarray(users, dtype=np.int64)
    pick = np.argsort(rng.random((len(users), candidates.shape[1])), axis=1)[:, :k]
    slates = np.take_along_axis(candidates[users], pick, axis=1)
    return _log(env, users, slates, rng)


def _log(env, users, slates, rng) -> dict[str, np.ndarray]:
    out = env.simulate(users, slates, rng=rng)
    k = slates.shape[1]
    return {"u": np.repeat(users, k), "i": slates.ravel(), "c": out.clicks.ravel().astype(np.float32),
            "b": out.purchases.ravel().astype(np.float32), "p_click": out.p_click.ravel()}


def serve_from_candidates(scores: np.ndarray, candidates: np.ndarray, k: int, n_explore: int = 0,
                          rng: np.random.Generator | None = None) -> np.ndarray:
    """``(U, k)`` slates: the ``k - n_explore`` best candidates by ``scores`` ``(U, C)``, then
    ``n_explore`` random ones from the rest (exploration) in the last slots."""
    order = np.argsort(-scores, axis=1, kind="stable")
    if n_explore:
        rest = order[:, k - n_explore:]
        pick = np.take_along_axis(rest, np.argsort(rng.random(rest.shape), axis=1)[:, :n_explore], axis=1)
        order = np.concatenate([order[:, :k - n_explore], pick], axis=1)
    return np.take_along_axis(candidates, order[:, :k], axis=1)


def _concat(logs):
    return {key: np.concatenate([lg[key] for lg in logs]) for key in logs[0]}


def model_update_experiment(env: ShopEnvironment, tastes: list[np.ndarray], candidates: np.ndarray,
                            config: MultiTaskConfig, user_mix: np.ndarray, initial_log: dict, *, k: int = 10,
                            steps_full: int = 600, steps_finetune: int = 150, period: int = 2, window: int = 3,
                            threshold: float = 0.1, n_explore: int = 2, batch_size: int = 2048, lr: float = 1e-2,
                            lr_finetune: float = 3e-3, seed: int = 0,
                            ) -> tuple[pd.DataFrame, dict[str, torch.nn.Module]]:
    """Frozen vs periodic full retraining vs drift-triggered fine-tuning of a click model.

    Args:
        env: the simulator; its tastes are set to ``tastes[r]`` in round ``r`` (and left at the last).
        tastes: ``R + 1`` ``(U, C)`` tastes, round 0 = the tastes the initial log was drawn under.
        candidates: ``(U, C)`` candidates per user; the model re-ranks them.
        config, user_mix: the click model's sizes and user features (:func:`user_category_mix`).
        initial_log: the impressions the initial model is trained on (:func:`impression_log`).
        steps_full, steps_finetune: optimiser steps of a training from scratch / of a fine-tuning.
        period, window: retrain every ``period`` rounds on the last ``window`` rounds' logs.
        threshold: PSI of the clicks' categories (against the round after the model's last update;
            for every strategy, so the frozen model's drift is visible too) above which the
            drift-triggered model is fine-tuned.
        n_explore: random candidates in the last slots of every slate.

    Returns:
        ``(rounds, models)``: one row per (round, strategy) with the expected ``CTR`` of the
        served slates, the monitor's ``PSI``, whether the model was ``updated`` after the round
        and the cumulative training ``steps``; and the final model of each strategy.
    """
    if len(tastes) < 2:
        raise ValueError("tastes needs round 0 and at least one more round")
    users = np.arange(env.n_users)
    n_cat = env.taste.shape[1]
    cu, ci = np.repeat(users, candidates.shape[1]), candidates.ravel()

    def click_categories(log):
        return np.bincount(env.category[log["i"][log["c"] > 0]], minlength=n_cat)

    def train(log, s):
        torch.manual_seed(s)
        model = make_multitask("click", config, user_mix, env.category)
        fit_multitask(model, log["u"], log["i"], log["c"], log["b"], steps=steps_full, batch_size=batch_size, lr=lr,
                      seed=s)
        return model

    env.set_taste(tastes[0])
    initial = train(initial_log, seed)
    state = {s: {"model": copy.deepcopy(initial), "logs": [initial_log], "ref": None, "steps": steps_full,
                 "rng": np.random.default_rng(seed + 100 + j)} for j, s in enumerate(STRATEGIES)}
    rows = []
    for r in range(1, len(tastes)):
        env.set_taste(tastes[r])
        for name, st in state.items():
            scores = predict_multitask(st["model"], cu, ci)["click"].reshape(candidates.shape)
            slates = serve_from_candidates(scores, candidates, k, n_explore, st["rng"])
            ctr = float(env.expected(users, slates)["CTR"].mean())
            log = _log(env, users, slates, st["rng"])
            st["logs"] = (st["logs"] + [log])[-window:]
            current = click_categories(log)
            # the monitor's reference: the clicks of the first live round (the initial log came
            # from random slates, whose clicks differ from any model's for reasons other than drift)
            score = float("nan") if st["ref"] is None else psi(st["ref"], current)
            updated = ""
            if st["ref"] is None:
                st["ref"] = current
            elif name == "periodic retrain" and r % period == 0:
                st["model"] = train(_concat(st["logs"]), seed + r)
                st["steps"] += steps_full
                st["ref"] = current
                updated = "retrained"
            elif name == "drift-triggered fine-tune" and score > threshold:
                fit_multitask(st["model"], log["u"], log["i"], log["c"], log["b"], steps=steps_finetune,
                              batch_size=batch_size, lr=lr_finetune, seed=seed + r)
                st["steps"] += steps_finetune
                st["ref"] = current
                updated = "fine-tuned"
            rows.append({"round": r, "strategy": name, "CTR": ctr, "PSI": score, "updated": updated,
                         "steps": st["steps"]})
    return pd.DataFrame(rows), {name: st["model"] for name, st in state.items()}
