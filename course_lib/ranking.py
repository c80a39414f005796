"""Ranking the retrieved candidates: pair features, a DCN-v2 ranker, calibration.

The cascade of chapter 07 with a learned second stage:

1. the two-tower model retrieves each user's top ``K`` candidates (:func:`retrieve`);
2. :func:`pair_features` describes each (user, candidate) pair: the item's attributes, the
   request's time context, and *crosses* of the user's history with the item (share of the
   history in the item's category, brand bought before, the last item's category, price
   against the user's usual price), plus the retrieval score and the item's popularity;
3. a :class:`~course_lib.models.dcn.DCNv2` learns ``P(next item | user, candidate)`` from
   positives and sampled negatives (:func:`fit_ranker`), trained on the *validation* step
   (candidates the retriever produced for a step it never trained on) and tested on the test step;
4. :func:`rerank_scores` puts the ranker's order on top of the retrieval scores so that the
   full-ranking evaluator measures the cascade; :func:`log_loss`, :func:`roc_auc` and
   :func:`expected_calibration_error` measure the probabilities themselves.

Shapes: ``U`` users, ``K`` candidates per user, ``N = n_items + 1``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .data.protocol import PAD, LeaveOneOutSplit, pad_sequences
from .features import ItemFeatures
from .models.dcn import DCNConfig, DCNv2
from .train import TrainConfig, Trainer

logger = logging.getLogger(__name__)

NUMERIC_PAIR = ("retrieval_score", "log_popularity", "category_share", "brand_bought", "same_category_as_last",
                "price_gap")
GROUPS = {
    "retrieval score": ["retrieval_score"],
    "popularity": ["log_popularity"],
    "history × item crosses": ["category_share", "brand_bought", "same_category_as_last", "price_gap"],
    "item attributes": ["item_cat", "item_num"],
    "time context": ["context"],
}


def retrieve(score_fn, split: LeaveOneOutSplit, stage: str, k: int, *, max_len: int,
             batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(U, k)`` top-k candidate ids and their scores per user, seen items masked."""
    hist = split.history(stage)
    ids, scores = [], []
    for start in range(0, split.n_users, batch_size):
        users = np.arange(start, min(start + batch_size, split.n_users))
        h = pad_sequences([hist[u] for u in users], max_len)
        with torch.no_grad():
            s = torch.as_tensor(score_fn(torch.from_numpy(users), h)).float().clone()
        for r, u in enumerate(users):
            s[r, torch.from_numpy(hist[u])] = -torch.inf
        s[:, PAD] = -torch.inf
        top = torch.topk(s, k, dim=1)
        ids.append(top.indices.numpy())
        scores.append(top.values.numpy())
    return np.concatenate(ids), np.concatenate(scores)


@dataclass
class PairFeatures:
    """Features of ``M`` (user, candidate) pairs, flattened from ``(U, K)``.

    Attributes:
        cat: ``(M, F)`` categorical ids: item fields then context fields.
        num: ``(M, F_n)`` float32 numeric features: :data:`NUMERIC_PAIR` then the item's numeric features.
        cat_names, num_names: column names.
        cardinalities: embedding sizes of ``cat``'s columns.
    """

    cat: np.ndarray
    num: np.ndarray
    cat_names: list[str]
    num_names: list[str]
    cardinalities: list[int]
    groups: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cat)

    def columns_of(self, group: str) -> tuple[list[int], list[int]]:
        """(categorical column indices, numeric column indices) of a feature group of :data:`GROUPS`."""
        names = GROUPS[group]
        cats = [j for j, n in enumerate(self.cat_names) if any(n.startswith(p + ":") for p in names)]
        nums = [j for j, n in enumerate(self.num_names) if n in names or any(n.startswith(p + ":") for p in names)]
        return cats, nums


