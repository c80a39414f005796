"""GPT-style next-item model: the collator, the loss against HF's own, generate() and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from course_lib.data import pad_sequences
from course_lib.models.gpt_rec import BlockSeenItems, GPTRec, NextItemCollator, gpt_rec_config

hf_logging.disable_progress_bar()
N_ITEMS, MAX_LEN = 30, 16
BOS = N_ITEMS + 1


@pytest.fixture
def model() -> GPTRec:
    torch.manual_seed(0)
    return GPTRec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16).eval()


def _histories(n: int, seed: int = 0, low: int = 1, high: int = 25) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(low, high), replace=False) for _ in range(n)]


def test_vocabulary_layout():
    cfg = gpt_rec_config(100, max_len=50)
    assert cfg.vocab_size == 102 and cfg.pad_token_id == 0 and cfg.bos_token_id == 101 == cfg.eos_token_id
    assert cfg.n_positions == 50


def test_collator_shifts_by_one():
    b = NextItemCollator(N_ITEMS, 5)([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10]])
    assert b["input_ids"].tolist() == [[0, 0, BOS, 1, 2], [5, 6, 7, 8, 9]]
    assert b["labels"].tolist() == [[0, 0, 1, 2, 3], [6, 7, 8, 9, 10]]


def test_prompt_puts_bos_before_the_history(model):
    p = model.prompt(pad_sequences([[1, 2, 3], [5]], 6))
    assert p.shape == (2, MAX_LEN)
    assert p[0, -4:].tolist() == [BOS, 1, 2, 3] and p[1, -2:].tolist() == [BOS, 5]
    assert (p[:, :-4] == 0).all()


def test_loss_equals_hf_language_model_loss(model):
    """Our next-item loss = GPT2LMHeadModel's built-in (shifted) LM loss on <s> + sequence."""
    seqs = _histories(6, low=2)
    batch = NextItemCollator(N_ITEMS, MAX_LEN)(seqs)
    ours = model.next_item_loss(batch["input_ids"], batch["labels"])
    full = pad_sequences([np.concatenate([[BOS], s])[-(MAX_LEN + 1):] for s in seqs], MAX_LEN + 1)
    mask = (full != 0).long()
    labels = full.masked_fill(full == 0, -100).masked_fill(full == BOS, -100)
    big = GPT2LMHeadModel(gpt_rec_config(N_ITEMS, max_len=MAX_LEN + 1, hidden_size=16)).eval()
    state = model.state_dict()
    state["transformer.wpe.weight"] = torch.cat([state["transformer.wpe.weight"], torch.zeros(1, 16)])
    big.load_state_dict(state)
    ref = big(input_ids=full, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0), labels=labels).loss
    torch.testing.assert_close(ours, ref)


def test_model_is_causal(model):
    a = model.hidden(pad_sequences([[BOS, 1, 2, 3]], 8))
    b = model.hidden(pad_sequences([[BOS, 1, 2, 9]], 8))
    torch.testing.assert_close(a[0, :-1], b[0, :-1])
    assert not torch.allclose(a[0, -1], b[0, -1])


