"""The leave-one-out protocol on hand-made data whose answer is known."""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.data import (
    PAD,
    implicit,
    k_core,
    leave_one_out,
    pad_sequences,
    sample_negatives,
    sequences_to_csr,
    shifted_sequences,
)


def test_leave_one_out_by_hand(tiny_interactions):
    split = leave_one_out(tiny_interactions)
    # items 10, 20, 30, 40 -> 1, 2, 3, 4 ; users 1, 2 -> 0, 1 (user 3 has too few)
    assert split.n_items == 4 and split.n_users == 2
    assert split.item_ids.tolist() == [None, 10, 20, 30, 40]
    # user 1: 10 (t=1), then the tie at t=3 broken by item id: 20 before 30, then 40
    assert split.train[0].tolist() == [1, 2]
    assert (split.valid[0], split.test[0]) == (3, 4)
    assert split.train[1].tolist() == [1] and (split.valid[1], split.test[1]) == (2, 3)
    # user 3 has only two interactions: cannot be split, dropped
    assert split.user_ids.tolist() == [1, 2]


def test_users_with_fewer_than_three_interactions_are_dropped(tiny_interactions):
    split = leave_one_out(tiny_interactions)
    assert 3 not in split.user_ids.tolist()


def test_history_and_seen_items_per_stage(tiny_interactions):
    split = leave_one_out(tiny_interactions)
    assert split.history("test")[0].tolist() == [1, 2, 3]
    seen = split.seen_matrix("test").toarray()
    assert seen[0].tolist() == [0, 1, 1, 1, 0]  # column 0 is padding
    assert split.item_popularity().tolist() == [0, 2, 1, 0, 0]
    with pytest.raises(ValueError, match="unknown stage"):
        split.history("train")


def test_row_order_of_the_source_does_not_matter(tiny_interactions):
    a = leave_one_out(tiny_interactions)
    b = leave_one_out(tiny_interactions.sample(frac=1.0, random_state=3))
    assert [s.tolist() for s in a.train] == [s.tolist() for s in b.train]
    assert a.test.tolist() == b.test.tolist()


def test_k_core_repeats_until_stable():
    df2 = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3, 3, 3], "item_id": [1, 2, 3, 1, 4, 1, 2, 3],
                        "timestamp": range(8)})
    out2 = k_core(df2, min_user=2, min_item=2)
    # item 4 goes (1 interaction) -> user 2 keeps only item 1 -> user 2 goes
    assert sorted(out2["user_id"].unique()) == [1, 3]
    assert sorted(out2["item_id"].unique()) == [1, 2, 3]
    with pytest.raises(ValueError, match="empty"):
        k_core(df2, min_user=10, min_item=10)


def test_ml1m_five_core_matches_the_papers(ml1m):
    split = leave_one_out(ml1m, min_item_interactions=5)
    assert (split.n_users, split.n_items) == (6040, 3416)
    assert split.stats()["interactions"] == 999_611


def test_implicit_keeps_first_duplicate_and_thresholds():
    df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [5, 5, 6], "timestamp": [1, 2, 3], "rating": [1, 5, 4]})
    out = implicit(df)
    assert out["timestamp"].tolist() == [1, 3]
    assert implicit(df, min_rating=4)["item_id"].tolist() == [5, 6]
    with pytest.raises(ValueError, match="no 'rating' column"):
        implicit(df.drop(columns="rating"), min_rating=4)


def test_pad_sequences_left_pads_and_keeps_the_most_recent():
    out = pad_sequences([[1, 2, 3, 4, 5], [7], []], 3)
    assert out.dtype == torch.int64
    assert out.tolist() == [[3, 4, 5], [0, 0, 7], [0, 0, 0]]
    with pytest.raises(ValueError):
        pad_sequences([[1]], 0)


def test_shifted_sequences_align_inputs_with_next_items():
    x, y = shifted_sequences([[1, 2, 3, 4]], 5)
    assert x.tolist() == [[0, 0, 1, 2, 3]]
    assert y.tolist() == [[0, 0, 2, 3, 4]]


def test_sequences_to_csr():
    mat = sequences_to_csr([np.array([1, 3, 3]), np.array([], dtype=np.int64)], 3)
    assert mat.shape == (2, 4)
    assert mat.toarray().tolist() == [[0, 1, 0, 1], [0, 0, 0, 0]]


def test_negatives_avoid_the_excluded_items(rng):
    exclude = [np.array([1, 2, 3]), np.array([4])]
    neg = sample_negatives(exclude, 5, 10, rng=rng)
    assert neg.shape == (2, 5)
    for row, ex in zip(neg, exclude):
        assert not set(row) & set(ex)
        assert PAD not in row and len(set(row)) == 5 and row.max() <= 10
    with pytest.raises(ValueError, match="fewer than"):
        sample_negatives([np.arange(1, 10)], 5, 10)


def test_popularity_negatives_follow_popularity():
    pop = np.array([0, 1, 1, 1, 97], dtype=float)
    draws = sample_negatives([np.array([], dtype=np.int64)] * 4000, 1, 4, strategy="popularity",
                             popularity=pop, rng=1)
    share = (draws == 4).mean()
    assert 0.95 < share < 0.99  # item 4 holds 97% of the popularity
    with pytest.raises(ValueError, match="unknown strategy"):
        sample_negatives([np.array([1])], 1, 4, strategy="zipf")
