"""Baselines against independent references on tiny hand-made cases, and their error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from course_lib.baselines import (
    BPRMF,
    EASE,
    Hybrid,
    ItemKNN,
    MostPopular,
    TfidfContent,
    as_training_matrix,
    cosine_similarity_topk,
    fit_and_test,
    grid_search,
    item_text,
)
from course_lib.data import leave_one_out, pad_sequences
from course_lib.evaluate import evaluate


def _with_padding(X: np.ndarray) -> np.ndarray:
    """Prepend the empty padding column 0 to a user × item matrix."""
    return np.hstack([np.zeros((X.shape[0], 1)), X]).astype(np.float32)


X54 = np.array([  # 5 users × 4 items
    [1, 1, 0, 0],
    [1, 0, 1, 0],
    [0, 1, 1, 1],
    [1, 1, 1, 0],
    [0, 0, 1, 1],
], dtype=np.float64)


def _all_users(X: np.ndarray):
    """users and histories (internal ids 1..n) that hold each user's full row of X (no padding column)."""
    seqs = [np.flatnonzero(row) + 1 for row in X]
    return torch.arange(len(X)), pad_sequences(seqs, max(1, max(len(s) for s in seqs)))


@pytest.fixture
def tiny_split():
    """A split built from a table: 6 users, 5 items; two taste groups {1,2,3} and {4,5}."""
    rows = []
    t = 0
    for u, seq in enumerate([[1, 2, 3, 1], [2, 3, 1], [3, 1, 2], [4, 5, 4], [5, 4, 5], [1, 2, 4, 5]]):
        for item in dict.fromkeys(seq):
            rows.append((u, item, t))
            t += 1
    # extra interactions so that every user has >= 3 distinct items
    extra = {0: [4], 3: [1], 4: [2]}
    for u, items in extra.items():
        for item in items:
            rows.append((u, item, -1))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5],
                          "title": ["red phone case", "blue phone case", "phone charger", "coffee beans",
                                    "espresso machine"]})
    return leave_one_out(df, items=items, name="tiny")


# --------------------------------------------------------------------------- EASE
def test_ease_matches_ridge_regression_per_column():
    """EASE's closed form equals, column by column, ridge regression of item j on the other items."""
    lam = 2.0
    model = EASE(lam=lam).fit(_with_padding(X54))
    B = model.weights[1:, 1:]
    n = X54.shape[1]
    for j in range(n):
        others = [i for i in range(n) if i != j]
        A = X54[:, others]
        beta = np.linalg.solve(A.T @ A + lam * np.eye(n - 1), A.T @ X54[:, j])
        np.testing.assert_allclose(B[others, j], beta, rtol=1e-5, atol=1e-6)
        assert B[j, j] == 0.0
    assert not model.weights[0].any() and not model.weights[:, 0].any()


def test_ease_matches_the_numpy_formula_and_scores_are_x_times_b():
    lam = 0.5
    G = X54.T @ X54 + lam * np.eye(4)
    P = np.linalg.inv(G)
    B = np.eye(4) - P / np.diag(P)[None, :]  # Steck (2019): B = I - P diagMat(1 / diag(P))
    model = EASE(lam=lam).fit(_with_padding(X54))
    np.testing.assert_allclose(model.weights[1:, 1:], B, rtol=1e-5, atol=1e-6)
    users, hist = _all_users(X54)
    scores = model.score(users, hist)
    torch.testing.assert_close(scores[:, 1:], torch.tensor(X54 @ B, dtype=torch.float32), rtol=1e-5, atol=1e-5)
    assert torch.isinf(scores[:, 0]).all() and (scores[:, 0] < 0).all()


