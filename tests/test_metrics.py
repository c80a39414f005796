"""Each metric against an independent reference: scikit-learn or a hand-worked example."""

import math

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, ndcg_score, roc_auc_score

from course_lib import metrics as M

# One worked example, by hand. Ranked list a, b, c, d, e; relevant {a, c, x}.
REC = [["a", "b", "c", "d", "e"]]
REL = [{"a", "c", "x"}]


def test_hand_worked_example():
    # rel = 1 0 1 0 0 ; hits@5 = 2 ; |R| = 3
    assert M.hit_rate_at_k(REC, REL, 5) == 1.0
    assert M.precision_at_k(REC, REL, 5) == pytest.approx(2 / 5)
    assert M.recall_at_k(REC, REL, 5) == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(REC, REL, 5) == pytest.approx(dcg / idcg)
    assert M.mrr_at_k(REC, REL, 5) == 1.0
    # AP@5 = (P@1 * 1 + P@3 * 1) / min(3, 5) = (1 + 2/3) / 3
    assert M.map_at_k(REC, REL, 5) == pytest.approx((1 + 2 / 3) / 3)
    # at k = 2 only "a" counts; IDCG over min(3, 2) = 2 positions
    assert M.ndcg_at_k(REC, REL, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert M.map_at_k(REC, REL, 2) == pytest.approx(1 / 2)


def test_single_target_formulas():
    rec = [[5, 6, 7, 8]]
    assert M.ndcg_at_k(rec, [{7}], 4) == pytest.approx(1 / math.log2(4))
    assert M.mrr_at_k(rec, [{7}], 4) == pytest.approx(1 / 3)
    assert M.hit_rate_at_k(rec, [{7}], 2) == 0.0
    assert M.recall_at_k(rec, [{7}], 4) == M.hit_rate_at_k(rec, [{7}], 4)


def test_ndcg_matches_scikit_learn(rng):
    n_users, n_items, k = 40, 30, 10
    scores = rng.random((n_users, n_items))
    truth = (rng.random((n_users, n_items)) < 0.15).astype(float)
    truth[truth.sum(1) == 0, 0] = 1.0  # every user has a relevant item
    ranked = np.argsort(-scores, axis=1)
    relevant = [set(np.flatnonzero(row)) for row in truth]
    ours = M.ndcg_at_k(ranked, relevant, k, per_user=True)
    theirs = [ndcg_score(truth[u : u + 1], scores[u : u + 1], k=k) for u in range(n_users)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_per_user_and_mean_agree(rng):
    ranked = np.argsort(-rng.random((20, 15)), axis=1)
    relevant = [{int(i)} for i in rng.integers(0, 15, 20)]
    for fn in (M.hit_rate_at_k, M.precision_at_k, M.recall_at_k, M.ndcg_at_k, M.mrr_at_k, M.map_at_k):
        per = fn(ranked, relevant, 5, per_user=True)
        assert per.shape == (20,)
        assert fn(ranked, relevant, 5) == pytest.approx(per.mean())


def test_auc_matches_scikit_learn_with_ties(rng):
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 10, 200).astype(float)  # many ties
    assert M.auc(y, s) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        M.auc([1, 1], [0.2, 0.4])


def test_rmse_mae_match_scikit_learn(rng):
    y, p = rng.normal(size=50), rng.normal(size=50)
    assert M.rmse(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)))
    assert M.mae(y, p) == pytest.approx(mean_absolute_error(y, p))


def test_beyond_accuracy_by_hand():
    lists = [[1, 2], [2, 3]]
    assert M.catalog_coverage(lists, 10) == pytest.approx(0.3)
    vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    # list 1: items 1 and 2 are orthogonal -> distance 1; list 2: cos(45°) -> 1 - 1/sqrt(2)
    assert M.intra_list_diversity(lists, vectors) == pytest.approx((1 + (1 - 1 / math.sqrt(2))) / 2)
    counts = np.array([0, 2, 1, 1])  # total 4: shares 1/2, 1/4, 1/4
    assert M.novelty(lists, counts) == pytest.approx(np.mean([1, 2, 2, 2]))  # items 1, 2, 2, 3


@pytest.mark.parametrize("bad_k", [0, -1, 2.5, True])
def test_bad_k(bad_k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        M.ndcg_at_k(REC, REL, bad_k)


def test_bad_inputs_say_what_to_fix():
    with pytest.raises(ValueError, match="one ranked list and one relevant set per user"):
        M.hit_rate_at_k([[1], [2]], [{1}], 1)
    with pytest.raises(ValueError, match="has no relevant items"):
        M.recall_at_k([[1]], [set()], 1)
    with pytest.raises(ValueError, match="repeats an item"):
        M.precision_at_k([[1, 1]], [{1}], 2)
    with pytest.raises(ValueError, match="NaN"):
        M.auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="zero interactions"):
        M.novelty([[0]], np.array([0, 3]))
    with pytest.raises(ValueError, match="all zeros"):
        M.intra_list_diversity([[0, 1]], np.zeros((2, 2)))
