"""Scaling arithmetic (course_lib.scaling) against what torch and faiss measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.scaling import (
    allreduce_bytes,
    counted_flops,
    ivfpq_bytes,
    measure_ivfpq,
    measured_state_bytes,
    sasrec_parameters,
    sasrec_train_flops,
    saved_activation_bytes,
    training_state_bytes,
)
from course_lib.train import SequenceCollator


@pytest.mark.parametrize("d,layers,d_ff", [(32, 1, None), (48, 3, 96)])
def test_parameter_formula_matches_the_model(d, layers, d_ff):
    model = SASRec(SASRecConfig(n_items=123, max_len=17, d_model=d, n_heads=2, n_layers=layers, d_ff=d_ff))
    parts = sasrec_parameters(123, 17, d, layers, d_ff)
    assert parts["total"] == sum(p.numel() for p in model.parameters())
    assert parts["item_table"] == model.item_emb.weight.numel()


def test_adamw_state_matches_measurement():
    model = SASRec(SASRecConfig(n_items=80, max_len=10, d_model=16, n_heads=2, n_layers=1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = SequenceCollator(80, 10)([np.arange(1, 12), np.arange(5, 9)])
    model.training_loss(batch).backward()
    opt.step()
    measured = measured_state_bytes(model, opt)
    formula = training_state_bytes(model.num_parameters())
    for key in ("weights", "gradients", "optimizer", "total"):
        assert measured[key] == formula[key], key
    assert formula["total"] == 16 * model.num_parameters()          # 4 + 4 + 8 bytes per parameter
    assert training_state_bytes(10, weights="bf16", master_copy=True)["total"] == 10 * (2 + 2 + 8 + 4)
    with pytest.raises(ValueError, match="choose one of"):
        training_state_bytes(10, optimizer="lion")


def test_saved_activations_count_storage_once():
    x = torch.randn(100, 50, requires_grad=True)
    # x * 2 saves nothing of x's size; (x * 2).exp() saves its output (100*50 floats); sin saves its input
    assert saved_activation_bytes(lambda: (x * 2).exp()) == 100 * 50 * 4
    y = torch.randn(100, 50, requires_grad=True)
    assert saved_activation_bytes(lambda: (y.sin() * y.sin())) == 3 * 100 * 50 * 4  # y once, two sin outputs


def test_checkpointing_saves_less():
    from torch.utils.checkpoint import checkpoint

    lin = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(4)])
    x = torch.randn(32, 64, requires_grad=True)
    plain = saved_activation_bytes(lambda: lin(x).tanh())
    ckpt = saved_activation_bytes(lambda: checkpoint(lin, x, use_reentrant=False).tanh())
    assert ckpt < plain


def test_flop_formula_matches_torch_counter():
    """The teaching attention path (plain matmuls) is what FlopCounterMode sees; within 1 %."""
    cfg = SASRecConfig(n_items=500, max_len=50, d_model=32, n_heads=2, n_layers=2, dropout=0.0,
                       fast_attention=False, targets_only=False)
    model = SASRec(cfg)
    batch = SequenceCollator(500, 50)([np.arange(1, 52)] * 4)
    tokens = int((batch["labels"] > 0).sum())

    def step():
        model.training_loss(batch).backward()

    per_token = counted_flops(step) / tokens
    assert per_token == pytest.approx(sasrec_train_flops(500, 50, 32, 2)["train"], rel=0.01)
    assert sasrec_train_flops(500, 50, 32, 2, full_softmax=False)["output"] == 0


def test_allreduce_bytes():
    assert allreduce_bytes(1000, 1) == 0
    assert allreduce_bytes(1000, 2) == 4000               # 2 · 1/2 · 1000 · 4
    assert allreduce_bytes(1000, 1000) == pytest.approx(2 * 0.999 * 4000)


def test_ivfpq_formula_matches_faiss():
    pytest.importorskip("faiss")
    x = np.random.default_rng(0).standard_normal((6000, 32)).astype(np.float32)
    got = measure_ivfpq(x, nlist=16, m=4, nbits=6, train_size=3000)
    want = ivfpq_bytes(6000, 32, nlist=16, m=4, nbits=6)
    assert got["bytes"] == pytest.approx(want["total"], rel=0.02)
    with pytest.raises(ValueError, match="divisible"):
        ivfpq_bytes(10, 30, nlist=4, m=4)
