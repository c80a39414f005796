"""Data-parallel training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

The same script runs as one process, as ``torchrun --nproc_per_node=2`` on a laptop, or as
``torchrun --nnodes=… --rdzv-backend c10d --rdzv-endpoint host:port`` on many machines::

    from course_lib.train.distributed import DistributedTrainer, init_distributed

    ctx = init_distributed()                  # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun;
                                              # gloo on CPU, NCCL on CUDA; a no-op without torchrun
    trainer = DistributedTrainer(model, split.train, collate=collate, split=split,
                                 config=TrainConfig(batch_size=256, ...), accumulation=1)
    trainer.fit()                             # every rank trains; rank 0 logs, validates, checkpoints

How one optimizer step is shared (``W`` processes, global batch ``B``, ``A`` accumulation steps):

* every rank draws the **same** global batch of ``B`` examples (the order depends only on
  ``(seed, epoch)``, as in :class:`~course_lib.train.Trainer`) and keeps every ``W``-th example
  (``examples[rank::W]``): a batch-level ``DistributedSampler`` whose shards, taken together,
  are exactly the batch one process would see;
* each rank splits its share into ``A`` micro-batches, and back-propagates
  ``loss_sum(micro) · W / N`` where ``N`` is the number of target tokens of the **global**
  batch (one tiny ``all_reduce`` per step). DDP's gradient all-reduce is an *average* over
  ranks, so the ``W`` cancels: every rank ends with ``∇ (Σ_all tokens loss / N)``, the gradient
  of the one-process run. That is why the learning rate need not change with ``W`` when the
  global batch is kept;
* gradient clipping and the AdamW update then run on identical gradients on every rank, so
  the replicas stay identical (DDP also broadcasts rank 0's weights at the start).

Rank 0 alone prints, shows progress, validates (the result is broadcast so that early
stopping agrees everywhere) and writes checkpoints. A checkpoint holds the full model and
optimizer (they are replicated), the step and the epoch, so a run can resume with **another
world size**: the global batch, hence the sequence of updates, does not depend on ``W``.

Limits (raised as errors, with what to do): ``time_budget_s`` (each rank's clock differs:
stop on ``max_steps``), and a final partial batch smaller than ``W`` (use ``drop_last``).
Equality with one process is exact up to float summation order for deterministic losses
(full cross-entropy, dropout 0). With dropout or sampled negatives each rank draws its own
random numbers: the run is equally valid but not the same numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..data.protocol import LeaveOneOutSplit
from .batches import move_to
from .trainer import TrainConfig, Trainer

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- process group
@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node, ``device``, ``backend``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, validates and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def choose_backend(device_type: str) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise (CPU)."""
    return "nccl" if device_type == "cuda" else "gloo"


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group ``torchrun`` set up (env vars ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without those variables (a plain ``python`` run) this returns a one-process context and
    starts nothing. The backend follows the device: NCCL on CUDA (each process takes GPU
    ``LOCAL_RANK``), gloo on the CPU.

    Args:
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(f"cuda:{local}") if kind == "cuda" else torch.device("cpu")
    if kind == "cuda":
        torch.cuda.set_device(dev)
    if world == 1:
        return DistContext(0, 1, 0, dev, None)
    backend = choose_backend(kind)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=dev if kind == "cuda" else None)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dev, backend)


def cleanup_distributed() -> None:
    """Leave the process group (call once at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- pieces
class _LossModule(torch.nn.Module):
    """DDP needs ``forward()`` to be the call that builds the graph: here it is the model's loss."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable | None) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(self.model, batch)
        return self.model.training_loss(batch)


class ShardCollate:
    """Wraps a collator: a global batch (list of examples) → this rank's ``A`` micro-batches.

    ``examples[rank::world_size]`` is this rank's share; it is cut into ``accumulation`` parts,
    each collated. The wrapped collator's ``state_dict``/``load_state_dict`` pass through.
    """

    def __init__(self, collate: Callable, rank: int, world_size: int, accumulation: int) -> None:
        self.inner, self.rank, self.world_size, self.accumulation = collate, rank, world_size, accumulation

    def __call__(self, examples: Sequence) -> list[Any]:
        mine = list(examples)[self.rank::self.world_size]
        parts = [p for p in np.array_split(np.arange(len(mine)), self.accumulation) if len(p)]
        return [self.inner([mine[i] for i in p]) for p in parts]

    def state_dict(self) -> dict | None:
        return self.inner.state_dict() if hasattr(self.inner, "state_dict") else None

    def load_state_dict(self, state: dict | None) -> None:
        if state is not None and hasattr(self.inner, "load_state_dict"):
            self.inner.load_state_dict(state)


def count_targets(batch: Any) -> int:
    """Target tokens of a next-item batch: labels > 0 (``labels`` ``(B, T)``); else the batch size."""
    if isinstance(batch, dict) and "labels" in batch:
        return int((batch["labels"] > 0).sum())
    if isinstance(batch, dict):
        return int(next(iter(batch.values())).shape[0])
    return len(batch)


