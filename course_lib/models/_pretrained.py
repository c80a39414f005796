"""``save_pretrained`` / ``from_pretrained`` for the course's own models (dataclass configs).

The Hugging Face convention, without Hugging Face: a folder with ``config.json`` (the
config dataclass as JSON, plus ``model_type``, the class name) and ``model.safetensors``
(the weights; no pickle, no code). BERT4Rec and GPTRec are ``transformers`` models and
inherit the real ``save_pretrained`` / ``from_pretrained``; SASRec and GRU4Rec get the same
two methods from :class:`PretrainedMixin`, so every neural model saves and loads alike::

    model.save_pretrained("build/sasrec")
    again = SASRec.from_pretrained("build/sasrec")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
T = TypeVar("T", bound="PretrainedMixin")


class PretrainedMixin:
    """Adds ``save_pretrained(dir)`` and ``Class.from_pretrained(dir)`` to an ``nn.Module``
    whose ``config`` is an instance of the dataclass ``config_class``."""

    config_class: type
    config: Any

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created); return it."""
        from safetensors.torch import save_model

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        doc = {"model_type": type(self).__name__, **dataclasses.asdict(self.config)}
        (path / CONFIG_FILE).write_text(json.dumps(doc, indent=1, default=str))
        save_model(self, str(path / WEIGHTS_FILE))  # type: ignore[arg-type]
        log.debug("saved %s to %s", type(self).__name__, path)
        return path

    @classmethod
    def from_pretrained(cls: type[T], directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> T:
        """Rebuild the model saved by :meth:`save_pretrained` (in eval mode, on ``device``).

        Raises:
            FileNotFoundError: no ``config.json`` / ``model.safetensors`` in ``directory``.
            ValueError: the folder holds another model class, or the config does not fit.
        """
        from safetensors.torch import load_model

        path = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} has no {name}; "
                                        f"save the model with model.save_pretrained({str(path)!r})")
        doc = json.loads((path / CONFIG_FILE).read_text())
        kind = doc.pop("model_type", cls.__name__)
        if kind != cls.__name__:
            raise ValueError(f"{path} holds a {kind}, not a {cls.__name__}; load it with {kind}.from_pretrained")
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(doc) - names)
        if unknown:
            raise ValueError(f"{path}/{CONFIG_FILE} has fields {unknown} that {cls.config_class.__name__} "
                             "does not know; it was written by another version of course_lib")
        model = cls(cls.config_class(**doc))  # type: ignore[call-arg]
        load_model(model, str(path / WEIGHTS_FILE), strict=True, device=str(device))  # type: ignore[arg-type]
        return model.to(device).eval()  # type: ignore[attr-defined]


__all__ = ["CONFIG_FILE", "PretrainedMixin", "WEIGHTS_FILE"]
