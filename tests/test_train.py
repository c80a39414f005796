"""The training loop: schedules, clipping, early stopping, checkpoints, resume, collator, search."""

import json
import math

import numpy as np
import pytest
import torch

from course_lib.data import leave_one_out
from course_lib.models.gru4rec import GRU4Rec, GRU4RecConfig
from course_lib.train import (
    CheckpointError,
    Choice,
    LogUniform,
    LRSchedule,
    SequenceCollator,
    TrainConfig,
    Trainer,
    Uniform,
    grid_search,
    load_checkpoint,
    random_search,
    save_checkpoint,
    tpe_search,
    warmup_steps_from,
)
from course_lib.train.batches import move_to

torch.set_num_threads(1)


# --------------------------------------------------------------------------- fixtures
def _toy_split(n_users=40, n_items=30, seed=0):
    """Users walk through items in order (item i is followed by i + 1): easy to learn."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(1, n_items - 12))
        length = int(rng.integers(6, 12))
        for t in range(length):
            rows.append((u, start + t, t))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return leave_one_out(df, name="toy")


@pytest.fixture(scope="module")
def split():
    return _toy_split()


def _model(split, **kw):
    torch.manual_seed(0)
    return GRU4Rec(GRU4RecConfig(n_items=split.n_items, max_len=12, d_model=16, hidden_size=16,
                                 dropout=kw.pop("dropout", 0.1), loss=kw.pop("loss", "ce"), **kw))


def _trainer(split, tmp_path=None, loss="ce", **cfg):
    model = _model(split, loss=loss)
    collate = SequenceCollator(split.n_items, 12, loss=loss, seed=1)
    defaults = dict(epochs=4, batch_size=8, lr=1e-2, progress=False, log_every=0, eval_every=1,
                    checkpoint_dir=str(tmp_path) if tmp_path else None)
    defaults.update(cfg)
    return Trainer(model, split.train, collate=collate, split=split, config=TrainConfig(**defaults), device="cpu")


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- schedules
def test_schedule_values():
    s = LRSchedule("cosine", total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert s.factor(0) == pytest.approx(0.1)          # (0 + 1) / 10
    assert s.factor(4) == pytest.approx(0.5)
    assert s.factor(9) == pytest.approx(1.0)
    assert s.factor(10) == pytest.approx(1.0)         # start of the decay
    assert s.factor(60) == pytest.approx(0.1 + 0.9 * 0.5)   # half-way: cos(pi/2) = 0
    assert s.factor(110) == pytest.approx(0.1)        # end: the floor
    lin = LRSchedule("linear", total_steps=100, warmup_steps=0, min_ratio=0.0)
    assert lin.factor(25) == pytest.approx(0.75)
    assert LRSchedule("constant", total_steps=5, warmup_steps=2).factor(3) == 1.0
    vals = s.values(1e-3)
    assert vals.shape == (110,) and vals.max() == pytest.approx(1e-3)
    assert warmup_steps_from(0.1, 200) == 20 and warmup_steps_from(7, 200) == 7
    with pytest.raises(ValueError, match="unknown schedule"):
        LRSchedule("step", 10)
    with pytest.raises(ValueError, match="warmup"):
        warmup_steps_from(-1, 10)


def test_trainer_follows_the_schedule(split):
    tr = _trainer(split, epochs=2, warmup=3, schedule="linear", min_lr_ratio=0.0, eval_every=0)
    tr.fit()
    expected = [1e-2 * tr.schedule.factor(s) for s in range(tr.total_steps)]
    np.testing.assert_allclose(tr.history.steps["lr"], expected)
    assert tr.history.steps["lr"][0] == pytest.approx(1e-2 / 3)


# --------------------------------------------------------------------------- clipping
def test_clipping_caps_the_gradient_norm(split):
    tr = _trainer(split, clip_norm=1e-3, eval_every=0)
    batch = next(tr.batches(0))
    tr.training_step(batch)
    pre = tr.history.steps["grad_norm"][-1]
    post = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in tr.model.parameters() if p.grad is not None))
    assert pre > 1e-3                     # the raw gradient was larger than the cap ...
    assert post == pytest.approx(1e-3, rel=1e-4)  # ... and was scaled down to it
    tr2 = _trainer(split, clip_norm=None, eval_every=0)
    tr2.training_step(next(tr2.batches(0)))
    post2 = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in tr2.model.parameters() if p.grad is not None))
    assert post2 == pytest.approx(tr2.history.steps["grad_norm"][-1], rel=1e-5)  # no clipping: untouched


def test_nan_loss_raises_a_clear_error(split):
    tr = _trainer(split, eval_every=0)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        tr.loss_fn = lambda model, batch: torch.tensor(float("nan"), requires_grad=True)
        tr.training_step(next(tr.batches(0)))


# --------------------------------------------------------------------------- early stopping
def test_early_stopping_stops_and_restores_the_best(split, tmp_path):
    tr = _trainer(split, tmp_path, epochs=10, patience=2)
    snapshots = {}
    good_epoch = 2

    def score_fn(users, histories):
        snapshots[tr.epoch] = _params(tr.model)
        scores = torch.zeros(len(users), split.n_items + 1)
        if tr.epoch == good_epoch:                   # perfect scores at epoch 2 only
            scores[torch.arange(len(users)), torch.as_tensor(split.valid[users.numpy()])] = 1.0
        return scores

    tr._score_fn = score_fn
    history = tr.fit()
    assert history.stopped_early and "early stopping" in history.stop_reason
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4]   # stopped 2 evaluations after the best
    assert history.best_epoch == good_epoch and history.best_score == pytest.approx(1.0)
    for k, v in tr.model.state_dict().items():                      # best weights restored
        torch.testing.assert_close(v, snapshots[good_epoch][k])
    best = _model(split)
    load_checkpoint(tmp_path / "best", best)                        # and written to best/
    for k, v in best.state_dict().items():
        torch.testing.assert_close(v, snapshots[good_epoch][k])


def test_time_budget_and_max_steps(split):
    tr = _trainer(split, epochs=50, max_steps=7, eval_every=0)
    h = tr.fit()
    assert tr.step == 7 and "max_steps" in h.stop_reason
    tr2 = _trainer(split, epochs=1000, time_budget_s=0.3, eval_every=0)
    h2 = tr2.fit()
    assert "time budget" in h2.stop_reason and tr2.epoch < 1000


class _FakeClock:
    """time.perf_counter that advances 0.25 s per call: one training step = 0.25 s of training."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 0.25
        return self.now


