"""Feature encoders: fitted on training data only, unknown bucket, clipping, buckets, time features, leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from course_lib.data import leave_one_out
from course_lib.data.shop import generate_shop
from course_lib.evaluate import evaluate
from course_lib.features import (
    FIRST_KNOWN,
    UNKNOWN,
    CategoricalEncoder,
    NumericEncoder,
    item_count_feature,
    movielens_item_features,
    movielens_user_features,
    shop_item_features,
    time_features,
    training_item_mask,
    user_group_counts,
)


def test_categorical_vocab_by_frequency_with_unknown_bucket():
    enc = CategoricalEncoder(min_count=2).fit(["b", "a", "a", "c", "b", "a", None, "d"])
    # a (3) -> 2, b (2) -> 3; c and d are rarer than min_count, None is missing
    assert enc.vocab == {"a": 2, "b": 3}
    assert enc.cardinality == 4
    assert enc.transform(["a", "b", "c", "zzz", None]).tolist() == [2, 3, UNKNOWN, UNKNOWN, UNKNOWN]
    with pytest.raises(RuntimeError, match="not fitted"):
        CategoricalEncoder().transform(["a"])


def test_numeric_encoder_uses_training_statistics_only():
    train = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    enc = NumericEncoder(clip=(0.0, 0.8)).fit(train)
    hi = np.quantile(train, 0.8)                    # 23.2: the outlier 100 is clipped to it
    clipped = np.clip(train, train.min(), hi)
    np.testing.assert_allclose(enc.transform([100.0, np.nan]),
                               [(hi - clipped.mean()) / clipped.std(),
                                (np.median(clipped) - clipped.mean()) / clipped.std()],
                               rtol=1e-6)
    assert enc.missing_flag([1.0, np.nan, None]).tolist() == [0.0, 1.0, 1.0]
    # a value far outside training is clipped to the training bound, not to its own
    assert enc.transform([1e6])[0] == enc.transform([hi])[0]
    b = NumericEncoder(clip=None, n_buckets=4).fit(np.arange(100.0))
    ids = b.bucketize([0.0, 30.0, 60.0, 99.0, np.nan])
    assert ids.tolist() == [FIRST_KNOWN, FIRST_KNOWN + 1, FIRST_KNOWN + 2, FIRST_KNOWN + 3, UNKNOWN]
    with pytest.raises(ValueError, match="log=True"):
        NumericEncoder(log=True).fit([-1.0, 2.0])


@pytest.fixture(scope="module")
def shop_split():
    return leave_one_out(generate_shop(seed=3, n_users=300, n_items=250))


def test_shop_item_features_are_fitted_on_training_items(shop_split):
    f = shop_item_features(shop_split)
    assert f.categorical.shape == (shop_split.n_items + 1, 4) and (f.categorical[0] == 0).all()
    seen = training_item_mask(shop_split)
    # every known brand id was given by a training item
    enc = f.encoders["brand"]
    assert set(shop_split.items["brand"][seen]) >= set(enc.vocab)
    # standardisation: mean 0 on the training rows (before clipping leaves them almost so)
    assert abs(f.numeric[seen, f.num_names.index("log_price")].mean()) < 0.05
    # rows outside the fit get the unknown bucket for values the fit never saw
    fit = seen.copy()
    cold = (shop_split.items["category"] == "Books").to_numpy()
    fit[cold] = False
    g = shop_item_features(shop_split, fit_rows=fit)
    assert (g.categorical[cold, g.cat_names.index("category")] == UNKNOWN).all()


def test_time_features_by_hand():
    # Thu 1970-01-01 00:10, +2 min (same session), +2 h (new session), +3 days
    ts = np.array([600, 720, 720 + 7200, 720 + 7200 + 3 * 86400])
    f = time_features(ts) - FIRST_KNOWN
    assert f[:, 0].tolist() == [0, 0, 0, 0]            # hours 0, 0, 2, 2 -> block 0
    assert f[:, 1].tolist() == [3, 3, 3, 6]            # Thursday = 3, Sunday = 6
    assert f[:, 2].tolist() == [0, 1, 0, 0]            # position in session
    assert f[:, 3].tolist() == [0, 1, 3, 4]            # first event (own bucket); <5 min; <1 day; <1 week
    with pytest.raises(ValueError, match="backwards"):
        time_features(np.array([5, 3]))


def test_fitting_a_popularity_feature_on_all_data_leaks(shop_split):
    """Counting interactions over the whole log includes each test target: the ranking by
    that feature improves although nothing was learned."""
    honest = item_count_feature(shop_split, "test", fit_on="train")
    leaky = item_count_feature(shop_split, "test", fit_on="all")
    np.testing.assert_array_equal(leaky - honest, np.bincount(shop_split.test, minlength=shop_split.n_items + 1))
    U = shop_split.n_users
    a = evaluate(np.tile(honest, (U, 1)), shop_split, "test")["HR@10"]
    b = evaluate(np.tile(leaky, (U, 1)), shop_split, "test")["HR@10"]
    assert b > a


def test_a_user_profile_fitted_on_all_data_leaks_the_target_category(shop_split):
    """A per-user category profile counted over the whole log holds exactly one more count per
    user, in the test item's category (computed here independently, from the raw sequences),
    and ranking by it (profile share x training popularity) looks better with nothing learned."""
    from course_lib.domains import item_domains

    doms, names = item_domains(shop_split)
    honest = user_group_counts(shop_split, doms, "test", fit_on="train")
    leaky = user_group_counts(shop_split, doms, "test", fit_on="all")
    U, G = shop_split.n_users, len(names)
    assert honest.shape == (U, G + 1) and (honest[:, 0] == 0).all()
    ref = np.zeros((U, G + 1))
    for u in range(U):
        for i in list(shop_split.train[u]) + [shop_split.valid[u]]:
            ref[u, doms[i]] += 1
    np.testing.assert_array_equal(honest, ref)
    extra = np.zeros((U, G + 1))
    extra[np.arange(U), doms[shop_split.test]] = 1
    np.testing.assert_array_equal(leaky - honest, extra)
    # at the validation stage the leak holds both held-out items
    v_extra = user_group_counts(shop_split, doms, "valid", fit_on="all") - user_group_counts(shop_split, doms, "valid")
    np.testing.assert_array_equal(v_extra.sum(1), np.full(U, 2.0))
    pop = item_count_feature(shop_split, "test", fit_on="train")

    def ndcg(prof):
        return evaluate((prof / prof.sum(1, keepdims=True))[:, doms] * pop, shop_split, "test")["NDCG@10"]

    assert ndcg(leaky) > ndcg(honest)
    with pytest.raises(ValueError, match="fit_on"):
        user_group_counts(shop_split, doms, fit_on="everything")
    with pytest.raises(ValueError, match="shape"):
        user_group_counts(shop_split, doms[:-1])


def test_movielens_features():
    items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["A (1995)", "B (1972)", "C"],
                          "genres": ["Comedy|Drama", "Drama", "Horror|Comedy|Drama|War"]})
    inter = pd.DataFrame({"user_id": [1] * 3 + [2] * 3, "item_id": [1, 2, 3, 3, 2, 1], "timestamp": range(6)})
    split = leave_one_out(inter, items=items)
    f = movielens_item_features(split, fit_rows=np.array([False, True, True, True]))
    assert f.cat_names == ["genre_0", "genre_1", "genre_2", "decade"]
    assert "year_missing" in f.num_names
    assert f.numeric[3, f.num_names.index("year_missing")] == 1.0
    users = pd.DataFrame({"user_id": [1, 2], "gender": ["F", "M"], "age": [1, 56], "occupation": [10, 16],
                          "zip_code": ["48067", "70072"]})
    ids, cards, names = movielens_user_features(split, users)
    assert ids.shape == (2, 4) and names == ["gender", "age", "occupation", "zip1"] and cards == [4, 4, 4, 4]
