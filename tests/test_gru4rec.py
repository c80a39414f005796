"""GRU4Rec: alignment helpers, padding never reaches the GRU, causality, it learns."""

import numpy as np
import pytest
import torch

from course_lib.models.gru4rec import GRU4Rec, GRU4RecConfig, left_align, right_align

torch.set_num_threads(1)


def _model(**kw):
    torch.manual_seed(0)
    return GRU4Rec(GRU4RecConfig(n_items=20, max_len=6, d_model=8, hidden_size=12, **kw)).eval()


def test_align_round_trip():
    x = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5], [0, 0, 0, 0, 9]])
    lengths = (x != 0).sum(1)
    r, _ = right_align(x, lengths)
    assert r.tolist() == [[5, 6, 7, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]]
    assert torch.equal(left_align(r, lengths), x)
    y = torch.randn(3, 5, 4)
    torch.testing.assert_close(left_align(right_align(y, lengths)[0], lengths), y)


def test_padding_does_not_change_the_state():
    m = _model()
    a = torch.tensor([[0, 0, 0, 3, 4, 5]])
    b = torch.tensor([[0, 3, 4, 5]])
    torch.testing.assert_close(m.score(a), m.score(b))
    # the same as running the GRU on the real items alone
    emb = m.item_emb(torch.tensor([[3, 4, 5]]))
    out, _ = m.gru(emb)
    ref = m.proj(out)[:, -1] @ m.item_emb.weight.T
    torch.testing.assert_close(m.score(a)[:, 1:], ref[:, 1:])
    assert torch.isneginf(m.score(a)[:, 0]).all()


def test_causal():
    m = _model()
    a = torch.tensor([[0, 1, 2, 3, 4, 5]])
    b = a.clone()
    b[0, -1] = 9
    torch.testing.assert_close(m(a)[:, :-1], m(b)[:, :-1])


def test_gru4rec_learns_a_sequence_pattern():
    import pandas as pd

    from course_lib.data import leave_one_out
    from course_lib.evaluate import evaluate
    from course_lib.train import SequenceCollator, TrainConfig, Trainer

    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(1, 15))
        rows += [(u, start + t, t) for t in range(int(rng.integers(5, 10)))]
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(n_items=split.n_items, max_len=8, d_model=32, hidden_size=32, dropout=0.0))
    cfg = TrainConfig(epochs=40, batch_size=16, lr=1e-2, warmup=0.0, eval_every=0, progress=False, log_every=0)
    Trainer(model, split.train, collate=SequenceCollator(split.n_items, 8), split=split, config=cfg,
            device="cpu").fit()
    assert evaluate(model.score_fn, split, "test", ks=(1,), max_len=8, device="cpu")["HR@1"] > 0.7


def test_config_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        GRU4RecConfig(n_items=5, loss="hinge")
    with pytest.raises(ValueError, match="n_items"):
        GRU4RecConfig(n_items=0)
