"""Federated averaging through Flower's FedAvg: one client is centralised training."""

from __future__ import annotations

import numpy as np
import torch

from course_lib import federated as F
from course_lib.models.sasrec import SASRec, SASRecConfig


def _make():
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=15, max_len=6, d_model=8, n_heads=1, n_layers=1, dropout=0.1))


def _seqs(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 16, size=rng.integers(3, 7)) for _ in range(n)]


def test_one_client_equals_centralised_training():
    seqs = _seqs()
    fed = F.fedavg(_make, [seqs], rounds=3, batch_size=8, lr=1e-2, max_len=6)
    cen = F.centralised(_make, seqs, epochs=3, batch_size=8, lr=1e-2, max_len=6)
    for a, b in zip(F.get_weights(fed["model"]), F.get_weights(cen["model"])):
        np.testing.assert_array_equal(a, b)
    assert [h["loss"] for h in fed["history"]] == [h["loss"] for h in cen["history"]]


def test_two_clients_average_weighted_by_examples():
    seqs = _seqs()
    a, b = seqs[:8], seqs[8:]
    fed = F.fedavg(_make, [a, b], rounds=1, batch_size=8, lr=1e-2, max_len=6)
    wa = F.get_weights(F.set_weights(_make(), F.get_weights(_make())))
    ma, mb = _make(), _make()
    F.local_train(ma, a, epochs=1, batch_size=8, lr=1e-2, max_len=6, seed=0)
    F.local_train(mb, b, epochs=1, batch_size=8, lr=1e-2, max_len=6, seed=1)
    expect = [(8 * x + 16 * y) / 24 for x, y in zip(F.get_weights(ma), F.get_weights(mb))]
    for got, exp in zip(F.get_weights(fed["model"]), expect):
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
    assert len(wa) == len(expect)
    n_bytes = sum(w.nbytes for w in F.get_weights(_make()))
    assert F.parameters_bytes(F.get_weights(_make())) >= n_bytes
    assert fed["history"][0]["bytes"] == 4 * F.parameters_bytes(F.get_weights(_make()))


def test_shards_cover_every_user_once_and_non_iid_shards_are_pure():
    labels = np.repeat(np.arange(4), 10)
    for iid in (True, False):
        shards = F.shard_users(labels, 4, iid=iid, seed=0)
        assert sorted(np.concatenate(shards).tolist()) == list(range(40))
    non = F.shard_users(labels, 4, iid=False)
    assert all(len(set(labels[s])) == 1 for s in non)
    assert F.flower_simulation_error() is None or "ray" in F.flower_simulation_error()
