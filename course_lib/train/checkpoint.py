"""Checkpoints: safetensors for tensors, a small JSON for the rest, written atomically.

A checkpoint is a folder::

    last/
      model.safetensors      the model's parameters and buffers (safetensors: no pickle, no code)
      training.safetensors   optimizer moments, RNG states and other tensors of the run
      state.json             format, SHA-256 of both files, optimizer hyper-parameters, epoch,
                             step, history, ... (anything JSON can hold)

**Atomic**: everything is written into a temporary folder next to the target, flushed to
disk, and only then renamed into place. A run killed half-way leaves the previous
checkpoint intact, never a half-written one. **Verified**: loading checks the format and
the SHA-256 of both files before touching the model, and any problem raises
:class:`CheckpointError` saying which file is wrong and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from ..data.core import sha256_file

FORMAT = "course_lib.checkpoint/1"
MODEL_FILE, TRAINING_FILE, STATE_FILE = "model.safetensors", "training.safetensors", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the model."""


_sha256 = sha256_file


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optim.<param>.<key>``) and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`: an ``optimizer.state_dict()``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, slots in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(slots)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    tensors: dict[str, torch.Tensor] | None = None,
                    state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint folder atomically (see the module docstring).

    Args:
        path: the checkpoint folder (replaced if it exists).
        model: its ``state_dict`` goes to ``model.safetensors`` (tied weights are stored once).
        optimizer: its moments go to ``training.safetensors``, its hyper-parameters to JSON.
        tensors: further tensors to keep (e.g. RNG states), by name.
        state: anything JSON can hold (epoch, step, history, config, ...).

    Returns:
        the folder's path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE))
        extra = {f"extra.{k}": v.detach().cpu().contiguous() for k, v in (tensors or {}).items()}
        optim_meta = None
        if optimizer is not None:
            optim_tensors, optim_meta = optimizer_to_flat(optimizer)
            extra.update(optim_tensors)
        save_file(extra, str(tmp / TRAINING_FILE))
        doc = {"format": FORMAT,
               "sha256": {MODEL_FILE: _sha256(tmp / MODEL_FILE), TRAINING_FILE: _sha256(tmp / TRAINING_FILE)},
               "optimizer": optim_meta, "state": state or {}}
        (tmp / STATE_FILE).write_text(json.dumps(doc, indent=1))
        for name in (MODEL_FILE, TRAINING_FILE, STATE_FILE):
            _fsync(tmp / name)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _resolve(path: Path) -> Path:
    if path.is_dir():
        return path
    # Killed between the two renames of save_checkpoint: the previous copy is still there.
    olds = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds:
        warnings.warn(f"{path} is missing but an older copy survived an interrupted save; loading {olds[-1].name}",
                      stacklevel=3)
        return olds[-1]
    raise CheckpointError(f"no checkpoint at {path}; train first (checkpoint_dir=...) or check the path")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Verify a checkpoint and return ``(state.json as a dict, training tensors)``; touches no model.

    Raises:
        CheckpointError: missing files, unknown format, a checksum that does not match
            (a truncated or altered file), or a file safetensors cannot parse.
    """
    path = _resolve(Path(path))
    missing = [n for n in (MODEL_FILE, TRAINING_FILE, STATE_FILE) if not (path / n).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: {', '.join(missing)} missing; "
                              "it was not written by save_checkpoint or was damaged — delete it and train again")
    try:
        doc = json.loads((path / STATE_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path}: {STATE_FILE} is not valid JSON ({err}); the checkpoint "
                              "is corrupt — delete it and resume from another one or train again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise CheckpointError(f"checkpoint {path}: unknown format {found!r}, expected {FORMAT!r}")
    for name in (MODEL_FILE, TRAINING_FILE):
        want = doc.get("sha256", {}).get(name)
        got = _sha256(path / name)
        if want != got:
            raise CheckpointError(f"checkpoint {path}: {name} is corrupt (SHA-256 {got[:12]}… does not match the "
                                  f"recorded {str(want)[:12]}…); it was truncated or changed after saving — "
                                  "delete it and resume from another checkpoint or train again")
    try:
        tensors = load_file(str(path / TRAINING_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: cannot read {TRAINING_FILE} ({err})") from None
    return doc, tensors


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *,
                    optimizer: torch.optim.Optimizer | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load a checkpoint into ``model`` (and ``optimizer``); return ``(state, extra tensors)``.

    ``state`` is the dict given to :func:`save_checkpoint`; ``extra tensors`` its ``tensors``.

    Raises:
        CheckpointError: see :func:`read_checkpoint`; also when the checkpoint's tensors do not
            fit the model (other names or shapes: a checkpoint of another model or config).
    """
    path = _resolve(Path(path))
    doc, tensors = read_checkpoint(path)
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        load_model(model, str(path / MODEL_FILE), strict=True, device=str(device))
    except (RuntimeError, SafetensorError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit this model ({str(err).splitlines()[0][:300]}); "
                              "build the model with the same config as the run that saved it") from None
    if optimizer is not None:
        if doc.get("optimizer") is None:
            raise CheckpointError(f"checkpoint {path} holds no optimizer state; load it with optimizer=None")
        try:
            optimizer.load_state_dict(optimizer_from_flat(tensors, doc["optimizer"]))
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {path}: the optimizer state does not fit ({err})") from None
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return doc["state"], extra


__all__ = ["CheckpointError", "FORMAT", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
