"""Drifting tastes in the simulator and the model-update experiment (course_lib.updates)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from course_lib.baselines import EASE
from course_lib.data import leave_one_out
from course_lib.data.shop import generate_shop
from course_lib.models.multitask import MultiTaskConfig
from course_lib.simulator import ShopEnvironment, serve_slates, trending_tastes
from course_lib.updates import (
    STRATEGIES,
    impression_log,
    model_update_experiment,
    serve_from_candidates,
    user_category_mix,
)


@pytest.fixture(scope="module")
def world():
    shop = generate_shop(seed=3, n_users=400, n_items=600)
    split = leave_one_out(shop)
    env = ShopEnvironment(shop, split, seed=0)
    cand = serve_slates(EASE(lam=30.0).fit(split, include_valid=True).score, split, 30, max_len=30)
    return split, env, cand


def test_set_taste_recomputes_attractiveness_like_a_fresh_environment(world):
    split, env, _ = world
    env = copy.copy(env)
    before = env.attractiveness.copy()
    env.set_taste(env.taste * 7.0)                      # only proportions matter
    np.testing.assert_allclose(env.attractiveness, before, rtol=1e-4, atol=1e-6)
    new = np.roll(env.taste, 1, axis=1)
    env.set_taste(new)
    assert not np.allclose(env.attractiveness, before)
    # a user who likes only category c finds only items of c attractive (among unseen items)
    one = np.zeros_like(env.taste)
    top = int(np.bincount(env.category[1:]).argmax())
    one[:, top] = 1.0
    env.set_taste(one)
    assert (env.attractiveness[:, env.category != top] == 0).all()
    assert (env.attractiveness[:, env.category == top] > 0).mean() > 0.5
    with pytest.raises(ValueError, match="n_users"):
        env.set_taste(one[:-1])
    with pytest.raises(ValueError, match="non-negative"):
        env.set_taste(-one)


def test_trending_tastes_move_every_user_the_same_way():
    rng = np.random.default_rng(0)
    taste = rng.dirichlet(np.ones(5), 50)
    rounds = trending_tastes(taste, 4, 2.0, seed=1)
    assert len(rounds) == 5
    np.testing.assert_allclose(rounds[0], taste)
    for t in rounds:
        np.testing.assert_allclose(t.sum(axis=1), 1.0)
    g = np.random.default_rng(1).standard_normal(5)
    up, down = int(np.argmax(g)), int(np.argmin(g))
    share_up = [t[:, up].mean() for t in rounds]
    share_down = [t[:, down].mean() for t in rounds]
    assert np.all(np.diff(share_up) > 0) and np.all(np.diff(share_down) < 0)
    assert trending_tastes(taste, 4, 0.0)[-1] == pytest.approx(taste)


def test_impression_log_and_serving(world):
    split, env, cand = world
    rng = np.random.default_rng(0)
    users = np.arange(env.n_users)
    log = impression_log(env, cand, users, 10, rng)
    assert log["u"].shape == log["i"].shape == log["c"].shape == (10 * env.n_users,)
    assert (log["b"] <= log["c"]).all()
    for u in (0, 5, 399):                                  # slates come from the user's candidates
        assert set(log["i"][log["u"] == u]) <= set(cand[u])
    scores = np.tile(np.arange(30, 0, -1, dtype=float), (env.n_users, 1))
    np.testing.assert_array_equal(serve_from_candidates(scores, cand, 10), cand[:, :10])
    sl = serve_from_candidates(scores, cand, 10, n_explore=3, rng=rng)
    np.testing.assert_array_equal(sl[:, :7], cand[:, :7])
    assert all(set(sl[u, 7:]) <= set(cand[u, 7:]) and len(set(sl[u])) == 10 for u in range(20))
    mix = user_category_mix(env)
    np.testing.assert_allclose(mix.sum(axis=1), 1.0)


def test_frozen_model_falls_behind_and_monitoring_triggers_updates(world):
    split, env, cand = world
    env = copy.copy(env)
    rng = np.random.default_rng(1)
    log0 = impression_log(env, cand, np.repeat(np.arange(env.n_users), 5), 10, rng)
    cfg = MultiTaskConfig(env.n_users, split.n_items, env.taste.shape[1], d_embed=8, hidden=32, tower=16)
    tastes = trending_tastes(env.taste, 4, 4.0, seed=0)
    rounds, models = model_update_experiment(env, tastes, cand, cfg, user_category_mix(env), log0,
                                             steps_full=150, steps_finetune=50, period=2, window=2,
                                             threshold=0.1, seed=0)
    assert set(rounds["strategy"]) == set(STRATEGIES) == set(models)
    last = rounds[rounds["round"] == 4].set_index("strategy")
    assert last.loc["frozen", "steps"] == 150
    assert last.loc["periodic retrain", "steps"] == 150 * 3               # retrained after rounds 2 and 4
    ft = rounds[rounds["strategy"] == "drift-triggered fine-tune"]
    assert ((ft["updated"] == "fine-tuned") == (ft["PSI"] > 0.1)).all()
    assert last.loc["drift-triggered fine-tune", "steps"] == 150 + 50 * (ft["updated"] == "fine-tuned").sum()
    frozen = rounds[rounds["strategy"] == "frozen"]
    assert frozen["PSI"].iloc[-1] > frozen["PSI"].iloc[1]                  # the frozen model's drift grows
    assert frozen["CTR"].iloc[-1] < frozen["CTR"].iloc[0]                  # and its CTR falls
    assert last.loc["frozen", "CTR"] < max(last.loc["periodic retrain", "CTR"],
                                           last.loc["drift-triggered fine-tune", "CTR"])
