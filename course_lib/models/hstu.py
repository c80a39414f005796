"""HSTU: Hierarchical Sequential Transduction Units (Zhai et al., "Actions Speak Louder than
Words", ICML 2024), with SASRec's interface so the course's Trainer and evaluator use it as is.

One HSTU layer, from the paper's equations (3)–(5)::

    U, V, Q, K = Split(φ1(f1(X)))                        f1: one linear layer d → H(2 d_v + 2 d_qk), φ1 = SiLU
    A(X) V(X)  = φ2(Q Kᵀ + rab) V / n                    φ2 = SiLU (pointwise, NOT softmax), causal mask
    Y(X)       = f2(Norm(A(X) V(X)) ⊙ U(X))              gating by U, f2: linear H d_v → d
    X ← X + Y                                            (the input is LayerNorm-ed before f1)

What differs from a softmax transformer block (chapter 03):

* **Pointwise aggregated attention.** Each weight ``φ2(q_i·k_j + rab_{i-j})`` is computed on
  its own; the weights of a row are *not* normalised to sum to 1. A user with 200 relevant
  actions gets a larger aggregate than one with 5: the intensity of engagement survives,
  which softmax would normalise away. The ``1/n`` (``n`` = ``max_len``, a constant) only keeps
  the scale bounded.
* **Relative attention bias** ``rab``: one learned number per distance ``i - j`` (the paper
  also buckets time gaps; the course's splits carry timestamps, but this file keeps the
  positional part only, and says so).
* **Gating** ``⊙ U(X)`` replaces the feed-forward network: one HSTU layer has
  ``d · H(2 d_v + 2 d_qk) + H d_v · d`` weights, about half a transformer block's.

Shapes: ``B`` batch, ``T`` positions (``≤ max_len``), ``d`` model size, ``H`` heads, ``d_qk`` and
``d_v`` per-head sizes, ``V = n_items + 1`` rows of the item table.

>>> model = HSTU(HSTUConfig(n_items=3416, max_len=200))
>>> model.score(histories)          # (B, 3417), column 0 = -inf, like SASRec
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..attention import LearnedPositionalEmbedding
from ..data.protocol import PAD
from ..losses import LOSSES, next_item_loss
from ..scoring import ScorerMixin
from ._common import ItemSequenceMixin
from ._pretrained import PretrainedMixin


@dataclass
class HSTUConfig:
    """Hyper-parameters of :class:`HSTU` (the single source of them).

    Attributes:
        n_items: items ``1..n_items`` (0 = padding).
        max_len: ``T`` (also the ``n`` of the ``1/n`` scaling of the attention).
        d_model: ``d``, embedding size.
        n_heads: ``H``.
        d_qk: per-head size of queries and keys (default ``d / H``).
        d_v: per-head size of values and gates (default ``d / H``).
        n_layers: HSTU layers.
        dropout: on the embeddings and the layers' outputs.
        attn_dropout: on the pointwise attention weights.
        relative_bias: learn ``rab`` (``False``: the ablation without it).
        absolute_positions: also add a learned absolute position embedding (the paper's
            ML-1M setting does).
        loss: ``"ce"`` (full cross-entropy, as the course's SASRec), ``"bce"`` or ``"sampled"``.
        init_std: standard deviation of the embeddings' normal initialisation.
        ce_chunk_size: see :func:`course_lib.losses.full_cross_entropy`.
    """

    n_items: int
    max_len: int = 200
    d_model: int = 64
    n_heads: int = 2
    d_qk: int | None = None
    d_v: int | None = None
    n_layers: int = 2
    dropout: float = 0.2
    attn_dropout: float = 0.0
    relative_bias: bool = True
    absolute_positions: bool = True
    loss: str = "ce"
    init_std: float = 0.02
    ce_chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.d_model % self.n_heads and (self.d_qk is None or self.d_v is None):
            raise ValueError(f"d_model ({self.d_model}) is not divisible by n_heads ({self.n_heads}); "
                             "make it divisible or set d_qk and d_v explicitly")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        self.d_qk = self.d_qk or self.d_model // self.n_heads
        self.d_v = self.d_v or self.d_model // self.n_heads


class RelativePositionBias(nn.Module):
    """``rab[i, j] = w[i - j]`` for ``j ≤ i`` (one learned number per causal distance), ``(T, T)``."""

    def __init__(self, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.zeros(max_len))                        # w[0 .. max_len-1]

    def forward(self, T: int) -> torch.Tensor:
        pos = torch.arange(T, device=self.weight.device)
        dist = (pos[:, None] - pos[None, :]).clamp(min=0, max=self.max_len - 1)   # (T, T), 0 above the diagonal
        return self.weight[dist]                                                 # (T, T)


def pointwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                        n: int, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """HSTU's pointwise aggregated attention ``SiLU(q kᵀ + bias) ⊙ mask / n`` applied to ``v``.

    Args:
        q, k: ``(B, H, T, d_qk)``; v: ``(B, H, T, d_v)``.
        mask: ``(B, T, T)`` or ``(T, T)`` booleans, ``True`` where query ``i`` may use key ``j``.
        n: the normaliser (the model's ``max_len``).
        bias: ``(T, T)`` relative attention bias, or ``None``.

    Returns:
        ``(out, weights)``: ``(B, H, T, d_v)`` and the ``(B, H, T, T)`` weights (rows do not sum to 1).
    """
    logits = q @ k.transpose(-1, -2)                                             # (B, H, T, T)
    if bias is not None:
        logits = logits + bias
    m = mask if mask.dim() == 2 else mask[:, None]                               # (T,T) or (B,1,T,T)
    weights = F.silu(logits) * m.to(logits.dtype) / n                            # masked entries exactly 0
    return weights @ v, weights                                                  # (B, H, T, d_v)


class HSTULayer(nn.Module):
    """One HSTU layer: ``X + f2(Norm(φ2(QKᵀ + rab) V / n) ⊙ U)`` with ``U, V, Q, K = φ1(f1(Norm(X)))``."""

    def __init__(self, c: HSTUConfig) -> None:
        super().__init__()
        self.c = c
        H = c.n_heads
        self.norm_in = nn.LayerNorm(c.d_model)
        self.f1 = nn.Linear(c.d_model, H * (2 * c.d_v + 2 * c.d_qk))            # → U, V, Q, K
        self.norm_attn = nn.LayerNorm(H * c.d_v)
        self.f2 = nn.Linear(H * c.d_v, c.d_model)
        self.rab = RelativePositionBias(c.max_len) if c.relative_bias else None
        self.dropout = nn.Dropout(c.dropout)
        self.attn_dropout = nn.Dropout(c.attn_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, *, return_weights: bool = False):
        """``(B, T, d)`` and a ``(B, T, T)`` mask → ``(B, T, d)`` (and the ``(B, H, T, T)`` weights)."""
        c, (B, T, _) = self.c, x.shape
        H = c.n_heads
        uvqk = F.silu(self.f1(self.norm_in(x)))                                  # (B, T, H(2dv+2dqk))
        u, v, q, k = torch.split(uvqk, [H * c.d_v, H * c.d_v, H * c.d_qk, H * c.d_qk], dim=-1)
        q = q.view(B, T, H, c.d_qk).transpose(1, 2)                              # (B, H, T, d_qk)
        k = k.view(B, T, H, c.d_qk).transpose(1, 2)                              # (B, H, T, d_qk)
        v = v.view(B, T, H, c.d_v).transpose(1, 2)                               # (B, H, T, d_v)
        bias = self.rab(T) if self.rab is not None else None                     # (T, T)
        av, w = pointwise_attention(q, k, v, mask, c.max_len, bias)             # (B, H, T, d_v)
        if self.training and c.attn_dropout > 0:
            av = self.attn_dropout(w) @ v
        av = av.transpose(1, 2).reshape(B, T, H * c.d_v)                         # (B, T, H d_v)
        y = self.f2(self.norm_attn(av) * u)                                      # (B, T, d): gated by U
        out = x + self.dropout(y)
        return (out, w) if return_weights else out


class HSTU(ScorerMixin, ItemSequenceMixin, PretrainedMixin, nn.Module):
    """Item (+ position) embeddings → HSTU layers → LayerNorm → tied item scores (SASRec's interface).

    A :class:`course_lib.scoring.Scorer`: ``score(users, histories)`` (or ``score(histories)``);
    saves and loads with ``save_pretrained(dir)`` / ``HSTU.from_pretrained(dir)``.
    """

    config_class = HSTUConfig

    def __init__(self, config: HSTUConfig) -> None:
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD)   # (V, d)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model) if c.absolute_positions else None
        self.emb_dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(HSTULayer(c) for _ in range(c.n_layers))
        self.final_norm = nn.LayerNorm(c.d_model)
        nn.init.normal_(self.item_emb.weight, std=c.init_std)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()


    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, W)`` ids → ``(B, W, d)``; positions count from the right, as in SASRec (trimmed batches agree)."""
        W, T = input_ids.shape[1], self.config.max_len
        x = self.item_emb(input_ids) * math.sqrt(self.config.d_model)            # (B, W, d)
        if self.pos_emb is not None:
            x = x + self.pos_emb.embedding.weight[T - W:]
        x = self.emb_dropout(x)
        return x * (input_ids != PAD).unsqueeze(-1).to(x.dtype)

    def forward(self, input_ids: torch.Tensor, *, return_weights: bool = False):
        """``(B, W)`` left-padded ids (``W ≤ max_len``) → ``(B, W, d)`` hidden states (and per-layer weights)."""
        B, T = input_ids.shape
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}; "
                             "cut histories to their last max_len items first")
        real = input_ids != PAD                                                  # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
        mask = causal & real[:, None, :]                                         # (B, T, T): key real, j ≤ i
        x = self.embed(input_ids)
        weights = []
        for layer in self.layers:
            if return_weights:
                x, w = layer(x, mask, return_weights=True)
                weights.append(w)
            else:
                x = layer(x, mask)
        x = self.final_norm(x)
        return (x, weights) if return_weights else x

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss of a :class:`~course_lib.train.SequenceCollator` batch (``config.loss``)."""
        return next_item_loss(self(batch["input_ids"]), batch, self.item_embeddings, self.config.loss,
                              chunk_size=self.config.ce_chunk_size)

    def _inputs(self, histories: torch.Tensor) -> torch.Tensor:
        x = histories[:, -self.config.max_len:].to(self.item_emb.weight.device)
        if x.shape[1] < self.config.max_len:
            x = F.pad(x, (self.config.max_len - x.shape[1], 0), value=PAD)
        return x

    def _scores(self, histories: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` left-padded histories → ``(B, n_items + 1)`` next-item scores (:class:`ScorerMixin`
        adds the input checks, eval mode, ``no_grad`` and column 0 = -inf)."""
        h = self(self._inputs(histories))[:, -1]                                 # (B, d)
        return h @ self.item_embeddings.T

    def extra_repr(self) -> str:
        return f"{self.num_parameters():,} parameters; " + ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


__all__ = ["HSTU", "HSTUConfig", "HSTULayer", "RelativePositionBias", "pointwise_attention"]
