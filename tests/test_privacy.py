"""Privacy: k-anonymity against brute force, the DP model under opacus, the membership attack."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import privacy as P


def _users(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"zip_code": [f"{z:05d}" for z in rng.integers(0, 99999, n)],
                         "age": rng.choice(sorted(P.AGE_BRACKETS_ML1M), n),
                         "gender": rng.choice(["F", "M"], n)})


def test_class_sizes_and_k_against_brute_force():
    users = _users()
    for digits, width in [(5, 1), (2, 1), (1, 2), (0, 7)]:
        g = P.generalise(users, zip_digits=digits, age_width=width)
        rows = list(g.itertuples(index=False, name=None))
        brute = [sum(r == s for s in rows) for r in rows]
        assert P.equivalence_class_sizes(g, ["zip", "age", "gender"]).tolist() == brute
        assert P.k_anonymity(g, ["zip", "age", "gender"]) == min(brute)
        assert P.uniqueness(g, ["zip", "age", "gender"]) == pytest.approx(np.mean(np.array(brute) == 1))
        counts = np.array(list(pd.Series(rows).value_counts()))
        p = counts / counts.sum()
        assert P.qi_entropy_bits(g, ["zip", "age", "gender"]) == pytest.approx(-(p * np.log2(p)).sum())
    full = P.generalise(users, zip_digits=5)
    coarse = P.generalise(users, zip_digits=1, age_width=2)
    cols = ["zip", "age", "gender"]
    assert P.k_anonymity(coarse, cols) >= P.k_anonymity(full, cols)
    assert P.qi_entropy_bits(coarse, cols) < P.qi_entropy_bits(full, cols)


def test_generalised_age_merges_neighbouring_codes():
    users = pd.DataFrame({"zip_code": ["12345"] * 7, "age": sorted(P.AGE_BRACKETS_ML1M), "gender": ["F"] * 7})
    assert P.generalise(users, zip_digits=3, age_width=2)["age"].tolist() == ["0", "0", "1", "1", "2", "2", "3"]


def _toy(n_users=96, n_items=20, seed=0):
    rng = np.random.default_rng(seed)
    # planted order: item i is followed by i + 1
    seqs = []
    for _ in range(n_users):
        start = rng.integers(1, n_items - 8)
        seqs.append(np.arange(start, start + 8))
    return P.next_item_tensors(seqs, 8)


def test_dp_model_passes_opacus_validator_and_trains():
    x, y = _toy()
    model = P.DPSeqRec(P.DPSeqRecConfig(n_items=20, max_len=8, d_model=16))
    assert P.validate_for_dp(model) == []
    before = P.per_user_loss_batched(model, x, y).mean()
    res = P.train_next_item(model, x, y, epochs=8, batch_size=32, lr=1e-2, target_epsilon=8.0, delta=1 / 96,
                            max_grad_norm=1.0)
    assert res["epsilon"] <= 8.0 + 1e-6 and res["epsilon"] > 1.0 and res["noise_multiplier"] > 0
    after = P.per_user_loss_batched(res["model"], x, y).mean()
    assert after < before - 0.3, (before, after)
    scores = res["model"].score(x[:4])
    assert scores.shape == (4, 21) and torch.isinf(scores[:, 0]).all()


def test_private_run_refuses_a_model_opacus_cannot_clip():
    x, y = _toy()
    model = P.DPSeqRec(P.DPSeqRecConfig(n_items=20, max_len=8, d_model=16))
    model.blocks[0].ln1 = torch.nn.BatchNorm1d(16)            # mixes samples: not allowed under DP
    assert P.validate_for_dp(model)
    with pytest.raises(ValueError, match="opacus"):
        P.train_next_item(model, x, y, epochs=1, batch_size=32, lr=1e-2, target_epsilon=1.0, delta=0.01)


def test_membership_advantage_against_brute_force_thresholds():
    rng = np.random.default_rng(0)
    m, n = rng.normal(0, 1, 50), rng.normal(0.8, 1, 60)
    best = max(np.mean(m <= t) - np.mean(n <= t) for t in np.r_[m, n])
    res = P.membership_advantage(m, n)
    assert res["advantage"] == pytest.approx(max(0.0, best))
    auc = np.mean([[float(a < b) + 0.5 * (a == b) for b in n] for a in m])
    assert res["auc"] == pytest.approx(auc)
    assert P.membership_advantage(m, m)["advantage"] == 0.0


def test_dp_bound():
    assert P.dp_advantage_bound(0.0, 0.0) == 0.0
    assert P.dp_advantage_bound(math.inf, 1e-5) == 1.0
    assert P.dp_advantage_bound(1.0, 0.0) == pytest.approx((math.e - 1) / (math.e + 1))
    eps = [0.5, 1, 2, 8]
    assert all(P.dp_advantage_bound(a, 1e-4) < P.dp_advantage_bound(b, 1e-4) for a, b in itertools.pairwise(eps))


def _memorised(n_users=60, n_items=30, seed=0):
    """Random (unplanted) sequences: a model can only lower their loss by memorising its members."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, n_items + 1, 8) for _ in range(n_users)]
    return P.next_item_tensors(seqs, 8)


