"""TIGER on GPT-2: the collator's token layout, constrained beam search never produces an invalid ID,
score_fn's interface, and a planted next-item pattern is learned."""

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.models.tiger import IGNORE, TIGER, SemanticIDCollator
from course_lib.semantic_ids import BOS_TOKEN, SemanticIDs

torch.set_num_threads(1)


def _sem(n_items=30, K=4, seed=0):
    rng = np.random.default_rng(seed)
    return SemanticIDs.from_codes(rng.integers(0, K, (n_items, 2)), codebook_size=K)


def test_collator_layout():
    sem = _sem()
    col = SemanticIDCollator(sem, max_items=3)
    b = col([np.array([5]), np.array([1, 2, 3, 4])])
    L1 = sem.n_tokens_per_item
    assert b["input_ids"].shape == (2, 1 + 3 * L1)
    row0 = b["input_ids"][0]
    assert (row0[:-(1 + L1)] == 0).all() and row0[-(1 + L1)] == BOS_TOKEN
    assert row0[-L1:].tolist() == sem.tokens(np.array([5]))[0].tolist()
    assert b["input_ids"][1, 1:].tolist() == sem.tokens(np.array([2, 3, 4])).ravel().tolist()   # last 3 items
    assert (b["labels"][0, :-L1] == IGNORE).all() and b["position_ids"][0, -(1 + L1)] == 0
    assert b["position_ids"][1].tolist() == list(range(1 + 3 * L1))


def test_constrained_beam_search_only_produces_real_items():
    """An untrained model (random weights) puts mass on invalid tuples; the trie must still forbid them."""
    sem = _sem(n_items=40, K=5)
    torch.manual_seed(0)
    model = TIGER(sem, max_items=4, d_model=16, n_layers=1, n_heads=2, num_beams=12)
    rng = np.random.default_rng(1)
    hist = [rng.integers(1, 41, int(rng.integers(1, 6))) for _ in range(16)]
    items, logp = model.generate(hist)
    assert items.shape == (16, 12) and logp.shape == (16, 12)
    valid = set(sem.item_of_tokens().values())
    assert set(items.ravel().tolist()) <= valid and (items > 0).all()
    for row in items:                                       # each beam a different item
        assert len(set(row.tolist())) == 12
    assert (logp[:, :-1] >= logp[:, 1:] - 1e-6).all()       # best first
    # without the constraint, the same model does produce token tuples that are no item
    batch = model.collate.encode(hist)
    free = model.gpt.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              max_new_tokens=sem.n_tokens_per_item, num_beams=12, num_return_sequences=12,
                              do_sample=False, pad_token_id=0, eos_token_id=None)
    tuples = {tuple(r) for r in free[:, batch["input_ids"].shape[1]:].tolist()}
    assert tuples - set(sem.item_of_tokens()), "the unconstrained model should invent invalid IDs"


def test_score_fn_interface():
    sem = _sem(n_items=20, K=4)
    torch.manual_seed(0)
    model = TIGER(sem, max_items=4, d_model=16, n_layers=1, n_heads=2, num_beams=5)
    scores = model.score_fn(torch.arange(3), torch.tensor([[0, 0, 1, 2], [0, 3, 4, 5], [6, 7, 8, 9]]))
    assert scores.shape == (3, 21)
    assert torch.isneginf(scores[:, 0]).all()
    assert (torch.isfinite(scores).sum(1) == 5).all()


@pytest.mark.slow
def test_tiger_learns_a_planted_pattern():
    """Users walk item i -> i + 1; after training, generation puts the next item first."""
    from course_lib.data import leave_one_out
    from course_lib.evaluate import evaluate
    from course_lib.train import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    rows = []
    for u in range(80):
        start = int(rng.integers(1, 15))
        rows += [(u, start + t, t) for t in range(int(rng.integers(5, 9)))]
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    sem = _sem(n_items=split.n_items, K=4, seed=3)
    torch.manual_seed(0)
    model = TIGER(sem, max_items=6, d_model=32, n_layers=2, n_heads=2, dropout=0.0, num_beams=10)
    cfg = TrainConfig(epochs=60, batch_size=16, lr=5e-3, warmup=0.0, eval_every=0, progress=False, log_every=0)
    Trainer(model, split.train, collate=model.collate, split=split, config=cfg, device="cpu").fit()
    metrics = evaluate(model.score_fn, split, "test", ks=(1, 10), max_len=8, device="cpu")
    assert metrics["HR@1"] > 0.7, metrics


def test_evaluate_generated_ranks_within_the_generated_list_only():
    """Seen items leave the beam list, the target's rank is counted in what remains, a target
    the beams missed is a miss (by hand on planted beams)."""
    from course_lib.models.tiger import evaluate_generated

    class Split:
        n_users = 3

        def history(self, stage):
            return [np.array([1, 2]), np.array([3]), np.array([4])]

        def targets(self, stage):
            return np.array([5, 6, 7])

    sem = _sem(n_items=20, K=4)
    torch.manual_seed(0)
    model = TIGER(sem, max_items=4, d_model=16, n_layers=1, n_heads=2, num_beams=4)
    beams = {(1, 2): [2, 9, 5, 8], (3,): [6, 3, 10, 11], (4,): [4, 12, 13, 14]}

    def fake_generate(histories, num_beams=None):
        items = torch.tensor([beams[tuple(int(i) for i in h)] for h in histories])
        return items, torch.zeros(items.shape)

    model.generate = fake_generate
    metrics, frame = evaluate_generated(model, Split(), "test", k=2)
    # user 0: [2 seen, 9, 5, 8] -> list [9, 5]: rank 2; user 1: [6, 3 seen, ...] -> rank 1; user 2: 7 never generated
    assert frame["rank"].tolist()[:2] == [2.0, 1.0] and np.isnan(frame["rank"].iloc[2])
    np.testing.assert_allclose(frame["NDCG@2"], [1 / np.log2(3), 1.0, 0.0])
    assert metrics["HR@2"] == pytest.approx(2 / 3) and metrics["list length"] == 2.0
