"""What the course's sequential models (SASRec, GRU4Rec, HSTU) share besides the scoring
contract: sizes read from ``config`` and the tied item table ``item_emb``."""

from __future__ import annotations

from typing import Any

import torch


class ItemSequenceMixin:
    """``max_len``, ``n_items``, ``item_embeddings`` and ``num_parameters()`` for an
    ``nn.Module`` with a ``config`` (``n_items``, ``max_len``) and an ``item_emb`` table."""

    config: Any
    item_emb: Any

    @property
    def max_len(self) -> int:
        return self.config.max_len

    @property
    def n_items(self) -> int:
        return self.config.n_items

    @property
    def item_embeddings(self) -> torch.Tensor:
        """``(n_items + 1, d)`` the item table (row 0 = padding), input and output."""
        return self.item_emb.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]


__all__ = ["ItemSequenceMixin"]
