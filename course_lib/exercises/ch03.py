"""Exercises of chapter 03 (attention math)."""

from __future__ import annotations

import numpy as np

from . import register


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max())
    return e / e.sum()


def _query_keys() -> dict:
    rng = np.random.default_rng(4)
    return {"q": rng.normal(size=4), "K": rng.normal(size=(5, 4))}


@register(
    "03.1",
    "the attention weights softmax(K q / √d_k) of one query over a few keys",
    "scores = K @ q / np.sqrt(len(q)); subtract the largest score, exponentiate, divide by the sum",
    example_context=_query_keys,
    rtol=1e-5,
    atol=1e-8,
)
def attention_weights(q: np.ndarray, K: np.ndarray) -> np.ndarray:
    q, K = np.asarray(q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    return _softmax(K @ q / np.sqrt(q.shape[-1]))


def _causal(T: int) -> np.ndarray:
    return np.tril(np.ones((T, T), dtype=bool))


@register(
    "03.2",
    "causal(T): a (T, T) boolean array, True where query i may attend to key j (j <= i)",
    "np.tril of a (T, T) array of ones, as bool; row i is the query, column j the key",
    cases=lambda: [(1,), (3,), (6,)],
)
def causal_reference():
    return _causal


@register(
    "03.3",
    "bytes taken by the attention weights of one layer: batch B, H heads, length T, float32",
    "one weight per (batch, head, query, key): B * H * T * T numbers of 4 bytes each",
    example_context=lambda: {"B": 128, "H": 2, "T": 200},
)
def attention_bytes(B: int, H: int, T: int) -> int:
    return int(B) * int(H) * int(T) ** 2 * 4


@register(
    "03.4",
    "number of parameters of course_lib.attention.TransformerBlock(d_model, n_heads, d_ff)",
    "attention: 4 weight matrices d×d plus 4 biases of d; feed-forward: d×d_ff + d_ff + d_ff×d + d; "
    "two LayerNorms with a scale and a shift of d each",
    example_context=lambda: {"d_model": 48, "n_heads": 4, "d_ff": 96},
)
def block_parameters(d_model: int, n_heads: int, d_ff: int) -> int:
    from ..attention import TransformerBlock

    block = TransformerBlock(int(d_model), int(n_heads), d_ff=int(d_ff))
    return int(sum(p.numel() for p in block.parameters()))