def test_score_is_the_last_position_logits(model):
    hist = pad_sequences([[4, 5], [6, 7, 8]], 5)
    x = pad_sequences([[BOS, 4, 5], [BOS, 6, 7, 8]], MAX_LEN)
    mask = (x != 0).long()
    ref = model(input_ids=x, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits
    scores = model.score(hist)
    assert torch.isneginf(scores[:, 0]).all(), "column 0 (padding) is -inf, as for every course model"
    torch.testing.assert_close(scores[:, 1:], ref[:, -1, 1: N_ITEMS + 1])
    torch.testing.assert_close(model.score(pad_sequences([[4, 5], [6, 7, 8]], 12)), model.score(hist))


def test_block_seen_items_processor():
    proc = BlockSeenItems(6, always=(0, 5), banned=[[1], [2, 3]])
    ids = torch.tensor([[4, 4], [2, 1], [0, 3], [0, 0]])      # batch 2 × 2 beams
    out = proc(ids, torch.zeros(4, 6))
    blocked = torch.isinf(out)
    want = torch.tensor([[1, 1, 0, 0, 1, 1],
                         [1, 1, 1, 0, 0, 1],
                         [1, 0, 1, 1, 0, 1],
                         [1, 0, 1, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(blocked, want)
    with pytest.raises(ValueError, match="divide"):
        proc(torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, 6))


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_generate_never_returns_seen_items_or_repeats(model, strategy):
    hists = _histories(40, seed=1, high=22)
    h = pad_sequences(hists, 24)
    recs = model.recommend(h, k=8, strategy=strategy, seed=0).numpy()
    assert recs.shape == (40, 8)
    for hist, rec in zip(hists, recs):
        assert len(set(rec.tolist())) == 8, "no repeats"
        assert not set(rec.tolist()) & set(hist.tolist()), "no seen item, not even one older than the prompt window"
        assert ((rec >= 1) & (rec <= N_ITEMS)).all(), "no padding, no <s>"


def test_greedy_generation_is_the_masked_argmax_step_by_step(model):
    """generate() (KV cache, its own position ids) agrees with re-scoring the growing history."""
    hists = _histories(10, seed=2, high=6)
    recs = model.recommend(pad_sequences(hists, 8), k=4, strategy="greedy")
    for hist, rec in zip(hists, recs.tolist()):
        seq = list(hist)
        for item in rec:
            s = model.score(pad_sequences([seq], 12))[0]
            s[[0] + seq] = -torch.inf
            assert int(s.argmax()) == item
            seq.append(item)


def test_sampling_is_seeded(model):
    h = pad_sequences(_histories(5, seed=3), 20)
    a = model.recommend(h, k=5, strategy="sample", seed=7)
    b = model.recommend(h, k=5, strategy="sample", seed=7)
    assert torch.equal(a, b)


def test_save_pretrained_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    loaded = GPTRec.from_pretrained(tmp_path).eval()
    assert loaded.n_items == N_ITEMS and loaded.bos_id == BOS and loaded.max_len == MAX_LEN
    h = pad_sequences(_histories(6, seed=4), 20)
    assert torch.equal(loaded.score(h), model.score(h))
    assert torch.equal(loaded.recommend(h, k=5, strategy="beam"), model.recommend(h, k=5, strategy="beam"))
    plain = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    x = pad_sequences([[BOS, 1, 2]], 4)
    assert torch.equal(plain(input_ids=x).logits, model(input_ids=x).logits)


def test_recommend_rejects_bad_arguments(model):
    h = pad_sequences([[1, 2]], 4)
    with pytest.raises(ValueError, match="strategy"):
        model.recommend(h, k=3, strategy="nucleus")
    with pytest.raises(ValueError, match="k must be"):
        model.recommend(h, k=MAX_LEN)


def test_trimmed_batches_give_the_same_loss(model):
    seqs = _histories(10, seed=6, low=2, high=6)
    full = NextItemCollator(N_ITEMS, MAX_LEN)(seqs)
    trimmed = NextItemCollator(N_ITEMS, MAX_LEN, trim=True)(seqs)
    width = max(len(s) for s in seqs)                                  # <s> + all but the last item
    assert trimmed["input_ids"].shape == (10, width)
    assert (full["input_ids"][:, :-width] == 0).all()
    torch.testing.assert_close(model.next_item_loss(trimmed["input_ids"], trimmed["labels"]),
                               model.next_item_loss(full["input_ids"], full["labels"]))


def test_attention_dropout_is_separate():
    cfg = gpt_rec_config(10, dropout=0.2, attn_dropout=0.0)
    assert cfg.resid_pdrop == 0.2 and cfg.attn_pdrop == 0.0
    assert gpt_rec_config(10, dropout=0.2).attn_pdrop == 0.2
