"""Size names: the course's one naming, and where it meets Hugging Face's.

The course's own configs (:class:`~course_lib.models.sasrec.SASRecConfig`,
:class:`~course_lib.models.gru4rec.GRU4RecConfig`) and the constructors of the two
``transformers`` models (:func:`~course_lib.models.bert4rec.bert4rec_config`,
:func:`~course_lib.models.gpt_rec.gpt_rec_config`) all take sizes as

    ``d_model`` (embedding / hidden size), ``n_heads``, ``n_layers``, ``d_ff`` (feed-forward inner size)

and this module is the one place that maps them to the names ``BertConfig`` and
``GPT2Config`` store (:data:`HF_NAMES`). The Hugging Face spellings (``hidden_size``,
``num_heads``, ``num_layers``, ``intermediate_size``) are still accepted as aliases.
"""

from __future__ import annotations

from typing import Any

#: course name -> (BertConfig name, GPT2Config name)
HF_NAMES: dict[str, tuple[str, str]] = {
    "d_model": ("hidden_size", "n_embd"),
    "n_heads": ("num_attention_heads", "n_head"),
    "n_layers": ("num_hidden_layers", "n_layer"),
    "d_ff": ("intermediate_size", "n_inner"),
}
#: the older keyword spellings of the two constructors -> the course name
ALIASES: dict[str, str] = {"hidden_size": "d_model", "num_heads": "n_heads", "num_layers": "n_layers",
                           "intermediate_size": "d_ff"}


def course_sizes(given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``d_model``, ``n_heads``, ``n_layers``, ``d_ff`` from keyword arguments in either spelling.

    ``given`` maps names (course or alias) to values (``None`` = not given); ``defaults`` the
    course names to their defaults.

    Raises:
        ValueError: one size given under both names, with different values.
    """
    out = dict(defaults)
    seen: dict[str, str] = {}
    for name, value in given.items():
        if value is None:
            continue
        course = ALIASES.get(name, name)
        if course in seen and out[course] != value:
            raise ValueError(f"{course} given twice ({seen[course]}={out[course]}, {name}={value}); "
                             f"use {course} only")
        out[course] = value
        seen[course] = name
    return out


def hf_kwargs(sizes: dict[str, Any], kind: str) -> dict[str, Any]:
    """The course sizes renamed for ``kind`` = ``"bert"`` or ``"gpt2"`` (see :data:`HF_NAMES`)."""
    col = {"bert": 0, "gpt2": 1}[kind]
    return {HF_NAMES[name][col]: value for name, value in sizes.items()}


__all__ = ["ALIASES", "HF_NAMES", "course_sizes", "hf_kwargs"]
