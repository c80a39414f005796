"""Data-parallel training (course_lib.train.distributed): sharding, accumulation, and torchrun runs.

The multi-process tests launch real ``torchrun`` process groups (gloo on loopback) and compare
them with a one-process reference computed here: the claim of the chapter is that, at equal
global batch and seed, the weights are the same up to float summation order.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from course_lib.models.sasrec import SASRec, SASRecConfig
from course_lib.train import SequenceCollator, TrainConfig, Trainer
from course_lib.train.distributed import (
    DistContext,
    DistributedTrainer,
    ShardCollate,
    choose_backend,
    count_targets,
    init_distributed,
    main,
    synthetic_sequences,
)

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
TOL = dict(atol=2e-5, rtol=1e-4)        # float summation order differs between 1 and 2 processes
ARGS = ["--n-users", "90", "--n-items", "40", "--max-len", "12", "--d-model", "16", "--batch-size", "32",
        "--epochs", "2", "--lr", "1e-2"]


def _model(n_items=40, seed=0):
    torch.manual_seed(seed)
    return SASRec(SASRecConfig(n_items=n_items, max_len=12, d_model=16, n_heads=2, n_layers=2, dropout=0.0))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "weights.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    ra, rb = json.loads((a / "result.json").read_text()), json.loads((b / "result.json").read_text())
    assert ra["steps"] == rb["steps"] > 0
    np.testing.assert_allclose(ra["losses"], rb["losses"], **TOL)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], **TOL, msg=lambda m, k=k: f"{k}: {m}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(launch: list[str], args: list[str]) -> subprocess.Popen:
    cmd = [str(TORCHRUN), *launch, "-m", "course_lib.train.distributed", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen, timeout: float = 240) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The one-process run, in this process (no torchrun: WORLD_SIZE is unset)."""
    out = tmp_path_factory.mktemp("ref")
    threads = torch.get_num_threads()
    try:
        assert main([*ARGS, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out


# --------------------------------------------------------------------------- in one process
def test_backend_follows_device():
    assert choose_backend("cuda") == "nccl"
    assert choose_backend("cpu") == "gloo"


def test_without_torchrun_is_one_process(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed, ctx.backend) == (0, 1, True, False, None)


def test_shards_partition_the_global_batch():
    batch = list(range(11))
    shards = [ShardCollate(lambda xs: xs, r, 3, accumulation=2)(batch) for r in range(3)]
    flat = sorted(x for shard in shards for micro in shard for x in micro)
    assert flat == batch                                   # every example once, on exactly one rank
    assert [len(s) for s in shards] == [2, 2, 2]           # two micro-batches per rank
    assert shards[1] == [[1, 4], [7, 10]]                  # rank 1 keeps every 3rd example from index 1


def test_count_targets_counts_labels():
    assert count_targets({"labels": torch.tensor([[0, 3, 4], [0, 0, 5]])}) == 3


def test_one_process_equals_the_trainer():
    """DistributedTrainer with W=1, A=1 is the plain Trainer (the same loss, the same weights)."""
    seqs = synthetic_sequences(50, 40, 3, 24, seed=1)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2, eval_every=0, progress=False, log_every=0, seed=0)
    a, b = _model(), _model()
    ha = Trainer(a, seqs, collate=SequenceCollator(40, 12), config=cfg).fit()
    hb = DistributedTrainer(b, seqs, collate=SequenceCollator(40, 12), config=cfg, context=DistContext()).fit()
    np.testing.assert_allclose(ha.steps["loss"], hb.steps["loss"], rtol=1e-6)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=lambda m, k=k: f"{k}: {m}")


def test_accumulation_equals_the_bigger_batch():
    """4 micro-batches of 8 = one batch of 32: the loss is weighted by target tokens, not averaged per micro-batch."""
    seqs = synthetic_sequences(64, 40, 2, 30, seed=2)      # very different lengths: a plain mean of means would differ
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, eval_every=0, progress=False, log_every=0, seed=0)
    a, b = _model(), _model()
    ha = DistributedTrainer(a, seqs, collate=SequenceCollator(40, 12), config=cfg, context=DistContext()).fit()
    hb = DistributedTrainer(b, seqs, collate=SequenceCollator(40, 12), config=cfg, context=DistContext(),
                            accumulation=4).fit()
    np.testing.assert_allclose(ha.steps["loss"], hb.steps["loss"], **TOL)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, **TOL, msg=lambda m, k=k: f"{k}: {m}")