# --------------------------------------------------------------------------- trainer
class DistributedTrainer(Trainer):
    """:class:`~course_lib.train.Trainer` under ``torchrun``: DDP, sharded global batches, rank-0 duties.

    Args (besides the Trainer's):
        accumulation: ``A`` micro-batches per optimizer step on each rank (gradient
            accumulation; the global batch ``config.batch_size`` stays what it is).
        count_fn: ``count_fn(batch) -> int`` the number of loss terms the model's loss
            *averages* over (default :func:`count_targets`: labels > 0, right for the course's
            next-item models, whose loss is a mean over target tokens).
        context: a :class:`DistContext` (default :func:`init_distributed`).

    ``config.batch_size`` is the **global** batch: each rank sees ``batch_size / W`` examples.
    Outside ``torchrun`` (one process) it is the plain Trainer plus accumulation.
    """

    def __init__(self, model: torch.nn.Module, train_data: Sequence, *, collate: Callable | None = None,
                 split: LeaveOneOutSplit | None = None, config: TrainConfig | None = None,
                 loss_fn: Callable | None = None, score_fn: Callable | None = None,
                 eval_max_len: int | None = None, accumulation: int = 1,
                 count_fn: Callable[[Any], int] = count_targets, context: DistContext | None = None) -> None:
        ctx = context or init_distributed()
        cfg = config or TrainConfig()
        if accumulation < 1:
            raise ValueError(f"accumulation must be >= 1, got {accumulation}")
        if cfg.time_budget_s is not None and ctx.world_size > 1:
            raise ValueError("time_budget_s cannot stop a distributed run: each rank's clock differs and the ranks "
                             "would stop at different steps (a hang). Give max_steps instead")
        n, W, B = len(train_data), ctx.world_size, cfg.batch_size
        if B < W * accumulation:
            raise ValueError(f"global batch_size {B} < world_size {W} × accumulation {accumulation}: "
                             "some rank would get no example; raise batch_size")
        if not cfg.drop_last and 0 < n % B < W:
            raise ValueError(f"the last batch of each epoch has {n % B} example(s), fewer than the {W} ranks; "
                             "set drop_last=True or change batch_size")
        if not ctx.is_main:                      # rank 0 alone prints and shows progress
            cfg = cfg.replace(progress=False, log_every=0)
        self.ctx, self.accumulation, self.count_fn = ctx, accumulation, count_fn
        self._checkpoint_dir = cfg.checkpoint_dir
        if not ctx.is_main:                      # ... and writes checkpoints
            cfg = cfg.replace(checkpoint_dir=None)
        super().__init__(model, train_data, collate=ShardCollate(collate or (lambda xs: xs), ctx.rank, W, accumulation),
                         split=split, config=cfg, loss_fn=None, score_fn=score_fn, eval_max_len=eval_max_len,
                         device=ctx.device)
        self._loss_module = _LossModule(self.model, loss_fn)
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self._ddp = DDP(self._loss_module, device_ids=ids)        # broadcasts rank 0's weights now
        else:
            self._ddp = self._loss_module

    # ------------------------------------------------------------------ one step
    def _all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.ctx.distributed:
            value = value.to(self.ctx.device)
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def training_step(self, micro_batches: list[Any]) -> float:
        """One optimizer step on this rank's micro-batches of one global batch; returns the global mean loss."""
        self.model.train()
        micro_batches = [move_to(b, self.device) for b in micro_batches]
        counts = [self.count_fn(b) for b in micro_batches]
        n_global = float(self._all_reduce_sum(torch.tensor([float(sum(counts))], dtype=torch.float64)).item())
        if n_global <= 0:
            raise ValueError("this global batch has no target at all; check the collator's labels")
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64)
        for i, (batch, n_local) in enumerate(zip(micro_batches, counts)):
            last = i == len(micro_batches) - 1
            sync = nullcontext() if (last or not self.ctx.distributed) else self._ddp.no_sync()
            with sync:                                                   # no gradient all-reduce before the last
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    mean = self._ddp(batch)                              # mean over this micro-batch's targets
                if not torch.isfinite(mean):
                    raise FloatingPointError(
                        f"the loss became {mean.item()} at step {self.step}; lower the learning rate (now "
                        f"{self.optimizer.param_groups[0]['lr']:.3g}), enable clip_norm, or check the data")
                (mean * (n_local * self.ctx.world_size / n_global)).backward()
            loss_sum += float(mean.detach()) * n_local
        value = float(self._all_reduce_sum(loss_sum.reshape(1)).item()) / n_global
        return self._optimizer_step(value)

    # ------------------------------------------------------------------ rank-0 duties
    def evaluate(self, stage: str = "valid", *, users: Sequence[int] | None = None,
                 ks: Sequence[int] | None = None) -> dict[str, float]:
        """Full-ranking metrics computed on rank 0 and broadcast to every rank (so early stopping agrees)."""
        result = [super().evaluate(stage, users=users, ks=ks) if self.ctx.is_main else None]
        if self.ctx.distributed:
            dist.broadcast_object_list(result, src=0)
        return result[0]

    def fit(self, *, resume: bool = False, stop_after_epoch: int | None = None):
        """As :meth:`Trainer.fit`; with ``resume`` every rank loads rank 0's last checkpoint (any world size)."""
        if resume and not self.ctx.is_main:
            if self._checkpoint_dir is None:
                raise ValueError("resume=True needs config.checkpoint_dir (where the run saved its checkpoints)")
            last = Path(self._checkpoint_dir) / "last"
            if last.exists():
                self.load_checkpoint(last)
                self._seeded = True
            resume = False
        history = super().fit(resume=resume, stop_after_epoch=stop_after_epoch)
        if self.ctx.distributed:
            dist.barrier()                       # rank 0's last checkpoint is on disk for everyone
        return history


