"""SASRec: causality, padding, tied scores, fast = teaching attention, it learns, it round-trips."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.data import pad_sequences
from course_lib.evaluate import evaluate
from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.train import SequenceCollator, TrainConfig, Trainer, load_checkpoint, save_checkpoint

torch.set_num_threads(1)
N_ITEMS, T = 25, 8


def _model(**kw):
    torch.manual_seed(0)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=T, d_model=16, n_heads=2, n_layers=2, **kw)).eval()


def test_shapes_and_padding_column():
    m = _model()
    h = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
    assert m(h).shape == (2, T, 16)
    s = m.score(h)
    assert s.shape == (2, N_ITEMS + 1)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()


def test_causal_the_future_does_not_change_the_past():
    m = _model()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, -1] = 20                                     # change only the last item
    ha, hb = m(a), m(b)
    torch.testing.assert_close(ha[:, :-1], hb[:, :-1])
    assert not torch.allclose(ha[:, -1], hb[:, -1])


def test_padding_is_ignored():
    m = _model()
    short = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]])
    torch.testing.assert_close(m.score(short), m.score(padded))   # short histories are left-padded to max_len
    s1 = m.score(padded)
    with torch.no_grad():
        m.item_emb.weight[0] = 50.0                               # whatever the padding row holds ...
    torch.testing.assert_close(m.score(padded)[:, 1:], s1[:, 1:])  # ... scores of real items do not move
    long = torch.arange(1, 13)[None]                               # longer than max_len: the last T items count
    torch.testing.assert_close(m.score(long), m.score(long[:, -T:]))


def test_tied_embeddings_score_items():
    m = _model()
    h = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7]])
    hidden = m(h)[:, -1]
    ref = hidden @ m.item_emb.weight[1:].T
    torch.testing.assert_close(m.score(h)[:, 1:], ref)


def test_fast_and_teaching_attention_agree():
    fast = _model(fast_attention=True)
    slow = _model(fast_attention=False)
    slow.load_state_dict(fast.state_dict())
    h = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 9]])
    torch.testing.assert_close(fast.score(h), slow.score(h), atol=1e-5, rtol=1e-5)


def test_attention_maps_are_causal_distributions():
    m = _model()
    h = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7]])
    maps = m.attention_maps(h)
    assert len(maps) == 2 and maps[0].shape == (1, 2, T, T)
    w = maps[1][0]                                                 # (H, T, T)
    assert torch.all(w.triu(1) == 0)                               # no query looks ahead
    torch.testing.assert_close(w[:, 3:].sum(-1), torch.ones(2, T - 3))   # real queries: rows sum to 1
    assert torch.all(w[:, :3] == 0) and torch.all(w[:, :, :3] == 0)      # padding: neither asks nor is asked


def test_loss_at_targets_only_equals_all_positions():
    m = _model(dropout=0.0)
    seqs = [np.arange(1, 12), np.array([4, 9, 2])]
    batch = SequenceCollator(N_ITEMS, T, loss="ce")(seqs)
    fast = m.training_loss(batch)
    m.config.targets_only = False
    torch.testing.assert_close(m.training_loss(batch), fast)
    m.config.targets_only, m.config.ce_chunk_size = True, 4
    torch.testing.assert_close(m.training_loss(batch), fast)
    hidden = m(batch["input_ids"])
    sel = batch["labels"] != 0
    ref = F.cross_entropy(hidden[sel] @ m.item_emb.weight[1:].T, batch["labels"][sel] - 1)
    torch.testing.assert_close(fast, ref)


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled"])
def test_sasrec_learns_a_sequence_pattern(loss):
    """Each user walks item i -> i + 1; after training the next item is ranked first."""
    import pandas as pd

    from course_lib.data import leave_one_out

    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(1, N_ITEMS - 10))
        rows += [(u, start + t, t) for t in range(int(rng.integers(5, 10)))]
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=split.n_items, max_len=T, d_model=32, n_layers=1, dropout=0.0, loss=loss))
    collate = SequenceCollator(split.n_items, T, loss=loss, n_negatives=8 if loss == "sampled" else None, seed=0)
    cfg = TrainConfig(epochs=40, batch_size=16, lr=1e-2, warmup=0.0, eval_every=0, progress=False, log_every=0)
    Trainer(model, split.train, collate=collate, split=split, config=cfg, device="cpu").fit()
    metrics = evaluate(model.score_fn, split, "test", ks=(1, 10), max_len=T, device="cpu")
    assert metrics["HR@1"] > 0.7, metrics


def test_checkpoint_round_trip(tmp_path):
    m = _model()
    save_checkpoint(tmp_path / "ck", m)
    other = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=T, d_model=16, n_heads=2, n_layers=2)).eval()
    load_checkpoint(tmp_path / "ck", other)
    h = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7]])
    torch.testing.assert_close(other.score(h), m.score(h))


def test_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(n_items=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="unknown loss"):
        SASRecConfig(n_items=5, loss="mse")
    with pytest.raises(ValueError, match="exceeds max_len"):
        _model()(torch.ones(1, T + 1, dtype=torch.long))


def test_trimmed_batches_give_the_same_loss():
    m = _model(dropout=0.0)
    seqs = [np.array([3, 4, 5, 6]), np.array([7, 8, 9])]
    full = SequenceCollator(N_ITEMS, T, loss="ce")(seqs)
    trim = SequenceCollator(N_ITEMS, T, loss="ce", trim=True)(seqs)
    assert trim["input_ids"].shape == (2, 3)
    torch.testing.assert_close(m.training_loss(trim), m.training_loss(full))
    torch.testing.assert_close(m(trim["input_ids"]), m(full["input_ids"])[:, -3:])


# ---------------------------------------------------------------- encode_last: the fast inference path
def _histories(n=40, longest=3 * T, seed=0):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, N_ITEMS + 1, rng.integers(0, longest + 1)) for _ in range(n)]
    seqs[0] = np.zeros(0, dtype=np.int64)                       # an empty history
    seqs[1] = rng.integers(1, N_ITEMS + 1, 5 * T)               # longer than max_len
    return seqs


@pytest.mark.parametrize("layout", ["left", "right"])
@pytest.mark.parametrize("n_layers", [1, 3])
@pytest.mark.parametrize("batch_tokens", [1, 17, 10_000])
def test_encode_last_equals_the_last_position_of_the_full_forward(layout, n_layers, batch_tokens):
    torch.manual_seed(n_layers)
    m = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=T, d_model=16, n_heads=2, n_layers=n_layers,
                            init_std=0.3)).eval()
    seqs = _histories()
    padded = pad_sequences(seqs, T)
    with torch.no_grad():
        ref = m(padded)[:, -1]                                  # every position, then the last one
        from_tensor = m.encode_last(padded, layout=layout, batch_tokens=batch_tokens)
        wider = m.encode_last(pad_sequences(seqs, 3 * T), layout=layout, batch_tokens=batch_tokens)
    from_lists = m.encode_last(seqs, layout=layout, batch_tokens=batch_tokens)
    for got in (from_tensor, from_lists, wider):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.user_vector(padded), ref, rtol=1e-5, atol=1e-5)
    scores = m.score(padded)
    via = from_tensor @ m.item_embeddings.T
    finite = torch.isfinite(scores)
    torch.testing.assert_close(via[finite], scores[finite], rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.topk(via[:, 1:], 5).indices, torch.topk(scores[:, 1:], 5).indices)


def test_encode_last_in_training_mode_is_the_plain_forward():
    m = _model(dropout=0.5).train()
    h = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    torch.manual_seed(1)
    a = m.encode_last(h)
    torch.manual_seed(1)
    b = m(h)[:, -1]
    torch.testing.assert_close(a, b)
    assert a.requires_grad                                      # a training path keeps its graph
    with pytest.raises(ValueError, match="layout"):
        m.eval().encode_last(h, layout="middle")