def test_mean_of_micro_batch_means_would_be_wrong():
    """The planted trap: averaging micro-batch means (not token-weighted) gives another gradient."""
    seqs = synthetic_sequences(32, 40, 2, 30, seed=2)
    collate = SequenceCollator(40, 12)
    full, halves = collate(seqs), [collate(seqs[:16]), collate(seqs[16:])]
    model = _model()
    right = model.training_loss(full)
    naive = (model.training_loss(halves[0]) + model.training_loss(halves[1])) / 2
    n = [count_targets(h) for h in halves]
    weighted = (model.training_loss(halves[0]) * n[0] + model.training_loss(halves[1]) * n[1]) / sum(n)
    torch.testing.assert_close(weighted, right)
    assert abs(float(naive.detach() - right.detach())) > 1e-4


def test_refuses_what_would_hang():
    seqs = synthetic_sequences(33, 40, 3, 10, seed=0)
    two = DistContext(rank=0, world_size=2)
    with pytest.raises(ValueError, match="max_steps"):
        DistributedTrainer(_model(), seqs, collate=SequenceCollator(40, 12),
                           config=TrainConfig(time_budget_s=10, eval_every=0), context=two)
    with pytest.raises(ValueError, match="drop_last"):       # 33 % 16 = 1 example for 2 ranks
        DistributedTrainer(_model(), seqs, collate=SequenceCollator(40, 12),
                           config=TrainConfig(batch_size=16, eval_every=0), context=two)


# --------------------------------------------------------------------------- real process groups
@pytest.mark.slow
def test_two_processes_equal_one(reference, tmp_path):
    """torchrun --nproc_per_node=2 (gloo): the same losses and final weights as one process."""
    _wait(_torchrun(["--standalone", "--nproc_per_node=2"], [*ARGS, "--out", str(tmp_path)]))
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["world_size"], result["backend"]) == (2, "gloo")
    _assert_same_run(reference, tmp_path)


@pytest.mark.slow
def test_two_processes_with_accumulation_and_resume_on_one(reference, tmp_path):
    """2 ranks × 2 micro-batches for epoch 1, checkpoint, then 1 process resumes: the reference run."""
    ckpt = tmp_path / "ckpt"
    _wait(_torchrun(["--standalone", "--nproc_per_node=2"],
                    [*ARGS, "--accumulation", "2", "--checkpoint-dir", str(ckpt), "--stop-after-epoch", "1",
                     "--out", str(tmp_path / "half")]))
    half = json.loads((tmp_path / "half" / "result.json").read_text())
    assert half["epochs_done"] == 1 and (ckpt / "last").exists()
    threads = torch.get_num_threads()
    try:
        assert main([*ARGS, "--checkpoint-dir", str(ckpt), "--resume", "--out", str(tmp_path / "resumed")]) == 0
    finally:
        torch.set_num_threads(threads)
    _assert_same_run(reference, tmp_path / "resumed")


@pytest.mark.slow
def test_two_nodes_on_loopback(reference, tmp_path):
    """The multi-node command users run (c10d rendezvous), as two local launches of one process each."""
    port = _free_port()
    launch = ["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
              "--rdzv-id=ch12-test"]
    procs = [_torchrun(launch, [*ARGS, "--out", str(tmp_path / f"node{i}")]) for i in range(2)]
    for p in procs:
        _wait(p)
    outs = [tmp_path / f"node{i}" for i in range(2) if (tmp_path / f"node{i}" / "result.json").exists()]
    assert len(outs) == 1                                       # rank 0 alone writes its results
    assert json.loads((outs[0] / "result.json").read_text())["world_size"] == 2
    _assert_same_run(reference, outs[0])
