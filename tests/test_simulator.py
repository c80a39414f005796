"""The simulated shop against its own planted model: hand-computed click probabilities,
policy orderings the planted tastes imply, and position bias recovered from simulated logs."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.data import leave_one_out
from course_lib.data.shop import generate_shop
from course_lib.simulator import ShopEnvironment, examination, slate_metrics, top_k_slates


@pytest.fixture(scope="module")
def world():
    shop = generate_shop(seed=3, n_users=400, n_items=600)
    split = leave_one_out(shop)
    return shop, split, ShopEnvironment(shop, split, seed=0)


def test_attractiveness_follows_the_documented_formula_for_one_user(world):
    shop, split, env = world
    t = shop.truth
    u = 7
    uid = split.user_ids[u]
    drift = t["params"]["drift"]
    taste = (1 - drift) * t["user_taste_start"].loc[uid] + drift * t["user_taste_end"].loc[uid]  # at = 1
    items = shop.items.set_index("item_id").loc[split.item_ids[1:].astype(int)]
    from course_lib.data.shop import CATALOGUE
    med = {ty.name: ty.price for c in CATALOGUE for ty in c.types}
    rho = np.log(items["price"] / items["product_type"].map(med)).to_numpy()
    w = (taste[items["category"]].to_numpy() * t["item_popularity"].loc[items.index].to_numpy()
         * np.exp(-t["user_price_sensitivity"].loc[uid] * rho))
    seen = np.concatenate([split.train[u], [split.valid[u], split.test[u]]])
    w[seen - 1] = 0
    a = 1 - np.exp(-env.attraction * env.n_items * w / w.sum())
    np.testing.assert_allclose(env.attractiveness[u, 1:], a, rtol=1e-5, atol=1e-7)
    assert env.attractiveness[u, 0] == 0 and (env.attractiveness[u, seen] == 0).all()


def test_expected_metrics_match_a_hand_computed_slate():
    p = np.array([[0.5, 0.2]])
    cvr = np.array([[0.1, 0.5]])
    price = np.array([[10.0, 100.0]])
    m = slate_metrics(p, cvr, price)
    assert m["CTR"][0] == pytest.approx(1 - 0.5 * 0.8)
    assert m["clicks/visit"][0] == pytest.approx(0.7)
    assert m["conversion"][0] == pytest.approx(1 - (1 - 0.05) * (1 - 0.1))
    assert m["revenue/visit"][0] == pytest.approx(0.05 * 10 + 0.1 * 100)
    np.testing.assert_allclose(examination(4, 1.0), [1, 1 / 2, 1 / 3, 1 / 4])


def test_knowing_the_tastes_beats_popularity_beats_random_on_expected_ctr(world):
    _, split, env = world
    users = np.arange(env.n_users)
    oracle = top_k_slates(env.oracle_scores("clicks"), 10)
    pop = split.item_popularity(include_valid=True).astype(float)
    pop[0] = -np.inf
    popular = np.tile(np.argsort(-pop)[:10], (env.n_users, 1))
    rnd = np.random.default_rng(0).choice(np.arange(1, env.n_items + 1), size=(env.n_users, 10))
    ctr = {name: env.expected(users, s)["CTR"].mean() for name, s in
           [("oracle", oracle), ("popular", popular), ("random", rnd)]}
    assert ctr["oracle"] > 1.5 * ctr["popular"] > 1.5 * 1.5 * ctr["random"], ctr
    # and the revenue oracle earns more per visit than the click oracle
    rev = top_k_slates(env.oracle_scores("revenue"), 10)
    assert env.expected(users, rev)["revenue/visit"].mean() > env.expected(users, oracle)["revenue/visit"].mean()


def test_simulated_clicks_agree_with_expected_values_and_are_reproducible(world):
    shop, split, env = world
    users = np.random.default_rng(1).integers(0, env.n_users, 60_000)
    slates = top_k_slates(env.oracle_scores(), 5)[users]
    a = ShopEnvironment(shop, split, seed=5).simulate(users, slates)
    b = ShopEnvironment(shop, split, seed=5).simulate(users, slates)
    assert np.array_equal(a.clicks, b.clicks) and np.array_equal(a.revenue, b.revenue)
    exp = env.expected(users, slates)
    for key in ("CTR", "clicks/visit", "conversion"):
        se = np.sqrt(exp[key].mean() * (1 - min(exp[key].mean(), 0.99)) / len(users)) + 1e-4
        assert abs(a.summary()[key] - exp[key].mean()) < 5 * se, key
    assert (a.purchases <= a.clicks).all()


def test_position_bias_is_recovered_from_logs_of_shuffled_slates(world):
    _, _, env = world
    rng = np.random.default_rng(2)
    users = rng.integers(0, env.n_users, 200_000)
    base = top_k_slates(env.oracle_scores(), 5)[users]
    shuffled = np.take_along_axis(base, rng.permuted(np.tile(np.arange(5), (len(users), 1)), axis=1), axis=1)
    out = env.simulate(users, shuffled)
    ctr_by_pos = out.clicks.mean(axis=0)
    estimate = ctr_by_pos / ctr_by_pos[0]
    np.testing.assert_allclose(estimate, env.examination(5), rtol=0.06)


def test_errors_say_what_to_fix(world):
    shop, split, env = world
    with pytest.raises(ValueError, match="internal ids"):
        env.simulate(np.array([0]), np.array([[env.n_items + 1]]))
    with pytest.raises(ValueError, match="at must be"):
        ShopEnvironment(shop, split, at=2.0)


def test_serve_slates_masks_the_whole_history_and_ranks_by_score(world):
    from course_lib.baselines import MostPopular
    from course_lib.simulator import full_histories, serve_slates

    _, split, env = world
    model = MostPopular().fit(split, include_valid=True)
    slates = serve_slates(model.score, split, 5, max_len=30, batch_size=64)
    hist = full_histories(split)
    counts = model.counts
    for u in range(0, split.n_users, 37):
        assert not set(slates[u]) & set(hist[u].tolist())
        allowed = np.setdiff1d(np.arange(1, split.n_items + 1), hist[u])
        best = allowed[np.argsort(-counts[allowed], kind="stable")][:5]
        assert sorted(counts[slates[u]], reverse=True) == sorted(counts[best], reverse=True)


def test_offline_online_table_has_every_model_and_the_oracles(world):
    from course_lib.baselines import MostPopular
    from course_lib.evaluate import evaluate
    from course_lib.simulator import offline_online_table

    _, split, env = world
    pop = MostPopular().fit(split, include_valid=True)
    table, slates = offline_online_table({"pop": pop.score}, split, env, k=5, max_len=20, n_boot=200)
    assert list(table.index) == ["pop", "oracle (clicks)", "oracle (revenue)"]
    assert table.loc["pop", "NDCG@5"] == pytest.approx(evaluate(pop.score, split, "test", ks=(5,), max_len=20,
                                                                device="cpu")["NDCG@5"])
    assert table.loc["pop", "NDCG low"] <= table.loc["pop", "NDCG@5"] <= table.loc["pop", "NDCG high"]
    assert table.loc["oracle (clicks)", "clicks/visit"] >= table.loc["pop", "clicks/visit"]
    assert slates["pop"].shape == (split.n_users, 5)
