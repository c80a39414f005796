"""A text cross-encoder re-ranker: the source articles' "recommendation as text classification",
done so that it can work.

The articles feed ``BertForSequenceClassification`` strings such as ``"6 106 buy"`` with the
label ``action == "buy"``: the label is in the input (it learns to read the word "buy"), the
numeric IDs mean nothing to a WordPiece vocabulary, ``model(input_ids)`` without labels has no
``loss`` to call ``backward()`` on, and a random 80/20 split lets the future leak into training.
Done right, a **cross-encoder** reads the user's history *as text* and one candidate's text
together, and outputs one relevance score::

    s(u, i) = w · BERT([CLS] title_{t} ; title_{t-1} ; … [SEP] title_i [SEP])_[CLS]

It is far too slow to score a whole catalogue (one transformer pass per pair), so it
**re-ranks** a short list that a cheap model (SASRec) retrieved. Three ways to train it on the
same (history, positive, hard negatives) groups:

* ``"pointwise"``: each pair is a yes/no classification (BCE on one logit) — the articles' framing;
* ``"nsp"``: BERT's next-sentence-prediction head shape — two logits ``[is next, is not]``
  and a 2-class cross-entropy (``BertForSequenceClassification(num_labels=2)``); the
  probability is a softmax over two logits, i.e. a sigmoid of their difference;
* ``"listwise"``: the group is one softmax, the positive must beat its negatives
  (InfoNCE / sampled softmax) — a *ranking* loss, what re-ranking is judged on.

The model is the course's packaged all-MiniLM-L6-v2 (:func:`course_lib.text.minilm_path`),
with a fresh classification head; nothing is downloaded.

Shapes: ``N`` pairs, ``G`` groups of ``C`` candidates (the positive first).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .device import get_device

log = logging.getLogger(__name__)

RERANK_LOSSES = ("pointwise", "nsp", "listwise")


def history_text(titles: Sequence[str], max_items: int = 8, sep: str = " ; ") -> str:
    """A history as text, most recent first (what a truncating tokenizer should keep)."""
    return sep.join(reversed([str(t) for t in titles][-max_items:]))


@dataclass
class CrossEncoder:
    """A MiniLM cross-encoder that scores (history text, candidate text) pairs.

    Args:
        loss: one of ``"pointwise"``, ``"nsp"``, ``"listwise"`` (see the module docstring).
        max_length: tokens per pair (history truncated first).
        model_path: a BERT folder (default: the packaged all-MiniLM-L6-v2).
        device: where to run (default: :func:`course_lib.device.get_device`).
        seed: seeds the new head's initialisation.
    """

    loss: str = "listwise"
    max_length: int = 96
    model_path: str | None = None
    device: str | torch.device | None = None
    seed: int = 0
    model: object = field(init=False, repr=False)
    tokenizer: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if self.loss not in RERANK_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(RERANK_LOSSES)}")
        if self.model_path is None:
            from .text import minilm_path

            self.model_path = str(minilm_path())
        self.device = torch.device(self.device) if self.device is not None else get_device(verbose=False)
        torch.manual_seed(self.seed)
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()          # "newly initialized classifier" is expected here
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                self.model_path, num_labels=2 if self.loss == "nsp" else 1).to(self.device)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)

    def _encode(self, queries: Sequence[str], candidates: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(queries), list(candidates), truncation="only_first", max_length=self.max_length,
                             padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def _logits(self, queries: Sequence[str], candidates: Sequence[str]) -> torch.Tensor:
        """``(N,)`` relevance logits (for ``"nsp"``: is-next minus is-not-next)."""
        out = self.model(**self._encode(queries, candidates)).logits             # (N, 1) or (N, 2)
        return out[:, 0] - out[:, 1] if self.loss == "nsp" else out[:, 0]

    @torch.no_grad()
    def score(self, queries: Sequence[str], candidates: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """``(N,)`` scores of ``N`` (history text, candidate text) pairs (eval mode)."""
        if len(queries) != len(candidates):
            raise ValueError(f"{len(queries)} queries but {len(candidates)} candidates; give one per pair")
        self.model.eval()
        parts = [self._logits(queries[i:i + batch_size], candidates[i:i + batch_size]).float().cpu()
                 for i in range(0, len(queries), batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)

    def group_loss(self, queries: Sequence[str], groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """The training loss of ``G`` groups: ``groups[g][0]`` is query ``g``'s positive, the rest negatives."""
        C = len(groups[0])
        if any(len(g) != C for g in groups) or C < 2:
            raise ValueError("every group needs the same number (>= 2) of candidates, the positive first")
        q = [qq for qq in queries for _ in range(C)]
        c = [cc for g in groups for cc in g]
        enc = self._encode(q, c)
        logits = self.model(**enc).logits                                         # (G C, 1 or 2)
        G = len(groups)
        labels = torch.zeros(G, C, device=self.device)
        labels[:, 0] = 1.0
        if self.loss == "pointwise":
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.ravel())
        if self.loss == "nsp":                                                    # class 0 = "is next"
            return F.cross_entropy(logits, (1 - labels.ravel()).long())
        return F.cross_entropy(logits[:, 0].view(G, C), torch.zeros(G, dtype=torch.long, device=self.device))

    def fit(self, queries: Sequence[str], groups: Sequence[Sequence[str]], *, steps: int, batch_groups: int = 4,
            lr: float = 3e-5, seed: int = 0, time_budget_s: float | None = None) -> list[float]:
        """Fine-tune on ``(query, [positive, negatives...])`` groups with AdamW, ``steps`` steps
        (or until ``time_budget_s`` seconds), linear warm-up over the first 10 %. Returns the losses."""
        rng = np.random.default_rng(seed)
        opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.01)
        warm = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        self.model.train()
        losses, start = [], time.perf_counter()
        for step in range(steps):
            idx = rng.choice(len(queries), size=min(batch_groups, len(queries)), replace=False)
            loss = self.group_loss([queries[i] for i in idx], [groups[i] for i in idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                log.info("cross-encoder: time budget reached after %d steps", step + 1)
                break
        self.model.eval()
        return losses


def rerank(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(B, C)`` candidate items and ``(B, C)`` new scores → ``(B, C)`` items, best first (stable)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def ndcg_of_lists(lists: np.ndarray, targets: np.ndarray, k: int = 10) -> np.ndarray:
    """``(B,)`` NDCG@k of ranked ``(B, C)`` lists with one relevant item each (0 if not in the top k)."""
    hits = lists[:, :k] == np.asarray(targets)[:, None]
    found = hits.any(1)
    out = np.zeros(len(lists))
    out[found] = 1.0 / np.log2(hits[found].argmax(1) + 2.0)
    return out


def tiny_random_bert(folder: str | Path, *, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> str:
    """Save a tiny *random* BERT with MiniLM's tokenizer to ``folder`` and return its path.

    It knows no language; it runs the cross-encoder's code path in seconds (tests, smoke runs).
    """
    from transformers import AutoTokenizer, BertConfig, BertModel

    from .text import minilm_path

    folder = Path(folder)
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers,
                         num_attention_heads=2, intermediate_size=2 * hidden_size,
                         max_position_embeddings=128)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


__all__ = ["CrossEncoder", "RERANK_LOSSES", "history_text", "ndcg_of_lists", "rerank", "tiny_random_bert"]
