"""TwoTower: in-batch softmax with log-Q by hand, retrieval = scores, cold items, served by the chapter 07 service."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import infer as I
from course_lib import serve as S
from course_lib.data import leave_one_out, pad_sequences
from course_lib.data.shop import generate_shop
from course_lib.features import TIME_CARDINALITIES, shop_item_features, split_time_features
from course_lib.models.two_tower import TwoTower, TwoTowerConfig, in_batch_softmax_loss
from course_lib.towers import build_two_tower, examples, fit_two_tower, user_table


def test_in_batch_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 4, generator=g)
    targets = torch.tensor([7, 3, 7, 9])
    log_q = torch.log(torch.tensor([0.1, 0.2, 0.1, 0.05]))
    want = 0.0
    for b in range(4):
        row = []
        for j in range(4):
            if j != b and targets[j] == targets[b]:
                continue                                   # the same item as the positive: not a negative
            row.append((j, float(logits[b, j] - log_q[j])))
        z = np.logaddexp.reduce([v for _, v in row])
        want += -(dict(row)[b] - z)
    got = in_batch_softmax_loss(logits, targets, log_q)
    assert abs(float(got) - want / 4) < 1e-5
    # without log-Q it is the plain softmax over the batch
    plain = in_batch_softmax_loss(logits, torch.tensor([1, 2, 3, 4]))
    torch.testing.assert_close(plain, F.cross_entropy(logits, torch.arange(4)))


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # tiny matrices: more threads only fight over a busy machine
    torch.manual_seed(0)
    ds = generate_shop(seed=5, n_users=300, n_items=200)
    split = leave_one_out(ds)
    f = shop_item_features(split)
    tf = split_time_features(split)
    text = np.random.default_rng(0).normal(size=(split.n_items + 1, 8)).astype(np.float32)
    m = build_two_tower(split, item_features=f, text=text, user_cardinalities=TIME_CARDINALITIES, max_len=20,
                        d_model=16)
    fit_two_tower(m, split, examples(split), steps=60, batch_size=128, time_feats=tf)
    torch.set_num_threads(threads)
    return split, m, tf


def test_retrieval_equals_scores_and_cold_items_use_features(trained):
    split, m, _ = trained
    h = split.padded("test", 20)[:32]
    assert I.retrieval_matches_scores(m, h)
    # an item marked unknown loses its id embedding but keeps a vector from features + text
    v_before = m.item_embeddings[5].clone()
    m.item_known[5] = False
    v_after = m.item_embeddings[5]
    m.item_known[5] = True
    assert not torch.allclose(v_before, v_after) and float(v_after.norm()) == pytest.approx(1.0, abs=1e-5)
    # no id table at all: vectors still defined from features
    cfg = TwoTowerConfig(n_items=split.n_items, use_ids=False, item_cardinalities=m.config.item_cardinalities)
    assert TwoTower(cfg).item_embeddings.shape == (split.n_items + 1, cfg.d_model)


def test_user_table_changes_scores_only_through_users(trained):
    split, m, tf = trained
    h = split.padded("test", 20)[:8]
    users = torch.arange(8)
    m.set_user_features(None)
    unknown = m.score_fn(users, h)
    torch.testing.assert_close(unknown, m.score(h))
    m.set_user_features(user_table(split, "test", time_feats=tf))
    known = m.score_fn(users, h)
    assert not torch.allclose(known[:, 1:], unknown[:, 1:])
    with pytest.raises(ValueError, match="user table"):
        m.set_user_features(np.zeros((3, 1)))
    m.set_user_features(None)


def test_mmoe_scores_each_item_with_its_domain_vector():
    torch.manual_seed(0)
    cfg = TwoTowerConfig(n_items=6, d_model=8, n_domains=2, n_experts=3, dropout=0.0)
    m = TwoTower(cfg).eval()
    m.set_item_data(domain=np.array([0, 1, 1, 1, 2, 2, 2]))
    with torch.no_grad():
        m.gates.weight.normal_()
        h = pad_sequences([[1, 2], [4]], 5)
        V = m.item_vectors_all()
        u = m._user_vectors(m._user_input(h, V, None))                  # (B, D + 1, d)
        s = m.score(h)
    want = torch.stack([torch.stack([u[b, m.item_domain[i]] @ V[i] for i in range(1, 7)]) for b in range(2)])
    torch.testing.assert_close(s[:, 1:], want / cfg.temperature)


def test_item_vectors_go_into_faiss_and_the_chapter07_service(trained, tmp_path):
    split, m, _ = trained
    m.set_user_features(None)
    h = split.padded("test", 20)
    exact = I.ExactIndex(m.item_embeddings)
    flat = I.FaissIndex(m.item_embeddings, kind="flat")
    q = I.user_vectors(m, h)
    excl = split.history("test")
    _, e_ids = exact.search(q, 10, exclude=excl)
    _, f_ids = flat.search(q, 10, exclude=excl)
    assert I.ann_recall(f_ids, e_ids) > 0.99
    catalogue = I.Catalogue.from_split(split)
    S.save_bundle(tmp_path, m, catalogue, max_len=20, user_ids=split.user_ids[:5], histories=excl[:5], onnx=False)
    b = S.load_bundle(tmp_path)
    assert type(b.model) is TwoTower
    torch.testing.assert_close(b.model.item_embeddings, m.item_embeddings)
    svc = S.RecommendationService(I.Recommender(b.model, b.catalogue, max_len=b.max_len), user_ids=b.user_ids,
                                  histories=b.histories)
    with S.ThreadedServer(S.create_app(svc)) as srv:
        r = httpx.post(f"{srv.url}/recommend", json={"user_id": int(split.user_ids[0]), "k": 10})
    assert r.status_code == 200
    served = catalogue.internal([it["item_id"] for it in r.json()["items"]])
    # the service's answer is the faiss answer for the same history
    np.testing.assert_array_equal(served, f_ids[0])
