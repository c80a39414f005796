"""DCN-v2 cross layer by hand; AUC, log-loss, ECE against scikit-learn / hand numbers; rerank score matrix."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from course_lib.models.dcn import CrossLayer, DCNConfig, DCNv2
from course_lib.ranking import expected_calibration_error, log_loss, rerank_scores, roc_auc, sample_pairs


def test_cross_layer_formula():
    torch.manual_seed(0)
    layer = CrossLayer(3)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2, 0], [1, 1, 1]]))
        layer.linear.bias.copy_(torch.tensor([0.0, 1, 0]))
    x0 = torch.tensor([[1.0, 2.0, 3.0]])
    x1 = layer(x0, x0)
    # x0 * (W x0 + b) + x0 = [1*1, 2*(4+1), 3*6] + x0
    torch.testing.assert_close(x1, torch.tensor([[2.0, 12.0, 21.0]]))


def test_dcn_shapes_and_errors():
    m = DCNv2(DCNConfig(cardinalities=(5, 7), n_numeric=2))
    out = m(torch.tensor([[1, 2], [3, 6]]), torch.zeros(2, 2))
    assert out.shape == (2,)
    try:
        m(torch.tensor([[1, 2, 3]]), torch.zeros(1, 2))
        raise AssertionError("expected a ValueError")
    except ValueError as err:
        assert "categorical fields" in str(err)


def test_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    p = np.clip(0.2 + 0.3 * y + rng.normal(0, 0.2, 500), 0.01, 0.99)
    p[:10] = 0.5                                             # ties
    assert abs(roc_auc(p, y) - roc_auc_score(y, p)) < 1e-12
    assert abs(log_loss(p, y) - sk_log_loss(y, p)) < 1e-9
    ece, table = expected_calibration_error(np.array([0.1, 0.1, 0.9, 0.9]), np.array([0, 1, 1, 1]), n_bins=10)
    # bin 1: predicted 0.1, observed 0.5; bin 9: predicted 0.9, observed 1.0 -> 0.5*0.4 + 0.5*0.1
    assert abs(ece - 0.25) < 1e-12 and table["n"].tolist() == [2, 2]


def test_sample_pairs_and_rerank():
    cand = np.array([[5, 3, 9, 1], [2, 4, 6, 8]])
    idx, lab = sample_pairs(cand, np.array([9, 7]), n_neg=2, seed=0)
    assert lab.sum() == 1 and idx[lab == 1].tolist() == [2]              # user 0's target at column 2
    assert (lab == 0).sum() == 4 and set(idx[lab == 0][:2]) <= {0, 1, 3}

    class S:
        n_items = 10

    out = rerank_scores(S(), cand, np.array([[0.1, 0.9, 0.5, 0.2], [0.0, 0.0, 1.0, 0.5]]))
    assert np.argsort(-out[0])[:4].tolist() == [3, 9, 1, 5]
    assert np.argsort(-out[1])[:2].tolist() == [6, 8]
