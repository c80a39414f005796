"""The full-ranking evaluator against the per-user metric functions, and its masking."""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import metrics as M
from course_lib.data import leave_one_out
from course_lib.evaluate import evaluate, evaluate_sampled, topk_items


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(1)
    rows = []
    for u in range(60):
        items = rng.choice(np.arange(1, 41), size=rng.integers(4, 12), replace=False)
        rows += [(u, int(i), t) for t, i in enumerate(items)]
    return leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


def _reference(scores: np.ndarray, split, stage: str, ks):
    """Independent computation: numpy argsort per user after masking, then course metrics."""
    seen = split.seen_matrix(stage).toarray().astype(bool)
    s = scores.astype(np.float64).copy()
    s[seen] = -np.inf
    s[:, 0] = -np.inf
    ranked = np.argsort(-s, axis=1, kind="stable")
    relevant = [{t} for t in split.targets(stage)]
    out = {}
    for k in ks:
        out[f"HR@{k}"] = M.hit_rate_at_k(ranked, relevant, k)
        out[f"NDCG@{k}"] = M.ndcg_at_k(ranked, relevant, k)
        out[f"MRR@{k}"] = M.mrr_at_k(ranked, relevant, k)
    return out


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_evaluator_agrees_with_metric_functions(split, stage):
    scores = np.random.default_rng(2).random((split.n_users, split.n_items + 1)).astype(np.float32)
    got = evaluate(scores, split, stage, ks=(1, 5, 10), batch_size=7)
    want = _reference(scores, split, stage, (1, 5, 10))
    assert list(got) == list(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_callable_and_matrix_give_the_same_numbers(split):
    scores = torch.rand(split.n_users, split.n_items + 1, generator=torch.Generator().manual_seed(3))
    calls = []

    def score_fn(users, histories):
        calls.append(histories.shape)
        return scores[users]

    assert evaluate(score_fn, split, ks=(5,), max_len=8) == evaluate(scores, split, ks=(5,))
    assert calls[0][1] == 8


def test_seen_items_are_masked(split):
    # A model that puts every seen item on top must not get credit for them.
    seen = split.seen_matrix("test").toarray().astype(np.float32)
    scores = seen * 100.0
    scores[np.arange(split.n_users), split.test] = 50.0  # target right after the seen items
    assert evaluate(scores, split, ks=(1,))["HR@1"] == 1.0
    assert evaluate(scores, split, ks=(1,), mask_seen=False)["HR@1"] < 0.2


def test_padding_is_never_recommended(split):
    scores = np.zeros((split.n_users, split.n_items + 1), dtype=np.float32)
    scores[:, 0] = 1e9
    top = topk_items(scores, split, k=3)
    assert (top != 0).all()


def test_per_user_frame(split):
    scores = np.random.default_rng(4).random((split.n_users, split.n_items + 1))
    summary, frame = evaluate(scores, split, ks=(10,), per_user=True)
    assert len(frame) == split.n_users
    assert frame["NDCG@10"].mean() == pytest.approx(summary["NDCG@10"])
    hit = frame["rank"].notna()
    np.testing.assert_allclose(frame.loc[hit, "MRR@10"], 1 / frame.loc[hit, "rank"])


def test_bad_models_get_clear_errors(split):
    with pytest.raises(ValueError, match=r"expected \(60, 41\)"):
        evaluate(np.zeros((split.n_users, split.n_items)), split)
    nan = np.zeros((split.n_users, split.n_items + 1))
    nan[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN scores"):
        evaluate(nan, split)
    with pytest.raises(ValueError, match="ks must be positive"):
        evaluate(nan, split, ks=(0,))
    with pytest.raises(ValueError, match="larger than the catalogue"):
        evaluate(np.zeros((split.n_users, split.n_items + 1)), split, ks=(100,))
    with pytest.raises(ValueError, match="score matrix or a callable"):
        evaluate("popularity", split)


def test_sampled_metrics_extremes(split):
    perfect = np.zeros((split.n_users, split.n_items + 1))
    perfect[np.arange(split.n_users), split.test] = 1.0
    assert evaluate_sampled(perfect, split, n_negatives=20, ks=(1,))["HR@1"] == 1.0
    constant = np.ones((split.n_users, split.n_items + 1))
    assert evaluate_sampled(constant, split, n_negatives=20, ks=(10,))["HR@10"] == 0.0  # ties count against
    a = evaluate_sampled(np.random.default_rng(0).random(perfect.shape), split, n_negatives=20, seed=5)
    b = evaluate_sampled(np.random.default_rng(0).random(perfect.shape), split, n_negatives=20, seed=5)
    assert a == b


def test_sampled_inflates_a_random_model(split):
    # With 20 negatives a random model hits the top 10 about half the time; with the full
    # catalogue (≈ 30 unseen items) less often. Sampled metrics flatter.
    scores = np.random.default_rng(6).random((split.n_users, split.n_items + 1))
    full = evaluate(scores, split, ks=(5,))["HR@5"]
    sampled = evaluate_sampled(scores, split, n_negatives=10, ks=(5,))["HR@5"]
    assert sampled > full
