"""Generative retrieval over semantic IDs (TIGER, Rajput et al., NeurIPS 2023), on a GPT-2 decoder.

Instead of scoring all items with a dot product, the model *writes* the next item's
semantic ID (:mod:`course_lib.semantic_ids`) token by token::

    input:  [BOS] a1 a2 a3 a4  b1 b2 b3 b4  …  (each history item as its L + 1 tokens)
    output: next item's   n1 n2 n3 n4      (constrained beam search: only valid IDs)

TIGER uses an encoder–decoder (T5); this file uses a decoder-only ``GPT2LMHeadModel`` trained
like a language model on the whole token stream, so every item of a history is a target in
one forward pass (as SASRec trains on every position). At inference, **constrained beam
search** (``prefix_allowed_tokens_fn`` walking a :class:`~course_lib.semantic_ids.PrefixTrie`)
keeps ``num_beams`` partial IDs and can only ever complete a real item's ID.

Memory: the item table is replaced by ``L`` codebooks of ``K`` tokens plus the suffix tokens,
so the output layer has ``vocab_size`` rows (a few hundred) instead of ``n_items``; a new item
needs no new row, only its codes — which it gets from its text, before anyone buys it.

Shapes: ``B`` users, ``m`` history items kept, ``L + 1`` tokens per item, ``S = 1 + m (L + 1)``
tokens per input, ``V`` token vocabulary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from transformers import GPT2Config, GPT2LMHeadModel

from ..data.protocol import PAD
from ..semantic_ids import BOS_TOKEN, PAD_TOKEN, SemanticIDs

IGNORE = -100


class SemanticIDCollator:
    """Histories (item ids, oldest first) → a GPT-2 batch over their semantic-ID tokens.

    The last ``max_items`` items of each history become ``[BOS] + tokens``, left-padded to
    ``S = 1 + max_items (L + 1)``. ``labels`` are the inputs (the model shifts them) with
    padding and BOS ignored (``-100``); ``position_ids`` count from the first real token.
    """

    def __init__(self, sem: SemanticIDs, max_items: int) -> None:
        self.sem, self.max_items = sem, max_items
        self.length = 1 + max_items * sem.n_tokens_per_item

    def encode(self, histories) -> dict[str, torch.Tensor]:
        """A list of item-id arrays (or a ``(B, W)`` left-padded tensor) → the batch dict."""
        if isinstance(histories, torch.Tensor):
            histories = [row[row != PAD].numpy() for row in histories.cpu()]
        B = len(histories)
        ids = np.full((B, self.length), PAD_TOKEN, dtype=np.int64)
        for b, h in enumerate(histories):
            h = np.asarray(h, dtype=np.int64)[-self.max_items:]
            tok = np.concatenate([[BOS_TOKEN], self.sem.tokens(h).ravel()])      # (1 + len(h)(L+1),)
            ids[b, self.length - len(tok):] = tok
        input_ids = torch.from_numpy(ids)
        attention_mask = (input_ids != PAD_TOKEN).long()
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        labels = input_ids.masked_fill((input_ids == PAD_TOKEN) | (input_ids == BOS_TOKEN), IGNORE)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                "labels": labels}

    def __call__(self, examples) -> dict[str, torch.Tensor]:
        return self.encode(examples)


class TIGER(nn.Module):
    """A GPT-2 decoder that generates semantic IDs; ``score_fn`` gives the evaluator's interface.

    Args:
        sem: the catalogue's :class:`~course_lib.semantic_ids.SemanticIDs`.
        max_items: history items read (``S = 1 + max_items (L + 1)`` tokens).
        d_model, n_layers, n_heads, dropout: the GPT-2 body.
        num_beams: beams of the constrained search (= candidates returned per user; use
            more than the top-k wanted, since seen items are masked afterwards).
    """

    def __init__(self, sem: SemanticIDs, *, max_items: int = 20, d_model: int = 64, n_layers: int = 2,
                 n_heads: int = 2, dropout: float = 0.1, num_beams: int = 20) -> None:
        super().__init__()
        self.sem, self.num_beams = sem, num_beams
        self.collate = SemanticIDCollator(sem, max_items)
        config = GPT2Config(vocab_size=sem.vocab_size, n_positions=self.collate.length + sem.n_tokens_per_item,
                            n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_inner=2 * d_model,
                            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                            bos_token_id=BOS_TOKEN, eos_token_id=PAD_TOKEN, pad_token_id=PAD_TOKEN)
        self.gpt = GPT2LMHeadModel(config)
        self._trie = sem.trie()
        self._item_of = sem.item_of_tokens()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-token cross-entropy over every semantic-ID token of the batch (a scalar)."""
        return self.gpt(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        position_ids=batch["position_ids"], labels=batch["labels"]).loss

    @torch.no_grad()
    def generate(self, histories, num_beams: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Constrained beam search: ``(B, W)`` histories → ``(B, num_beams)`` item ids and their
        beam log-probabilities (best first). Every returned item is a real item (never 0)."""
        num_beams = num_beams or self.num_beams
        batch = self.collate.encode(histories)
        S, n_tok = batch["input_ids"].shape[1], self.sem.n_tokens_per_item
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = self.gpt.generate(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=n_tok, min_new_tokens=n_tok, num_beams=num_beams, num_return_sequences=num_beams,
            do_sample=False, early_stopping=True, length_penalty=0.0, output_scores=True,
            return_dict_in_generate=True, prefix_allowed_tokens_fn=self._trie.prefix_allowed_tokens_fn(S),
            pad_token_id=PAD_TOKEN, eos_token_id=None, bos_token_id=BOS_TOKEN)
        self.train(was_training)
        codes = out.sequences[:, S:].cpu().numpy()                                # (B·beams, L+1)
        items = np.array([self._item_of.get(tuple(int(t) for t in row), 0) for row in codes], dtype=np.int64)
        if (items == 0).any():
            raise RuntimeError("constrained beam search produced a token tuple that is no item's ID; "
                               "this is a bug in the prefix trie or its use")
        B = batch["input_ids"].shape[0]
        return (torch.from_numpy(items).view(B, num_beams),
                out.sequences_scores.detach().float().cpu().view(B, num_beams))

    def score_fn(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """``(B, n_items + 1)`` scores for the evaluator: the beams' items get their beam
        log-probabilities, every other item ``-inf`` (so only ``num_beams`` items are ranked)."""
        items, logp = self.generate(histories)
        scores = torch.full((items.shape[0], self.sem.n_items + 1), -torch.inf)
        # a repeated item (cannot happen with distinct IDs, but be safe) keeps its best beam
        scores.scatter_reduce_(1, items, logp, reduce="amax", include_self=True)
        scores[:, PAD] = -torch.inf
        return scores


def evaluate_generated(model: TIGER, split, stage: str = "test", *, users=None, k: int = 10,
                       max_items: int | None = None, batch_size: int = 64) -> tuple[dict[str, float], pd.DataFrame]:
    """HR@k / NDCG@k of generative retrieval, computed on the **generated list** only.

    For each user: the ``num_beams`` items of the constrained beam search, best beam first;
    the items the user has already seen are removed (the standard masking); the first ``k``
    that remain are the list. The target scores ``1 / log2(rank + 1)`` if it is in that list,
    else 0 — an item the beams did not reach is a miss, never a tie broken in its favour.
    (Scoring all items through :meth:`TIGER.score_fn` and ranking the ``-inf`` rest would let
    ``torch.topk`` fill a list shorter than ``k`` with arbitrary unscored items.)

    Returns the metrics (with ``"list length"``, the mean length of the lists, ``<= k``) and a
    per-user frame (``user``, ``target``, ``rank`` or NaN, ``HR@k``, ``NDCG@k``, ``list length``).
    """
    users = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
    history, targets = split.history(stage), split.targets(stage)
    max_items = max_items or model.collate.max_items
    rows = []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        items, _ = model.generate([history[u][-max_items:] for u in batch])
        for u, beam_items in zip(batch, items.numpy()):
            seen = set(history[u].tolist())
            top = [int(i) for i in beam_items if int(i) not in seen][:k]
            rank = top.index(int(targets[u])) + 1 if int(targets[u]) in top else np.nan
            rows.append({"user": int(u), "target": int(targets[u]), "rank": rank,
                         f"HR@{k}": float(rank == rank), f"NDCG@{k}": 1.0 / np.log2(rank + 1) if rank == rank else 0.0,
                         "list length": len(top)})
    frame = pd.DataFrame(rows)
    metrics = {f"HR@{k}": float(frame[f"HR@{k}"].mean()), f"NDCG@{k}": float(frame[f"NDCG@{k}"].mean()),
               "list length": float(frame["list length"].mean())}
    return metrics, frame


__all__ = ["IGNORE", "SemanticIDCollator", "TIGER", "evaluate_generated"]
