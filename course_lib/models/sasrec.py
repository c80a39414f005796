"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A user's history ``s_1 … s_t`` is a sentence whose words are items. A causal transformer
reads it, and the output at position ``t`` — which has seen items up to ``t`` and no further —
scores every item as the next one::

    x_t = E[s_t] · √d + P[t]                      item embedding + learned position
    h   = LayerNorm(Block_L(… Block_1(x)))        causal self-attention blocks (course_lib.attention)
    score(i | s_1..s_t) = h_t · E[i]              the same item table scores the output (tied)

Trained on every position at once (inputs ``s_1..s_{n-1}``, targets ``s_2..s_n``), it is one
forward pass per sequence instead of one per prefix. With the **full softmax
cross-entropy** over the catalogue instead of the paper's BCE with one negative, the same
network becomes SASRec+ (Klenitskiy & Vasilev, RecSys 2023), on ML-1M the strongest of the
published transformer recommenders.

Padding: histories are left-padded with item 0. Padding embeds to zero, its positions are
zeroed after the embedding, no query attends to a padding key (``padding_mask``), a query at a
padding position attends to nothing (the blocks return zeros there, never NaN), padding
positions carry no target, and item 0 is never scored (its column is ``-inf``).

Shapes: ``B`` batch, ``T`` sequence length (``max_len``), ``d`` model size, ``H`` heads,
``V = n_items + 1`` rows of the item table, ``N`` positions that have a target.

>>> model = SASRec(SASRecConfig(n_items=3416, max_len=200))          # the ML-1M setting
>>> scores = model.score(users, histories)                           # (B, 3417), column 0 = -inf
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ..attention import LearnedPositionalEmbedding, TransformerBlock, causal_mask, padding_mask
from ..data.protocol import PAD, pad_array
from ..losses import LOSSES, next_item_loss
from ..scoring import ScorerMixin
from ._common import ItemSequenceMixin
from ._pretrained import PretrainedMixin


