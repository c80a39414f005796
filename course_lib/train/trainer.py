"""The training loop: :class:`TrainConfig`, :class:`Trainer` and its :class:`History`.

One optimizer step, the heart of every chapter from here on::

    batch = collate([train_data[i] for i in indices])     # data loading
    with autocast(bf16):                                   # mixed precision (optional)
        loss = model.training_loss(batch)                  # forward + loss
    loss.backward()                                        # backward
    clip_grad_norm_(params, clip_norm)                     # gradient clipping
    lr = peak_lr * schedule.factor(step)                   # warm-up + cosine
    optimizer.step(); optimizer.zero_grad()                # AdamW update

and around it: validation with the full-ranking evaluator every ``eval_every`` epochs,
early stopping on validation NDCG@10 with the best weights restored, a checkpoint after
every epoch (``resume=True`` continues exactly where it stopped), one progress bar and one
line per epoch, and a :class:`History` with a ``plot()``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.protocol import LeaveOneOutSplit
from ..device import get_device, set_seed
from ..evaluate import evaluate
from ..scoring import as_score_fn
from .batches import move_to
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .schedules import LRSchedule, warmup_steps_from

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class TrainConfig:
    """Every setting of a training run (the single source of its hyper-parameters).

    Optimisation: ``epochs``, ``batch_size``, ``lr`` (peak), ``weight_decay`` (AdamW, decoupled;
    applied to weight matrices and embeddings, not to biases and norms), ``betas``,
    ``schedule`` (``"constant"``/``"linear"``/``"cosine"``), ``warmup`` (steps, or a fraction of
    the run if a float < 1), ``min_lr_ratio``, ``clip_norm`` (max global gradient norm;
    ``None`` = no clipping), ``precision`` (``"fp32"``, ``"bf16"`` autocast, ``"auto"`` = bf16
    where the device runs it natively), ``max_steps`` and ``time_budget_s`` (stop early,
    seconds of training, validation excluded), ``schedule_unit`` (``"steps"``, or ``"time"``: the
    schedule runs over ``time_budget_s`` — warm-up and decay end when the budget does, whatever
    the machine's speed; not bit-for-bit reproducible), ``drop_last``, ``bucket_by_length``
    (batches of examples of similar length: with a trimming collator, less padding to compute on).

    Validation: ``eval_every`` (epochs; 0 = never), ``eval_every_steps`` (also every that many
    optimizer steps), ``eval_every_seconds`` (also every that many seconds of training, validation
    excluded: a time-budgeted run gets the same number of points on a fast and a slow CPU, whatever
    its loss costs per step), ``eval_users`` (validate on this many
    fixed random users, ``None`` = all), ``eval_batch_size``, ``ks``, ``metric`` (what early
    stopping watches), ``patience`` (evaluations without improvement > ``min_delta`` before
    stopping; ``None`` = never stop early), ``restore_best``.

    Bookkeeping: ``seed``, ``deterministic``, ``checkpoint_dir`` (``last/`` after every epoch,
    ``best/`` at every improvement), ``progress`` (one tqdm bar), ``log_every`` (one printed
    line every that many epochs; 0 = silent), ``compile`` (``torch.compile`` the model).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    schedule: str = "cosine"
    warmup: int | float = 0.05
    min_lr_ratio: float = 0.0
    clip_norm: float | None = 1.0
    precision: str = "fp32"
    max_steps: int | None = None
    time_budget_s: float | None = None
    schedule_unit: str = "steps"
    drop_last: bool = False
    bucket_by_length: bool = False
    eval_every: int = 1
    eval_every_steps: int | None = None
    eval_every_seconds: float | None = None
    eval_users: int | None = None
    eval_batch_size: int = 512
    ks: tuple[int, ...] = (10,)
    metric: str = "NDCG@10"
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    seed: int = 0
    deterministic: bool = False
    checkpoint_dir: str | None = None
    progress: bool = True
    log_every: int = 1
    compile: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")
        if self.schedule_unit not in ("steps", "time"):
            raise ValueError(f"schedule_unit must be 'steps' or 'time', got {self.schedule_unit!r}")
        if self.schedule_unit == "time" and (self.time_budget_s is None or not isinstance(self.warmup, float)):
            raise ValueError("schedule_unit='time' spreads the schedule over time_budget_s: set time_budget_s, "
                             "and give warmup as a fraction (a float), e.g. warmup=0.05")
        if self.eval_every_seconds is not None and not self.eval_every_seconds > 0:
            raise ValueError(f"eval_every_seconds must be > 0 or None, got {self.eval_every_seconds}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        self.betas = tuple(self.betas)
        self.ks = tuple(self.ks)
        k = self.metric.split("@")
        if len(k) != 2 or k[0] not in ("HR", "NDCG", "MRR") or not k[1].isdigit():
            raise ValueError(f"metric must look like 'NDCG@10', 'HR@10' or 'MRR@10'; got {self.metric!r}")
        if int(k[1]) not in self.ks:
            self.ks = tuple(sorted(set(self.ks) | {int(k[1])}))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed: ``config.replace(lr=3e-3)``."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {sorted(unknown)}")
        return TrainConfig(**{**asdict(self), **changes})


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively here (CUDA with bf16, or a CPU with AVX-512 BF16 / AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover
            return False
    return False


# --------------------------------------------------------------------------- history
@dataclass
class History:
    """What happened during training.

    Attributes:
        epochs: one record per epoch: ``epoch``, ``step``, ``loss`` (mean training loss),
            ``lr`` (at the epoch's end), ``train_s`` (cumulative seconds of training,
            validation excluded), ``wall_s``, and ``valid_<metric>`` after a validation.
        evals: one record per validation: ``epoch`` (fractional inside an epoch), ``step``,
            ``train_s`` and the metrics (``NDCG@10``, ...).
        steps: per optimizer step: ``loss``, ``lr``, ``grad_norm`` (before clipping).
        best_epoch, best_score: the best validation score so far (the metric of the config).
        stopped_early: whether early stopping ended the run; ``stop_reason`` says why it ended.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {"loss": [], "lr": [], "grad_norm": []})
    best_epoch: int | None = None
    best_score: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    stop_reason: str = ""
    metric: str = "NDCG@10"

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch."""
        return pd.DataFrame(self.epochs).set_index("epoch") if self.epochs else pd.DataFrame()

    def step_frame(self) -> pd.DataFrame:
        """One row per optimizer step."""
        return pd.DataFrame(self.steps).rename_axis("step")

    def valid_curve(self, metric: str | None = None, x: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
        """``(x, values)`` of a validation metric at every validation; ``x``: "epoch", "step" or "train_s"."""
        col = metric or self.metric
        return (np.array([r[x] for r in self.evals], dtype=float),
                np.array([r[col] for r in self.evals], dtype=float))

    def plot(self, metric: str | None = None, *, x: str = "epoch", axes=None, label: str | None = None):
        """Learning curves: training loss (per step, smoothed, and per epoch) and the validation metric.

        Args:
            metric: the validation metric to show (default: the one early stopping watched).
            x: ``"epoch"``, ``"step"`` or ``"train_s"`` (seconds of training) for the validation panel.
            axes: two matplotlib axes to draw into (to overlay several runs); default: new figure.
            label: legend label of this run.
        Returns:
            the two axes.
        """
        import matplotlib.pyplot as plt

        metric = metric or self.metric
        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        ax_loss, ax_val = axes
        if self.steps["loss"]:
            steps = np.arange(1, len(self.steps["loss"]) + 1)
            spe = max(1, len(steps) // max(1, len(self.epochs)))
            frame = self.to_frame()
            line, = ax_loss.plot(frame.index, frame["loss"], marker="o", ms=3, label=label or "mean per epoch")
            ax_loss.plot(steps / spe, self.steps["loss"], alpha=0.25, lw=0.8, color=line.get_color())
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
        xs, ys = self.valid_curve(metric, x=x)
        if len(xs):
            ax_val.plot(xs, ys, marker="o", ms=3, label=label)
            if self.best_epoch is not None and x == "epoch":
                ax_val.axvline(self.best_epoch, ls=":", color="grey", lw=1)
        xlabel = {"epoch": "epoch", "step": "optimizer step"}.get(x, "training time (s)")
        ax_val.set(xlabel=xlabel, ylabel=f"validation {metric}", title=f"Validation {metric}")
        if label is not None:
            ax_val.legend(fontsize=8)
        ax_loss.figure.tight_layout()
        return axes

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "evals": self.evals, "best_epoch": self.best_epoch,
                "best_score": self.best_score, "best_step": self.best_step,
                "stopped_early": self.stopped_early, "stop_reason": self.stop_reason, "metric": self.metric}

    def __repr__(self) -> str:
        best = ""
        if self.best_score is not None:
            best = f", best {self.metric} {self.best_score:.4f} at epoch {self.best_epoch}"
        return f"History({len(self.epochs)} epochs, {len(self.steps['loss'])} steps{best})"


# --------------------------------------------------------------------------- trainer
LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


class Trainer:
    """Train a model on sequences, validate with full ranking, keep the best, checkpoint.

    Args:
        model: a ``torch.nn.Module``. Unless ``loss_fn`` is given it must have
            ``training_loss(batch) -> scalar tensor``; for validation it must be a
            :class:`~course_lib.scoring.Scorer` (``score(users, histories) -> (B, n_items + 1)``,
            every course model is) unless ``score_fn`` is given.
        train_data: the training examples, indexable (e.g. ``split.train``: one item
            sequence per user). Each epoch visits them in a new random order.
        collate: ``collate(list of examples) -> batch`` (e.g. a
            :class:`~course_lib.train.SequenceCollator`); if it has ``state_dict()`` /
            ``load_state_dict()`` (or an ``rng``), its state is checkpointed too.
        split: the :class:`~course_lib.data.LeaveOneOutSplit` to validate on (``None``: no
            validation, no early stopping).
        config: a :class:`TrainConfig`.
        loss_fn: ``loss_fn(model, batch) -> scalar``, instead of ``model.training_loss``.
        score_fn: ``score_fn(users, histories)`` for validation, instead of the model's own scores.
        eval_max_len: history length given to ``score_fn`` (default: ``model.max_len`` or
            ``model.config.max_len``, else 200).
        device: default :func:`course_lib.device.get_device`.
    """

    def __init__(self, model: torch.nn.Module, train_data: Sequence, *, collate: Callable | None = None,
                 split: LeaveOneOutSplit | None = None, config: TrainConfig | None = None,
                 loss_fn: LossFn | None = None, score_fn: Callable | None = None,
                 eval_max_len: int | None = None, device: torch.device | str | None = None) -> None:
        self.config = config or TrainConfig()
        cfg = self.config
        if len(train_data) == 0:
            raise ValueError("train_data is empty: there is nothing to train on")
        if loss_fn is None and not hasattr(model, "training_loss"):
            raise TypeError(f"{type(model).__name__} has no training_loss(batch); pass loss_fn=... "
                            "(a function (model, batch) -> scalar loss)")
        self.device = get_device(device, verbose=False) if device is not None else get_device(verbose=False)
        self.model = model.to(self.device)
        self.train_data, self.collate, self.split = train_data, collate or (lambda xs: xs), split
        self.loss_fn = loss_fn
        if score_fn is None and split is not None:
            try:
                as_score_fn(model)
            except TypeError as err:
                raise TypeError(f"{err}; or pass score_fn=... to the Trainer (or split=None: no validation)") from None
        self._score_fn = score_fn
        self.eval_max_len = eval_max_len or _model_max_len(model) or 200
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_supported(self.device))
        if cfg.precision == "bf16" and not bf16_supported(self.device):
            import warnings

            warnings.warn(f"bf16 autocast requested but {self.device} has no native bf16; it will be slow",
                          stacklevel=2)
        self._forward_model = torch.compile(self.model) if cfg.compile else self.model

        decay, no_decay = [], []
        for _, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)
        n = len(train_data)
        self.steps_per_epoch = n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} > {n} examples with drop_last=True: no step per epoch")
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        sched_steps = self.total_steps if cfg.schedule_unit == "steps" else 10_000
        self.schedule = LRSchedule(cfg.schedule, sched_steps, warmup_steps_from(cfg.warmup, sched_steps),
                                   cfg.min_lr_ratio)
        self.eval_users = None
        if split is not None and cfg.eval_users is not None and cfg.eval_users < split.n_users:
            rng = np.random.default_rng(cfg.seed)
            self.eval_users = np.sort(rng.choice(split.n_users, cfg.eval_users, replace=False))
        self.history = History(metric=cfg.metric)
        self.step = 0
        self.epoch = 0
        self.train_seconds = 0.0
        self.wall_seconds = 0.0
        self._bad_evals = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._seeded = False

    # ------------------------------------------------------------------ pieces
    def score_fn(self, users: torch.Tensor, histories: torch.Tensor):
        """The scorer validation uses (the model's own :func:`~course_lib.scoring.as_score_fn` unless one was given)."""
        fn = self._score_fn or as_score_fn(self.model)
        return fn(users, histories)

    def lr_factor(self) -> float:
        """The schedule's factor for the next step: by step count, or by the share of the time budget used."""
        if self.config.schedule_unit == "time":
            virtual = int(self.schedule.total_steps * min(1.0, self.train_seconds / self.config.time_budget_s))
            return self.schedule.factor(min(virtual, self.schedule.total_steps - 1))
        return self.schedule.factor(min(self.step, self.total_steps - 1))

    def compute_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one batch (already on the device), under autocast if bf16."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.loss_fn is not None:
                return self.loss_fn(self._forward_model, batch)
            model = self._forward_model
            fn = model.training_loss if hasattr(model, "training_loss") else self.model.training_loss
            return fn(batch)

    def training_step(self, batch: Any) -> float:
        """One optimizer step on one batch; returns the loss."""
        self.model.train()
        batch = move_to(batch, self.device)
        loss = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} at step {self.step}; lower the learning rate (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}), enable clip_norm, or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return self._optimizer_step(float(loss.detach()))

    def _optimizer_step(self, loss_value: float) -> float:
        """After ``backward``: clip the gradients, set the scheduled learning rate, step, and
        log ``loss_value``, the learning rate and the gradient norm (shared with the
        distributed trainer, whose loss is averaged over processes first)."""
        cfg = self.config
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm if cfg.clip_norm else math.inf)
        lr = cfg.lr * self.lr_factor()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.step += 1
        self.history.steps["loss"].append(loss_value)
        self.history.steps["lr"].append(lr)
        self.history.steps["grad_norm"].append(float(grad_norm))
        return loss_value

    def evaluate(self, stage: str = "valid", *, users: Sequence[int] | None = None,
                 ks: Sequence[int] | None = None) -> dict[str, float]:
        """Full-ranking metrics of the current model (``stage`` "valid" or "test")."""
        if self.split is None:
            raise ValueError("this Trainer has no split to evaluate on; pass split=... when creating it")
        was_training = self.model.training
        self.model.eval()
        try:
            return evaluate(self.score_fn, self.split, stage, ks=ks or self.config.ks, users=users,
                            batch_size=self.config.eval_batch_size, max_len=self.eval_max_len, device=self.device)
        finally:
            self.model.train(was_training)

    def batches(self, epoch: int):
        """The batches of one epoch, in an order that depends only on (seed, epoch)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(self.train_data))
        bs = cfg.batch_size
        chunks = [order[b * bs:(b + 1) * bs] for b in range(self.steps_per_epoch)]
        if cfg.bucket_by_length:
            # sort by length within windows of 50 batches, then shuffle the batches:
            # similar lengths share a batch, yet the order of batches stays random
            lengths = np.array([len(x) for x in self.train_data])
            window = 50 * bs
            sorted_idx = np.concatenate([w[np.argsort(lengths[w], kind="stable")]
                                         for w in np.array_split(order, max(1, math.ceil(len(order) / window)))])
            chunks = [sorted_idx[b * bs:(b + 1) * bs] for b in range(self.steps_per_epoch)]
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        for idx in chunks:
            yield self.collate([self.train_data[i] for i in idx])

    # ------------------------------------------------------------------ the loop
    def fit(self, *, resume: bool = False, stop_after_epoch: int | None = None) -> History:
        """Train until ``config.epochs`` (or early stopping, ``max_steps``, ``time_budget_s``).

        Args:
            resume: continue from ``checkpoint_dir/last`` if it exists (the same losses, the
                same parameters as a run that was never interrupted).
            stop_after_epoch: stop (as an interruption would) after this epoch, keeping the
                schedule of the whole run; a later ``fit(resume=True)`` continues.
        Returns:
            the :class:`History` (also ``trainer.history``).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        if resume:
            if cfg.checkpoint_dir is None:
                raise ValueError("resume=True needs config.checkpoint_dir (where the run saved its checkpoints)")
            last = Path(cfg.checkpoint_dir) / "last"
            if last.exists() or any(last.parent.glob(".last.old-*")):
                self.load_checkpoint(last)
                self._seeded = True
            else:
                log.warning("no checkpoint in %s; starting from scratch", cfg.checkpoint_dir)
        if not self._seeded:
            set_seed(cfg.seed, deterministic=cfg.deterministic)
            self._seeded = True
        if self.history.stop_reason and self.history.stop_reason != "interrupted":
            log.warning("nothing to do: the run already ended (%s)", self.history.stop_reason)
            return self.history
        self.history.stop_reason = ""
        total = self.total_steps if cfg.schedule_unit == "steps" else None
        bar = tqdm(total=total, initial=self.step, disable=not cfg.progress, unit="step",
                   desc=type(self.model).__name__, leave=True, mininterval=1.0)
        start_wall = time.perf_counter() - self.wall_seconds
        try:
            for epoch in range(self.epoch, cfg.epochs):
                losses = []
                stop = ""
                batches = self.batches(epoch)
                while True:
                    t0 = time.perf_counter()
                    batch = next(batches, None)                      # data loading counts as training time
                    if batch is None:
                        break
                    losses.append(self.training_step(batch))
                    seconds_before = self.train_seconds
                    self.train_seconds += time.perf_counter() - t0
                    bar.update(1)
                    if self.step % 20 == 0:
                        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
                    due = bool(cfg.eval_every_steps) and self.step % cfg.eval_every_steps == 0
                    if cfg.eval_every_seconds:       # this step crossed a multiple of eval_every_seconds
                        every = cfg.eval_every_seconds
                        due = due or self.train_seconds // every > seconds_before // every
                    if due and self.split is not None:
                        stop = self._validate(epoch + len(losses) / self.steps_per_epoch) or stop
                    if cfg.max_steps is not None and self.step >= cfg.max_steps:
                        stop = f"max_steps={cfg.max_steps} reached"
                    if cfg.time_budget_s is not None and self.train_seconds >= cfg.time_budget_s:
                        stop = f"time budget of {cfg.time_budget_s:g} s reached"
                    if stop:
                        break
                self.epoch = epoch + 1
                record = {"epoch": self.epoch, "step": self.step,
                          "loss": float(np.mean(losses)) if losses else math.nan,
                          "lr": self.history.steps["lr"][-1] if self.history.steps["lr"] else cfg.lr,
                          "train_s": self.train_seconds}
                last_epoch = self.epoch == cfg.epochs or bool(stop)
                just_evaluated = bool(self.history.evals) and self.history.evals[-1]["step"] == self.step
                if (self.split is not None and cfg.eval_every and (self.epoch % cfg.eval_every == 0 or last_epoch)
                        and not just_evaluated):
                    stop = self._validate(float(self.epoch)) or stop
                if self.history.evals and self.history.evals[-1]["step"] == self.step:
                    record.update({f"valid_{k}": v for k, v in self.history.evals[-1].items()
                                   if k not in ("epoch", "step", "train_s")})
                self.wall_seconds = time.perf_counter() - start_wall
                record["wall_s"] = self.wall_seconds
                self.history.epochs.append(record)
                if cfg.log_every and (self.epoch % cfg.log_every == 0 or last_epoch or stop):
                    line = f"epoch {self.epoch:3d}  loss {record['loss']:.4f}  lr {record['lr']:.2e}"
                    if f"valid_{cfg.metric}" in record:
                        line += f"  valid {cfg.metric} {record[f'valid_{cfg.metric}']:.4f}"
                    bar.write(line + f"  ({self.train_seconds:.0f} s)")
                if stop or self.epoch == cfg.epochs:
                    self.history.stop_reason = stop or f"all {cfg.epochs} epochs done"
                if cfg.checkpoint_dir:
                    self.save_checkpoint(Path(cfg.checkpoint_dir) / "last")
                if stop:
                    break
                if stop_after_epoch is not None and self.epoch >= stop_after_epoch and self.epoch < cfg.epochs:
                    self.history.stop_reason = "interrupted"
                    break
        except KeyboardInterrupt:
            self.history.stop_reason = "interrupted"
            log.warning("interrupted during epoch %d; the last checkpoint is that of epoch %d%s", self.epoch + 1,
                        self.epoch, "; fit(resume=True) continues from it" if cfg.checkpoint_dir else "")
        finally:
            bar.close()
        if self.history.stop_reason not in ("", "interrupted") and cfg.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return self.history

    def _validate(self, epoch: float) -> str:
        """Validate, record in ``history.evals``, keep the best weights; returns a stop reason or ''."""
        cfg = self.config
        metrics = self.evaluate("valid", users=self.eval_users)
        self.history.evals.append({"epoch": epoch, "step": self.step, "train_s": self.train_seconds, **metrics})
        score = metrics[cfg.metric]
        if self.history.best_score is None or score > self.history.best_score + cfg.min_delta:
            self.history.best_score, self.history.best_epoch = score, int(math.ceil(epoch))
            self.history.best_step = self.step
            self._bad_evals = 0
            self._best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            if cfg.checkpoint_dir:
                save_checkpoint(Path(cfg.checkpoint_dir) / "best", self.model,
                                state={"epoch": epoch, "step": self.step, "score": score, "metric": cfg.metric})
            return ""
        self._bad_evals += 1
        if cfg.patience is not None and self._bad_evals >= cfg.patience:
            self.history.stopped_early = True
            return (f"early stopping: no {cfg.metric} gain for {cfg.patience} evaluation(s) "
                    f"(best {self.history.best_score:.4f} at step {self.history.best_step})")
        return ""

    # ------------------------------------------------------------------ checkpoints
    def _collate_state(self) -> dict | None:
        c = self.collate
        if hasattr(c, "state_dict"):
            return c.state_dict()
        if isinstance(getattr(c, "rng", None), np.random.Generator):
            return {"rng": c.rng.bit_generator.state}
        return None

    def _load_collate_state(self, state: dict | None) -> None:
        if state is None:
            return
        c = self.collate
        if hasattr(c, "load_state_dict"):
            c.load_state_dict(state)
        elif isinstance(getattr(c, "rng", None), np.random.Generator):
            c.rng.bit_generator.state = state["rng"]

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Model, optimizer, RNG states, collator state, history and counters → ``path`` (atomic)."""
        np_state = np.random.get_state()
        py_state = random.getstate()
        tensors = {"rng_torch": torch.get_rng_state(),
                   "rng_numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
                   "step_loss": torch.tensor(self.history.steps["loss"], dtype=torch.float64),
                   "step_lr": torch.tensor(self.history.steps["lr"], dtype=torch.float64),
                   "step_grad_norm": torch.tensor(self.history.steps["grad_norm"], dtype=torch.float64)}
        if torch.cuda.is_available() and self.device.type == "cuda":
            tensors["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"epoch": self.epoch, "step": self.step, "train_seconds": self.train_seconds,
                 "wall_seconds": self.wall_seconds, "bad_evals": self._bad_evals,
                 "config": _jsonable(asdict(self.config)), "history": self.history.to_dict(),
                 "rng_numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                 "rng_python": [py_state[0], list(py_state[1]), py_state[2]],
                 "collate": self._collate_state(), "model_class": type(self.model).__name__}
        return save_checkpoint(path, self.model, optimizer=self.optimizer, tensors=tensors, state=state)

    def load_checkpoint(self, path: str | os.PathLike) -> dict[str, Any]:
        """Restore everything :meth:`save_checkpoint` wrote; returns the saved state dict.

        Raises:
            CheckpointError: the checkpoint is corrupt or belongs to another model/config.
        """
        state, tensors = load_checkpoint(path, self.model, optimizer=self.optimizer)
        saved = state.get("config", {})
        for key in ("batch_size", "epochs", "seed", "schedule", "lr"):
            if key in saved and saved[key] != getattr(self.config, key):
                raise CheckpointError(f"checkpoint {path} was made with {key}={saved[key]!r} but this Trainer has "
                                      f"{key}={getattr(self.config, key)!r}; resume with the same config")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.train_seconds, self.wall_seconds = float(state["train_seconds"]), float(state["wall_seconds"])
        self._bad_evals = int(state["bad_evals"])
        h = state["history"]
        self.history = History(epochs=h["epochs"], evals=h["evals"], best_epoch=h["best_epoch"],
                               best_score=h["best_score"], best_step=h["best_step"],
                               stopped_early=h["stopped_early"], stop_reason=h["stop_reason"], metric=h["metric"])
        self.history.steps = {"loss": tensors["step_loss"].tolist(), "lr": tensors["step_lr"].tolist(),
                              "grad_norm": tensors["step_grad_norm"].tolist()}
        torch.set_rng_state(tensors["rng_torch"])
        if "rng_cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng_cuda"], self.device)
        name, pos, has_gauss, gauss = state["rng_numpy"]
        np.random.set_state((name, tensors["rng_numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["rng_python"]
        random.setstate((version, tuple(internal), gauss_next))
        self._load_collate_state(state.get("collate"))
        best = Path(path).parent / "best"
        self._best_state = None
        if self.history.best_epoch is not None and best.exists():
            holder = copy.deepcopy(self.model)
            load_checkpoint(best, holder)
            self._best_state = {k: v.detach().cpu().clone() for k, v in holder.state_dict().items()}
        return state


def _model_max_len(model: torch.nn.Module) -> int | None:
    for obj in (model, getattr(model, "config", None)):
        value = getattr(obj, "max_len", None)
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


__all__ = ["History", "PRECISIONS", "TrainConfig", "Trainer", "bf16_supported"]