# --------------------------------------------------------------------------- item-kNN
def _brute_cosine(X: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    n = X.shape[1]
    S = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                denom = np.linalg.norm(X[:, i]) * np.linalg.norm(X[:, j]) + shrink
                S[i, j] = X[:, i] @ X[:, j] / denom if denom > 0 else 0.0
    return S


@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_item_knn_all_neighbours_is_brute_force_cosine(shrink):
    rng = np.random.default_rng(1)
    X = (rng.random((12, 7)) < 0.4).astype(float)
    model = ItemKNN(k=100, shrink=shrink).fit(_with_padding(X))
    S = _brute_cosine(X, shrink)
    np.testing.assert_allclose(model.similarity.toarray()[1:, 1:], S, rtol=1e-5, atol=1e-6)
    users, hist = _all_users(X)
    torch.testing.assert_close(model.score(users, hist)[:, 1:], torch.tensor(X @ S, dtype=torch.float32),
                               rtol=1e-5, atol=1e-5)


def test_item_knn_keeps_the_k_most_similar_per_item():
    rng = np.random.default_rng(2)
    X = (rng.random((30, 9)) < 0.35).astype(float)
    k = 3
    S = _brute_cosine(X)
    kept = cosine_similarity_topk(sp.csr_matrix(_with_padding(X)), k).toarray()[1:, 1:]
    for j in range(S.shape[1]):
        got = np.sort(kept[:, j][kept[:, j] > 0])[::-1]
        want = np.sort(S[:, j])[::-1][:k]
        np.testing.assert_allclose(got, want[want > 0], rtol=1e-5)
        assert (kept[:, j] > 0).sum() <= k


def test_item_knn_neighbours_of_an_item():
    X = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=float)
    model = ItemKNN(k=5).fit(_with_padding(X))
    items, sims = model.neighbours(1, n=2)
    assert items.tolist() == [2]  # item 3 never co-occurs with item 1
    assert sims[0] == pytest.approx(2 / np.sqrt(3 * 3))
    with pytest.raises(ValueError, match="internal id"):
        model.neighbours(0)


# --------------------------------------------------------------------------- popularity
def test_most_popular_scores_are_counts_for_everyone():
    model = MostPopular().fit(_with_padding(X54))
    users, hist = _all_users(X54)
    scores = model.score(users, hist)
    counts = torch.tensor(X54.sum(axis=0), dtype=torch.float32)
    for row in scores:
        torch.testing.assert_close(row[1:], counts)
    new_visitor = model.score(torch.tensor([-1]), torch.tensor([[0, 2]]))
    torch.testing.assert_close(new_visitor[0, 1:], counts)


# --------------------------------------------------------------------------- TF-IDF
def test_tfidf_profile_is_the_mean_item_vector():
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["", "red phone case", "blue phone case", "coffee beans", "espresso coffee machine"]
    X = _with_padding(np.array([[1, 0, 0, 0], [0, 0, 1, 1], [1, 1, 0, 1]], dtype=float))
    model = TfidfContent().fit(X, items=texts)
    V = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(texts[1:]).toarray()
    expected = np.stack([V[np.flatnonzero(row[1:])].mean(axis=0) @ V.T for row in X])
    users, hist = _all_users(X[:, 1:])
    torch.testing.assert_close(model.score(users, hist)[:, 1:], torch.tensor(expected, dtype=torch.float32),
                               rtol=1e-5, atol=1e-6)
    s = model.score(torch.tensor([0]), torch.tensor([[1]]))[0]
    assert s[2] > s[3] and s[3] == 0 and s[4] == 0  # the other phone case first; coffee shares no word


def test_item_text_reads_titles_descriptions_and_genres():
    ml = pd.DataFrame({"item_id": [1], "title": ["Toy Story"], "genres": ["Animation|Comedy"]})
    assert item_text(ml) == ["Toy Story Animation Comedy"]
    shop = pd.DataFrame({"item_id": [None, 1], "title": ["<pad>", "Mug"], "description": [None, "A mug."]})
    assert item_text(shop) == ["", "Mug A mug."]
    with pytest.raises(ValueError, match="no column"):
        item_text(shop, ["brand"])


def test_tfidf_needs_text():
    with pytest.raises(ValueError, match="needs item text"):
        TfidfContent().fit(_with_padding(X54))
    with pytest.raises(ValueError, match="item texts"):
        TfidfContent().fit(_with_padding(X54), items=["a", "b"])


# --------------------------------------------------------------------------- BPR-MF
def test_bpr_loss_is_minus_log_sigmoid_of_the_margin():
    pos, neg = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([0.0, 1.0, -1.0])
    expected = -np.mean(np.log(1 / (1 + np.exp(-(pos.numpy() - neg.numpy())))))
    assert float(BPRMF.bpr_loss(pos, neg)) == pytest.approx(expected, rel=1e-6)


