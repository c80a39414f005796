"""GRU4Rec: the recurrent baseline of sequential recommendation.

GRU4Rec (Hidasi et al., ICLR 2016) reads a history one item at a time and keeps a running
summary, the hidden state of a gated recurrent unit (GRU)::

    z_t = σ(W_z x_t + U_z h_{t-1})            update gate: how much to renew
    r_t = σ(W_r x_t + U_r h_{t-1})            reset gate: how much of the past to use
    ĥ_t = tanh(W x_t + U (r_t ⊙ h_{t-1}))     candidate state
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ ĥ_t

The state after item ``t`` scores every item as the next one, through the same item
embeddings the input uses (tied). Trained with full cross-entropy it is a strong baseline
(Klenitskiy & Vasilev 2023 report NDCG@10 0.1648 on ML-1M, above the SASRec paper's BCE).

Same interface as :class:`~course_lib.models.sasrec.SASRec`: ``forward(input_ids) -> (B, T, d)``,
``training_loss(batch)``, ``score(users, histories) -> (B, n_items + 1)`` (the
:class:`course_lib.scoring.Scorer` protocol), ``save_pretrained`` / ``from_pretrained``.

Left padding and a recurrent network: the GRU must not read the padding before a history
(its state would drift through the padding steps, differently for short and long
histories). :meth:`GRU4Rec.forward` therefore right-aligns each row, runs the GRU (the
real items first, padding after them, where its outputs are never used) and moves the
outputs back under their inputs.

Shapes: ``B`` batch, ``T`` sequence length, ``d`` embedding size, ``H`` GRU state size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..data.protocol import PAD
from ..losses import LOSSES, next_item_loss
from ..scoring import ScorerMixin
from ._common import ItemSequenceMixin
from ._pretrained import PretrainedMixin


@dataclass
class GRU4RecConfig:
    """Hyper-parameters of :class:`GRU4Rec`.

    Attributes:
        n_items: items ``1..n_items`` (0 = padding).
        max_len: the longest history read (older items are cut).
        d_model: item embedding size ``d``.
        hidden_size: GRU state size ``H`` (projected back to ``d`` when they differ).
        n_layers: stacked GRU layers.
        dropout: on the input embeddings and on the GRU output.
        loss: ``"ce"``, ``"bce"`` or ``"sampled"`` (see :mod:`course_lib.losses`).
        init_std: standard deviation of the item embeddings at initialisation.
        ce_chunk_size: full cross-entropy in chunks (see :func:`course_lib.losses.full_cross_entropy`).
    """

    n_items: int
    max_len: int = 200
    d_model: int = 64
    hidden_size: int = 128
    n_layers: int = 1
    dropout: float = 0.1
    loss: str = "ce"
    init_std: float = 0.02
    ce_chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def right_align(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each left-padded row's ``length`` real entries to the front.

    Returns ``(aligned, index)`` where ``aligned = x.gather(1, index)``; ``x`` is ``(B, T)``
    or ``(B, T, …)``. :func:`left_align` undoes it.
    """
    B, T = x.shape[:2]
    shift = (T - lengths)[:, None]                                             # (B, 1)
    index = (torch.arange(T, device=x.device)[None, :] + shift) % T            # (B, T)
    return _gather_rows(x, index), index


def left_align(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`right_align`: the first ``length`` entries of each row go to the end."""
    B, T = x.shape[:2]
    shift = (T - lengths)[:, None]
    index = (torch.arange(T, device=x.device)[None, :] - shift) % T
    return _gather_rows(x, index)


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        return x.gather(1, index)
    return x.gather(1, index[..., None].expand(-1, -1, *x.shape[2:]))


class GRU4Rec(ScorerMixin, ItemSequenceMixin, PretrainedMixin, nn.Module):
    """Item embeddings → GRU → (projection) → scores against the same item embeddings."""

    config_class = GRU4RecConfig

    def __init__(self, config: GRU4RecConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.item_emb = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD)   # (V, d)
        self.emb_dropout = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.d_model, c.hidden_size, num_layers=c.n_layers, batch_first=True,
                          dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.proj = nn.Linear(c.hidden_size, c.d_model) if c.hidden_size != c.d_model else nn.Identity()
        self.out_dropout = nn.Dropout(c.dropout)
        nn.init.normal_(self.item_emb.weight, std=c.init_std)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()


    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` left-padded item ids → ``(B, T, d)`` states (position t has read items ≤ t; 0 at padding)."""
        lengths = (input_ids != PAD).sum(dim=1)                                # (B,)
        x, _ = right_align(input_ids, lengths)                                 # (B, T), real items first
        h = self.emb_dropout(self.item_emb(x))                                 # (B, T, d)
        out, _ = self.gru(h)                                                   # (B, T, H)
        out = self.out_dropout(self.proj(out))                                 # (B, T, d)
        out = left_align(out, lengths)                                         # (B, T, d), under the inputs
        return out * (input_ids != PAD).unsqueeze(-1).to(out.dtype)            # padding positions: 0

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss of a :class:`~course_lib.train.SequenceCollator` batch."""
        hidden = self(batch["input_ids"])                                      # (B, T, d)
        return next_item_loss(hidden, batch, self.item_embeddings, self.config.loss,
                              chunk_size=self.config.ce_chunk_size)

    def _scores(self, histories: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` left-padded histories → ``(B, n_items + 1)`` next-item scores (``score`` masks column 0)."""
        x = histories[:, -self.config.max_len:]                                    # (B, T)
        h = self(x)[:, -1]                                                         # (B, d) the last state
        return h @ self.item_embeddings.T                                          # (B, n_items + 1)

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"{n:,} parameters; " + ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


__all__ = ["GRU4Rec", "GRU4RecConfig", "left_align", "right_align"]