@pytest.mark.parametrize("every_s, every_steps, expected", [
    (1.0, None, [4, 8, 12, 16, 20]),          # 1 s of training = 4 steps of 0.25 s
    (1.5, None, [6, 12, 18]),
    (1.5, 5, [5, 6, 10, 12, 15, 18, 20]),      # either rule
    (None, None, []),
])
def test_eval_every_seconds_counts_training_time(split, monkeypatch, every_s, every_steps, expected):
    import course_lib.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "time", _FakeClock())
    tr = _trainer(split, epochs=100, max_steps=21, eval_every=0, eval_every_seconds=every_s,
                  eval_every_steps=every_steps)
    h = tr.fit()
    assert tr.train_seconds == pytest.approx(21 * 0.25)
    assert [e["step"] for e in h.evals] == expected
    assert all(e["train_s"] == pytest.approx(e["step"] * 0.25) for e in h.evals)


def test_eval_every_seconds_must_be_positive():
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eval_every_seconds"):
            TrainConfig(eval_every_seconds=bad)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(split, tmp_path):
    tr = _trainer(split, epochs=1, eval_every=0)
    tr.fit()
    path = tr.save_checkpoint(tmp_path / "ck")
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "state.json", "training.safetensors"]
    assert not list(tmp_path.glob(".ck.*")), "no temporary folder left behind"
    other = _trainer(split, epochs=1, eval_every=0)
    other.model.apply(lambda m: [torch.nn.init.zeros_(p) for p in m.parameters(recurse=False)])
    other.load_checkpoint(path)
    for k, v in tr.model.state_dict().items():
        torch.testing.assert_close(other.model.state_dict()[k], v)
    a, b = tr.optimizer.state_dict(), other.optimizer.state_dict()
    for idx, slots in a["state"].items():
        for key, value in slots.items():
            torch.testing.assert_close(b["state"][idx][key], value)
    assert other.step == tr.step and other.history.steps["loss"] == tr.history.steps["loss"]
    # saving again over an existing checkpoint replaces it atomically
    tr.save_checkpoint(tmp_path / "ck")
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_corrupt_checkpoint_raises_a_clear_error(split, tmp_path):
    model = _model(split)
    path = save_checkpoint(tmp_path / "ck", model, state={"epoch": 1})
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])            # truncated
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(path, _model(split))
    path = save_checkpoint(tmp_path / "ck", model)
    (path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path, _model(split))
    path = save_checkpoint(tmp_path / "ck", model)
    (path / "training.safetensors").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(path, _model(split))
    path = save_checkpoint(tmp_path / "ck", model)
    bigger = GRU4Rec(GRU4RecConfig(n_items=split.n_items, d_model=32, hidden_size=16))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(path, bigger)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere", model)
    doc = json.loads((path / "state.json").read_text())
    doc["format"] = "something else"
    (path / "state.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unknown format"):
        load_checkpoint(path, model)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_resume_gives_identical_parameters(split, tmp_path, loss):
    straight = _trainer(split, tmp_path / "a", loss=loss, epochs=4)
    straight.fit()
    first = _trainer(split, tmp_path / "b", loss=loss, epochs=4)
    first.fit(stop_after_epoch=2)
    assert first.epoch == 2 and first.history.stop_reason == "interrupted"
    torch.manual_seed(123)                       # disturb every RNG: resume must restore them
    np.random.seed(123)
    second = _trainer(split, tmp_path / "b", loss=loss, epochs=4)   # a fresh process would start like this
    second.fit(resume=True)
    assert second.epoch == 4
    assert second.history.steps["loss"] == straight.history.steps["loss"]
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[k], v, rtol=0, atol=0)
    assert [r["loss"] for r in second.history.epochs] == [r["loss"] for r in straight.history.epochs]