def test_bpr_negatives_are_never_training_items():
    rng = np.random.default_rng(0)
    X = (rng.random((20, 10)) < 0.6).astype(float)
    X[:, 0] = 0  # item 1 is never seen... and one item per user stays free:
    model = BPRMF(dim=4, epochs=1, device="cpu").fit(_with_padding(X))
    users = torch.arange(20).repeat_interleave(200)
    neg = model.sample_negatives(users, torch.Generator().manual_seed(0), rounds=50)
    assert ((neg >= 1) & (neg <= 10)).all()
    assert not model._is_positive(users, neg).any()
    seen = torch.tensor(_with_padding(X))[users, neg]
    assert (seen == 0).all()


def test_bpr_learns_two_taste_groups_and_is_deterministic():
    """Users 0-9 buy from items 1-6, users 10-19 from items 7-12: the items of one's own group
    that one has not bought must (almost always) outrank the items of the other group."""
    rng = np.random.default_rng(0)
    X = np.zeros((20, 12))
    for u in range(20):
        group = range(0, 6) if u < 10 else range(6, 12)
        X[u, rng.choice(list(group), 3, replace=False)] = 1
    kw = dict(dim=2, epochs=30, lr=0.02, reg=1e-2, batch_size=16, seed=3, device="cpu")
    model = BPRMF(**kw).fit(_with_padding(X))
    users, hist = _all_users(X)
    scores = model.score(users, hist)[:, 1:].numpy()
    ordered = []
    for u in range(20):
        own = np.arange(0, 6) if u < 10 else np.arange(6, 12)
        other = np.setdiff1d(np.arange(12), own)
        unseen_own = own[X[u, own] == 0]
        ordered.append((scores[u, unseen_own][:, None] > scores[u, other][None, :]).mean())
    assert np.mean(ordered) > 0.95, ordered  # a pairwise AUC; random scores give 0.5
    assert model.losses[-1] < 0.8 * model.losses[0]
    again = BPRMF(**kw).fit(_with_padding(X))
    torch.testing.assert_close(again.user_factors, model.user_factors)


def test_bpr_rejects_unknown_users():
    model = BPRMF(dim=4, epochs=1, device="cpu").fit(_with_padding(X54))
    with pytest.raises(ValueError, match="unknown user"):
        model.score(torch.tensor([-1]), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="unknown user 5"):
        model.score(torch.tensor([5]), torch.tensor([[1, 2]]))


# --------------------------------------------------------------------------- common behaviour
ALL_MODELS = [
    lambda: MostPopular(), lambda: ItemKNN(k=3), lambda: EASE(lam=1.0), lambda: TfidfContent(),
    lambda: BPRMF(dim=4, epochs=2, device="cpu"), lambda: Hybrid([EASE(lam=1.0), TfidfContent()], [1.0, 0.5]),
]
IDS = ["pop", "knn", "ease", "tfidf", "bpr", "hybrid"]


@pytest.mark.parametrize("make", ALL_MODELS, ids=IDS)
def test_unfitted_model_says_fit_first(make):
    with pytest.raises(RuntimeError, match=r"not fitted yet; call .fit"):
        make().score(torch.tensor([0]), torch.tensor([[1]]))


@pytest.mark.parametrize("make", ALL_MODELS, ids=IDS)
def test_empty_training_set_is_an_error(make, tiny_split):
    with pytest.raises(ValueError, match="training set is empty"):
        make().fit(np.zeros((3, 6)), **({"items": ["", "a", "b", "c", "d", "e"]}
                                        if isinstance(make(), (TfidfContent, Hybrid)) else {}))


