"""BERT4Rec on transformers: the collator, the masked-only loss, scoring, HF round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM
from transformers.utils import logging as hf_logging

from course_lib.data import leave_one_out, pad_sequences
from course_lib.evaluate import evaluate
from course_lib.models.bert4rec import IGNORE, BERT4Rec, MaskedItemCollator, bert4rec_config

hf_logging.disable_progress_bar()
N_ITEMS, MAX_LEN = 40, 12


@pytest.fixture
def model() -> BERT4Rec:
    torch.manual_seed(0)
    return BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, num_heads=2).eval()


def _seqs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(2, 30), replace=False) for _ in range(n)]


# ------------------------------------------------------------------ vocabulary and config
def test_vocabulary_layout():
    cfg = bert4rec_config(100, max_len=50)
    assert cfg.vocab_size == 102 and cfg.pad_token_id == 0 and cfg.mask_token_id == 101
    assert cfg.max_position_embeddings == 50 and cfg.hidden_size == 64 and cfg.num_hidden_layers == 2
    assert cfg.intermediate_size == 256
    with pytest.raises(ValueError, match="divisible"):
        bert4rec_config(10, hidden_size=30, num_heads=4)


# ------------------------------------------------------------------ collator
def test_collator_masks_only_real_items_and_labels_them():
    seqs = _seqs(200)
    batch = MaskedItemCollator(N_ITEMS, MAX_LEN, mask_prob=0.3, seed=1)(seqs)
    x, y = batch["input_ids"].numpy(), batch["labels"].numpy()
    original = pad_sequences(seqs, MAX_LEN).numpy()
    masked = y != IGNORE
    assert (x[masked] == N_ITEMS + 1).all(), "masked positions hold [MASK]"
    assert (y[masked] == original[masked]).all(), "labels are the hidden items"
    assert (x[~masked] == original[~masked]).all(), "everything else is untouched"
    assert (original[masked] != 0).all(), "padding is never masked"
    assert masked.any(axis=1).all(), "at least one masked item per sequence"
    rate = masked.sum() / (original != 0).sum()
    assert 0.25 < rate < 0.37  # 0.3 plus the forced ones, minus noise


def test_last_item_masking_is_the_inference_situation():
    seqs = _seqs(50)
    batch = MaskedItemCollator(N_ITEMS, MAX_LEN, last_item_prob=1.0, seed=0)(seqs)
    y = batch["labels"].numpy()
    assert ((y != IGNORE).sum(axis=1) == 1).all()
    assert (y[:, -1] == [s[-1] for s in seqs]).all()
    assert (batch["input_ids"][:, -1] == N_ITEMS + 1).all()


def test_bert_80_10_10_rule():
    seqs = [np.arange(1, N_ITEMS + 1)] * 400
    col = MaskedItemCollator(N_ITEMS, N_ITEMS, mask_prob=0.5, random_prob=0.1, keep_prob=0.1, seed=0)
    b = col(seqs)
    x, y = b["input_ids"].numpy(), b["labels"].numpy()
    m = y != IGNORE
    share_mask = (x[m] == N_ITEMS + 1).mean()
    share_keep = (x[m] == y[m]).mean()
    assert abs(share_mask - 0.8) < 0.02 and abs(share_keep - 0.1 - 0.1 / N_ITEMS) < 0.02


def test_random_crop_gives_contiguous_windows():
    seq = np.arange(1, 31)
    col = MaskedItemCollator(N_ITEMS, 8, crop="random", seed=0, mask_prob=0.2)
    starts = set()
    for _ in range(30):
        b = col([seq])
        window = torch.where(b["labels"] != IGNORE, b["labels"], b["input_ids"])[0].numpy()
        assert (np.diff(window) == 1).all()
        starts.add(int(window[0]))
    assert len(starts) > 5


def test_collator_rejects_bad_settings():
    with pytest.raises(ValueError, match="mask_prob"):
        MaskedItemCollator(10, 5, mask_prob=0.0)
    with pytest.raises(ValueError, match="empty"):
        MaskedItemCollator(10, 5)([[1, 2], []])


# ------------------------------------------------------------------ the loss
def test_masked_only_loss_equals_full_head_loss(model):
    batch = MaskedItemCollator(N_ITEMS, MAX_LEN, mask_prob=0.25, seed=3)(_seqs(16))
    fast = model.mlm_loss(batch["input_ids"], batch["labels"])
    full = model.mlm_loss(batch["input_ids"], batch["labels"], masked_only=False)
    # Independent reference: every position's logits from the HF forward, then CE at masked ones.
    logits = model(input_ids=batch["input_ids"], attention_mask=(batch["input_ids"] != 0).long()).logits
    sel = batch["labels"] != IGNORE
    ref = F.cross_entropy(logits[sel], batch["labels"][sel])
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(full, ref)


def test_masked_only_gradients_match(model):
    model.train()
    batch = MaskedItemCollator(N_ITEMS, MAX_LEN, seed=4)(_seqs(8))
    grads = []
    for masked_only in (True, False):
        model.zero_grad()
        torch.manual_seed(0)  # same dropout masks
        model.mlm_loss(batch["input_ids"], batch["labels"], masked_only=masked_only).backward()
        grads.append(model.bert.embeddings.word_embeddings.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


# ------------------------------------------------------------------ scoring
def test_score_is_the_prediction_at_an_appended_mask(model):
    hist = pad_sequences([[3, 4, 5], [7]], 6)
    scores = model.score(hist)
    assert scores.shape == (2, N_ITEMS + 1)
    x = pad_sequences([[3, 4, 5, N_ITEMS + 1], [7, N_ITEMS + 1]], MAX_LEN)
    ref = model(input_ids=x, attention_mask=(x != 0).long()).logits[:, -1, : N_ITEMS + 1]
    assert torch.isneginf(scores[:, 0]).all(), "column 0 (padding) is -inf, as for every course model"
    torch.testing.assert_close(scores[:, 1:], ref[:, 1:])
    # the width of the padded input does not matter, nor does history older than max_len - 1
    torch.testing.assert_close(model.score(pad_sequences([[3, 4, 5], [7]], 30)), scores)
    long = list(range(1, 30))
    torch.testing.assert_close(model.score(pad_sequences([long], 40)),
                               model.score(pad_sequences([long[-(MAX_LEN - 1):]], 40)))


def test_encoder_is_bidirectional(model):
    a = pad_sequences([[1, 2, 3, 4]], MAX_LEN)
    b = pad_sequences([[1, 2, 3, 9]], MAX_LEN)
    ha, hb = model.encode(a), model.encode(b)
    assert not torch.allclose(ha[0, -4], hb[0, -4]), "the first item sees the last one (no causal mask)"


def test_sdpa_and_eager_attention_agree():
    torch.manual_seed(0)
    m1 = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, attn_implementation="sdpa").eval()
    m2 = BERT4Rec(bert4rec_config(N_ITEMS, max_len=MAX_LEN, hidden_size=16, attn_implementation="eager")).eval()
    m2.load_state_dict(m1.state_dict())
    hist = pad_sequences(_seqs(5), 20)
    torch.testing.assert_close(m1.score(hist), m2.score(hist), rtol=1e-5, atol=1e-5)


def test_alibi_bias_prefers_neighbours_and_keeps_padding_out():
    torch.manual_seed(0)
    m = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2, alibi=True).eval()
    bias = m.attention_bias(torch.tensor([[0, 1, 1, 1]]))                      # (1, heads, 4, 4)
    assert bias.shape == (1, 2, 4, 4)
    torch.testing.assert_close(bias[0, 0, 1, 3], torch.tensor(-2 / 16.0))      # head 1: slope 2^-4, distance 2
    torch.testing.assert_close(bias[0, 1, 3, 2], torch.tensor(-1 / 256.0))     # head 2: slope 2^-8, distance 1
    assert (bias[0, :, :, 0] == torch.finfo(bias.dtype).min).all(), "no position attends to padding"
    assert (bias[0, :, 2, 2] == 0).all()
    # the bias changes the output (same weights), left padding still changes nothing, and
    # sdpa and eager attention agree with it
    plain = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2).eval()
    plain.load_state_dict(m.state_dict())
    hist = pad_sequences(_seqs(5), MAX_LEN)
    assert not torch.allclose(plain.encode(hist), m.encode(hist), atol=1e-4)
    short = pad_sequences([[1, 2, 3, 4]], 4)
    torch.testing.assert_close(m.encode(pad_sequences([[1, 2, 3, 4]], MAX_LEN))[:, -4:], m.encode(short))
    eager = BERT4Rec(bert4rec_config(N_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2, alibi=True,
                                     attn_implementation="eager")).eval()
    eager.load_state_dict(m.state_dict())
    torch.testing.assert_close(m.score(hist), eager.score(hist), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="ALiBi"):
        m.mlm_loss(hist, torch.full_like(hist, IGNORE), masked_only=False)
    # a smaller max bias m makes every head more local: slopes 2^-2 and 2^-4 with m = 4
    steep = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2, alibi=True, alibi_max_bias=4.0)
    b4 = steep.attention_bias(torch.tensor([[1, 1, 1, 1]]))
    torch.testing.assert_close(b4[0, :, 0, 3], torch.tensor([-3 / 4.0, -3 / 16.0]))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="alibi_max_bias"):
            bert4rec_config(N_ITEMS, alibi=True, alibi_max_bias=bad)


def test_alibi_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    m = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, alibi=True).eval()
    m.save_pretrained(tmp_path)
    loaded = BERT4Rec.from_pretrained(tmp_path).eval()
    assert loaded.config.alibi is True
    hist = pad_sequences(_seqs(4), 20)
    assert torch.equal(loaded.score(hist), m.score(hist))


def test_pass_through_init_copies_the_attended_items():
    torch.manual_seed(0)
    m = BERT4Rec(bert4rec_config(N_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2, dropout=0.0,
                                 pass_through_init=4.0, attn_implementation="eager")).eval()
    eye = torch.eye(16)
    for layer in m.bert.encoder.layer:
        assert torch.equal(layer.attention.self.value.weight, eye)
        assert torch.equal(layer.attention.output.dense.weight, 4 * eye)
        assert not layer.attention.self.value.bias.any() and not layer.attention.output.dense.bias.any()
    assert torch.equal(m.cls.predictions.transform.dense.weight, eye)
    # what it is for: the first layer's attention output is 4 x the attention-weighted average of its inputs
    hist = pad_sequences(_seqs(3), MAX_LEN)
    seen = {}
    att = m.bert.encoder.layer[0].attention
    h1 = att.self.register_forward_hook(
        lambda mod, args, kw, out: seen.update(x=args[0] if args else kw["hidden_states"]), with_kwargs=True)
    h2 = att.output.dense.register_forward_hook(lambda mod, args, out: seen.update(out=out))
    out = m.bert(input_ids=hist, attention_mask=(hist != 0).long(), position_ids=m.position_ids(MAX_LEN),
                 output_attentions=True)
    h1.remove(), h2.remove()
    probs = out.attentions[0]                                                   # (B, heads, T, T)
    x = seen["x"].view(*hist.shape, 2, 8).transpose(1, 2)                       # (B, heads, T, 8)
    ref = (probs @ x).transpose(1, 2).reshape(*hist.shape, 16)
    torch.testing.assert_close(seen["out"], 4 * ref, rtol=1e-5, atol=1e-5)
    # a plain model's attention output is not that average; the flag survives save and load via config
    plain = BERT4Rec(bert4rec_config(N_ITEMS, max_len=MAX_LEN, hidden_size=16, n_heads=2)).eval()
    assert not torch.equal(plain.bert.encoder.layer[0].attention.self.value.weight, eye)
    assert m.config.pass_through_init == 4.0
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="pass_through_init"):
            bert4rec_config(N_ITEMS, pass_through_init=bad)


def test_pass_through_checkpoint_loads_its_trained_weights(tmp_path):
    torch.manual_seed(0)
    m = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, alibi=True, pass_through_init=4.0)
    with torch.no_grad():                                 # "training" moved the weights away from the identity
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    m.eval().save_pretrained(tmp_path)
    loaded = BERT4Rec.from_pretrained(tmp_path).eval()
    hist = pad_sequences(_seqs(4), 20)
    assert torch.equal(loaded.score(hist), m.score(hist)), "loading must not re-apply the initialisation"


# ------------------------------------------------------------------ Hugging Face round trip
def test_save_pretrained_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files), "no pickles"
    loaded = BERT4Rec.from_pretrained(tmp_path).eval()
    assert loaded.n_items == N_ITEMS and loaded.mask_id == N_ITEMS + 1 and loaded.max_len == MAX_LEN
    hist = pad_sequences(_seqs(6), 20)
    assert torch.equal(loaded.score(hist), model.score(hist))
    # The checkpoint is a plain BERT: transformers' own class reads it too.
    plain = BertForMaskedLM.from_pretrained(tmp_path).eval()
    x = pad_sequences([[1, 2, N_ITEMS + 1]], MAX_LEN)
    assert torch.equal(plain(input_ids=x, attention_mask=(x != 0).long()).logits,
                       model(input_ids=x, attention_mask=(x != 0).long()).logits)
    assert plain.cls.predictions.decoder.weight.data_ptr() == plain.bert.embeddings.word_embeddings.weight.data_ptr()


# ------------------------------------------------------------------ learning and the evaluator
def test_learns_a_planted_order_and_plugs_into_the_evaluator():
    """Users walk the items in a cycle 1→2→…→30→1; a tiny BERT4Rec must learn the next step."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(120):
        start, length = rng.integers(1, 31), rng.integers(6, 12)
        items = [(start + i - 1) % 30 + 1 for i in range(length)]
        rows += [(u, it, t) for t, it in enumerate(items)]
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    torch.manual_seed(0)
    model = BERT4Rec.for_items(split.n_items, max_len=12, hidden_size=32, dropout=0.0)
    collate = MaskedItemCollator(split.n_items, 12, mask_prob=0.3, last_item_prob=0.2, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    before = evaluate(model.score_fn, split, "test", ks=(1,), max_len=12, device="cpu")["HR@1"]
    model.train()
    for _ in range(600):
        idx = rng.choice(split.n_users, 32)
        loss = model.training_loss(collate([split.history("test")[i] for i in idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate(model.score_fn, split, "test", ks=(1,), max_len=12, device="cpu")["HR@1"]
    assert model.training, "score_fn restores the training mode"
    assert before < 0.1 and after > 0.8, (before, after)  # chance: about 1 in 20


# ------------------------------------------------------------------ item text, cold items, sub-catalogues
def _text_model(text_dim: int = 6, **kw) -> BERT4Rec:
    torch.manual_seed(0)
    model = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16, text_dim=text_dim, **kw).eval()
    model.set_item_text(torch.randn(N_ITEMS, text_dim))
    return model


def test_text_side_input_is_added_to_the_id_embedding():
    model = _text_model()
    E, W, T = (model.bert.embeddings.word_embeddings.weight, model.text_proj.weight, model.item_text)
    torch.testing.assert_close(model.item_embeddings, (E + T @ W.T)[: N_ITEMS + 1])
    assert torch.equal(model.item_text[0], torch.zeros(6)), "padding has no text"
    # Independent reference of a score: BERT on the summed embeddings, then transform · table + bias.
    hist = pad_sequences([[3, 4, 5]], MAX_LEN - 1)
    x = torch.cat([hist, torch.tensor([[model.mask_id]])], dim=1)
    table = E + T @ W.T
    h = model.bert(inputs_embeds=table[x], attention_mask=(x != 0).long()).last_hidden_state[:, -1]
    ref = model.cls.predictions.transform(h) @ table.T + model.cls.predictions.bias
    torch.testing.assert_close(model.score(hist)[:, 1:], ref[:, 1: N_ITEMS + 1])
    with pytest.raises(ValueError, match="text vectors must be"):
        model.set_item_text(torch.zeros(N_ITEMS, 5))


def test_forgotten_items_are_scored_by_their_text_alone():
    model = _text_model()
    model.forget_items([7, 8])
    assert torch.equal(model.bert.embeddings.word_embeddings.weight[7], torch.zeros(16))
    # give items 7 and 8 identical texts: with no ID left, they get identical scores
    text = model.item_text.clone()
    text[8] = text[7]
    model.set_item_text(text[: N_ITEMS + 1])
    s = model.score(pad_sequences([[1, 2, 3]], MAX_LEN))
    torch.testing.assert_close(s[:, 7], s[:, 8])


def test_blocked_items_get_no_gradient_and_are_out_of_the_softmax():
    model = _text_model().train()
    model.block_items([5, 6])
    batch = MaskedItemCollator(N_ITEMS, MAX_LEN, seed=0)([s[~np.isin(s, [5, 6])] for s in _seqs(16)])
    loss = model.training_loss(batch)
    loss.backward()
    assert torch.equal(model.cls.predictions.bias.grad[[5, 6]], torch.zeros(2))
    assert torch.equal(model.bert.embeddings.word_embeddings.weight.grad[[5, 6]], torch.zeros(2, 16))
    # the same loss by hand: cross-entropy over the vocabulary without columns 5 and 6
    model.eval()
    model.block_items(None)
    torch.manual_seed(0)
    sel = batch["labels"] != IGNORE
    logits = model._logits(model.encode(batch["input_ids"])[sel])
    keep = [i for i in range(model.config.vocab_size) if i not in (5, 6)]
    remap = {v: k for k, v in enumerate(keep)}
    ref = F.cross_entropy(logits[:, keep], torch.tensor([remap[int(t)] for t in batch["labels"][sel]]))
    model.block_items([5, 6])
    torch.testing.assert_close(model.training_loss(batch), ref)


def test_id_dropout_only_while_training():
    model = _text_model(id_dropout=0.5)
    hist = pad_sequences([[1, 2, 3]], MAX_LEN)
    torch.testing.assert_close(model.score(hist), model.score(hist))  # eval: deterministic, no ID dropout
    model.train()
    keep = model._id_keep()
    assert keep[0] == 1 and keep[model.mask_id] == 1 and 0.2 < keep[1:-1].mean() < 0.8
    with pytest.raises(ValueError, match="id_dropout"):
        bert4rec_config(10, id_dropout=0.3)  # needs text_dim


def test_text_model_round_trip(tmp_path):
    model = _text_model()
    model.save_pretrained(tmp_path)
    loaded = BERT4Rec.from_pretrained(tmp_path).eval()
    assert loaded.has_text and torch.equal(loaded.item_text, model.item_text)
    hist = pad_sequences(_seqs(4), 20)
    assert torch.equal(loaded.score(hist), model.score(hist))


@pytest.mark.parametrize("text_dim", [0, 6])
def test_sub_catalogue_scores_are_the_parent_columns(text_dim):
    model = _text_model(text_dim) if text_dim else BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16).eval()
    items = np.array([9, 2, 31, 17, 5, 40])
    sub = model.sub_catalogue(items)
    assert sub.n_items == 6 and sub.mask_id == 7 and not sub.training
    parent_hist = pad_sequences([[2, 31, 17], [40, 9], [5]], 8)
    lookup = np.zeros(N_ITEMS + 1, dtype=np.int64)
    lookup[items] = np.arange(1, 7)
    sub_hist = torch.from_numpy(lookup[parent_hist.numpy()])
    torch.testing.assert_close(sub.score(sub_hist), model.score(parent_hist)[:, np.concatenate([[0], items])])
    # a copy: training the sub-model leaves the parent as it was
    before = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    with torch.no_grad():
        sub.bert.encoder.layer[0].attention.self.query.weight.add_(1.0)
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, before)
    with pytest.raises(ValueError, match="distinct item ids"):
        model.sub_catalogue([0, 3])


# ------------------------------------------------------------------ speed: trimmed batches, attention dropout, freezing
def test_trimmed_batches_give_the_same_loss_and_scores(model):
    """Dropping all-padding columns changes nothing: positions are counted from the right."""
    seqs = [s[:5] for s in _seqs(12, seed=5)]                          # short histories: most columns are padding
    full = MaskedItemCollator(N_ITEMS, MAX_LEN, mask_prob=0.3, seed=7)(seqs)
    trimmed = MaskedItemCollator(N_ITEMS, MAX_LEN, mask_prob=0.3, trim=True, seed=7)(seqs)
    width = max(len(s) for s in seqs)
    assert trimmed["input_ids"].shape == (12, width) and full["input_ids"].shape == (12, MAX_LEN)
    assert torch.equal(trimmed["input_ids"], full["input_ids"][:, -width:])
    assert (full["input_ids"][:, :-width] == 0).all(), "only padding was cut"
    torch.testing.assert_close(model.mlm_loss(trimmed["input_ids"], trimmed["labels"]),
                               model.mlm_loss(full["input_ids"], full["labels"]))
    torch.testing.assert_close(model.mlm_loss(trimmed["input_ids"], trimmed["labels"], masked_only=False),
                               model.mlm_loss(full["input_ids"], full["labels"]))
    torch.testing.assert_close(model.encode(full["input_ids"])[:, -width:], model.encode(trimmed["input_ids"]))
    assert model.position_ids(3).tolist() == [[MAX_LEN - 3, MAX_LEN - 2, MAX_LEN - 1]]
    with pytest.raises(ValueError, match="columns"):
        model.position_ids(MAX_LEN + 1)


def test_attention_dropout_is_separate():
    cfg = bert4rec_config(10, dropout=0.2, attn_dropout=0.0)
    assert cfg.hidden_dropout_prob == 0.2 and cfg.attention_probs_dropout_prob == 0.0
    assert bert4rec_config(10, dropout=0.2).attention_probs_dropout_prob == 0.2
    with pytest.raises(ValueError, match="attn_dropout"):
        bert4rec_config(10, attn_dropout=1.0)


def test_freeze_body_trains_only_the_vocabulary_tables():
    model = _text_model().train()
    n_vocab = model.config.vocab_size * (16 + 1)                       # ID embeddings + output biases
    assert model.freeze_body() == n_vocab
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias"}
    body = model.bert.encoder.layer[0].attention.self.query.weight.clone()
    proj = model.text_proj.weight.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = MaskedItemCollator(N_ITEMS, MAX_LEN, seed=0)(_seqs(8))
    table = model.bert.embeddings.word_embeddings.weight.clone()
    model.training_loss(batch).backward()
    opt.step()
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, body)
    assert torch.equal(model.text_proj.weight, proj)
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, table)
    assert model.freeze_body(False) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("text_dim", [0, 6])
