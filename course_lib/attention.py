"""Attention blocks: the teaching path and the fused path, side by side.

The pieces chapter 03 derives and chapter 04's SASRec is built from::

    scaled_dot_product_attention(q, k, v, mask)   softmax(q kᵀ / √d) v, NaN-safe, returns the weights
    causal_mask(T), padding_mask(item_ids)        boolean masks, True = "may attend"
    sinusoidal_positions(T, d)                    fixed positional encodings (Vaswani et al., 2017)
    LearnedPositionalEmbedding(max_len, d)        one trained vector per position (BERT, SASRec)
    MultiHeadAttention(d_model, n_heads)          H heads of attention + projections
    TransformerBlock(d_model, n_heads)            attention + feed-forward, residuals, LayerNorm

**Mask convention** (the same as ``torch.nn.functional.scaled_dot_product_attention``): a
boolean tensor, ``True`` where a query may attend to a key, broadcastable to the scores'
shape ``(..., T_q, T_k)``. (``torch.nn.MultiheadAttention`` uses the *opposite* convention:
``True`` = blocked. Convert with ``~mask``.) ``MultiHeadAttention`` and ``TransformerBlock``
take masks of shape ``(T, T)``, ``(B, T, T)`` (a head axis is inserted) or ``(B, H, T, T)``;
``causal_mask(T) & padding_mask(ids)`` gives the usual ``(B, T, T)`` mask of a batch of
left-padded histories.

**Fully masked rows.** A query with no key to attend to (a padding position under a causal
mask) would give ``softmax([-inf, ..., -inf]) = NaN``. Both paths here return zeros for such
a row — zero output, zero weights, zero (finite) gradient — instead.

**Two paths.** The teaching path writes out ``scores → mask → softmax → dropout → weights @ v``
and can return the weights (for heat maps). The fast path calls torch's fused kernel
(``torch.nn.functional.scaled_dot_product_attention``), which never materialises the weights
on the GPU's flash/memory-efficient kernels. Tests check the two agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .data.protocol import PAD

__all__ = [
    "FeedForward",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
    "causal_mask",
    "padding_mask",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
]


# --------------------------------------------------------------------------- masks


def causal_mask(T: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Lower-triangular ``(T, T)`` boolean mask: query ``i`` may attend to keys ``j <= i``.

    >>> causal_mask(3).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"causal_mask needs a positive integer length T, got {T!r}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


def padding_mask(item_ids: torch.Tensor, pad_id: int = PAD) -> torch.Tensor:
    """Key-padding mask of a batch of histories: ``(B, T)`` ids → ``(B, 1, T)`` booleans.

    ``True`` where the key is a real item (``item_ids != pad_id``). The middle axis of size 1
    broadcasts over queries, so the result combines with :func:`causal_mask`::

        mask = causal_mask(T) & padding_mask(ids)    # (T, T) & (B, 1, T) -> (B, T, T)

    For the 4-D ``(B, H, T_q, T_k)`` scores of a raw :func:`scaled_dot_product_attention` call,
    add the head axis yourself: ``mask[:, None]``.
    """
    if not isinstance(item_ids, torch.Tensor) or item_ids.dim() != 2:
        shape = tuple(item_ids.shape) if isinstance(item_ids, torch.Tensor) else type(item_ids).__name__
        raise ValueError(f"padding_mask expects a (B, T) tensor of item ids, got {shape}")
    if item_ids.is_floating_point():
        raise TypeError("padding_mask expects integer item ids (torch.long), got a float tensor")
    return (item_ids != pad_id).unsqueeze(1)  # (B, 1, T)


# --------------------------------------------------------------------------- attention


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., T, d); got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}; call .float()")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share their last dimension d_k: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys T_k: k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[:-2] != v.shape[:-2]:
        raise ValueError(f"k and v must share their leading (batch, head) dimensions: k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    try:
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading dimensions of q {tuple(q.shape)} and k {tuple(k.shape)} "
                         "do not broadcast") from None
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"mask must be a boolean tensor (True = may attend), got {got}; "
                            "convert a 0/1 mask with mask.bool(), and an additive -inf mask with mask == 0")
        scores_shape = torch.Size((*lead, q.shape[-2], k.shape[-2]))
        try:
            ok = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                             f"{tuple(scores_shape)} (..., T_q, T_k); a (B, T) padding mask needs "
                             "padding_mask(ids) for (B, T, T) scores and padding_mask(ids)[:, None] for (B, H, T, T)")


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    *,
    scale: float | None = None,
    fast: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax(q kᵀ · scale + mask) v`` — attention, with a NaN-safe mask.

    Args:
        q: queries ``(..., T_q, d_k)``.
        k: keys ``(..., T_k, d_k)``.
        v: values ``(..., T_k, d_v)``.
        mask: boolean, broadcastable to ``(..., T_q, T_k)``; ``True`` = may attend.
        dropout_p: probability of zeroing an attention weight (always applied when > 0; pass
            0.0 in evaluation, as modules do with ``self.training``).
        scale: multiplies the scores; default ``1/√d_k``.
        fast: call torch's fused ``scaled_dot_product_attention`` (weights are not returned).

    Returns:
        ``(out, weights)``: ``out`` is ``(..., T_q, d_v)``; ``weights`` is ``(..., T_q, T_k)``
        (each row sums to 1, or is all zeros when the mask leaves the query no key), or
        ``None`` on the fast path.

    Raises:
        TypeError: a non-tensor, non-float input or a non-boolean mask.
        ValueError: shapes that do not fit together.
    """
    _check_qkv(q, k, v, mask)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    d_k = q.shape[-1]
    scale = 1.0 / math.sqrt(d_k) if scale is None else float(scale)
    has_key = None if mask is None else mask.any(dim=-1, keepdim=True)  # (..., T_q, 1): row has a key

    if fast:
        # A fully masked row would make the fused kernel compute softmax over nothing; let such
        # rows attend everywhere (harmless), then zero them: output 0, gradient 0, never NaN.
        safe = None if mask is None else mask | ~has_key
        # (B, T, d) inputs get a head axis: torch's CPU flash kernel takes 4-D inputs only and
        # would otherwise fall back to the math kernel, which stores the (T, T) weights.
        add_head = q.dim() == 3 and k.dim() == 3
        if add_head:
            q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)             # (B, 1, T, d)
            if safe is not None and safe.dim() == 3:
                safe = safe.unsqueeze(1)                                       # (B, 1, T_q, T_k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, dropout_p=dropout_p, scale=scale)
        if add_head:
            out = out.squeeze(1)
        if mask is not None:
            out = out.masked_fill(~has_key, 0.0)
        return out, None

    scores = (q @ k.transpose(-2, -1)) * scale                     # (..., T_q, d) x (..., d, T_k) -> (..., T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))           # blocked keys get weight exp(-inf) = 0
        scores = scores.masked_fill(~has_key, 0.0)                  # all -inf row -> 0 row: no NaN in softmax
    weights = torch.softmax(scores, dim=-1)                         # (..., T_q, T_k), rows sum to 1
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)                   # fully masked rows become all zeros
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    # (..., T_q, T_k) x (..., T_k, d_v) -> (..., T_q, d_v)
    out = weights @ v
    return out, weights


