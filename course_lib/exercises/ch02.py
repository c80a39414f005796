"""Exercises of chapter 02 (neural-network foundations)."""

from __future__ import annotations

import numpy as np

from ..nn_basics import nearest_neighbours
from . import register


def _article_net() -> dict:
    """The seed article's 2-2-2 ReLU network (its weights and biases)."""
    return {"W1": np.array([[1.0, 2.0], [3.0, 4.0]]), "b1": np.array([1.0, 2.0]),
            "W2": np.array([[5.0, 6.0], [7.0, 8.0]]), "b2": np.array([3.0, 4.0])}


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def _wrong_02_1(W1, b1, x) -> list[tuple[str, object]]:
    W1, b1, x = map(np.asarray, (W1, b1, x))
    return [
        ("without the ReLU", W1 @ x + b1),
        ("a column of W1 instead of a row (W1ᵀ x + b1, the article's slip)", _relu(W1.T @ x + b1)),
        ("without the bias", _relu(W1 @ x)),
        ("the worked example's hidden layer, for x = (2, 3)", _relu(W1 @ np.array([2.0, 3.0]) + b1)),
        ("the output layer y instead of h", _relu(_article_net()["W2"] @ _relu(W1 @ x + b1) + _article_net()["b2"])),
    ]


@register(
    "02.1",
    "the hidden layer h = ReLU(W1 x + b1) of the article's network for a new input x",
    "row i of W1 times x, plus b1[i], then max(0, ·): W1 @ x + b1 in numpy, then np.maximum(·, 0)",
    example_context=lambda: {"W1": _article_net()["W1"], "b1": _article_net()["b1"], "x": np.array([4.0, -3.0])},
    wrong_answers=_wrong_02_1,
)
def hidden_layer(W1: np.ndarray, b1: np.ndarray, x: np.ndarray) -> np.ndarray:
    return _relu(np.asarray(W1) @ np.asarray(x) + np.asarray(b1))


def _forward(W1, b1, W2, b2, x):
    z1 = W1 @ x + b1
    h = _relu(z1)
    z2 = W2 @ h + b2
    return z1, h, z2, _relu(z2)


def _wrong_02_2(W1, b1, W2, b2, x, t) -> list[tuple[str, object]]:
    W1, b1, W2, b2, x, t = map(np.asarray, (W1, b1, W2, b2, x, t))
    z1, h, z2, y = _forward(W1, b1, W2, b2, x)
    delta2 = (y - t) * (z2 > 0)
    delta1 = (W2.T @ delta2) * (z1 > 0)
    return [
        ("dL/dW2 instead of dL/dW1", np.outer(delta2, h)),
        ("transposed: outer(x, δ1)", np.outer(x, delta1)),
        ("the sign flipped: (t − y) instead of (y − t)", -np.outer(delta1, x)),
        ("W2 instead of W2ᵀ on the way back", np.outer((W2 @ delta2) * (z1 > 0), x)),
        ("the worked example's target t = (170, 225)", grad_W1(W1, b1, W2, b2, x, np.array([170.0, 225.0]))),
        ("outer(δ1, h) instead of outer(δ1, x)", np.outer(delta1, h)),
    ]


@register(
    "02.2",
    "the gradient dL/dW1 of L = ½‖y − t‖² for the article's network, input x and target t",
    "go backwards: δ2 = (y − t) ⊙ [z2 > 0]; dL/dh = W2ᵀ δ2; δ1 = dL/dh ⊙ [z1 > 0]; dL/dW1 = outer(δ1, x)",
    example_context=lambda: {**_article_net(), "x": np.array([2.0, 3.0]), "t": np.array([160.0, 230.0])},
    wrong_answers=_wrong_02_2,
)
def grad_W1(W1, b1, W2, b2, x, t) -> np.ndarray:
    W1, b1, W2, b2, x, t = map(np.asarray, (W1, b1, W2, b2, x, t))
    z1 = W1 @ x + b1
    h = _relu(z1)
    z2 = W2 @ h + b2
    y = _relu(z2)
    delta2 = (y - t) * (z2 > 0)
    delta1 = (W2.T @ delta2) * (z1 > 0)
    return np.outer(delta1, x)