@pytest.mark.parametrize("make", ALL_MODELS, ids=IDS)
def test_bad_input_is_rejected_with_a_message(make, tiny_split):
    model = make().fit(tiny_split)
    with pytest.raises(ValueError, match="unknown user 99"):
        model.score(torch.tensor([99]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="outside"):
        model.score(torch.tensor([0]), torch.tensor([[7]]))
    with pytest.raises(ValueError, match="one history per user"):
        model.score(torch.tensor([0, 1]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="2-D"):
        model.score(torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="integer"):
        model.score(torch.tensor([0]), torch.tensor([[1.0]]))


@pytest.mark.parametrize("make", ALL_MODELS, ids=IDS)
def test_every_baseline_runs_through_the_evaluator(make, tiny_split):
    model = make().fit(tiny_split)
    scores = model.score_split(tiny_split, "valid")
    assert scores.shape == (tiny_split.n_users, tiny_split.n_items + 1) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    result = evaluate(model.score, tiny_split, "valid", ks=(1, 2))
    assert set(result) == {"HR@1", "NDCG@1", "MRR@1", "HR@2", "NDCG@2", "MRR@2"}
    test = fit_and_test(model, tiny_split, ks=(2,))
    assert 0.0 <= test["NDCG@2"] <= 1.0
    assert model.include_valid and model._X.nnz == tiny_split.train_matrix(include_valid=True).nnz


def test_bad_training_matrices():
    with pytest.raises(ValueError, match="padding"):
        as_training_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="negative"):
        as_training_matrix(np.array([[0, -1.0, 1]]))
    with pytest.raises(ValueError, match="include_valid"):
        as_training_matrix(_with_padding(X54), include_valid=True)
    with pytest.raises(ValueError, match="LeaveOneOutSplit"):
        EASE().fit([[0, 1]])
    with pytest.raises(ValueError, match="lam"):
        EASE(lam=0)
    with pytest.raises(ValueError, match="k must be"):
        ItemKNN(k=0)


def test_history_and_stored_row_are_united():
    """A truncated history gives the same scores as the full one (the stored row fills in),
    and an unknown user (-1) is scored from the history alone."""
    rng = np.random.default_rng(4)
    X = (rng.random((6, 8)) < 0.6).astype(float)
    model = EASE(lam=1.0).fit(_with_padding(X))
    users, full = _all_users(X)
    truncated = full[:, -1:]
    torch.testing.assert_close(model.score(users, truncated), model.score(users, full))
    visitor = model.score(torch.full((6,), -1), full)
    torch.testing.assert_close(visitor, model.score(users, full))
    assert not torch.equal(model.score(torch.full((6,), -1), truncated), model.score(users, full))


def test_test_stage_sees_the_validation_item_even_without_refit(tiny_split):
    """Fitted on train only, an item-based model still reads the validation item at test time."""
    model = EASE(lam=1.0).fit(tiny_split)
    users = torch.arange(tiny_split.n_users)
    with_valid = model.score(users, tiny_split.padded("test", 10))
    rows = model._seen_rows(users.numpy(), tiny_split.padded("test", 10).numpy())
    assert rows.nnz == tiny_split.seen_matrix("test").nnz
    assert with_valid.shape[1] == tiny_split.n_items + 1


def test_hybrid_with_one_weight_ranks_like_its_model(tiny_split):
    ease = EASE(lam=1.0)
    hybrid = Hybrid([ease, TfidfContent()], [1.0, 0.0]).fit(tiny_split)
    users = torch.arange(tiny_split.n_users)
    hist = tiny_split.padded("valid", 10)
    a, b = ease.score(users, hist)[:, 1:], hybrid.score(users, hist)[:, 1:]
    assert torch.equal(a.argsort(dim=1, stable=True), b.argsort(dim=1, stable=True))
    z = Hybrid.standardise(torch.tensor([[-torch.inf, 1.0, 2.0, 3.0]]))
    torch.testing.assert_close(z[0, 1:], torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="one weight per model"):
        Hybrid([ease], [1.0, 2.0])


def test_grid_search_picks_the_best_on_validation(tiny_split):
    best, table = grid_search(lambda k: ItemKNN(k=k), {"k": [1, 2, 4]}, tiny_split, ks=(3,), metric="NDCG@3")
    assert len(table) == 3 and table["NDCG@3"].is_monotonic_decreasing
    assert best["k"] == table.loc[0, "k"]
    for k in (1, 2, 4):
        expected = evaluate(ItemKNN(k=k).fit(tiny_split).score, tiny_split, "valid", ks=(3,))["NDCG@3"]
        assert table.loc[table["k"] == k, "NDCG@3"].item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="metric"):
        grid_search(lambda k: ItemKNN(k=k), {"k": [1]}, tiny_split, ks=(3,), metric="NDCG@99")


def test_collaborative_filtering_beats_popularity_on_movielens(ml100k):
    """The claim chapter 01 makes, checked on ML-100K's validation stage."""
    split = leave_one_out(ml100k, min_item_interactions=5)
    ndcg = {type(m).__name__: evaluate(m.fit(split).score, split, "valid")["NDCG@10"]
            for m in (MostPopular(), ItemKNN(k=100), EASE(lam=200.0))}
    assert ndcg["EASE"] > ndcg["MostPopular"] and ndcg["ItemKNN"] > ndcg["MostPopular"], ndcg
