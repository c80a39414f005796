"""The next-item losses against independent references (torch's cross_entropy, hand-computed values)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.losses import NegativeSampler, bce_loss, full_cross_entropy, next_item_loss, sampled_softmax_loss


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    n, d, n_items = 7, 5, 11
    hidden = torch.randn(n, d, generator=g, dtype=torch.float64)
    emb = torch.randn(n_items + 1, d, generator=g, dtype=torch.float64)
    targets = torch.randint(1, n_items + 1, (n,), generator=g)
    return hidden, targets, emb, n_items


def test_full_ce_equals_torch_cross_entropy(data):
    hidden, targets, emb, n_items = data
    logits = torch.stack([torch.stack([hidden[r] @ emb[i] for i in range(1, n_items + 1)])
                          for r in range(len(hidden))])                      # (N, n_items), by hand
    ref = F.cross_entropy(logits, targets - 1)
    torch.testing.assert_close(full_cross_entropy(hidden, targets, emb), ref)


def test_full_ce_never_uses_the_padding_row(data):
    hidden, targets, emb, _ = data
    a = full_cross_entropy(hidden, targets, emb)
    emb2 = emb.clone()
    emb2[0] = 100.0  # a huge padding embedding would dominate the softmax if it were a candidate
    torch.testing.assert_close(full_cross_entropy(hidden, targets, emb2), a)


def test_sampled_softmax_with_all_items_equals_full_ce(data):
    hidden, targets, emb, n_items = data
    everything = torch.arange(1, n_items + 1)
    full = full_cross_entropy(hidden, targets, emb)
    torch.testing.assert_close(sampled_softmax_loss(hidden, targets, everything, emb), full)
    # uniform log-Q shifts every logit by the same constant: still equal
    log_q = torch.full((n_items + 1,), -math.log(n_items), dtype=torch.float64)
    torch.testing.assert_close(sampled_softmax_loss(hidden, targets, everything, emb, log_q=log_q), full)
    # per-position negatives (N, K) give the same
    per_row = everything[None, :].expand(len(hidden), -1)
    torch.testing.assert_close(sampled_softmax_loss(hidden, targets, per_row, emb), full)


def test_sampled_softmax_hand_computed():
    hidden = torch.tensor([[1.0, 0.0]])
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])     # items 1, 2, 3
    targets = torch.tensor([1])
    negatives = torch.tensor([2, 3])
    s_t, s_2, s_3 = 2.0, 1.0, 0.0
    ref = -s_t + math.log(math.exp(s_t) + math.exp(s_2) + math.exp(s_3))
    assert sampled_softmax_loss(hidden, targets, negatives, emb).item() == pytest.approx(ref, rel=1e-6)
    log_q = torch.log(torch.tensor([0.0, 0.5, 0.25, 0.25]))
    ref_q = -(s_t - math.log(0.5)) + math.log(math.exp(s_t - math.log(0.5)) + math.exp(s_2 - math.log(0.25))
                                              + math.exp(s_3 - math.log(0.25)))
    got = sampled_softmax_loss(hidden, targets, negatives, emb, log_q=log_q).item()
    assert got == pytest.approx(ref_q, rel=1e-6)
    # an accidental hit (the target among the negatives) is removed
    with_hit = sampled_softmax_loss(hidden, targets, torch.tensor([2, 3, 1]), emb).item()
    assert with_hit == pytest.approx(ref, rel=1e-6)
    kept = sampled_softmax_loss(hidden, targets, torch.tensor([2, 3, 1]), emb, remove_accidental_hits=False).item()
    assert kept == pytest.approx(-s_t + math.log(2 * math.exp(s_t) + math.exp(s_2) + math.exp(s_3)), rel=1e-6)


def test_bce_hand_computed():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    targets = torch.tensor([1, 2])
    negatives = torch.tensor([3, 1])
    sig = lambda x: 1 / (1 + math.exp(-x))
    # row 0: s+ = 2, s- = <(1,0),(0,-1)> = 0; row 1: s+ = 1, s- = <(0,1),(2,0)> = 0
    ref = (-math.log(sig(2)) - math.log(1 - sig(0)) - math.log(sig(1)) - math.log(1 - sig(0))) / 2
    assert bce_loss(hidden, targets, negatives, emb).item() == pytest.approx(ref, rel=1e-6)
    ref_bce = F.binary_cross_entropy_with_logits(torch.tensor([2.0, 0.0, 1.0, 0.0]), torch.tensor([1.0, 0, 1, 0]),
                                                 reduction="sum") / 2
    assert bce_loss(hidden, targets, negatives, emb).item() == pytest.approx(ref_bce.item(), rel=1e-6)
    # K negatives per position: the sum over negatives
    two = bce_loss(hidden, targets, torch.stack([negatives, negatives], dim=1), emb).item()
    assert two == pytest.approx(ref + math.log(2), rel=1e-6)


def test_losses_are_stable_for_large_scores():
    hidden = torch.tensor([[100.0, 0.0]])
    emb = torch.tensor([[0.0, 0.0], [100.0, 0.0], [-100.0, 0.0]])
    for value in (full_cross_entropy(hidden, torch.tensor([2]), emb),
                  bce_loss(hidden, torch.tensor([2]), torch.tensor([1]), emb),
                  sampled_softmax_loss(hidden, torch.tensor([2]), torch.tensor([1]), emb)):
        assert torch.isfinite(value) and value.item() > 1e3


def test_next_item_loss_targets_only_equals_all_positions():
    g = torch.Generator().manual_seed(1)
    B, T, d, n_items = 3, 6, 4, 9
    hidden = torch.randn(B, T, d, generator=g)
    emb = torch.randn(n_items + 1, d, generator=g)
    labels = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
    fast = next_item_loss(hidden, {"labels": labels}, emb, "ce")
    slow = next_item_loss(hidden, {"labels": labels}, emb, "ce", targets_only=False)
    sel = labels != 0
    ref = F.cross_entropy(hidden[sel] @ emb[1:].T, labels[sel] - 1)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(slow, ref)
    with pytest.raises(ValueError, match="negatives"):
        next_item_loss(hidden, {"labels": labels}, emb, "bce")


def test_bad_inputs_raise_clear_errors(data):
    hidden, targets, emb, _ = data
    with pytest.raises(ValueError, match="padding is never a target"):
        full_cross_entropy(hidden, torch.zeros_like(targets), emb)
    with pytest.raises(ValueError, match=r"hidden must be \(N, d\)"):
        full_cross_entropy(hidden[None], targets, emb)
    with pytest.raises(ValueError, match="item_embeddings"):
        full_cross_entropy(hidden, targets, emb[:, :2])


def test_negative_sampler():
    rng = np.random.default_rng(0)
    uni = NegativeSampler(10)
    draws = uni.sample((2000,), rng)
    assert draws.min() >= 1 and draws.max() <= 10
    torch.testing.assert_close(uni.log_q[1:], torch.full((10,), -math.log(10)))
    assert uni.log_q[0] == -math.inf
    counts = np.array([0, 100, 10, 1, 1, 1, 1, 1, 1, 1, 1], dtype=float)
    pop = NegativeSampler(10, "popularity", counts)
    draws = pop.sample(20000, rng)
    share = (draws == 1).mean()
    assert 0.7 < share < 0.85  # item 1 holds 100 / 118 of the counts
    assert abs(np.exp(pop.log_q[1:].numpy()).sum() - 1) < 1e-6
    with pytest.raises(ValueError, match="counts of shape"):
        NegativeSampler(10, "popularity", counts[:5])


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_chunked_full_ce_matches_plain_loss_and_gradients(data, chunk):
    hidden, targets, emb, _ = data
    h1, e1 = hidden.clone().requires_grad_(), emb.clone().requires_grad_()
    h2, e2 = hidden.clone().requires_grad_(), emb.clone().requires_grad_()
    plain = full_cross_entropy(h1, targets, e1)
    chunked = full_cross_entropy(h2, targets, e2, chunk_size=chunk)
    torch.testing.assert_close(chunked, plain)
    plain.backward()
    chunked.backward()
    torch.testing.assert_close(h2.grad, h1.grad)
    torch.testing.assert_close(e2.grad, e1.grad)
    assert float(e2.grad[0].abs().sum()) == 0.0  # the padding row gets no gradient


def test_chunked_ce_gradcheck():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 3, 1, 1, 2])
    from course_lib.losses import ChunkedCrossEntropy
    assert torch.autograd.gradcheck(lambda a, b: ChunkedCrossEntropy.apply(a, b, t, 2), (h, w))