def _adam_step(p, g, m, v, t, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    p, g, m, v = (np.asarray(a, dtype=np.float64) for a in (p, g, m, v))
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def _adam_variant(correct=True, eps_inside=False, old_state=False, square=True, t_shift=0, numerator_g=False):
    """A plausibly wrong adam_step, for testing the checker."""

    def step(p, g, m, v, t, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
        p, g, m0, v0 = (np.asarray(a, dtype=np.float64) for a in (p, g, m, v))
        m = beta1 * m0 + (1 - beta1) * g
        v = beta2 * v0 + (1 - beta2) * (g * g if square else np.abs(g))
        tt = t + t_shift
        m_hat = m / (1 - beta1 ** tt) if correct and tt > 0 else m
        v_hat = v / (1 - beta2 ** tt) if correct and tt > 0 else v
        num = g if numerator_g else m_hat
        denom = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        return p - lr * num / denom, (m0 if old_state else m), (v0 if old_state else v)

    return step


def _adam_cases() -> list[tuple]:
    rng = np.random.default_rng(2)
    cases = [(np.array([1.0, -2.0]), np.array([0.5, 0.5]), np.zeros(2), np.zeros(2), 1),
             # gradients as small as eps: where eps goes (outside the square root) matters
             (np.array([0.5, 1.5]), np.array([1e-8, -3e-8]), np.zeros(2), np.zeros(2), 1)]
    for t in (2, 10, 1000):
        n = 4
        cases.append((rng.normal(size=n), rng.normal(size=n), 0.1 * rng.normal(size=n), rng.random(n) * 0.01, t))
    return cases


@register(
    "02.3",
    "adam_step(p, g, m, v, t, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8) -> (p, m, v), one Adam step",
    "update m and v first (moving averages of g and g²), then divide them by (1 − beta**t) (bias "
    "correction), then p − lr · m̂ / (√v̂ + eps); return the new p, m, v (numpy arrays)",
    cases=lambda: _adam_cases(),
    rtol=1e-7,
    atol=1e-10,
    wrong_answers=lambda: [
        ("no bias correction", _adam_variant(correct=False)),
        ("eps inside the square root", _adam_variant(eps_inside=True)),
        ("m and v returned before the update", _adam_variant(old_state=True)),
        ("β₂ applied to g instead of g²", _adam_variant(square=False)),
        ("bias correction with t - 1 (off by one)", _adam_variant(t_shift=-1)),
        ("RMSprop's step: g instead of m̂ in the numerator", _adam_variant(numerator_g=True)),
    ],
)
def adam_step_reference():
    return _adam_step


def _vectors_context() -> dict:
    rng = np.random.default_rng(3)
    return {"vectors": rng.normal(size=(41, 6)), "item_id": 7}


@register(
    "02.4",
    "the id of the item whose vector is most similar (cosine) to a given item's vector",
    "normalise every row to length 1, take dot products with the item's row, skip the item itself and "
    "row 0 (padding), and return the argmax (course_lib.nn_basics.nearest_neighbours does this)",
    example_context=_vectors_context,
    wrong_answers=lambda vectors, item_id: _wrong_02_4(vectors, item_id),
)
def most_similar_item(vectors: np.ndarray, item_id: int) -> int:
    ids, _ = nearest_neighbours(vectors, [int(item_id)], k=1)
    return int(ids[0, 0])


def _wrong_02_4(vectors: np.ndarray, item_id: int) -> list[tuple[str, object]]:
    V = np.asarray(vectors, dtype=np.float64)
    unit = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    cos = unit @ unit[int(item_id)]
    dots = V @ V[int(item_id)]
    skip = cos.copy()
    skip[[0, int(item_id)]] = -np.inf
    dots[[0, int(item_id)]] = -np.inf
    second = int(np.argsort(-skip)[1])
    least = skip.copy()
    least[[0, int(item_id)]] = np.inf
    return [
        ("the item itself (its cosine with itself is 1)", int(item_id)),
        ("the largest dot product, without normalising the rows", int(np.argmax(dots))),
        ("the second most similar item", second),
        ("the least similar item (argmin)", int(np.argmin(least))),
        ("the cosine similarity instead of the item id", float(np.max(skip))),
    ]
