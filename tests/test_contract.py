"""The scoring contract (course_lib.scoring): every course model and every baseline, handed over
as the object itself, works with the evaluator, the inference Recommender, save/load, the
serving bundle and the service, and refuses bad input with an error that names the fix.

References are independent of the path under test: the evaluator's result on the object is
compared with its result on the score matrix computed row by row; the Recommender's list with
``torch.topk`` of the model's own scores after masking the history by hand; the service's
answer (HTTP, a real server) with the Recommender's; reloaded models with ``torch.equal``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from course_lib import infer as I
from course_lib import serve as S
from course_lib.baselines import BPRMF, EASE, BaselineModel, Hybrid, ItemKNN, MostPopular, TfidfContent
from course_lib.data import leave_one_out
from course_lib.evaluate import evaluate
from course_lib.scoring import NotAScorerError, Scorer, as_score_fn

N_USERS, N_ITEMS, MAX_LEN = 40, 30, 8
WORDS = ["red", "blue", "green", "wooden", "metal", "small", "large", "garden", "kitchen", "toy", "book", "lamp"]


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(3)
    rows = []
    for u in range(N_USERS):
        items = rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(4, 11), replace=False)
        rows += [(100 + u, 500 + int(i), t) for t, i in enumerate(items)]
    items = pd.DataFrame({"item_id": 500 + np.arange(1, N_ITEMS + 1),
                          "title": [f"{WORDS[i % 12]} {WORDS[(i * 5 + 1) % 12]} item" for i in range(N_ITEMS)],
                          "category": [["Books", "Toys", "Garden"][i % 3] for i in range(N_ITEMS)],
                          "price": np.round(rng.uniform(1, 50, N_ITEMS), 2)})
    data = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return leave_one_out(data, items=items, name="contract")


def _sasrec(n):
    from course_lib.models.sasrec import SASRec, SASRecConfig

    return SASRec(SASRecConfig(n_items=n, max_len=MAX_LEN, d_model=16, n_heads=2, n_layers=1, dropout=0.1))


def _gru4rec(n):
    from course_lib.models.gru4rec import GRU4Rec, GRU4RecConfig

    return GRU4Rec(GRU4RecConfig(n_items=n, max_len=MAX_LEN, d_model=16, hidden_size=16, dropout=0.1))


def _bert4rec(n):
    from course_lib.models.bert4rec import BERT4Rec

    return BERT4Rec.for_items(n, max_len=MAX_LEN, d_model=16, n_heads=2, n_layers=1, attn_dropout=0.0)


def _gptrec(n):
    from course_lib.models.gpt_rec import GPTRec

    return GPTRec.for_items(n, max_len=MAX_LEN, d_model=16, n_heads=2, n_layers=1)


def _hstu(n):
    from course_lib.models.hstu import HSTU, HSTUConfig

    return HSTU(HSTUConfig(n_items=n, max_len=MAX_LEN, d_model=16, n_heads=2, n_layers=1, dropout=0.1))


def _two_tower(n):
    from course_lib.models.two_tower import TwoTower, TwoTowerConfig

    return TwoTower(TwoTowerConfig(n_items=n, max_len=MAX_LEN, d_model=16, loss="full"))


NEURAL = {"SASRec": _sasrec, "GRU4Rec": _gru4rec, "BERT4Rec": _bert4rec, "GPTRec": _gptrec, "HSTU": _hstu,
          "TwoTower": _two_tower}
BASELINES = {
    "MostPopular": lambda: MostPopular(),
    "ItemKNN": lambda: ItemKNN(k=10),
    "EASE": lambda: EASE(lam=5.0),
    "BPRMF": lambda: BPRMF(dim=8, epochs=2, batch_size=64, device="cpu"),
    "TfidfContent": lambda: TfidfContent(),
    "Hybrid": lambda: Hybrid([EASE(lam=5.0), TfidfContent()], [1.0, 0.5]),
}
ALL = [*NEURAL, *BASELINES]


def make(name: str, split):
    """A model of every kind: neural ones seeded and untrained (the contract is about the
    interface, not the quality), baselines fitted on the split."""
    if name in NEURAL:
        torch.manual_seed(0)
        return NEURAL[name](split.n_items).eval()
    return BASELINES[name]().fit(split, include_valid=True)


@pytest.fixture(scope="module")
def models(split):
    return {name: make(name, split) for name in ALL}


def _all_scores(model, split) -> torch.Tensor:
    """The ``(n_users, n_items + 1)`` score matrix, one user at a time (the reference)."""
    rows = [model.score(torch.tensor([u]), split.padded("test", MAX_LEN, users=[u])) for u in range(split.n_users)]
    return torch.cat(rows)


# ---------------------------------------------------------------------------- the protocol
@pytest.mark.parametrize("name", ALL)
def test_is_a_scorer_with_padding_at_minus_infinity(models, split, name):
    model = models[name]
    assert isinstance(model, Scorer) and model.n_items == split.n_items
    users = torch.arange(5)
    scores = model.score(users, split.padded("test", MAX_LEN, users=range(5)))
    assert scores.shape == (5, split.n_items + 1) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all(), "column 0 (padding) must be -inf"
    assert torch.isfinite(scores[:, 1:]).all()
    if name in NEURAL:  # sequential models read no user id: the one-argument form is the same
        assert torch.equal(model.score(split.padded("test", MAX_LEN, users=range(5))), scores)
        assert not model.training


@pytest.mark.parametrize("name", ALL)
def test_evaluate_takes_the_object(models, split, name):
    model = models[name]
    by_object = evaluate(model, split, "test", ks=(5, 10), max_len=MAX_LEN)
    by_matrix = evaluate(_all_scores(model, split), split, "test", ks=(5, 10))
    assert by_object == pytest.approx(by_matrix, abs=1e-12)
    assert evaluate(as_score_fn(model), split, "test", ks=(5, 10), max_len=MAX_LEN) == by_object


@pytest.mark.parametrize("name", ALL)
def test_recommender_takes_the_object(models, split, name):
    model = models[name]
    rec = I.Recommender(model, split, max_len=MAX_LEN)
    history = split.history("test")
    for u in (0, 7, 23):
        table = rec.recommend(history[u], k=10, user=u)
        scores = model.score(torch.tensor([u]), split.padded("test", MAX_LEN, users=[u]))[0]
        scores[torch.from_numpy(history[u])] = -torch.inf                     # mask the history by hand
        got = split.internal_items(table["item_id"].tolist())
        assert not set(got) & set(history[u].tolist()), "a seen item was recommended"
        got_scores = torch.tensor(table["score"].to_numpy(), dtype=torch.float32)
        torch.testing.assert_close(got_scores, torch.topk(scores, 10).values, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(scores[torch.from_numpy(got)], got_scores, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- saving and serving
@pytest.mark.parametrize("name", ALL)
def test_save_and_load_give_identical_scores(models, split, name, tmp_path):
    model = models[name]
    folder = model.save_pretrained(tmp_path / name) or tmp_path / name
    again = (BaselineModel if name in BASELINES else type(model)).from_pretrained(folder)
    assert type(again) is type(model)
    h = split.padded("test", MAX_LEN)
    users = torch.arange(split.n_users)
    assert torch.equal(again.score(users, h), model.score(users, h))


@pytest.mark.parametrize("name", ALL)
def test_bundle_to_service_gives_the_same_top10(models, split, name, tmp_path):
    import httpx

    model = models[name]
    history = split.history("test")
    S.save_bundle(tmp_path, model, I.Catalogue.from_split(split), max_len=MAX_LEN, user_ids=split.user_ids,
                  histories=history, onnx=False)
    rec = I.Recommender(model, split, max_len=MAX_LEN)
    users = (0, 11, 31)
    with S.ThreadedServer(S.create_app(bundle=tmp_path)) as srv:
        answers = [httpx.post(f"{srv.url}/recommend", json={"user_id": int(split.user_ids[u]), "k": 10},
                              timeout=30) for u in users]
    for u, r in zip(users, answers):
        assert r.status_code == 200, r.text
        expected = rec.recommend(history[u], k=10, user=u)["item_id"].tolist()
        assert [it["item_id"] for it in r.json()["items"]] == expected


@pytest.mark.parametrize("name", ["BERT4Rec", "GPTRec", "HSTU"])    # SASRec's export is chapter 07's; these had none
def test_onnx_export_matches_torch(models, split, name, tmp_path):
    model = models[name]
    path = I.export_onnx(model, tmp_path / f"{name}.onnx", max_len=MAX_LEN, n_items=split.n_items)
    onnx_scores = I.OnnxScorer(path).score(split.padded("test", MAX_LEN))
    torch_scores = model.score(split.padded("test", MAX_LEN))
    assert torch.isneginf(onnx_scores[:, 0]).all()
    torch.testing.assert_close(onnx_scores[:, 1:], torch_scores[:, 1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(NEURAL))
def test_resume_gives_identical_weights(split, name, tmp_path):
    from course_lib.train import SequenceCollator, TrainConfig, Trainer

    def collator():
        if name == "BERT4Rec":
            from course_lib.models.bert4rec import MaskedItemCollator

            return MaskedItemCollator(split.n_items, MAX_LEN, mask_prob=0.3, seed=1)
        if name == "GPTRec":
            from course_lib.models.gpt_rec import NextItemCollator

            return NextItemCollator(split.n_items, MAX_LEN, seed=1)
        if name == "TwoTower":
            from course_lib.towers import TowerCollator

            return TowerCollator(split, MAX_LEN)
        return SequenceCollator(split.n_items, MAX_LEN, loss="ce", seed=1)

    def trainer(folder):
        torch.manual_seed(0)
        config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, progress=False, log_every=0, eval_every=1,
                             checkpoint_dir=str(folder))
        if name == "TwoTower":                               # trained on (user, position) examples
            from course_lib.towers import examples

            data = list(map(tuple, examples(split)))
        else:
            data = split.train
        return Trainer(NEURAL[name](split.n_items), data, collate=collator(), split=split, config=config,
                       device="cpu")

    straight = trainer(tmp_path / "a")
    straight.fit()
    first = trainer(tmp_path / "b")
    first.fit(stop_after_epoch=1)
    torch.manual_seed(123)                                   # disturb the RNGs: resume must restore them
    second = trainer(tmp_path / "b")
    second.fit(resume=True)
    assert second.epoch == straight.epoch == 2
    for key, value in straight.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), key


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ALL)
def test_bad_input_names_the_fix(models, split, name):
    model = models[name]
    h = split.padded("test", MAX_LEN, users=range(3))
    users = torch.arange(3)
    with pytest.raises(ValueError, match=r"2-D|\(B, L\)"):
        model.score(users, h[0])
    with pytest.raises((TypeError, ValueError), match="integer ids"):
        model.score(users, h.float())
    too_big = h.clone()
    too_big[0, -1] = split.n_items + 1
    with pytest.raises(ValueError, match="outside"):
        model.score(users, too_big)
    with pytest.raises(ValueError, match="one .*per"):
        model.score(torch.arange(2), h)


def test_things_that_are_not_scorers_are_refused_with_the_fix(split, models):
    with pytest.raises(TypeError, match="ScorerMixin"):
        evaluate(nn.Linear(4, 4), split)
    with pytest.raises(TypeError, match="score_fn"):
        I.Recommender("EASE", split, max_len=MAX_LEN)
    with pytest.raises(NotAScorerError):
        as_score_fn(42)
    small = leave_one_out(pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [1, 2, 3, 1, 2, 3],
                                        "timestamp": [0, 1, 2, 0, 1, 2]}))
    with pytest.raises(ValueError, match="the split it was built for"):
        evaluate(models["SASRec"], small)
    with pytest.raises(ValueError, match="catalogue"):
        I.Recommender(models["EASE"], small, max_len=MAX_LEN)
    with pytest.raises(ValueError, match="onnx=False"):
        S.save_bundle("unused", models["EASE"], I.Catalogue.from_split(split), max_len=MAX_LEN, onnx=True)
