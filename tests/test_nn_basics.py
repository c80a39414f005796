"""course_lib.nn_basics (item2vec) against hand-computed values, numpy and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.nn_basics import (
    Item2Vec,
    category_agreement,
    nearest_neighbours,
    noise_distribution,
    skipgram_pairs,
    split_sessions,
    train_item2vec,
)


def test_split_sessions_by_hand():
    df = pd.DataFrame({
        "user_id":   [2, 1, 1, 1, 1, 2],
        "item_id":   [9, 10, 11, 12, 13, 8],
        "timestamp": [5, 0, 100, 5000, 5100, 0],
    })
    sessions = split_sessions(df, gap_seconds=1800)
    assert [s.tolist() for s in sessions] == [[10, 11], [12, 13], [8, 9]]
    assert [s.tolist() for s in split_sessions(df, gap_seconds=10_000)] == [[10, 11, 12, 13], [8, 9]]
    with pytest.raises(ValueError, match="column"):
        split_sessions(df.drop(columns="timestamp"))


def test_skipgram_pairs_against_a_double_loop():
    seqs = [[1, 2, 3, 4], [5, 6], [7]]
    for window in (1, 2, 3):
        expected = sorted((s[i], s[j]) for s in seqs for i, j in itertools.permutations(range(len(s)), 2)
                          if abs(i - j) <= window)
        got = sorted(map(tuple, skipgram_pairs(seqs, window).tolist()))
        assert got == expected
    assert skipgram_pairs([[1]], 2).shape == (0, 2)


def test_noise_distribution_by_hand():
    p = noise_distribution(np.array([7, 1, 16, 0]))
    expected = np.array([0, 1, 16 ** 0.75, 0]) / (1 + 8)
    np.testing.assert_allclose(p, expected)
    with pytest.raises(ValueError):
        noise_distribution(np.array([5, 0, 0]))


def test_sgns_loss_matches_numpy():
    torch.manual_seed(0)
    model = Item2Vec(6, dim=4)
    torch.nn.init.normal_(model.context.weight)
    torch.nn.init.normal_(model.center.weight)
    c, o, neg = torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([[5, 6, 1], [2, 3, 6]])
    U, V = model.center.weight.detach().numpy(), model.context.weight.detach().numpy()
    sig = lambda x: 1 / (1 + np.exp(-x))
    per_pair = [-np.log(sig(U[ci] @ V[oi])) - sum(np.log(sig(-U[ci] @ V[ni])) for ni in nn)
                for ci, oi, nn in zip(c.tolist(), o.tolist(), neg.tolist())]
    assert model.loss(c, o, neg).item() == pytest.approx(np.mean(per_pair), rel=1e-5)


def test_nearest_neighbours_match_sklearn():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    V = rng.normal(size=(31, 5))
    queries = [1, 7, 30]
    ids, sims = nearest_neighbours(V, queries, k=4)
    nn = NearestNeighbors(n_neighbors=5, metric="cosine").fit(V[1:])
    dist, idx = nn.kneighbors(V[queries])
    np.testing.assert_array_equal(ids, idx[:, 1:] + 1)                 # sklearn's first hit is the query
    np.testing.assert_allclose(sims, 1 - dist[:, 1:], atol=1e-10)
    assert (ids != np.array(queries)[:, None]).all()


def test_category_agreement_by_hand():
    # items 1, 2 in A close together; 3, 4 in B close together; chance = (2*1 + 2*1) / (4*3) = 1/3
    V = np.array([[0, 0], [1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    labels = pd.Series(["A", "A", "B", "B"], index=[1, 2, 3, 4])
    agree, chance = category_agreement(V, labels, k=1)
    assert agree == 1.0 and chance == pytest.approx(1 / 3)
    agree2, _ = category_agreement(V, labels, k=3)
    assert agree2 == pytest.approx(1 / 3)


def test_item2vec_recovers_planted_groups():
    rng = np.random.default_rng(0)
    groups = {1: np.arange(1, 11), 2: np.arange(11, 21), 3: np.arange(21, 31)}
    sessions = [rng.choice(groups[g], size=4, replace=False) for g in rng.integers(1, 4, 600)]
    model, history = train_item2vec(sessions, n_items=30, dim=8, window=3, epochs=15, batch_size=256,
                                    lr=0.02, seed=0)
    assert history[-1] < history[0]
    labels = pd.Series(np.repeat([1, 2, 3], 10), index=np.arange(1, 31))
    agree, chance = category_agreement(model.item_vectors(), labels, k=5)
    assert chance == pytest.approx(9 / 29)
    assert agree > 0.95
    with pytest.raises(ValueError, match="1..n_items"):
        train_item2vec(sessions, n_items=20)
