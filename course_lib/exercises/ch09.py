"""Exercises of chapter 09 (features, two towers, cross-category)."""

from __future__ import annotations

import numpy as np

from . import register


def _batch_context() -> dict:
    rng = np.random.default_rng(0)
    return {"logits": rng.normal(size=(5, 5)), "targets": np.array([4, 8, 4, 2, 9]),
            "log_q": np.log(np.array([0.30, 0.05, 0.30, 0.10, 0.02]))}


def _in_batch(logits, targets, log_q, *, correct=True, mask=True) -> float:
    z = np.asarray(logits, float) - (np.asarray(log_q, float)[None, :] if correct else 0.0)
    t = np.asarray(targets)
    B = len(t)
    total = 0.0
    for b in range(B):
        cols = [j for j in range(B) if j == b or not (mask and t[j] == t[b])]
        total += -(z[b, b] - np.logaddexp.reduce(z[b, cols]))
    return float(total / B)


@register(
    "09.1",
    "the mean in-batch softmax loss of `logits` (B, B) with the log-Q correction and duplicate targets masked",
    "subtract log_q[j] from every column j; in row b, drop the columns j != b whose target equals targets[b] "
    "(the same item is not a negative); the loss of row b is -(z[b, b] - logsumexp over the kept columns); average",
    example_context=_batch_context,
    rtol=1e-6,
    wrong_answers=lambda logits, targets, log_q: [
        ("without the log-Q correction", _in_batch(logits, targets, log_q, correct=False)),
        ("duplicates counted as negatives", _in_batch(logits, targets, log_q, mask=False)),
        ("log-Q added instead of subtracted", _in_batch(logits, targets, -np.asarray(log_q))),
    ],
)
def in_batch_loss(logits, targets, log_q) -> float:
    return _in_batch(logits, targets, log_q)


def _standardise(train, test):
    train, test = np.asarray(train, float), np.asarray(test, float)
    return (test - train.mean()) / train.std()


@register(
    "09.2",
    "standardise(train, test): the test values standardised with the mean and standard deviation of train only",
    "fit on training data only: (test - train.mean()) / train.std(); never use the test values' own statistics",
    cases=lambda: [([1.0, 2.0, 3.0, 4.0], [2.5, 10.0]), ([10.0, 10.5, 9.0], [11.0, 9.0, 100.0]),
                   (np.arange(20.0), np.array([-3.0, 40.0]))],
    wrong_answers=lambda: [
        ("the test values' own statistics (the leak)",
         lambda train, test: (np.asarray(test, float) - np.mean(test)) / np.std(test)),
        ("statistics of train and test together (fitted on all data)",
         lambda train, test: (np.asarray(test, float) - np.mean(np.r_[train, test])) / np.std(np.r_[train, test])),
        ("centred only, not divided by the standard deviation",
         lambda train, test: np.asarray(test, float) - np.mean(train)),
        ("the training values standardised instead of the test values",
         lambda train, test: (np.asarray(train, float) - np.mean(train)) / np.std(train)),
    ],
)
def standardise_reference():
    return _standardise


def _cross_context() -> dict:
    rng = np.random.default_rng(1)
    return {"x0": rng.normal(size=4), "x": rng.normal(size=4), "W": rng.normal(size=(4, 4)), "b": rng.normal(size=4)}


@register(
    "09.3",
    "the output of one DCN-v2 cross layer, x0 ⊙ (W x + b) + x, as an array of shape (4,)",
    "element-wise product of x0 with the affine map of the layer's input x, then add the input x back (the residual)",
    example_context=_cross_context,
    wrong_answers=lambda x0, x, W, b: [
        ("no residual", np.asarray(x0) * (np.asarray(W) @ x + b)),
        ("residual x0 instead of x", np.asarray(x0) * (np.asarray(W) @ x + b) + x0),
        ("W transposed", np.asarray(x0) * (np.asarray(W).T @ x + b) + x),
        ("no bias", np.asarray(x0) * (np.asarray(W) @ x) + x),
    ],
)
def cross_layer(x0, x, W, b) -> np.ndarray:
    return np.asarray(x0) * (np.asarray(W) @ np.asarray(x) + np.asarray(b)) + np.asarray(x)
