"""Training: the :class:`Trainer` every chapter from 04 on uses, checkpoints, schedules, search.

The API (stable; chapters 04–07 build on it)
============================================

A model plugs in with two methods::

    model.training_loss(batch) -> scalar tensor           # forward + loss of one batch
    model.score(users, histories) -> (B, n_items + 1)      # for validation (course_lib.scoring.Scorer)

(or pass ``loss_fn=lambda model, batch: ...`` / ``score_fn=...`` to the Trainer instead).
Then::

    from course_lib.train import Trainer, TrainConfig, SequenceCollator

    collate = SequenceCollator(split.n_items, max_len=200, loss="ce", seed=0)  # sequences → batch dict
    trainer = Trainer(model, split.train, collate=collate, split=split,
                      config=TrainConfig(epochs=20, batch_size=128, lr=1e-3, warmup=0.05,
                                         schedule="cosine", clip_norm=1.0, precision="bf16",
                                         eval_every=1, patience=3, checkpoint_dir="runs/sasrec"))
    history = trainer.fit()                 # one tqdm bar, one line per epoch
    history.plot()                          # training loss and validation NDCG@10
    trainer.evaluate("test")                # {"HR@10": ..., "NDCG@10": ..., "MRR@10": ...}
    trainer.fit(resume=True)                # after an interruption: the identical continuation

* ``Trainer(model, train_data, *, collate=None, split=None, config=None, loss_fn=None,
  score_fn=None, eval_max_len=None, device=None)``. ``train_data`` is indexable (one example
  per user); ``collate(list of examples)`` makes a batch (any tensor / dict / tuple;
  moved to the device for you). Each epoch visits ``train_data`` in an order that depends
  only on ``(config.seed, epoch)``.
* ``Trainer.fit(resume=False, stop_after_epoch=None) -> History``; ``Trainer.evaluate(stage,
  users=None, ks=None)``; ``Trainer.training_step(batch) -> float``;
  ``Trainer.save_checkpoint(path)`` / ``Trainer.load_checkpoint(path)``; attributes
  ``model``, ``optimizer`` (AdamW), ``schedule`` (:class:`LRSchedule`), ``history``,
  ``step``, ``epoch``, ``device``, ``bf16``, ``total_steps``, ``steps_per_epoch``.
* :class:`TrainConfig` (a dataclass; ``config.replace(lr=...)`` copies): ``epochs``,
  ``batch_size``, ``lr``, ``weight_decay``, ``betas``, ``schedule``, ``warmup``, ``min_lr_ratio``,
  ``clip_norm``, ``precision`` ("fp32" | "bf16" | "auto"), ``max_steps``, ``time_budget_s``,
  ``drop_last``, ``bucket_by_length``, ``eval_every``, ``eval_users``, ``eval_batch_size``, ``ks``, ``metric``,
  ``patience``, ``min_delta``, ``restore_best``, ``seed``, ``deterministic``,
  ``checkpoint_dir``, ``progress``, ``log_every``, ``compile``.
* :class:`History`: ``epochs`` (records with ``epoch``, ``step``, ``loss``, ``lr``,
  ``train_s``, ``wall_s``, ``valid_NDCG@10`` …), ``steps`` (``loss``, ``lr``, ``grad_norm`` per
  step), ``best_epoch``, ``best_score``, ``stopped_early``, ``stop_reason``; ``to_frame()``,
  ``step_frame()``, ``valid_curve(metric, x="epoch"|"train_s")``, ``plot(...)``.
* Checkpoints (:mod:`.checkpoint`): a folder with ``model.safetensors``,
  ``training.safetensors`` (optimizer moments, RNG states) and ``state.json``, written
  atomically and verified by SHA-256 on load (:class:`CheckpointError` otherwise).
  ``checkpoint_dir/last`` after every epoch, ``checkpoint_dir/best`` at each improvement.
  A model alone: ``load_checkpoint(path, model)``.
* Schedules (:mod:`.schedules`): ``LRSchedule(kind, total_steps, warmup_steps, min_ratio)``
  with ``factor(step)`` and ``values(peak_lr)``.
* Batches (:mod:`.batches`): :class:`SequenceCollator` (next-item batches ``input_ids`` /
  ``labels``, plus the negatives of the "bce" and "sampled" losses).
* The fast path (:mod:`.reuse`): ``fit_or_reuse(trainer, key, reuse=REUSE_TRAINED)`` trains and
  saves the run under ``build/trained/key``, or reloads a saved run with the same settings.
* Search (:mod:`.search`): ``grid_search(objective, grid)``, ``random_search(objective,
  space, n_trials)``, ``tpe_search(objective, space, n_trials)`` (optuna) over
  ``Uniform`` / ``LogUniform`` / ``Choice``; each returns a :class:`SearchResult` with
  ``trials``, ``best_params``, ``best_value``, ``best_so_far()``, ``plot()``.
"""

from __future__ import annotations

from .batches import LOSSES, SequenceCollator, move_to
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .reuse import fit_or_reuse, trained_dir
from .schedules import SCHEDULES, LRSchedule, warmup_steps_from
from .search import Choice, LogUniform, SearchResult, Uniform, grid_search, random_search, tpe_search
from .trainer import PRECISIONS, History, TrainConfig, Trainer, bf16_supported

__all__ = [
    "CheckpointError", "Choice", "History", "LOSSES", "LRSchedule", "LogUniform", "PRECISIONS",
    "SCHEDULES", "SearchResult", "SequenceCollator", "TrainConfig", "Trainer", "Uniform",
    "bf16_supported", "fit_or_reuse", "grid_search", "load_checkpoint", "move_to", "random_search",
    "read_checkpoint", "save_checkpoint", "tpe_search", "trained_dir", "warmup_steps_from",
]
