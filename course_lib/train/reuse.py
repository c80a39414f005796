"""The fast path of the long chapters: train once, then reload that run instead of training again.

A chapter's parameters cell has ``REUSE_TRAINED = False``: by default every model is trained
in front of the learner. Each run saves every finished training run under
``build/trained/<key>/`` (a :meth:`Trainer.save_checkpoint` folder: weights, optimizer,
history, counters). With ``REUSE_TRAINED = True`` a later run of the same chapter, at the same
scale and with the same settings, loads those runs instead of training, so a learner who only
wants to read the analysis (or an instructor in front of a room) waits seconds, not minutes::

    trainer = Trainer(model, split.train, collate=collate, split=split, config=config)
    fit_or_reuse(trainer, "04-sasrec-ce", reuse=REUSE_TRAINED)   # instead of trainer.fit()

What is reused is the whole run, not only the weights: the learning curves, the step count and
the seconds of training are the ones that run measured, and the notebook says so. A saved run
made with other settings (another scale, budget, learning rate, architecture) is not loaded:
the key should name what differs between the runs of a chapter, and :func:`fit_or_reuse` also
refuses a run whose configuration or weights do not fit this trainer, and trains instead.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .checkpoint import CheckpointError
from .trainer import History, Trainer, _jsonable

log = logging.getLogger(__name__)

#: where the runs are saved; ``COURSE_TRAINED_DIR`` overrides it
TRAINED_DIR = Path(__file__).resolve().parents[2] / "build" / "trained"


def trained_dir() -> Path:
    return Path(os.environ.get("COURSE_TRAINED_DIR", TRAINED_DIR))


def _fingerprint(trainer: Trainer) -> dict:
    """What must match for a saved run to stand in for this one."""
    from dataclasses import asdict

    config = _jsonable(asdict(trainer.config))
    for volatile in ("progress", "log_every", "checkpoint_dir", "compile"):
        config.pop(volatile, None)
    shapes = {name: list(p.shape) for name, p in trainer.model.state_dict().items()}
    return {"model_class": type(trainer.model).__name__, "config": config, "n_train": len(trainer.train_data),
            "parameters": sum(p.numel() for p in trainer.model.parameters()), "shapes": shapes}


def fit_or_reuse(trainer: Trainer, key: str, *, reuse: bool = False, folder: str | os.PathLike | None = None,
                 verbose: bool = True) -> History:
    """``trainer.fit()``, or, with ``reuse=True``, load the finished run saved under ``key``.

    Args:
        trainer: a :class:`Trainer`, built exactly as for training.
        key: names the run within the course, e.g. ``"04-SASRec-ce-150"``; letters, digits,
            ``-``, ``_`` and ``.``.
        reuse: load a saved run if there is one that fits (else train, and say why).
        folder: where runs are saved (default ``build/trained``, or ``$COURSE_TRAINED_DIR``).
    Returns:
        the run's :class:`History` (also ``trainer.history``); ``trainer.reused`` tells which
        path was taken.
    """
    if not key or any(not (ch.isalnum() or ch in "-_.") for ch in key):
        raise ValueError(f"key {key!r}: use letters, digits, '-', '_' and '.' only")
    path = Path(folder or trained_dir()) / key
    want = _fingerprint(trainer)
    trainer.reused = False
    if reuse:
        why = None
        meta_path = path / "run.json"
        if not meta_path.exists():
            why = f"no saved run at {path}"
        else:
            meta = json.loads(meta_path.read_text())
            if meta.get("fingerprint") != want:
                differs = sorted(k for k in want if meta.get("fingerprint", {}).get(k) != want[k])
                why = f"the saved run {path} was made with other settings ({', '.join(differs)})"
            else:
                try:
                    trainer.load_checkpoint(path / "final")
                except (CheckpointError, RuntimeError, KeyError, OSError) as err:
                    why = f"the saved run {path} cannot be loaded ({type(err).__name__}: {err})"
                else:
                    trainer.reused = True
                    if verbose:
                        print(f"reused the run saved in {path.name} ({meta.get('saved', '?')}): {trainer.step} steps, "
                              f"{trainer.train_seconds:.0f} s of training then; REUSE_TRAINED = False trains it again")
                    return trainer.history
        if verbose:
            print(f"training: {why}")
    history = trainer.fit()
    path.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path / "final")
    (path / "run.json").write_text(json.dumps({"fingerprint": want, "saved": time.strftime("%Y-%m-%d %H:%M")},
                                              indent=1))
    return history


__all__ = ["TRAINED_DIR", "fit_or_reuse", "trained_dir"]
