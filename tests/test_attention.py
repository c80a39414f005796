"""course_lib.attention against independent references: torch's fused SDPA,
torch.nn.MultiheadAttention, torch.nn.TransformerEncoderLayer, hand-computed numbers, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    SinusoidalPositionalEncoding,
    TransformerBlock,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def _qkv(*lead, Tq=5, Tk=7, d=8, dv=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, Tq, d, generator=g, dtype=dtype)
    k = torch.randn(*lead, Tk, d, generator=g, dtype=dtype)
    v = torch.randn(*lead, Tk, dv, generator=g, dtype=dtype)
    return q, k, v


def _random_mask(*shape, p=0.6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) < p


# --------------------------------------------------------------------------- hand-computed


def test_tiny_example_by_hand():
    # one query, two keys: scores [1, 0] / sqrt(1) -> softmax [e/(e+1), 1/(e+1)]
    q = torch.tensor([[1.0]])
    k = torch.tensor([[1.0], [0.0]])
    v = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    out, w = scaled_dot_product_attention(q, k, v)
    a = math.e / (math.e + 1)
    torch.testing.assert_close(w, torch.tensor([[a, 1 - a]]))
    torch.testing.assert_close(out, torch.tensor([[10 * a, 10 * (1 - a)]]))


def test_scale_argument_and_default():
    q, k, v = _qkv(2, d=16)
    _, w_default = scaled_dot_product_attention(q, k, v)
    _, w_explicit = scaled_dot_product_attention(q, k, v, scale=0.25)
    torch.testing.assert_close(w_default, w_explicit)
    _, w_unscaled = scaled_dot_product_attention(q, k, v, scale=1.0)
    torch.testing.assert_close(w_unscaled, torch.softmax(q @ k.transpose(-2, -1), -1))


def test_masks_by_hand():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    ids = torch.tensor([[0, 0, 5, 7], [1, 2, 3, 4]])
    pm = padding_mask(ids)
    assert pm.shape == (2, 1, 4) and pm.dtype == torch.bool
    assert pm[0, 0].tolist() == [False, False, True, True] and pm[1].all()
    combined = causal_mask(4) & pm                                   # (B, T, T)
    assert combined.shape == (2, 4, 4)
    # row 0 of user 0 (a padding query) may attend nothing; its last row attends items 5 and 7
    assert not combined[0, 0].any() and combined[0, 3].tolist() == [False, False, True, True]
    assert padding_mask(torch.tensor([[9, 9, 3]]), pad_id=9)[0, 0].tolist() == [False, False, True]


# --------------------------------------------------------------------------- against torch SDPA


@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
def test_matches_torch_sdpa_without_mask(lead):
    q, k, v = _qkv(*lead)
    ref = F.scaled_dot_product_attention(q, k, v)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), **TOL)
    fast, none = scaled_dot_product_attention(q, k, v, fast=True)
    assert none is None
    torch.testing.assert_close(fast, ref, **TOL)


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 5, 7), (2, 4, 5, 7), (1, 4, 1, 7)])
def test_matches_torch_sdpa_with_boolean_mask(mask_shape):
    q, k, v = _qkv(2, 4)
    mask = _random_mask(*mask_shape)
    if mask_shape[-2] == 5:
        mask[..., 0, :] = False                                        # query 0 may attend nothing
    full = mask.expand(2, 4, 5, 7)
    rows = full.any(-1)                                                # queries with at least one key
    assert rows.any()
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out[rows], ref[rows], **TOL)
    fast, _ = scaled_dot_product_attention(q, k, v, mask, fast=True)
    torch.testing.assert_close(fast[rows], ref[rows], **TOL)
    torch.testing.assert_close(fast, out, **TOL)                      # the two paths agree everywhere
    # blocked keys get exactly zero weight, allowed rows sum to one
    assert (w[~full] == 0).all()
    torch.testing.assert_close(w.sum(-1)[rows], torch.ones(int(rows.sum())), **TOL)
    assert (out[~rows] == 0).all() and (w[~rows] == 0).all()         # fully masked rows: zeros, not NaN
    assert (~rows).any() == (mask_shape[-2] == 5)


# --------------------------------------------------------------------------- fully masked rows


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("fast", [False, True])
def test_fully_masked_rows_give_zeros_and_finite_gradients(fast):
    q, k, v = _qkv(2, Tq=4, Tk=4)
    for t in (q, k, v):
        t.requires_grad_(True)
    ids = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    mask = causal_mask(4) & padding_mask(ids)                         # user 0: query rows 0, 1 see nothing
    with torch.autograd.detect_anomaly():
        out, w = scaled_dot_product_attention(q, k, v, mask, fast=fast)
    assert torch.isfinite(out).all()
    assert (out[0, :2] == 0).all() and (out[0, 2:] != 0).any()
    if not fast:
        assert (w[0, :2] == 0).all()
        torch.testing.assert_close(w[0, 2:].sum(-1), torch.ones(2))
    with torch.autograd.detect_anomaly():                             # fails if any backward step makes a NaN
        (out.sum() + (out ** 2).sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[0, :2] == 0).all()                                 # a query that attends nothing learns nothing
    # the padding keys 0 and 1 of user 0 receive no gradient from anyone
    assert (k.grad[0, :2] == 0).all() and (v.grad[0, :2] == 0).all()


def test_naive_softmax_would_give_nan():
    # the failure our implementation avoids: a row of -inf through softmax
    row = torch.full((3,), float("-inf"))
    assert torch.isnan(torch.softmax(row, -1)).all()
    q, k, v = _qkv(Tq=1, Tk=3)
    out, w = scaled_dot_product_attention(q, k, v, torch.zeros(1, 3, dtype=torch.bool))
    assert (out == 0).all() and (w == 0).all()


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("fast", [False, True])
def test_gradcheck_float64(fast):
    q, k, v = _qkv(2, Tq=3, Tk=4, d=5, dv=3, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True], [False, False, False, False], [True, True, True, False]])
    for t in (q, k, v):
        t.requires_grad_(True)
    fn = lambda q_, k_, v_: scaled_dot_product_attention(q_, k_, v_, mask, fast=fast)[0]
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-5)
    fn_nomask = lambda q_, k_, v_: scaled_dot_product_attention(q_, k_, v_, fast=fast)[0]
    assert torch.autograd.gradcheck(fn_nomask, (q, k, v), eps=1e-6, atol=1e-5)


def test_dropout_zeroes_weights_and_rescales():
    torch.manual_seed(0)
    q, k, v = _qkv(64, Tq=8, Tk=8)
    _, w = scaled_dot_product_attention(q, k, v)
    _, wd = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    dropped = wd == 0
    assert 0.4 < dropped.float().mean() < 0.6
    torch.testing.assert_close(wd[~dropped], 2 * w[~dropped])


# --------------------------------------------------------------------------- errors


def test_clear_errors():
    q, k, v = _qkv(2)
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 7))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="last dimension"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="number of keys"):
        scaled_dot_product_attention(q, k, v[..., :3, :])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, d\)"):
        scaled_dot_product_attention(torch.randn(4), k, v)
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match="positive integer"):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        padding_mask(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        mha(torch.randn(2, 5, 6))
    with pytest.raises(TypeError, match="boolean"):
        mha(torch.randn(2, 5, 8), torch.ones(5, 5))
    with pytest.raises(ValueError, match="fused path"):
        mha(torch.randn(2, 5, 8), return_weights=True, fast=True)
    with pytest.raises(ValueError, match="activation"):
        TransformerBlock(8, 2, activation="swish")


# --------------------------------------------------------------------------- positions


def test_sinusoidal_positions_by_hand():
    P = sinusoidal_positions(4, 6)
    assert P.shape == (4, 6)
    for t in range(4):
        for i in range(3):
            angle = t / 10000 ** (2 * i / 6)
            assert P[t, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert P[t, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_positions(3, 5).shape == (3, 5)
    # relative positions: <P[t], P[t+k]> depends on k only
    P = sinusoidal_positions(50, 16)
    dots = [(P[t] @ P[t + 3]).item() for t in range(40)]
    assert max(dots) - min(dots) < 1e-4


def test_positional_modules():
    x = torch.zeros(2, 5, 8)
    sin = SinusoidalPositionalEncoding(10, 8)
    torch.testing.assert_close(sin(x), sinusoidal_positions(5, 8).expand(2, 5, 8))
    assert not list(sin.parameters())
    learned = LearnedPositionalEmbedding(10, 8)
    y = learned(x)
    torch.testing.assert_close(y[0], learned.embedding.weight[:5])
    assert sum(p.numel() for p in learned.parameters()) == 80
    with pytest.raises(ValueError, match="max_len"):
        learned(torch.zeros(1, 11, 8))


# --------------------------------------------------------------------------- modules against torch


def _torch_mha(d=16, h=4, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(d, h, batch_first=True)
    nn.init.normal_(ref.in_proj_bias)
    nn.init.normal_(ref.out_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("fast", [False, True])
def test_multihead_matches_torch_multiheadattention(fast):
    ref = _torch_mha()
    mine = MultiHeadAttention(16, 4).load_torch_weights(ref).eval()
    x = torch.randn(3, 6, 16)
    expected, expected_w = ref(x, x, x, average_attn_weights=False)
    got = mine(x, fast=fast)
    torch.testing.assert_close(got, expected, **TOL)
    got2, w = mine(x, return_weights=True)
    torch.testing.assert_close(got2, expected, **TOL)
    torch.testing.assert_close(w, expected_w, **TOL)                 # (B, H, T, T) per head


def test_multihead_matches_torch_with_masks():
    ref = _torch_mha(seed=1)
    mine = MultiHeadAttention(16, 4).load_torch_weights(ref).eval()
    x = torch.randn(3, 6, 16)
    ids = torch.tensor([[0, 0, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6], [0, 3, 3, 3, 3, 3]])
    mask = causal_mask(6) & padding_mask(ids)                        # (B, T, T), True = may attend
    # torch's module takes True = blocked; a (B*H, T, T) mask
    torch_mask = (~mask).repeat_interleave(4, dim=0)
    expected, _ = ref(x, x, x, attn_mask=torch_mask)
    rows = mask.any(-1)                                               # torch gives NaN on fully masked rows
    for fast in (False, True):
        got = mine(x, mask, fast=fast)
        torch.testing.assert_close(got[rows], expected[rows], **TOL)
        assert torch.isfinite(got).all()
    # a plain (T, T) causal mask works as well
    expected_c, _ = ref(x, x, x, attn_mask=~causal_mask(6))
    torch.testing.assert_close(mine(x, causal_mask(6)), expected_c, **TOL)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_transformer_block_matches_torch_encoder_layer(norm_first, activation):
    torch.manual_seed(0)
    d, h, ff = 16, 4, 40
    ref = nn.TransformerEncoderLayer(d, h, dim_feedforward=ff, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first).eval()
    for p in ref.parameters():                                        # non-trivial norms and biases
        nn.init.normal_(p, std=0.3)
    block = TransformerBlock(d, h, d_ff=ff, norm_first=norm_first, activation=activation).load_torch_weights(ref).eval()
    x = torch.randn(2, 7, d)
    mask = causal_mask(7)
    with torch.no_grad():
        expected = ref(x, src_mask=~mask)
        torch.testing.assert_close(block(x, mask), expected, **TOL)
        torch.testing.assert_close(block(x, mask, fast=False), expected, **TOL)
        y, w = block(x, mask, return_weights=True)
        assert w.shape == (2, 4, 7, 7) and (w.triu(1) == 0).all()
        torch.testing.assert_close(y, expected, **TOL)


def test_block_with_padding_stays_finite_and_trains():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, dropout=0.1)
    ids = torch.tensor([[0, 0, 0, 4, 5], [1, 2, 3, 4, 5]])
    mask = causal_mask(5) & padding_mask(ids)
    x = torch.randn(2, 5, 16, requires_grad=True)
    y = block(x, mask)
    assert y.shape == (2, 5, 16) and torch.isfinite(y).all()
    y.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters())
    assert torch.isfinite(x.grad).all()


def test_causal_attention_cannot_see_the_future():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(1, 6, 16)
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 16)                                    # change only the last two positions
    with torch.no_grad():
        y, y2 = block(x, causal_mask(6)), block(x2, causal_mask(6))
        torch.testing.assert_close(y[0, :4], y2[0, :4])
        assert not torch.allclose(y[0, 4:], y2[0, 4:])
        # without the mask, the first positions do see the change
        assert not torch.allclose(block(x)[0, :4], block(x2)[0, :4])


def test_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 6, 16)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        torch.testing.assert_close(mha(x)[:, perm], mha(x[:, perm]), **TOL)
        pos = SinusoidalPositionalEncoding(6, 16)
        assert not torch.allclose(mha(pos(x))[:, perm], mha(pos(x[:, perm])), atol=1e-3)


def _saved_bytes(fn):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("lead", [(4,), (4, 2)])
def test_fused_path_keeps_linear_memory_for_backward(lead):
    # the teaching path keeps the (T, T) weights for backward; the fused kernel does not
    saved = {}
    for T in (128, 256):
        q, k, v = (torch.randn(*lead, T, 32, requires_grad=True) for _ in range(3))
        for fast in (False, True):
            saved[(T, fast)] = _saved_bytes(
                lambda q=q, k=k, v=v, fast=fast: scaled_dot_product_attention(q, k, v, fast=fast))
    assert saved[(256, True)] / saved[(128, True)] == pytest.approx(2.0, rel=0.05)
    assert saved[(256, False)] / saved[(128, False)] > 2.5
    n_weights = math.prod(lead) * 256 * 256 * 4
    assert saved[(256, False)] - saved[(256, True)] > 0.5 * n_weights