def _weights(model):
    return [p.detach().clone() for p in model.state_dict().values()]


def test_retrain_without_is_training_on_the_reduced_data_with_the_same_seed():
    x, y = _memorised()
    forget = [3, 17, 40]

    def make():
        torch.manual_seed(0)
        return P.DPSeqRec(P.DPSeqRecConfig(n_items=30, max_len=8, d_model=16))

    kw = dict(epochs=2, batch_size=16, lr=1e-2, seed=1)
    keep = [i for i in range(len(x)) if i not in forget]
    ref = P.train_next_item(make(), x[keep], y[keep], **kw)["model"]
    got = P.retrain_without(make, x, y, forget, **kw)["model"]
    for a, b in zip(_weights(ref), _weights(got)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with_them = P.train_next_item(make(), x, y, **kw)["model"]                   # forgetting changed something
    assert any(not torch.equal(a, b) for a, b in zip(_weights(with_them), _weights(got)))


def test_fine_tune_away_erases_the_membership_signal_of_the_forgotten_users():
    x, y = _memorised(n_users=80)
    members, non = np.arange(40), np.arange(40, 80)
    forget, rest = members[:10], members[10:]
    torch.manual_seed(0)
    model = P.DPSeqRec(P.DPSeqRecConfig(n_items=30, max_len=8, d_model=32))
    model = P.train_next_item(model, x[members], y[members], epochs=60, batch_size=20, lr=1e-2, seed=0)["model"]

    def auc(m):
        return P.membership_advantage(P.per_user_loss_batched(m, x[forget], y[forget]),
                                      P.per_user_loss_batched(m, x[non], y[non]))["auc"]

    before = auc(model)
    assert before > 0.9                                                          # memorised: the attack wins
    kept = _weights(model)
    same = P.fine_tune_away(model, x[forget], y[forget], steps=0)
    assert all(torch.equal(a, b) for a, b in zip(kept, _weights(same)))
    after = P.fine_tune_away(model, x[forget], y[forget], steps=15, lr=1e-2, retain_inputs=x[rest],
                             retain_labels=y[rest], batch_size=20)
    assert all(torch.equal(a, b) for a, b in zip(kept, _weights(model)))          # the original is untouched
    assert auc(after) < before - 0.4, (before, auc(after))
    rest_before = P.per_user_loss_batched(model, x[rest], y[rest]).mean()
    rest_after = P.per_user_loss_batched(after, x[rest], y[rest]).mean()
    forget_after = P.per_user_loss_batched(after, x[forget], y[forget]).mean()
    assert forget_after - P.per_user_loss_batched(model, x[forget], y[forget]).mean() > rest_after - rest_before