def pair_features(split: LeaveOneOutSplit, stage: str, candidates: np.ndarray, retrieval_scores: np.ndarray,
                  item_features: ItemFeatures, *, context: np.ndarray | None = None,
                  context_cardinalities: tuple[int, ...] = (), category_col: str = "category",
                  brand_col: str = "brand", price_col: str = "log_price") -> PairFeatures:
    """Features of every (user, candidate) pair at ``stage`` (history = what the user had).

    Args:
        candidates, retrieval_scores: ``(U, K)`` from :func:`retrieve`.
        item_features: the item features (its ``category``/``brand`` columns and ``log_price``).
        context: ``(U, F_t)`` the request's time context ids (or ``None``).
    """
    U, K = candidates.shape
    if U != split.n_users:
        raise ValueError(f"candidates must have one row per user ({split.n_users}), got {U}")
    cat_t = item_features.categorical
    ci, bi = item_features.cat_names.index(category_col), item_features.cat_names.index(brand_col)
    pi = item_features.num_names.index(price_col)
    item_cat_id, item_brand, item_price = cat_t[:, ci], cat_t[:, bi], item_features.numeric[:, pi]
    n_cat, n_brand = item_features.cardinalities[ci], item_features.cardinalities[bi]
    hist = split.history(stage)
    share = np.zeros((U, n_cat), np.float32)
    brands = np.zeros((U, n_brand), bool)
    last_cat = np.zeros(U, np.int64)
    mean_price = np.zeros(U, np.float32)
    for u, h in enumerate(hist):
        if len(h):
            share[u] = np.bincount(item_cat_id[h], minlength=n_cat) / len(h)
            brands[u, item_brand[h]] = True
            last_cat[u] = item_cat_id[h[-1]]
            mean_price[u] = item_price[h].mean()
    pop = np.log1p(np.bincount(np.concatenate(hist), minlength=split.n_items + 1)).astype(np.float32)
    rows = np.repeat(np.arange(U), K)
    c = candidates.ravel()
    rs = retrieval_scores.astype(np.float64)
    rs = (rs - rs.mean(1, keepdims=True)) / (rs.std(1, keepdims=True) + 1e-6)        # per-user z-score
    num = np.stack([rs.ravel(), pop[c], share[rows, item_cat_id[c]], brands[rows, item_brand[c]],
                    (last_cat[rows] == item_cat_id[c]), item_price[c] - mean_price[rows]], axis=1).astype(np.float32)
    num = np.concatenate([num, item_features.numeric[c]], axis=1)
    cat = cat_t[c]
    cat_names = [f"item_cat:{n}" for n in item_features.cat_names]
    cards = list(item_features.cardinalities)
    if context is not None:
        cat = np.concatenate([cat, context[rows]], axis=1)
        cat_names += [f"context:{j}" for j in range(context.shape[1])]
        cards += list(context_cardinalities)
    num_names = list(NUMERIC_PAIR) + [f"item_num:{n}" for n in item_features.num_names]
    return PairFeatures(cat.astype(np.int64), num, cat_names, num_names, cards)


