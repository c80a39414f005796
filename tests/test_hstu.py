"""HSTU: the pointwise attention against a loop over the paper's formula, causality, padding, learning."""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.models.hstu import HSTU, HSTUConfig, RelativePositionBias, pointwise_attention

torch.set_num_threads(1)
N_ITEMS, T = 25, 8


def _model(**kw):
    torch.manual_seed(0)
    return HSTU(HSTUConfig(n_items=N_ITEMS, max_len=T, d_model=16, n_heads=2, n_layers=2, **kw)).eval()


def test_pointwise_attention_matches_the_formula_entry_by_entry():
    torch.manual_seed(1)
    B, H, n, dqk, dv = 2, 2, 5, 3, 4
    q, k, v = torch.randn(B, H, n, dqk), torch.randn(B, H, n, dqk), torch.randn(B, H, n, dv)
    bias = torch.randn(n, n)
    mask = torch.ones(n, n, dtype=torch.bool).tril() & torch.tensor([[0, 1, 1, 1, 1], [1] * 5]).bool()[:, None, :]
    out, w = pointwise_attention(q, k, v, mask, n=7, bias=bias)
    ref = torch.zeros(B, H, n, dv)
    for b in range(B):
        for h in range(H):
            for i in range(n):
                for j in range(n):
                    if j <= i and mask[b, i, j]:
                        a = float(q[b, h, i] @ k[b, h, j] + bias[i, j])
                        ref[b, h, i] += a / (1 + np.exp(-a)) / 7 * v[b, h, j]      # SiLU(a) = a·σ(a)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert (w[0, :, :, 0] == 0).all()                      # a padding key gets weight exactly 0
    assert not torch.allclose(w.sum(-1)[1], torch.ones(H, n))  # rows are not a distribution (no softmax)


def test_relative_bias_depends_on_distance_only():
    rab = RelativePositionBias(6)
    with torch.no_grad():
        rab.weight.copy_(torch.arange(6.0))
    b = rab(4)
    assert b.shape == (4, 4)
    assert b[3, 1] == 2 and b[2, 0] == 2 and b[1, 1] == 0


def test_shapes_and_padding_column():
    m = _model()
    h = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
    assert m(h).shape == (2, T, 16)
    s = m.score(h)
    assert s.shape == (2, N_ITEMS + 1)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()


@pytest.mark.parametrize("position", [2, 5, 7])
def test_causal_leakage_the_future_does_not_change_the_past(position):
    m = _model()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, position] = 20
    ha, hb = m(a), m(b)
    torch.testing.assert_close(ha[:, :position], hb[:, :position])
    assert not torch.allclose(ha[:, position:], hb[:, position:])


def test_gradient_of_an_early_output_has_no_path_to_later_inputs():
    m = _model()
    x = m.embed(torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])).detach().requires_grad_(True)
    mask = torch.ones(1, T, T, dtype=torch.bool).tril()
    y = x
    for layer in m.layers:
        y = layer(y, mask)
    y[0, 3].sum().backward()
    assert x.grad[0, 4:].abs().max() == 0 and x.grad[0, :4].abs().max() > 0


def test_padding_is_ignored_and_trimmed_batches_agree():
    m = _model()
    short = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]])
    torch.testing.assert_close(m.score(short), m.score(padded))
    s1 = m.score(padded)
    with torch.no_grad():
        m.item_emb.weight[0] = 50.0
    torch.testing.assert_close(m.score(padded)[:, 1:], s1[:, 1:])
    torch.testing.assert_close(m(padded)[:, -3:], m(short))          # right-anchored positions


def test_no_nan_for_an_all_padding_row():
    m = _model()
    out = m(torch.zeros(2, T, dtype=torch.long))
    assert torch.isfinite(out).all()


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        HSTUConfig(n_items=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="unknown loss"):
        HSTUConfig(n_items=5, loss="hinge")
    with pytest.raises(ValueError, match="max_len"):
        _model()(torch.ones(1, T + 1, dtype=torch.long))


def test_hstu_learns_a_sequence_pattern():
    """Each user walks item i -> i + 1; after training the next item is ranked first."""
    from course_lib.data import leave_one_out
    from course_lib.evaluate import evaluate
    from course_lib.train import SequenceCollator, TrainConfig, Trainer

    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(1, N_ITEMS - 10))
        rows += [(u, start + t, t) for t in range(int(rng.integers(5, 10)))]
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    torch.manual_seed(0)
    model = HSTU(HSTUConfig(n_items=split.n_items, max_len=T, d_model=32, n_layers=1, dropout=0.0))
    collate = SequenceCollator(split.n_items, T, loss="ce", seed=0)
    cfg = TrainConfig(epochs=40, batch_size=16, lr=1e-2, warmup=0.0, eval_every=0, progress=False, log_every=0)
    Trainer(model, split.train, collate=collate, split=split, config=cfg, device="cpu").fit()
    metrics = evaluate(model.score_fn, split, "test", ks=(1, 10), max_len=T, device="cpu")
    assert metrics["HR@1"] > 0.7, metrics