def test_resume_refuses_another_config(split, tmp_path):
    tr = _trainer(split, tmp_path, epochs=2)
    tr.fit(stop_after_epoch=1)
    other = _trainer(split, tmp_path, epochs=2, batch_size=4)
    with pytest.raises(CheckpointError, match="batch_size"):
        other.fit(resume=True)


def test_history_and_plot(split):
    import matplotlib

    matplotlib.use("Agg")
    tr = _trainer(split, epochs=2)
    h = tr.fit()
    frame = h.to_frame()
    assert list(frame.index) == [1, 2] and "valid_NDCG@10" in frame and "loss" in frame
    assert len(h.step_frame()) == tr.step
    axes = h.plot()
    assert axes[1].get_ylabel() == "validation NDCG@10"
    xs, ys = h.valid_curve(x="train_s")
    assert len(xs) == 2 and np.all(np.diff(xs) > 0)
    metrics = tr.evaluate("test")
    assert set(metrics) == {"HR@10", "NDCG@10", "MRR@10"}


def test_training_learns_the_toy_pattern(split):
    tr = _trainer(split, epochs=30, lr=3e-2, eval_every=0, warmup=0.0)
    before = tr.evaluate("test")["HR@10"]
    tr.fit()
    after = tr.evaluate("test")["HR@10"]
    assert after > 0.8 and after > before + 0.3


def test_bf16_precision_runs(split):
    tr = _trainer(split, epochs=1, precision="bf16", eval_every=0)
    tr.fit()
    assert np.isfinite(tr.history.steps["loss"]).all()


def test_config_errors():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="metric"):
        TrainConfig(metric="ndcg10")
    assert TrainConfig(metric="HR@20").ks == (10, 20)
    assert TrainConfig().replace(lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="no field"):
        TrainConfig().replace(learning_rate=0.5)


# --------------------------------------------------------------------------- collator
def test_collator_batches():
    seqs = [np.array([5, 6, 7, 8]), np.array([2, 3]), np.arange(1, 21)]
    c = SequenceCollator(30, 6, loss="bce", n_negatives=1, seed=0)
    b = c(seqs)
    assert b["input_ids"].tolist()[0] == [0, 0, 0, 5, 6, 7] and b["labels"].tolist()[0] == [0, 0, 0, 6, 7, 8]
    assert b["input_ids"].tolist()[1] == [0, 0, 0, 0, 0, 2] and b["labels"].tolist()[1] == [0, 0, 0, 0, 0, 3]
    assert b["input_ids"].tolist()[2] == [14, 15, 16, 17, 18, 19]     # the last max_len + 1 items
    neg = b["negatives"].numpy()
    assert ((neg == 0) == (b["labels"].numpy() == 0)).all()           # negatives exactly where targets are
    for row, seq in enumerate(seqs):
        assert not np.isin(neg[row][neg[row] > 0], seq).any()         # never an item of the user's sequence
    s = SequenceCollator(30, 6, loss="sampled", n_negatives=9, seed=0)(seqs)
    assert s["negatives"].shape == (9,) and "log_q" not in s
    r = SequenceCollator(30, 6, loss="ce", crop="random", seed=0)
    for _ in range(5):
        x = r([np.arange(1, 21)])
        row = torch.cat([x["input_ids"][0], x["labels"][0, -1:]]).numpy()
        assert (np.diff(row) == 1).all()                               # a window of consecutive items
    with pytest.raises(ValueError, match="fewer than 2 items"):
        c([np.array([4])])


def test_collator_state_round_trip():
    a = SequenceCollator(50, 5, loss="bce", crop="random", seed=3)
    a([np.arange(1, 30)])
    state = a.state_dict()
    x = a([np.arange(1, 30)])
    b = SequenceCollator(50, 5, loss="bce", crop="random", seed=99)
    b.load_state_dict(state)
    y = b([np.arange(1, 30)])
    for k in x:
        assert torch.equal(x[k], y[k])


def test_move_to():
    batch = {"a": torch.zeros(2), "b": [torch.ones(1)], "c": 3}
    out = move_to(batch, torch.device("cpu"))
    assert out["c"] == 3 and torch.equal(out["b"][0], torch.ones(1))