# --------------------------------------------------------------------------- positions


def sinusoidal_positions(T: int, d: int, *, base: float = 10000.0) -> torch.Tensor:
    """Fixed positional encodings, ``(T, d)`` (Vaswani et al., 2017, section 3.5).

    ``P[t, 2i] = sin(t / base^(2i/d))`` and ``P[t, 2i+1] = cos(t / base^(2i/d))``: each pair of
    columns is a clock of its own frequency, so ``P[t + Δ]`` is a rotation of ``P[t]``.
    Positions ``t`` run from 0. An odd ``d`` keeps the last column's sine.
    """
    if not isinstance(T, int) or T < 1 or not isinstance(d, int) or d < 1:
        raise ValueError(f"sinusoidal_positions needs positive integers T and d, got T={T!r}, d={d!r}")
    t = torch.arange(T, dtype=torch.float64).unsqueeze(1)                          # (T, 1)
    freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)               # (ceil(d/2),)
    angle = t * freq                                                               # (T, ceil(d/2))
    P = torch.zeros(T, d, dtype=torch.float64)
    P[:, 0::2] = torch.sin(angle)
    P[:, 1::2] = torch.cos(angle[:, : d // 2])
    return P.float()                                                               # (T, d)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds :func:`sinusoidal_positions` to ``(B, T, d)`` inputs (no parameters)."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("P", sinusoidal_positions(max_len, d_model), persistent=False)  # (max_len, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = _check_positions(x, self.max_len, self.P.shape[1])
        return x + self.P[:T].to(x.dtype)                                          # (B, T, d)


class LearnedPositionalEmbedding(nn.Module):
    """One trained vector per position (BERT, GPT-2, SASRec): adds ``E[t]`` to ``x[:, t]``.

    ``forward(x)``: ``(B, T, d)`` → ``(B, T, d)``, for ``T <= max_len``. Unlike sinusoids it
    cannot extrapolate to positions it never saw in training.
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = _check_positions(x, self.max_len, self.embedding.embedding_dim)
        pos = torch.arange(T, device=x.device)                                     # (T,)
        return x + self.embedding(pos)                                             # (B, T, d) + (T, d)


def _check_positions(x: torch.Tensor, max_len: int, d: int) -> int:
    if x.dim() != 3 or x.shape[-1] != d:
        raise ValueError(f"expected input of shape (B, T, {d}), got {tuple(x.shape)}")
    T = x.shape[1]
    if T > max_len:
        raise ValueError(f"sequence length {T} exceeds max_len={max_len}; build the encoding with a larger max_len")
    return T


# --------------------------------------------------------------------------- modules


def _head_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """(T, T) stays; (B, T, T) -> (B, 1, T, T); (B, H, T, T) stays."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got {got}; convert with mask.bool()")
    if mask.dim() == 3:
        return mask.unsqueeze(1)                                                   # (B, 1, T, T)
    if mask.dim() in (2, 4):
        return mask
    raise ValueError(f"mask must have shape (T, T), (B, T, T) or (B, H, T, T); got {tuple(mask.shape)}")


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention: H heads of :func:`scaled_dot_product_attention` in parallel.

    Each head projects ``x`` to its own ``d_head = d_model / n_heads``-dimensional queries,
    keys and values, attends, and the heads' outputs are concatenated and projected back.

    ``forward(x, mask=None, return_weights=False, fast=None)``: ``x`` is ``(B, T, d_model)``;
    ``mask`` is boolean (True = may attend), ``(T, T)``, ``(B, T, T)`` or ``(B, H, T, T)``.
    ``fast=None`` uses the fused kernel unless weights are asked for. Returns ``(B, T, d_model)``,
    or ``(out, weights)`` with ``weights`` of shape ``(B, H, T, T)`` when ``return_weights``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                             "pick n_heads that divides d_model")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_weights: bool = False,
                fast: bool | None = None):
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"MultiHeadAttention expects x of shape (B, T, {self.d_model}), got {tuple(x.shape)}")
        if fast is None:
            fast = not return_weights
        if fast and return_weights:
            raise ValueError("the fused path does not compute the attention weights; "
                             "use fast=False (or fast=None) with return_weights=True")
        B, T, C = x.shape
        H, D = self.n_heads, self.d_head
        q = self.q_proj(x).view(B, T, H, D).transpose(1, 2)                        # (B, H, T, D)
        k = self.k_proj(x).view(B, T, H, D).transpose(1, 2)                        # (B, H, T, D)
        v = self.v_proj(x).view(B, T, H, D).transpose(1, 2)                        # (B, H, T, D)
        p = self.dropout if self.training else 0.0
        y, weights = scaled_dot_product_attention(q, k, v, _head_mask(mask), dropout_p=p, fast=fast)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                           # (B, T, H*D): heads side by side
        y = self.out_proj(y)                                                       # (B, T, C)
        return (y, weights) if return_weights else y

    @torch.no_grad()
    def load_torch_weights(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``torch.nn.MultiheadAttention`` of the same size (to compare)."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads or not mha._qkv_same_embed_dim:
            raise ValueError("the torch module must have the same embed_dim and num_heads, "
                             "with kdim = vdim = embed_dim")
        for proj, w in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_weight.chunk(3)):
            proj.weight.copy_(w)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None and self.q_proj.bias is not None:
            for proj, b in zip((self.q_proj, self.k_proj, self.v_proj), mha.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self


_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class FeedForward(nn.Module):
    """Position-wise feed-forward: ``Linear(d, d_ff) → activation → dropout → Linear(d_ff, d)``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of: {', '.join(_ACTIVATIONS)}")
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = _ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, d) -> (B, T, d_ff) -> (B, T, d)
        return self.fc2(self.drop(self.act(self.fc1(x))))


class TransformerBlock(nn.Module):
    """One transformer layer: self-attention and a feed-forward network, each with a residual.

    Pre-norm (``norm_first=True``, GPT-2, SASRec implementations, stable without warm-up)::

        x = x + dropout(attn(ln1(x)))
        x = x + dropout(ffn(ln2(x)))

    Post-norm (``norm_first=False``, the original transformer and BERT)::

        x = ln1(x + dropout(attn(x)))
        x = ln2(x + dropout(ffn(x)))

    ``forward(x, mask=None, return_weights=False, fast=None)``: ``(B, T, d_model)`` →
    ``(B, T, d_model)`` (and the ``(B, H, T, T)`` weights when asked). Same mask convention as
    :class:`MultiHeadAttention`.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, activation: str = "gelu", eps: float = 1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.ln1 = nn.LayerNorm(d_model, eps=eps)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.drop1 = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d_model, eps=eps)
        self.ffn = FeedForward(d_model, d_ff or 4 * d_model, dropout=dropout, activation=activation)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_weights: bool = False,
                fast: bool | None = None):
        weights = None
        if self.norm_first:
            a = self.attn(self.ln1(x), mask, return_weights=return_weights, fast=fast)
            a, weights = a if return_weights else (a, None)
            x = x + self.drop1(a)                                                  # (B, T, d)
            x = x + self.drop2(self.ffn(self.ln2(x)))                              # (B, T, d)
        else:
            a = self.attn(x, mask, return_weights=return_weights, fast=fast)
            a, weights = a if return_weights else (a, None)
            x = self.ln1(x + self.drop1(a))
            x = self.ln2(x + self.drop2(self.ffn(x)))
        return (x, weights) if return_weights else x

    @torch.no_grad()
    def load_torch_weights(self, layer: nn.TransformerEncoderLayer) -> "TransformerBlock":
        """Copy the weights of a ``torch.nn.TransformerEncoderLayer`` (``batch_first=True``) to compare."""
        self.attn.load_torch_weights(layer.self_attn)
        for mine, theirs in ((self.ln1, layer.norm1), (self.ln2, layer.norm2),
                             (self.ffn.fc1, layer.linear1), (self.ffn.fc2, layer.linear2)):
            mine.weight.copy_(theirs.weight)
            mine.bias.copy_(theirs.bias)
        return self