def test_bucketed_scoring_equals_full_width_scoring(text_dim):
    """Rows grouped by length and cut to each group's longest history: the scores of the full-width input."""
    model = _text_model(text_dim) if text_dim else BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=16).eval()
    rng = np.random.default_rng(8)
    hists = [rng.choice(np.arange(1, N_ITEMS + 1), size=n, replace=False) for n in rng.integers(1, 30, size=23)]
    h = pad_sequences(hists, 30)
    full = model.score(h, bucket=None)
    assert full.shape == (23, N_ITEMS + 1)
    for bucket in (1, 4, 64):
        torch.testing.assert_close(model.score(h, bucket=bucket), full, rtol=1e-5, atol=1e-5)
    # and both are the plain BertForMaskedLM prediction at an appended [MASK] (max_len columns, positions 0..T-1)
    x = torch.cat([h[:, -(MAX_LEN - 1):], torch.full((23, 1), model.mask_id)], dim=1)
    if not text_dim:
        ref = BertForMaskedLM.forward(model, input_ids=x, attention_mask=(x != 0).long()).logits[:, -1, : N_ITEMS + 1]
        torch.testing.assert_close(full[:, 1:], ref[:, 1:], rtol=1e-5, atol=1e-5)   # column 0 (padding) is -inf


def test_text_projection_from_principal_directions():
    """W t = the PCA coordinates of t (up to the sign of each direction and a constant shift)."""
    sklearn = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(N_ITEMS, 24)) @ rng.normal(size=(24, 24)) + 1.5        # correlated, off-centre
    torch.manual_seed(0)
    model = BERT4Rec.for_items(N_ITEMS, max_len=MAX_LEN, hidden_size=8, num_heads=2, text_dim=24)
    model.set_item_text(vecs)
    kept = model.init_text_projection()
    pca = sklearn.PCA(n_components=8).fit(vecs)
    assert kept == pytest.approx(pca.explained_variance_ratio_.sum(), rel=1e-5)
    ours = model.text_proj(model.item_text[1: N_ITEMS + 1]).detach().numpy()
    ref = pca.transform(vecs)
    ours = ours - ours.mean(axis=0)
    signs = np.sign((ours * ref).sum(axis=0))
    np.testing.assert_allclose(ours * signs, ref, rtol=1e-4, atol=1e-4)
    assert not model.text_proj.weight.requires_grad
    assert model.init_text_projection(vecs[:20], freeze=False) < 1.0 and model.text_proj.weight.requires_grad
    with pytest.raises(ValueError, match="hidden_size"):
        model.init_text_projection(vecs[:5])