# --------------------------------------------------------------------------- search
def _objective(p):
    return -((math.log10(p["lr"]) + 2.5) ** 2) - (p["dropout"] - 0.2) ** 2 + (0.1 if p["d"] == 64 else 0.0)


def test_grid_search_tries_every_combination():
    res = grid_search(_objective, {"lr": [1e-3, 3e-3], "dropout": [0.0, 0.2], "d": [32, 64]}, progress=False)
    assert len(res.trials) == 8
    assert res.best_params == {"lr": 3e-3, "dropout": 0.2, "d": 64}
    assert res.best_value == pytest.approx(_objective(res.best_params))


def test_random_search_is_seeded_and_in_bounds():
    space = {"lr": LogUniform(1e-4, 1e-2), "dropout": Uniform(0.0, 0.5), "d": Choice([32, 64])}
    a = random_search(_objective, space, 12, seed=1, progress=False)
    b = random_search(_objective, space, 12, seed=1, progress=False)
    assert a.trials["lr"].tolist() == b.trials["lr"].tolist()
    assert a.trials["lr"].between(1e-4, 1e-2).all() and a.trials["dropout"].between(0, 0.5).all()
    assert set(a.trials["d"]) <= {32, 64}
    best = a.best_so_far()
    assert (np.diff(best) >= 0).all() and best[-1] == a.best_value


def test_tpe_search_finds_a_good_region():
    space = {"lr": LogUniform(1e-5, 1e-1), "dropout": Uniform(0.0, 0.5), "d": Choice([32, 64])}
    res = tpe_search(_objective, space, 30, seed=0, progress=False)
    assert len(res.trials) == 30
    assert res.best_value > -0.1                     # the optimum is 0.1 (lr = 10^-2.5, dropout 0.2, d 64)
    assert res.best_value == pytest.approx(res.trials["value"].max())


def test_bucket_by_length_groups_similar_lengths(split):
    tr = _trainer(split, bucket_by_length=True, batch_size=4, eval_every=0)
    tr.collate = lambda xs: xs                               # see the raw examples
    batches = list(tr.batches(0))
    assert len(batches) == tr.steps_per_epoch
    assert sorted(tuple(x) for b in batches for x in b) == sorted(tuple(x) for x in split.train)  # each once
    spread = np.mean([max(map(len, b)) - min(map(len, b)) for b in batches])
    plain = _trainer(split, batch_size=4, eval_every=0)
    plain.collate = lambda xs: xs
    spread_plain = np.mean([max(map(len, b)) - min(map(len, b)) for b in plain.batches(0)])
    assert spread < spread_plain / 2                         # similar lengths share a batch


# --------------------------------------------------------------------------- the fast path (fit_or_reuse)
def test_fit_or_reuse_trains_saves_and_reloads_the_whole_run(split, tmp_path, monkeypatch, capsys):
    from course_lib.train import fit_or_reuse

    first = _trainer(split, epochs=2)
    fit_or_reuse(first, "toy-gru", reuse=True, folder=tmp_path)      # nothing saved yet: trains
    assert not first.reused and "no saved run" in capsys.readouterr().out
    assert (tmp_path / "toy-gru" / "final").is_dir() and first.step > 0

    second = _trainer(split, epochs=2)
    monkeypatch.setattr(Trainer, "fit", lambda self, **kw: pytest.fail("reuse=True must not train"))
    history = fit_or_reuse(second, "toy-gru", reuse=True, folder=tmp_path)
    assert second.reused and "reused the run" in capsys.readouterr().out
    for name, value in _params(first.model).items():
        torch.testing.assert_close(second.model.state_dict()[name], value, rtol=0, atol=0)
    assert (second.step, second.epoch, second.train_seconds) == (first.step, first.epoch, first.train_seconds)
    assert history.epochs == first.history.epochs and history.steps["loss"] == first.history.steps["loss"]
    assert second.evaluate("test") == first.evaluate("test")


def test_fit_or_reuse_refuses_a_run_made_with_other_settings(split, tmp_path, capsys):
    from course_lib.train import fit_or_reuse

    fit_or_reuse(_trainer(split, epochs=1), "toy", folder=tmp_path)       # reuse=False: trains and saves
    other = _trainer(split, epochs=1, lr=5e-3)
    fit_or_reuse(other, "toy", reuse=True, folder=tmp_path)
    assert not other.reused and "other settings (config)" in capsys.readouterr().out
    plain = _trainer(split, epochs=1)
    fit_or_reuse(plain, "toy", reuse=False, folder=tmp_path)               # the default always trains
    assert not plain.reused and plain.step > 0
    with pytest.raises(ValueError, match="letters, digits"):
        fit_or_reuse(plain, "../escape", folder=tmp_path)