def sample_pairs(candidates: np.ndarray, targets: np.ndarray, n_neg: int, *,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``(U, K)`` pairs and labels: each user's target (if retrieved) plus
    ``n_neg`` other candidates drawn uniformly. Users whose target was not retrieved give
    negatives only. Returns ``(index (M,), label (M,))``."""
    rng = np.random.default_rng(seed)
    U, K = candidates.shape
    idx, lab = [], []
    for u in range(U):
        hit = np.flatnonzero(candidates[u] == targets[u])
        others = np.setdiff1d(np.arange(K), hit)
        neg = rng.choice(others, min(n_neg, len(others)), replace=False)
        for j in hit:
            idx.append(u * K + j)
            lab.append(1.0)
        idx.extend(u * K + neg)
        lab.extend([0.0] * len(neg))
    return np.asarray(idx, dtype=np.int64), np.asarray(lab, dtype=np.float32)


def fit_ranker(features: PairFeatures, index: np.ndarray, labels: np.ndarray, *, steps: int, batch_size: int = 512,
               lr: float = 3e-3, seed: int = 0, **config) -> DCNv2:
    """Train a :class:`DCNv2` with binary cross-entropy on the pairs ``index`` for ``steps`` steps."""
    torch.manual_seed(seed)
    model = DCNv2(DCNConfig(cardinalities=tuple(features.cardinalities), n_numeric=features.num.shape[1], **config))
    cat, num = torch.from_numpy(features.cat), torch.from_numpy(features.num)
    y = torch.from_numpy(labels)

    def collate(rows):
        r = np.asarray(rows, dtype=np.int64)
        return {"cat": cat[index[r]], "num": num[index[r]], "y": y[r]}

    def loss_fn(m, batch):
        return torch.nn.functional.binary_cross_entropy_with_logits(m(batch["cat"], batch["num"]), batch["y"])

    epochs = max(1, int(np.ceil(steps * batch_size / len(index))))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, max_steps=steps, eval_every=0, progress=False,
                      log_every=0, seed=seed, warmup=0.05, weight_decay=1e-5)
    Trainer(model, list(range(len(index))), collate=collate, loss_fn=loss_fn, config=cfg, device="cpu").fit()
    return model.eval()


def predict(model: DCNv2, features: PairFeatures, index: np.ndarray | None = None, *,
            permute: dict | None = None, seed: int = 0) -> np.ndarray:
    """``(M,)`` click probabilities of the pairs ``index`` (default: all). ``permute`` =
    ``{"cat": [cols], "num": [cols]}`` shuffles those columns across pairs first (permutation importance)."""
    idx = np.arange(len(features)) if index is None else index
    cat, num = features.cat[idx].copy(), features.num[idx].copy()
    if permute:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(idx))
        for j in permute.get("cat", []):
            cat[:, j] = cat[order, j]
        for j in permute.get("num", []):
            num[:, j] = num[order, j]
    with torch.no_grad():
        out = []
        for s in range(0, len(idx), 8192):
            out.append(torch.sigmoid(model(torch.from_numpy(cat[s:s + 8192]), torch.from_numpy(num[s:s + 8192]))))
    return torch.cat(out).numpy().astype(np.float64)


def rerank_scores(split: LeaveOneOutSplit, candidates: np.ndarray, ranker_scores: np.ndarray,
                  base: np.ndarray | None = None) -> np.ndarray:
    """``(U, N)`` a score matrix for the evaluator: the candidates ordered by ``ranker_scores``
    ``(U, K)``, above every other item (which keep ``base`` ``(U, N)`` or ``-1e9``)."""
    U, K = candidates.shape
    out = np.full((U, split.n_items + 1), -1e9, dtype=np.float32) if base is None else base.astype(np.float32).copy()
    if base is not None:
        out -= np.float32(1e6)
    rows = np.repeat(np.arange(U), K)
    out[rows, candidates.ravel()] = 1e6 + ranker_scores.ravel().astype(np.float32)
    return out


def log_loss(p: np.ndarray, y: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy ``-[y log p + (1 - y) log(1 - p)]``."""
    p = np.clip(np.asarray(p, float), eps, 1 - eps)
    y = np.asarray(y, float)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random
    negative (ties count one half), from the ranks (Mann-Whitney U)."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, float), np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> tuple[float, "object"]:
    """ECE = ``Σ_b (n_b / n) |mean(y_b) - mean(p_b)|`` over equal-width probability bins,
    and the per-bin table (predicted vs observed rate) for a reliability plot."""
    import pandas as pd

    p, y = np.asarray(p, float), np.asarray(y, float)
    b = np.minimum((p * n_bins).astype(int), n_bins - 1)
    df = pd.DataFrame({"bin": b, "p": p, "y": y}).groupby("bin").agg(n=("y", "size"), predicted=("p", "mean"),
                                                                       observed=("y", "mean")).reset_index()
    ece = float((df["n"] / len(p) * (df["observed"] - df["predicted"]).abs()).sum())
    return ece, df


__all__ = ["GROUPS", "NUMERIC_PAIR", "PairFeatures", "expected_calibration_error", "fit_ranker", "log_loss",
           "pair_features", "predict", "rerank_scores", "retrieve", "roc_auc", "sample_pairs"]
