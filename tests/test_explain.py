"""Explanations: attributions checked against independent computations (re-scoring, completeness)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import explain as E
from course_lib.models.sasrec import SASRec, SASRecConfig


@pytest.fixture(scope="module")
def model_and_data():
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=30, max_len=8, d_model=16, n_heads=2, n_layers=2, dropout=0.0)).eval()
    with torch.no_grad():                                   # a less flat model than the tiny init
        for p in model.parameters():
            p.mul_(20.0) if p.dim() > 1 else None
    rng = np.random.default_rng(0)
    hists = [rng.choice(np.arange(1, 31), size=n, replace=False) for n in (8, 5, 3, 8, 1)]
    ids = E.left_pad(hists, 8)
    targets = E.top_items(model, ids)
    return model, hists, ids, targets


def test_target_score_equals_the_models_score(model_and_data):
    model, _, ids, targets = model_and_data
    with torch.no_grad():
        mine = E.sasrec_target_score(model, ids, model.item_emb(ids), targets)
    ref = model.score(ids).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)


def test_integrated_gradients_is_complete(model_and_data):
    model, _, ids, targets = model_and_data
    attr, delta = E.integrated_gradients(model, ids, targets, n_steps=64, return_delta=True)
    with torch.no_grad():
        fx = E.sasrec_target_score(model, ids, model.item_emb(ids), targets)
        f0 = E.sasrec_target_score(model, ids, torch.zeros(*ids.shape, 16), targets)
    np.testing.assert_allclose(attr.sum(1).numpy(), (fx - f0).numpy(), rtol=0.02, atol=0.02)
    assert delta.abs().max() < 0.02
    assert (attr[ids == 0] == 0).all()


def test_leave_one_out_equals_rescoring_each_shortened_history(model_and_data):
    model, hists, ids, targets = model_and_data
    loo = E.leave_one_out(model, ids, targets)
    for b, h in enumerate(hists):
        full = model.score(E.left_pad([h], 8))[0, targets[b]]
        for j in range(len(h)):
            short = np.delete(h, j)
            f = model.score(E.left_pad([short], 8))[0, targets[b]] if len(short) else \
                model.score(torch.zeros((1, 8), dtype=torch.long))[0, targets[b]]
            col = 8 - len(h) + j
            assert math.isclose(float(loo[b, col]), float(full - f), rel_tol=1e-4, abs_tol=1e-4)
    assert (loo[ids == 0] == 0).all()


def test_remove_positions_keeps_order_and_left_pads():
    ids = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    drop = torch.tensor([[False, False, False, True, False], [True, False, True, False, False]])
    assert E.remove_positions(ids, drop).tolist() == [[0, 0, 0, 3, 5], [0, 0, 2, 4, 5]]


def test_grad_x_input_and_attention_have_the_right_shape(model_and_data):
    model, _, ids, targets = model_and_data
    for method in ("attention", "grad_x_input"):
        a = E.attribute(model, ids, targets, method, batch_size=2)
        assert a.shape == ids.shape and (a[ids == 0] == 0).all()
    att = E.attention_attribution(model, ids)
    torch.testing.assert_close(att.sum(1), torch.ones(len(ids)), rtol=1e-5, atol=1e-5)


class Planted:
    """Item 1 scores high exactly when item 7 is in the history: the only thing the model uses."""

    class config:
        max_len = 6

    def _inputs(self, h):
        return torch.nn.functional.pad(h, (6 - h.shape[1], 0)) if h.shape[1] < 6 else h[:, -6:]

    def score(self, ids):
        s = torch.ones((len(ids), 11))
        s[:, 1] = 6.0 * (ids == 7).any(dim=1).float()
        s[:, 0] = -math.inf
        return s


def test_deletion_curve_finds_the_planted_item_faster_than_random():
    rng = np.random.default_rng(1)
    hists = [np.r_[rng.choice([2, 3, 4, 5, 6, 8, 9, 10], size=5, replace=False), 7][rng.permutation(6)]
             for _ in range(40)]
    model = Planted()
    ids = E.left_pad(hists, 6)
    targets = torch.ones(len(ids), dtype=torch.long)
    planted = (ids == 7).float()
    ks = range(0, 7)
    right = E.deletion_curve(model, ids, targets, E.deletion_order(planted, ids), ks)
    rand = E.deletion_curve(model, ids, targets, E.deletion_order(planted, ids, random=True, seed=0), ks)
    assert (right["top1"][0] == 1).all() and (right["top1"][1] == 0).all()       # gone after one removal
    assert E.area_under_curve(right["prob"]).mean() < E.area_under_curve(rand["prob"]).mean() - 0.2
    np.testing.assert_array_equal(E.counterfactual_size(right["top1"], list(ks)), np.ones(len(ids)))


def test_rank_agreement_is_one_for_the_same_order_and_minus_one_reversed():
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    a = torch.tensor([[0.0, 1, 2, 3, 4]])
    assert E.rank_agreement(a, 2 * a, ids)[0] == pytest.approx(1.0)
    assert E.rank_agreement(a, -a, ids)[0] == pytest.approx(-1.0)


def test_because_you_bought_and_its_precision():
    vectors = np.eye(6)
    vectors[5] = vectors[2] + 0.1 * vectors[3]               # item 5 is "like" item 2
    hist = [np.array([1, 2, 3]), np.array([3, 4])]
    x = E.because_you_bought(hist, [5, 5], E.cosine_similarity_fn(vectors))
    assert x.tolist() == [2, 3]
    res = E.explanation_precision(hist, [5, 5], x, lambda r: {2})
    assert res == {"precision": 1.0, "pairs": 1, "chance": pytest.approx(1 / 3)}
    co = E.cooccurrence_similarity_fn([[1, 5], [2, 5], [1, 5]], 6, window=1)
    assert co(np.array([1, 2, 3]), 5).tolist() == [2.0, 1.0, 0.0]