# --------------------------------------------------------------------------- a launchable script
def synthetic_sequences(n_users: int, n_items: int, min_len: int, max_len: int, seed: int) -> list[np.ndarray]:
    """Random item sequences ``1..n_items`` (lengths uniform in ``[min_len, max_len]``) for tests and demos."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, n_items + 1, size=int(rng.integers(min_len, max_len + 1))) for _ in range(n_users)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m course_lib.train.distributed",
        description="Train SASRec data-parallel. Run it with torchrun, e.g. "
                    "torchrun --standalone --nproc_per_node=2 -m course_lib.train.distributed --out runs/ddp")
    p.add_argument("--dataset", default="synthetic", help="synthetic | shop | ml-100k | ml-1m")
    p.add_argument("--n-users", type=int, default=96, help="synthetic only")
    p.add_argument("--n-items", type=int, default=60, help="synthetic only")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32, help="the GLOBAL batch (all ranks together)")
    p.add_argument("--accumulation", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", action="store_true", help="validate on rank 0 after every epoch (not for synthetic)")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stop-after-epoch", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    p.add_argument("--out", required=True, help="folder for rank 0's result.json and weights.safetensors")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchrun … -m course_lib.train.distributed``: train, then rank 0 writes its results."""
    import time

    from safetensors.torch import save_file

    from ..data import leave_one_out, load_dataset
    from ..device import set_seed
    from ..models.sasrec import SASRec, SASRecConfig
    from .batches import SequenceCollator

    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    ctx = init_distributed(args.device)
    logging.basicConfig(level=logging.INFO if ctx.is_main else logging.WARNING, format="%(message)s")
    split = None
    if args.dataset == "synthetic":
        train = synthetic_sequences(args.n_users, args.n_items, 3, 2 * args.max_len, args.seed)
        n_items = args.n_items
    else:
        split = leave_one_out(load_dataset(args.dataset), min_item_interactions=5)
        train, n_items = split.train, split.n_items
    set_seed(args.seed)                                       # the same initial weights on every rank
    model = SASRec(SASRecConfig(n_items=n_items, max_len=args.max_len, d_model=args.d_model, n_heads=args.heads,
                                n_layers=args.layers, dropout=args.dropout))
    collate = SequenceCollator(n_items, args.max_len, loss="ce", seed=args.seed)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_steps=args.max_steps,
                         eval_every=1 if (args.eval and split is not None) else 0, seed=args.seed,
                         checkpoint_dir=args.checkpoint_dir, progress=False, log_every=1, warmup=0.1)
    trainer = DistributedTrainer(model, train, collate=collate, split=split if args.eval else None, config=config,
                                 accumulation=args.accumulation, context=ctx)
    t0 = time.perf_counter()
    history = trainer.fit(resume=args.resume, stop_after_epoch=args.stop_after_epoch)
    seconds = time.perf_counter() - t0
    if ctx.is_main:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()},
                  str(out / "weights.safetensors"))
        result = {"world_size": ctx.world_size, "backend": ctx.backend, "device": str(ctx.device),
                  "accumulation": args.accumulation, "global_batch": args.batch_size, "steps": trainer.step,
                  "epochs_done": trainer.epoch, "losses": history.steps["loss"],
                  "grad_norms": history.steps["grad_norm"],
                  "seconds": seconds, "sequences": trainer.step * args.batch_size,
                  "parameters": model.num_parameters(), "evals": history.evals, "stop_reason": history.stop_reason,
                  "argv": list(argv) if argv is not None else None}
        (out / "result.json").write_text(json.dumps(result, indent=1))
        logger.info("rank 0 of %d (%s): %d steps in %.1f s -> %s", ctx.world_size, ctx.backend, trainer.step,
                    seconds, out)
    cleanup_distributed()
    return 0


__all__ = ["DistContext", "DistributedTrainer", "ShardCollate", "choose_backend", "cleanup_distributed",
           "count_targets", "init_distributed", "main", "synthetic_sequences"]

if __name__ == "__main__":
    raise SystemExit(main())
