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
    wrong_answers=lambda q, K: _wrong_03_1(q, K),
)
def attention_weights(q: np.ndarray, K: np.ndarray) -> np.ndarray:
    q, K = np.asarray(q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    return _softmax(K @ q / np.sqrt(q.shape[-1]))


def _wrong_03_1(q, K) -> list[tuple[str, object]]:
    q, K = np.asarray(q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    s = K @ q
    d = q.shape[-1]
    T = K.shape[0]
    keep = max(1, T // 2)
    masked = np.zeros(T)
    masked[:keep] = _softmax(s[:keep] / np.sqrt(d))        # a causal row: later keys blocked
    return [
        ("not divided by √d_k", _softmax(s)),
        ("divided by d_k instead of √d_k", _softmax(s / d)),
        ("the scaled scores, before the softmax", s / np.sqrt(d)),
        ("uniform weights", np.full(T, 1.0 / T)),
        ("a causal (masked) row instead of all keys", masked),
        ("softmax over the wrong axis (Kᵀ-shaped)", _softmax(np.sort(s) / np.sqrt(d))),
    ]


def _causal(T: int) -> np.ndarray:
    return np.tril(np.ones((T, T), dtype=bool))


@register(
    "03.2",
    "causal(T): a (T, T) boolean array, True where query i may attend to key j (j <= i)",
    "np.tril of a (T, T) array of ones, as bool; row i is the query, column j the key",
    cases=lambda: [(1,), (3,), (6,)],
    wrong_answers=lambda: [
        ("upper triangle (query i sees the future j >= i)", lambda T: np.triu(np.ones((T, T), dtype=bool))),
        ("strictly lower (a position cannot see itself)", lambda T: np.tril(np.ones((T, T), dtype=bool), -1)),
        ("no mask at all", lambda T: np.ones((T, T), dtype=bool)),
        ("the blocked entries (True = masked, PyTorch's convention)", lambda T: ~np.tril(np.ones((T, T), dtype=bool))),
        ("only the diagonal", lambda T: np.eye(T, dtype=bool)),
    ],
)
def causal_reference():
    return _causal


@register(
    "03.3",
    "bytes taken by the attention weights of one layer: batch B, H heads, length T, float32",
    "one weight per (batch, head, query, key): B * H * T * T numbers of 4 bytes each",
    example_context=lambda: {"B": 128, "H": 2, "T": 200},
    wrong_answers=lambda B, H, T: [
        ("the number of weights, not bytes", B * H * T * T),
        ("bits instead of bytes", B * H * T * T * 32),
        ("without the heads", B * T * T * 4),
        ("one sequence, not the batch", H * T * T * 4),
        ("T instead of T² (the fused kernel's per-row statistics)", B * H * T * 4),
        ("megabytes instead of bytes", B * H * T * T * 4 / 1e6),
        ("MiB instead of bytes", B * H * T * T * 4 / 2 ** 20),
        ("float64 (8 bytes) instead of float32", B * H * T * T * 8),
    ],
)
def attention_bytes(B: int, H: int, T: int) -> int:
    return int(B) * int(H) * int(T) ** 2 * 4


@register(
    "03.4",
    "number of parameters of course_lib.attention.TransformerBlock(d_model, n_heads, d_ff)",
    "attention: 4 weight matrices d×d plus 4 biases of d; feed-forward: d×d_ff + d_ff + d_ff×d + d; "
    "two LayerNorms with a scale and a shift of d each",
    example_context=lambda: {"d_model": 48, "n_heads": 4, "d_ff": 96},
    wrong_answers=lambda d_model, n_heads, d_ff: _wrong_03_4(int(d_model), int(n_heads), int(d_ff)),
)
def block_parameters(d_model: int, n_heads: int, d_ff: int) -> int:
    from ..attention import TransformerBlock

    block = TransformerBlock(int(d_model), int(n_heads), d_ff=int(d_ff))
    return int(sum(p.numel() for p in block.parameters()))


def _wrong_03_4(d: int, h: int, f: int) -> list[tuple[str, object]]:
    attention, ffn, norms = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * 2 * d
    return [
        ("without the biases", 4 * d * d + 2 * d * f + norms),
        ("without the LayerNorms", attention + ffn),
        ("attention only", attention),
        ("feed-forward only", ffn),
        ("the default d_ff = 4 d instead of the given one", attention + 2 * d * 4 * d + 4 * d + d + norms),
        ("Q, K, V, O counted once per head", h * attention + ffn + norms),
        ("three attention matrices (no output projection)", 3 * d * d + 3 * d + ffn + norms),
        ("one LayerNorm", attention + ffn + 2 * d),
    ]
