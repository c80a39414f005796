"""A GPT-style next-item model on Hugging Face ``transformers`` (``GPT2LMHeadModel``).

Where BERT4Rec fills in blanks from both sides, a GPT reads left to right (a causal mask)
and learns ``p(next item | items so far)`` at every position of every history: the
language-modelling objective, with items for words. Trained that way, the model can also
*write*: ``generate()`` continues a history item by item, and the continuation is a
recommendation list.

The model *is* a ``transformers.GPT2LMHeadModel`` (``save_pretrained`` / ``from_pretrained``
round trip, safetensors). Item vocabulary (``vocab_size = n_items + 2``)::

    0              padding (pad_token_id)
    1 .. n_items   the items (internal ids of LeaveOneOutSplit)
    n_items + 1    <s>: starts every sequence (bos_token_id) and doubles as eos_token_id,
                   as GPT-2's <|endoftext|> does; it is never recommended.

Shapes: ``B`` batch, ``T`` sequence length (``max_len``), ``H`` hidden size,
``V = n_items + 2``, ``N`` the number of real (non-padding) target positions in a batch.

Positions. Histories are left-padded; the position of a token is counted from the first
real token (``cumsum(attention_mask) - 1``), which is what ``generate()`` does with a
left-padded prompt, so training, scoring and generation agree.

Generation. :class:`BlockSeenItems` is a ``LogitsProcessor``: at every step it sets the
scores of padding, ``<s>``, every item already in the sequence (the prompt and what has
been generated so far) and any extra banned items (e.g. history older than the prompt
window) to ``-inf``. Lists therefore never hold a seen item or a repeat, whatever the
decoding strategy (greedy, beam search, sampling).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList

from ..data.protocol import PAD, pad_sequences
from ..scoring import ScorerMixin
from ._hf import course_sizes, hf_kwargs

Strategy = Literal["greedy", "beam", "sample"]


def gpt_rec_config(n_items: int, *, max_len: int = 200, d_model: int | None = None, n_layers: int | None = None,
                   n_heads: int | None = None, d_ff: int | None = None, dropout: float = 0.1,
                   attn_dropout: float | None = None, attn_implementation: str = "sdpa", hidden_size: int | None = None,
                   num_layers: int | None = None, num_heads: int | None = None, **extra) -> GPT2Config:
    """A small ``GPT2Config`` over an item vocabulary (defaults: SASRec's ML-1M size).

    Sizes take the course's names (``d_model``, ``n_heads``, ``n_layers``, ``d_ff``, default
    ``4 d_model``; :mod:`course_lib.models._hf` maps them to ``GPT2Config``'s and accepts the
    older ``hidden_size``, ``num_heads``, ``num_layers``).
    ``n_positions = max_len``: training windows, scoring inputs and generation prompts plus
    their continuation all fit in ``max_len`` positions. ``attn_dropout``: dropout on the
    attention weights (default: ``dropout``; 0 lets a CPU use the fused attention kernel).
    """
    sizes = course_sizes(dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=d_ff, hidden_size=hidden_size,
                              num_layers=num_layers, num_heads=num_heads),
                         dict(d_model=64, n_layers=2, n_heads=2, d_ff=None))
    if sizes["d_ff"] is None:
        sizes["d_ff"] = 4 * sizes["d_model"]
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if sizes["d_model"] % sizes["n_heads"]:
        raise ValueError(f"d_model ({sizes['d_model']}) must be divisible by n_heads ({sizes['n_heads']})")
    if attn_dropout is not None and not 0.0 <= attn_dropout < 1.0:
        raise ValueError(f"attn_dropout must be in [0, 1) or None, got {attn_dropout}")
    bos = n_items + 1
    return GPT2Config(
        vocab_size=n_items + 2, n_positions=max_len, **hf_kwargs(sizes, "gpt2"),
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout if attn_dropout is None else attn_dropout,
        bos_token_id=bos, eos_token_id=bos, pad_token_id=PAD, n_items=n_items,
        attn_implementation=attn_implementation, **extra,
    )


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` position of each token counted from the first real one (0 on padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


class GPTRec(ScorerMixin, GPT2LMHeadModel):
    """``GPT2LMHeadModel`` over items: next-item loss, scores for the evaluator, ``recommend``."""

    config_class = GPT2Config

    @classmethod
    def for_items(cls, n_items: int, **config_kwargs) -> "GPTRec":
        """A randomly initialised model; keyword arguments go to :func:`gpt_rec_config`."""
        model = cls(gpt_rec_config(n_items, **config_kwargs))
        model.generation_config = GenerationConfig(bos_token_id=model.bos_id, eos_token_id=model.bos_id,
                                                   pad_token_id=PAD)
        return model

    @property
    def n_items(self) -> int:
        return int(self.config.n_items)

    @property
    def bos_id(self) -> int:
        return int(self.config.bos_token_id)

    @property
    def max_len(self) -> int:
        return int(self.config.n_positions)

    @property
    def item_embeddings(self) -> torch.Tensor:
        """``(n_items + 1, H)`` the input (= tied output) embeddings of padding and items."""
        return self.transformer.wte.weight[: self.n_items + 1]

    # ------------------------------------------------------------------ training
    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` left-padded ids → ``(B, T, H)`` causal hidden states."""
        attention_mask = (input_ids != PAD).long()
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=_positions(attention_mask), use_cache=False)
        return out.last_hidden_state

    def next_item_loss(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next item at every real position.

        Args:
            input_ids: ``(B, T)`` ``<s>`` then the history (left-padded).
            labels: ``(B, T)`` the item that follows each input position (0 = no target).
        """
        h = self.hidden(input_ids)                                             # (B, T, H)
        sel = labels != PAD                                                    # (B, T)
        logits = self.lm_head(h[sel])                                          # (N, V)
        return F.cross_entropy(logits, labels[sel])

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss of a batch from :class:`NextItemCollator` (the hook the training loops call)."""
        return self.next_item_loss(batch["input_ids"], batch["labels"])

    # ------------------------------------------------------------------ inference
    def prompt(self, histories: torch.Tensor, room: int = 0) -> torch.Tensor:
        """``<s>`` + history, left-padded to ``max_len - room`` (room: tokens to be generated).

        Histories longer than the window lose their oldest items (and ``<s>``), as in training.
        """
        if room < 0 or room >= self.max_len:
            raise ValueError(f"room must be in [0, max_len={self.max_len}), got {room}")
        histories = histories.to(self.device)
        width = self.max_len - room
        histories = histories.long()
        # Put <s> just before the first real item of each (left-padded) row.
        x = torch.cat([torch.zeros_like(histories[:, :1]), histories], dim=1)  # (B, L + 1); B stays symbolic
        n_real = (histories != PAD).sum(dim=1, keepdim=True)                   # (B, 1)
        first = x.shape[1] - n_real - 1                                       # (B, 1) column of <s>
        x = x.scatter(1, first, self.bos_id)
        x = x[:, -width:]
        if x.shape[1] < width:
            x = F.pad(x, (width - x.shape[1], 0), value=PAD)
        return x

    def _scores(self, histories: torch.Tensor) -> torch.Tensor:
        """Next-item scores: ``(B, L)`` left-padded histories → ``(B, n_items + 1)`` logits
        (:meth:`score`, the :class:`course_lib.scoring.Scorer` method, sets column 0 to ``-inf``)."""
        x = self.prompt(histories)                                             # (B, T)
        h = self.hidden(x)[:, -1]                                              # (B, H)
        return self.lm_head(h)[:, : self.n_items + 1]

    @torch.no_grad()
    def recommend(self, histories: torch.Tensor, k: int = 10, *, strategy: Strategy = "greedy",
                  num_beams: int = 4, temperature: float = 1.0, top_k: int | None = None,
                  banned: Sequence[Sequence[int]] | None = None, seed: int | None = None) -> torch.Tensor:
        """Recommendation lists written by ``generate()``: ``(B, k)`` item ids, no seen item, no repeat.

        Args:
            histories: ``(B, L)`` left-padded histories.
            k: list length (= new tokens generated).
            strategy: ``"greedy"`` (the most likely next item, k times), ``"beam"`` (beam
                search over ``num_beams`` partial lists; returns the most likely whole list),
                ``"sample"`` (draw each next item from the softmax at ``temperature``,
                optionally among the ``top_k`` best).
            banned: per row, further items to block. The whole of ``histories`` is always
                blocked, also the part older than the prompt window.
            seed: seeds torch's generator for ``"sample"``.
        """
        if k < 1 or k >= self.max_len:
            raise ValueError(f"k must be in [1, max_len={self.max_len}), got {k}")
        was_training = self.training
        self.eval()
        x = self.prompt(histories, room=k - 1)                                 # (B, T - k + 1)
        attention_mask = (x != PAD).long()
        options: dict = dict(max_new_tokens=k, min_new_tokens=k, bos_token_id=self.bos_id,
                             eos_token_id=self.bos_id, pad_token_id=PAD, use_cache=True)
        if strategy == "greedy":
            options.update(do_sample=False, num_beams=1)
        elif strategy == "beam":
            options.update(do_sample=False, num_beams=int(num_beams), early_stopping=True, length_penalty=0.0)
        elif strategy == "sample":
            options.update(do_sample=True, num_beams=1, temperature=float(temperature), top_k=top_k or 0, top_p=1.0)
            if seed is not None:
                torch.manual_seed(seed)
        else:
            raise ValueError(f"unknown strategy {strategy!r}; choose 'greedy', 'beam' or 'sample'")
        seen = [row[row != PAD].tolist() for row in histories.cpu()]
        if banned is not None:
            if len(banned) != len(seen):
                raise ValueError(f"banned has {len(banned)} rows but histories has {len(seen)}")
            seen = [list(a) + [int(i) for i in b] for a, b in zip(seen, banned)]
        blocker = BlockSeenItems(self.config.vocab_size, always=(PAD, self.bos_id), banned=seen, device=self.device)
        out = self.generate(input_ids=x, attention_mask=attention_mask,
                            generation_config=GenerationConfig(**options),
                            logits_processor=LogitsProcessorList([blocker]))
        self.train(was_training)
        return out[:, x.shape[1]:]                                             # (B, k) the new tokens


class BlockSeenItems(LogitsProcessor):
    """A ``LogitsProcessor`` that forbids special tokens, items in the sequence so far and banned items.

    At each step ``generate()`` calls it with ``input_ids`` ``(B · beams, t)`` (the prompt and
    the tokens generated so far) and ``scores`` ``(B · beams, V)``; it returns the scores with
    ``-inf`` in the forbidden columns. ``banned`` rows are per *batch* row and are repeated
    for the beams.
    """

    def __init__(self, vocab_size: int, *, always: Sequence[int] = (PAD,),
                 banned: Sequence[Sequence[int]] | None = None, device: torch.device | str = "cpu") -> None:
        self.vocab_size = int(vocab_size)
        self.always = torch.as_tensor(list(always), dtype=torch.long, device=device)
        self.banned_mask = None
        if banned is not None:
            mask = torch.zeros(len(banned), self.vocab_size, dtype=torch.bool)
            for row, items in enumerate(banned):
                items = torch.as_tensor(np.asarray(items, dtype=np.int64))
                if len(items):
                    mask[row, items] = True
            self.banned_mask = mask.to(device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()
        scores.scatter_(1, input_ids, -torch.inf)                               # seen so far (and padding)
        scores[:, self.always.to(scores.device)] = -torch.inf
        if self.banned_mask is not None:
            reps = scores.shape[0] // self.banned_mask.shape[0]
            if reps * self.banned_mask.shape[0] != scores.shape[0]:
                raise ValueError(f"banned has {self.banned_mask.shape[0]} rows, which does not divide the "
                                 f"{scores.shape[0]} rows of scores (batch × beams)")
            mask = self.banned_mask.repeat_interleave(reps, dim=0).to(scores.device)
            scores = scores.masked_fill(mask, -torch.inf)
        return scores


class NextItemCollator:
    """Turn item sequences into next-item batches: ``<s> s_1 … s_{n-1}`` → ``s_1 … s_n``.

    Each sequence gets ``<s>`` in front, is cut to its last ``max_len + 1`` tokens (or a random
    window with ``crop="random"``) and is shifted by one: ``input_ids`` ``(B, T)`` and
    ``labels`` ``(B, T)``, both left-padded with 0 (label 0 = no target).

    With ``trim=True`` the leading columns that are padding in every row are dropped
    (``W <= max_len`` columns): less work, the same loss, because positions are counted
    from each row's first real token. Pair it with ``TrainConfig(bucket_by_length=True)``.
    """

    def __init__(self, n_items: int, max_len: int, *, crop: str = "last", trim: bool = False,
                 seed: int | None = None) -> None:
        if crop not in ("last", "random"):
            raise ValueError(f"crop must be 'last' or 'random', got {crop!r}")
        self.bos, self.max_len, self.crop, self.trim = int(n_items) + 1, int(max_len), crop, bool(trim)
        self.rng = np.random.default_rng(seed)

    def __call__(self, seqs: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        windows = []
        for s in seqs:
            full = np.concatenate([[self.bos], np.asarray(s, dtype=np.int64)])
            if len(full) < 2:
                raise ValueError("a sequence in the batch is empty; drop users without training items")
            width = self.max_len + 1
            if self.crop == "random" and len(full) > width:
                start = int(self.rng.integers(0, len(full) - width + 1))
                full = full[start:start + width]
            windows.append(full[-width:])
        inputs = pad_sequences([w[:-1] for w in windows], self.max_len)       # (B, T)
        labels = pad_sequences([w[1:] for w in windows], self.max_len)
        if self.trim:
            width = max(len(w) - 1 for w in windows)
            inputs, labels = inputs[:, -width:], labels[:, -width:]            # (B, W)
        return {"input_ids": inputs, "labels": labels}


__all__ = ["BlockSeenItems", "GPTRec", "NextItemCollator", "gpt_rec_config"]