@dataclass
class SASRecConfig:
    """Hyper-parameters of :class:`SASRec` (the single source of them; saved with checkpoints).

    Attributes:
        n_items: items ``1..n_items`` (0 = padding).
        max_len: ``T``, the longest history read (older items are cut; the papers use 200 on ML-1M).
        d_model: ``d``, embedding and hidden size.
        n_heads: attention heads (``d`` must be divisible by it).
        n_layers: transformer blocks.
        d_ff: inner size of the feed-forward network (default ``d``, as in the SASRec paper).
        dropout: on the embeddings and the residual branches (and the attention weights,
            unless ``attn_dropout`` is set).
        attn_dropout: dropout on the attention weights (default: ``dropout``). On a CPU it
            is costly: a random mask of ``B × H × T × T`` numbers per block.
        activation: ``"gelu"`` or ``"relu"`` (the paper) in the feed-forward network.
        loss: ``"ce"`` (full cross-entropy, SASRec+), ``"bce"`` (the paper) or ``"sampled"``.
        init_std: standard deviation of the normal initialisation of item and position
            embeddings and of the blocks' weight matrices.
        scale_embeddings: multiply item embeddings by ``√d`` before adding positions (the paper).
        fast_attention: use torch's fused attention kernel (``False``: the teaching path).
        targets_only: compute the output layer only at positions that have a target.
        ce_chunk_size: full cross-entropy ``chunk_size`` rows at a time (see
            :func:`course_lib.losses.full_cross_entropy`; ``None``: the plain way).
    """

    n_items: int
    max_len: int = 200
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int | None = None
    dropout: float = 0.2
    attn_dropout: float | None = None
    activation: str = "gelu"
    loss: str = "ce"
    init_std: float = 0.02
    scale_embeddings: bool = True
    fast_attention: bool = True
    targets_only: bool = True
    ce_chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class SASRec(ScorerMixin, ItemSequenceMixin, PretrainedMixin, nn.Module):
    """Item + position embeddings → causal transformer blocks → LayerNorm → tied item scores.

    A :class:`course_lib.scoring.Scorer`: ``score(users, histories)`` (or ``score(histories)``);
    saves and loads with ``save_pretrained(dir)`` / ``SASRec.from_pretrained(dir)``.
    """

    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = c = config
        self.item_emb = nn.Embedding(c.n_items + 1, c.d_model, padding_idx=PAD)     # (V, d)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)             # (T, d)
        self.emb_dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_model, c.n_heads, d_ff=c.d_ff or c.d_model, dropout=c.dropout,
                             norm_first=True, activation=c.activation)
            for _ in range(c.n_layers))
        if c.attn_dropout is not None:
            for block in self.blocks:
                block.attn.dropout = c.attn_dropout                           # the attention weights' dropout
        self.final_norm = nn.LayerNorm(c.d_model)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ forward
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(B, W)`` ids → ``(B, W, d)`` item + position embeddings (zero at padding).

        Positions count from the right: the last column is always position ``max_len - 1``,
        so a batch trimmed to its longest history (``W < max_len`` columns, all of the cut
        ones padding) gets exactly the embeddings it would get at full width.
        """
        W, T = input_ids.shape[1], self.config.max_len
        x = self.item_emb(input_ids)                                           # (B, W, d)
        if self.config.scale_embeddings:
            x = x * math.sqrt(self.config.d_model)
        x = x + self.pos_emb.embedding.weight[T - W:]                          # (B, W, d) + (W, d)
        x = self.emb_dropout(x)
        return x * (input_ids != PAD).unsqueeze(-1).to(x.dtype)                # padding positions = 0

    def forward(self, input_ids: torch.Tensor, *, return_weights: bool = False):
        """``(B, W)`` left-padded item ids (``W ≤ max_len``) → ``(B, W, d)`` hidden states.

        With ``return_weights=True`` also the attention weights of every block, a list of
        ``n_layers`` tensors ``(B, H, T, T)`` (the teaching path computes them).
        """
        B, T = input_ids.shape
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}; "
                             "cut histories to their last max_len items first")
        mask = causal_mask(T, device=input_ids.device) & padding_mask(input_ids)   # (B, T, T)
        x = self.embed(input_ids)                                              # (B, T, d)
        weights = []
        for block in self.blocks:
            if return_weights:
                x, w = block(x, mask, return_weights=True, fast=False)        # w: (B, H, T, T)
                weights.append(w)
            else:
                x = block(x, mask, fast=self.config.fast_attention)            # (B, T, d)
        x = self.final_norm(x)                                                 # (B, T, d)
        return (x, weights) if return_weights else x

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss of a :class:`~course_lib.train.SequenceCollator` batch (``config.loss``)."""
        hidden = self(batch["input_ids"])                                      # (B, T, d)
        return next_item_loss(hidden, batch, self.item_embeddings, self.config.loss,
                              targets_only=self.config.targets_only, chunk_size=self.config.ce_chunk_size)

    # ------------------------------------------------------------------ inference
    def _inputs(self, histories: torch.Tensor) -> torch.Tensor:
        """Last ``max_len`` items, left-padded to exactly ``max_len`` (positions as in training)."""
        x = histories[:, -self.config.max_len:].to(self.item_emb.weight.device)   # (B, ≤T)
        if x.shape[1] < self.config.max_len:
            x = nn.functional.pad(x, (self.config.max_len - x.shape[1], 0), value=PAD)   # (B, T)
        return x

    def _scores(self, histories: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` left-padded histories → ``(B, n_items + 1)`` next-item scores (``score`` masks column 0)."""
        h = self(self._inputs(histories))[:, -1]                               # (B, d): after the last item
        return h @ self.item_embeddings.T                                      # (B, V)

    # ------------------------------------------------------------------ fast inference
    def user_vector(self, histories: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` left-padded histories → ``(B, d)`` user vectors: ``score = user_vector @ item_embeddings.T``.

        The same numbers as ``self(self._inputs(histories))[:, -1]`` (to float rounding),
        computed by :meth:`encode_last`; :mod:`course_lib.infer` (the cache, retrieval, the
        service) uses it.
        """
        return self.encode_last(histories)

    def encode_last(self, histories: torch.Tensor | Sequence[Sequence[int]], *, layout: str = "right",
                    batch_tokens: int = 32_768) -> torch.Tensor:
        """The hidden state after each history's last item, ``(B, d)``, without the work nobody reads.

        ``score`` runs every history through the blocks at ``max_len`` positions and keeps
        one. Three savings, each exact (the same function; only float rounding differs,
        measured in ``benchmarks/bench_inference.py`` and tested in ``tests/test_sasrec.py``):

        1. **Length buckets**: histories are sorted by length and cut into batches of about
           ``batch_tokens`` positions, each as wide as its longest history, not ``max_len``
           (positions still count from the right, as in training, so the embeddings agree).
        2. **Last position only in the final block**: its keys and values need every
           position, but only the last position's query, attention, feed-forward and norm
           are computed: the only output that is scored.
        3. ``layout="right"``: each batch is padded on the *right*, so a real position never
           has padding before it; the earlier blocks need no padding mask and call the fused
           kernel with ``is_causal=True``, and the final block's one query per row reads its
           own history's keys. ``layout="left"`` keeps the left padding of ``score`` with a
           causal-and-padding mask (the ladder's step before).

        Args:
            histories: ``(B, L)`` left-padded internal ids (as ``score`` takes), or ``B``
                sequences of ids (oldest first); only the last ``max_len`` items are read.
            layout: ``"right"`` (default, fastest) or ``"left"``.
            batch_tokens: positions per forward pass (rows × width).

        In training mode (dropout) this is the plain ``forward``, unchanged.
        """
        if layout not in ("left", "right"):
            raise ValueError(f"layout must be 'left' or 'right', got {layout!r}")
        T = self.config.max_len
        ids, lengths = _right_aligned(histories, T)                          # (B, W) left-padded, (B,)
        ids = ids.to(self.item_emb.weight.device)
        if self.training or not all(b.norm_first for b in self.blocks):
            return self(self._inputs(ids))[:, -1]
        B = len(ids)
        out = torch.empty((B, self.config.d_model), dtype=self.item_emb.weight.dtype, device=ids.device)
        order = torch.argsort(lengths, stable=True)
        sorted_len = lengths[order].tolist()
        start = 0
        with torch.inference_mode(torch.is_inference_mode_enabled() or not torch.is_grad_enabled()):
            while start < B:
                width = max(1, sorted_len[start])
                stop = start + 1
                while stop < B and (stop - start + 1) * max(1, sorted_len[stop]) <= batch_tokens:
                    stop += 1
                width = max(1, sorted_len[stop - 1])
                rows = order[start:stop]
                if sorted_len[stop - 1] == 0:                                 # empty histories: the plain path
                    out[rows] = self(ids[rows][:, -1:])[:, -1]
                else:
                    out[rows] = self._encode_last_batch(ids[rows][:, -width:], lengths[rows].to(ids.device), layout)
                start = stop
        return out

    def _encode_last_batch(self, ids: torch.Tensor, n: torch.Tensor, layout: str) -> torch.Tensor:
        """``(B, W)`` left-padded ids with ``n`` real items each (all ``n ≥ 1``) → ``(B, d)``."""
        c = self.config
        B, W = ids.shape
        T, H, D = c.max_len, c.n_heads, c.d_model // c.n_heads
        cols = torch.arange(W, device=ids.device)
        if layout == "right":
            # row b's items move to columns 0..n_b-1; column j holds position T - n_b + j
            src = (cols[None, :] + (W - n)[:, None]).clamp_max(W - 1)         # (B, W)
            ids = ids.gather(1, src)
            real = cols[None, :] < n[:, None]                                  # (B, W)
            ids = ids.masked_fill(~real, PAD)
            pos = (cols[None, :] + (T - n)[:, None]).clamp_max(T - 1)          # (B, W)
            last = n - 1                                                       # (B,)
            mask = None                                                        # is_causal instead
        else:
            real = ids != PAD
            pos = (cols + T - W).expand(B, W)
            last = torch.full((B,), W - 1, device=ids.device)
            # causal and padding; a padding query (it has no key) may read every key: its
            # output is never read by a real position, and a fully masked row would be NaN
            mask = (torch.ones(W, W, dtype=torch.bool, device=ids.device).tril() & real[:, None, :]
                    | ~real[:, :, None])[:, None]                              # (B, 1, W, W)
        x = self.item_emb(ids)
        if c.scale_embeddings:
            x = x * math.sqrt(c.d_model)
        x = (x + self.pos_emb.embedding.weight[pos]) * real.unsqueeze(-1).to(x.dtype)   # (B, W, d)
        for block in self.blocks[:-1]:
            a = block.attn
            h = block.ln1(x)
            qkv = nn.functional.linear(h, torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
                                       _cat_bias(a.q_proj, a.k_proj, a.v_proj))
            q, k, v = qkv.view(B, W, 3, H, D).permute(2, 0, 3, 1, 4)           # 3 × (B, H, W, D)
            y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
            x = x + a.out_proj(y.transpose(1, 2).reshape(B, W, c.d_model))
            x = x + block.ffn(block.ln2(x))
        block = self.blocks[-1]
        a = block.attn
        h = block.ln1(x)                                                       # (B, W, d)
        kv = nn.functional.linear(h, torch.cat([a.k_proj.weight, a.v_proj.weight]), _cat_bias(a.k_proj, a.v_proj))
        k, v = kv.view(B, W, 2, H, D).permute(2, 0, 3, 1, 4)                   # 2 × (B, H, W, D)
        rows = torch.arange(B, device=ids.device)
        x_last = x[rows, last]                                                 # (B, d)
        q = a.q_proj(h[rows, last]).view(B, H, 1, D)                           # one query per row
        keys = real[:, None, None, :]                                          # (B, 1, 1, W): its own items
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys)   # (B, H, 1, D)
        x_last = x_last + a.out_proj(y.reshape(B, c.d_model))
        x_last = x_last + block.ffn(block.ln2(x_last))
        return self.final_norm(x_last)                                         # (B, d)

    @torch.no_grad()
    def attention_maps(self, histories: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block for ``(B, L)`` histories: ``n_layers`` × ``(B, H, T, T)``."""
        was_training = self.training
        self.eval()
        _, weights = self(self._inputs(histories), return_weights=True)
        self.train(was_training)
        return weights

    def extra_repr(self) -> str:
        return f"{self.num_parameters():,} parameters; " + ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


def _cat_bias(*linears: nn.Linear) -> torch.Tensor | None:
    if any(lin.bias is None for lin in linears):
        return None
    return torch.cat([lin.bias for lin in linears])


def _right_aligned(histories: torch.Tensor | Sequence[Sequence[int]],
                   max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, W)`` left-padded ids (the last ``max_len`` items; ``W ≤ max_len``) and each row's length.

    A row's length counts from its first real item to the end (left padding only).
    """
    if isinstance(histories, torch.Tensor):
        if histories.dim() != 2:
            raise ValueError(f"histories must be (B, L), got shape {tuple(histories.shape)}")
        ids = histories[:, -max_len:].long()
        real = ids != PAD
        W = ids.shape[1]
        first = torch.where(real.any(dim=1), real.int().argmax(dim=1), torch.full_like(real[:, 0], W, dtype=torch.long))
        return ids, (W - first).cpu()
    seqs = [np.asarray(s, dtype=np.int64)[-max_len:] for s in histories]
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    return torch.from_numpy(pad_array(seqs, max(1, int(lengths.max()) if len(seqs) else 1))), lengths


__all__ = ["SASRec", "SASRecConfig"]
