"""Baseline recommenders: popularity, item-kNN, EASE, BPR-MF, TF-IDF content, and a hybrid.

Every baseline is a :class:`BaselineModel` and a :class:`course_lib.scoring.Scorer` (the
one scoring interface of the course), so the full-ranking evaluator, the inference
:class:`course_lib.infer.Recommender` and the service treat them like the neural models of
later chapters::

    model = EASE(lam=300).fit(split)                   # learn from the training matrix
    scores = model.score(users, histories)             # (B, n_items + 1), column 0 = -inf
    evaluate(model, split, "valid")                    # {"HR@10": ..., "NDCG@10": ...}
    model.save_pretrained("build/ease")                # config.json + model.safetensors
    again = BaselineModel.from_pretrained("build/ease")   # (or EASE.from_pretrained)

``users`` is a ``(B,)`` LongTensor of internal user ids and ``histories`` a ``(B, L)``
left-padded LongTensor of the items each user has seen before the stage (0 = padding).
Scores come back as a float32 tensor on the device of ``histories``; column 0 (padding) is
``-inf`` so it is never recommended.

What a model reads about a user
-------------------------------
Item-based models (:class:`MostPopular`, :class:`ItemKNN`, :class:`EASE`,
:class:`TfidfContent`, :class:`Hybrid`) score from the set of items the user has seen:
the union of the user's row in the matrix the model was fitted on and the items in
``histories``. The union matters twice: the evaluator truncates histories to ``max_len``
(a MovieLens user may have rated 2,000 films; the stored row keeps them all), and at the
test stage ``histories`` holds the validation item even when the model was fitted
without it. ``users == -1`` means "not a known user": the history alone is used (this is
how a new visitor is served). :class:`BPRMF` has one learned vector per known user and
no vector for anyone else, so it reads ``users`` only and rejects ``-1``.

The protocol for the test stage
-------------------------------
Hyper-parameters are chosen on the validation stage with the model fitted on the
training matrix (``split.train_matrix()``); then, for the test stage, **every baseline
is refitted on train + validation** (``fit(split, include_valid=True)``) with the chosen
hyper-parameters. This is the usual practice for closed-form and matrix-factorisation
baselines (the validation interaction is data the model may learn from once tuning is
over), and :func:`fit_and_test` does exactly that.

Shapes: ``U`` users, ``N = n_items + 1`` item columns (0 = padding), ``B`` users in a
batch, ``V`` TF-IDF vocabulary size, ``d`` the factor dimension.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .data.protocol import PAD, LeaveOneOutSplit
from .device import get_device
from .evaluate import evaluate

log = logging.getLogger(__name__)

__all__ = [
    "BPRMF", "BaselineModel", "EASE", "Hybrid", "ItemKNN", "MostPopular", "Recommender", "TfidfContent",
    "as_training_matrix", "cosine_similarity_topk", "fit_and_test", "grid_search", "item_text", "tune_baseline",
]


# --------------------------------------------------------------------------- input checks
def as_training_matrix(data: LeaveOneOutSplit | sp.spmatrix | np.ndarray, *,
                       include_valid: bool = False) -> sp.csr_matrix:
    """The ``(U, N)`` binary float32 CSR matrix a baseline learns from.

    Args:
        data: a :class:`~course_lib.data.LeaveOneOutSplit` (its training matrix is used), or
            a user × item matrix (SciPy sparse or NumPy) whose column 0 is the padding
            column and must be empty — items are columns ``1..n_items``.
        include_valid: with a split, add each user's validation item (for the test stage).

    Raises:
        ValueError: an empty matrix, a non-empty padding column, negative values, or
            ``include_valid`` with a bare matrix.
    """
    if isinstance(data, LeaveOneOutSplit):
        X = data.train_matrix(include_valid=include_valid)
    elif sp.issparse(data) or isinstance(data, np.ndarray):
        if include_valid:
            raise ValueError("include_valid=True needs a LeaveOneOutSplit; a bare matrix has no validation items")
        X = sp.csr_matrix(data, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError(f"the training matrix must be (n_users, n_items + 1) with n_items >= 1; got {X.shape}")
        if X.nnz and (X.data < 0).any():
            raise ValueError("the training matrix has negative entries; implicit feedback is 0 or 1")
        if X[:, PAD].nnz and X[:, PAD].sum() != 0:
            raise ValueError("column 0 of the training matrix is the padding item and must be empty; "
                             "shift your item ids to 1..n_items")
        X.eliminate_zeros()
        X.data[:] = 1.0
    else:
        raise ValueError(
            f"fit() needs a LeaveOneOutSplit or a user × item matrix, got {type(data).__name__}"
        )
    if X.shape[0] == 0 or X.nnz == 0:
        raise ValueError("the training set is empty: there is no interaction to learn from")
    return X


def _as_long(x: torch.Tensor | np.ndarray | Sequence, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer ids, got dtype {t.dtype}")
    return t.long()


class BaselineModel:
    """Base class: ``fit(data)`` then ``score(users, histories) -> (B, N)``.

    Subclasses implement ``_fit(X, data)`` and ``_score_rows(R, users)``; the base class
    checks the input and builds ``R``, the ``(B, N)`` CSR matrix of the items each user
    has seen (see the module docstring). ``_state`` names the attributes ``_fit`` learns
    (what :meth:`save_pretrained` stores besides the training matrix).

    (Called ``Recommender`` before; that name still works but belongs to
    :class:`course_lib.infer.Recommender`, the serving wrapper.)
    """

    name = "recommender"
    uses_user_ids = False  # True: one parameter vector per known user (no scoring of -1)
    _state: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.n_users: int | None = None
        self.n_items: int | None = None
        self.fit_seconds: float | None = None
        self.include_valid: bool = False
        self._X: sp.csr_matrix | None = None

    # -- public API
    def fit(self, data: LeaveOneOutSplit | sp.spmatrix | np.ndarray, *, include_valid: bool = False) -> "BaselineModel":
        """Learn from ``data`` (a split's training matrix, with ``include_valid`` its
        train + valid matrix, or a bare ``(U, N)`` matrix). Returns ``self``."""
        X = as_training_matrix(data, include_valid=include_valid)
        start = time.perf_counter()
        self.n_users, self.n_items = X.shape[0], X.shape[1] - 1
        self._X = X
        self.include_valid = include_valid
        self._fit(X, data)
        self.fit_seconds = time.perf_counter() - start
        return self

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """``(B, n_items + 1)`` float32 scores; higher is better; column 0 is ``-inf``.

        Args:
            users: ``(B,)`` internal user ids in ``[0, n_users)``, or ``-1`` for a visitor
                the model was not fitted on (item-based models only).
            histories: ``(B, L)`` left-padded internal item ids (0 = padding).
        """
        self._check_fitted()
        users_t, hist_t = self._check_input(users, histories)
        u = users_t.cpu().numpy()
        rows = self._seen_rows(u, hist_t.cpu().numpy())
        out = self._score_rows(rows, u)
        out = torch.as_tensor(out, dtype=torch.float32)
        out = out.to(hist_t.device if isinstance(histories, torch.Tensor) else "cpu")
        out[:, PAD] = -torch.inf
        return out

    __call__ = score

    def score_fn(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """``score_fn(users, histories)``: the same as :meth:`score` (the evaluator's interface)."""
        return self.score(users, histories)

    # -- saving and loading (the Hugging Face convention: config.json + model.safetensors)
    def _init_kwargs(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (default: :meth:`params`)."""
        return self.params()

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` (class, hyper-parameters, sizes) and ``model.safetensors``
        (the training matrix and what ``fit`` learned) into ``directory``; return it."""
        from safetensors.torch import save_file

        self._check_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        kinds = {name: _put_array(tensors, name, getattr(self, name)) for name in ("_X", *self._state)}
        doc = {"model_type": type(self).__name__, "init": self._init_kwargs(), "n_users": self.n_users,
               "n_items": self.n_items, "include_valid": self.include_valid, "fit_seconds": self.fit_seconds,
               "state": kinds}
        (path / "config.json").write_text(json.dumps(doc, indent=1))
        save_file(tensors, str(path / "model.safetensors"))
        return path

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "BaselineModel":
        """The fitted model saved by :meth:`save_pretrained` (its class is read from ``config.json``).

        Raises:
            FileNotFoundError: the folder has no saved baseline.
            ValueError: it holds another class than ``cls`` (when ``cls`` is not the base class).
        """
        from safetensors.torch import load_file

        path = Path(directory)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} has no config.json; "
                                    f"save the model with model.save_pretrained({str(path)!r})")
        doc = json.loads((path / "config.json").read_text())
        klass = _BASELINES.get(doc.get("model_type", ""))
        if klass is None:
            raise ValueError(f"{path} holds a {doc.get('model_type')!r}, not a course_lib baseline "
                             f"(one of: {', '.join(sorted(_BASELINES))})")
        if cls is not BaselineModel and klass is not cls:
            raise ValueError(f"{path} holds a {klass.__name__}, not a {cls.__name__}; load it with "
                             f"{klass.__name__}.from_pretrained or BaselineModel.from_pretrained")
        model = klass._rebuild(path, doc["init"])
        tensors = load_file(str(path / "model.safetensors")) if (path / "model.safetensors").is_file() else {}
        for name, kind in doc["state"].items():
            value = _get_array(tensors, name, kind)
            if isinstance(value, torch.Tensor) and isinstance(getattr(model, "device", None), torch.device):
                value = value.to(model.device)
            setattr(model, name, value)
        model.n_users, model.n_items = int(doc["n_users"]), int(doc["n_items"])
        model.include_valid, model.fit_seconds = bool(doc["include_valid"]), doc["fit_seconds"]
        return model

    @classmethod
    def _rebuild(cls, path: Path, init: dict[str, Any]) -> "BaselineModel":
        return cls(**init)

    def score_split(self, split: LeaveOneOutSplit, stage: str = "valid",
                    users: Sequence[int] | None = None) -> torch.Tensor:
        """Scores of ``users`` (default: all) of ``split`` at ``stage`` (histories = what they saw before it)."""
        idx = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
        hist = split.history(stage)
        max_len = max(1, max(len(hist[u]) for u in idx))
        return self.score(torch.from_numpy(idx), split.padded(stage, max_len, users=idx))

    def params(self) -> dict[str, Any]:
        """The hyper-parameters (what :func:`grid_search` varies)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        state = "fitted" if self._X is not None else "not fitted"
        return f"{type(self).__name__}({args}) [{state}]"

    # -- helpers
    def _check_fitted(self) -> None:
        if self._X is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call .fit(split) first")

    def _check_input(self, users, histories) -> tuple[torch.Tensor, torch.Tensor]:
        users_t = _as_long(users, "users")
        hist_t = _as_long(histories, "histories")
        if users_t.ndim != 1:
            raise ValueError(f"users must be a 1-D tensor (B,), got shape {tuple(users_t.shape)}")
        if hist_t.ndim != 2:
            raise ValueError(f"histories must be a 2-D tensor (B, L), left-padded; got shape {tuple(hist_t.shape)}")
        if len(users_t) != len(hist_t):
            raise ValueError(f"{len(users_t)} users but {len(hist_t)} histories; pass one history per user")
        if hist_t.numel() and (hist_t.min() < 0 or hist_t.max() > self.n_items):
            raise ValueError(f"histories hold item ids outside [0, {self.n_items}] "
                             f"(got {int(hist_t.min())}..{int(hist_t.max())}); use the split's internal ids")
        if len(users_t):
            low = 0 if self.uses_user_ids else -1
            bad = (users_t < low) | (users_t >= self.n_users)
            if bad.any():
                first = int(users_t[bad][0])
                if self.uses_user_ids and first == -1:
                    raise ValueError(f"{type(self).__name__} has one vector per user it was fitted on and none "
                                     "for an unknown user (-1); use an item-based model (e.g. EASE, ItemKNN) "
                                     "for new users, or refit")
                raise ValueError(f"unknown user {first}: internal user ids run from 0 to {self.n_users - 1}"
                                 + ("" if self.uses_user_ids else " (or -1 for a user the model has not seen)"))
        return users_t, hist_t

    def _seen_rows(self, users: np.ndarray, histories: np.ndarray) -> sp.csr_matrix:
        """``(B, N)`` binary CSR: stored training row (known users) ∪ items in the history."""
        B = len(users)
        rows, cols = np.nonzero(histories)
        H = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, histories[rows, cols])),
                          shape=(B, self.n_items + 1))
        known = users >= 0
        K = self._X[np.where(known, users, 0)]
        if not known.all():
            K = sp.diags(known.astype(np.float32)) @ K
        R = (K + H).tocsr()
        R.sum_duplicates()
        R.data[:] = 1.0
        return R

    def _fit(self, X: sp.csr_matrix, data) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_rows(self, R: sp.csr_matrix, users: np.ndarray) -> np.ndarray | torch.Tensor:  # pragma: no cover
        raise NotImplementedError


Recommender = BaselineModel  # the old name (deprecated: course_lib.infer.Recommender is the serving wrapper)


def _put_array(tensors: dict[str, torch.Tensor], name: str, value: Any) -> dict[str, Any]:
    """Store ``value`` (NumPy, SciPy CSR or torch) under ``name`` in ``tensors``; return how to read it back."""
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        for part in ("data", "indices", "indptr"):
            tensors[f"{name}.{part}"] = torch.from_numpy(np.ascontiguousarray(getattr(csr, part)))
        return {"kind": "csr", "shape": list(csr.shape)}
    if isinstance(value, torch.Tensor):
        tensors[name] = value.detach().cpu().contiguous()
        return {"kind": "torch"}
    tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
    return {"kind": "numpy"}


def _get_array(tensors: dict[str, torch.Tensor], name: str, spec: dict[str, Any]) -> Any:
    if spec["kind"] == "csr":
        data, indices, indptr = (tensors[f"{name}.{part}"].numpy() for part in ("data", "indices", "indptr"))
        return sp.csr_matrix((data, indices, indptr), shape=tuple(spec["shape"]))
    if spec["kind"] == "torch":
        return tensors[name]
    return tensors[name].numpy()


# --------------------------------------------------------------------------- popularity
class MostPopular(BaselineModel):
    """Recommend the items with the most training interactions, the same list to everyone.

    ``score(u, i) = count_i = sum_u' X[u', i]``. Needs no personal data at all, and on
    long-tailed data it is a baseline that weak models fail to beat.
    """

    name = "MostPopular"
    _state = ("counts",)

    def _fit(self, X, data) -> None:
        self.counts = np.asarray(X.sum(axis=0)).ravel().astype(np.float32)  # (N,)

    def _score_rows(self, R, users):
        return np.broadcast_to(self.counts, (R.shape[0], len(self.counts))).copy()


# --------------------------------------------------------------------------- item-kNN
def cosine_similarity_topk(X: sp.csr_matrix, k: int | None, *, shrink: float = 0.0,
                           block: int = 2048) -> sp.csr_matrix:
    """Item–item cosine similarity, keeping each item's ``k`` nearest neighbours.

    ``sim(i, j) = X[:, i] · X[:, j] / (||X[:, i]|| ||X[:, j]|| + shrink)``, the diagonal set
    to 0. Column ``j`` of the result keeps the ``k`` largest similarities of item ``j``
    (``k=None`` keeps all), so ``(X @ S)[u, j] = sum of sim(i, j) over j's neighbours i
    that user u has seen``.

    Args:
        X: ``(U, N)`` binary CSR user–item matrix.
        k: neighbours kept per item (``None``: all).
        shrink: added to the denominator; damps similarities supported by few users.
        block: items processed at once (memory ~ ``N × block`` floats).

    Returns:
        ``(N, N)`` CSR matrix ``S`` (float32).
    """
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1 (or None for all neighbours), got {k}")
    if shrink < 0:
        raise ValueError(f"shrink must be >= 0, got {shrink}")
    Xc = X.tocsc().astype(np.float32)
    norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(axis=0)).ravel())  # (N,)
    gram = (Xc.T @ Xc).tocsc()  # (N, N) co-occurrence counts, sparse
    n = X.shape[1]
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n, block):
        stop = min(n, start + block)
        sims = gram[:, start:stop].toarray()  # (N, b)
        denom = norms[:, None] * norms[None, start:stop] + shrink
        np.divide(sims, denom, out=sims, where=denom > 0)
        sims[denom <= 0] = 0.0
        cols = np.arange(start, stop)
        sims[cols, cols - start] = 0.0  # no self-similarity
        if k is not None and k < n:
            top = np.argpartition(-sims, k - 1, axis=0)[:k]  # (k, b)
            vals = np.take_along_axis(sims, top, axis=0)
            r, c = top.ravel(), np.tile(cols, k)
            v = vals.ravel()
        else:
            r, c = np.nonzero(sims)
            v = sims[r, c]
            c = c + start
        keep = v > 0
        rows_out.append(r[keep])
        cols_out.append(c[keep])
        vals_out.append(v[keep].astype(np.float32))
    S = sp.csr_matrix((np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))),
                      shape=(n, n), dtype=np.float32)
    return S


class ItemKNN(BaselineModel):
    """Item-based collaborative filtering with cosine similarity (Sarwar et al., 2001).

    Two items are similar when the same users interacted with both:
    ``sim(i, j) = cos(X[:, i], X[:, j])``. Each item keeps its ``k`` nearest neighbours;
    a user's score for item ``j`` sums the similarities of ``j``'s neighbours that the
    user has seen: ``score(u, j) = sum_{i in I_u ∩ N_k(j)} sim(i, j)``.

    Args:
        k: neighbours per item (larger: smoother, slower).
        shrink: damps similarities computed from few co-occurrences (0: plain cosine).
    """

    name = "ItemKNN"
    _state = ("similarity",)

    def __init__(self, k: int = 100, shrink: float = 0.0) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.shrink = int(k), float(shrink)

    def params(self) -> dict[str, Any]:
        return {"k": self.k, "shrink": self.shrink}

    def _fit(self, X, data) -> None:
        self.similarity = cosine_similarity_topk(X, self.k, shrink=self.shrink)  # (N, N)

    def neighbours(self, item: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to ``item`` (internal ids) and their similarities."""
        self._check_fitted()
        if not 1 <= item <= self.n_items:
            raise ValueError(f"item must be an internal id in [1, {self.n_items}], got {item}")
        col = self.similarity[:, item].toarray().ravel()
        order = np.argsort(-col, kind="stable")[:n]
        order = order[col[order] > 0]
        return order, col[order]

    def _score_rows(self, R, users):
        return (R @ self.similarity).toarray()


# --------------------------------------------------------------------------- EASE
class EASE(BaselineModel):
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): a closed-form item–item model.

    Learn an item–item weight matrix ``B`` that reconstructs each user's row from the
    *other* items: ``min_B ||X - X B||² + λ ||B||²`` subject to ``diag(B) = 0``. The
    solution is closed form: with ``P = (XᵀX + λI)⁻¹``, ``B_ij = -P_ij / P_jj`` for
    ``i ≠ j`` and ``B_jj = 0``. Scores: ``score(u, ·) = X[u] B``.

    One matrix inverse of size ``n_items`` (a few seconds for 3,400 items); λ is its only
    hyper-parameter (larger: stronger shrinkage towards popularity-like scores).
    """

    name = "EASE"
    _state = ("weights",)

    def __init__(self, lam: float = 500.0) -> None:
        super().__init__()
        if not lam > 0:
            raise ValueError(f"lam (the L2 penalty λ) must be > 0, got {lam}")
        self.lam = float(lam)

    def params(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def _fit(self, X, data) -> None:
        Xi = X[:, 1:]  # drop the padding column: (U, n_items)
        G = (Xi.T @ Xi).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = scipy.linalg.inv(G, overwrite_a=True, check_finite=False)
        B = P / (-np.diag(P))[None, :]
        B[np.diag_indices_from(B)] = 0.0
        W = np.zeros((X.shape[1], X.shape[1]), dtype=np.float32)
        W[1:, 1:] = B
        self.weights = W  # (N, N); row 0 and column 0 (padding) are zero

    def _score_rows(self, R, users):
        return np.asarray(R @ self.weights)


# --------------------------------------------------------------------------- BPR-MF
class BPRMF(BaselineModel):
    """Matrix factorisation trained with Bayesian Personalised Ranking (Rendle et al., UAI 2009).

    Each user ``u`` and item ``i`` get a ``d``-dimensional vector; ``score(u, i) = p_u · q_i + b_i``.
    BPR learns from triples ``(u, i, j)``: ``i`` an item ``u`` interacted with, ``j`` one
    drawn uniformly from the items ``u`` has not; it maximises the probability that ``u``
    ranks ``i`` above ``j``:

        loss = -mean log σ(score(u, i) - score(u, j)) + reg · mean(||p_u||² + ||q_i||² + ||q_j||²)

    Trained with Adam on ``device`` (default: :func:`course_lib.device.get_device`); one
    epoch visits every training interaction once.

    Args:
        dim: factor dimension ``d``.
        epochs: passes over the training interactions.
        lr: Adam learning rate.
        reg: L2 penalty on the vectors used in each batch.
        batch_size: triples per step.
        seed: seeds the initialisation, the shuffling and the negative sampling.
        device: where to train and score.
        progress: show a progress bar over epochs.
        cpu_threads: torch threads while training on the CPU (default 1: BPR's many small
            operations gain little from threads, and on a busy shared machine two
            competing threads per operation made an epoch 15× slower in our runs);
            ``None`` leaves torch's setting alone.
    """

    name = "BPR-MF"
    uses_user_ids = True
    _state = ("user_factors", "item_factors", "item_bias")

    def __init__(self, dim: int = 64, epochs: int = 30, lr: float = 5e-3, reg: float = 1e-4,
                 batch_size: int = 8192, seed: int = 0, device: str | torch.device | None = None,
                 progress: bool = False, cpu_threads: int | None = 1) -> None:
        super().__init__()
        for label, value in (("dim", dim), ("epochs", epochs), ("batch_size", batch_size)):
            if int(value) < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if not lr > 0 or reg < 0:
            raise ValueError(f"need lr > 0 and reg >= 0, got lr={lr}, reg={reg}")
        self.dim, self.epochs, self.lr, self.reg = int(dim), int(epochs), float(lr), float(reg)
        self.batch_size, self.seed, self.progress = int(batch_size), int(seed), progress
        self.cpu_threads = cpu_threads
        self.device = get_device(device, verbose=False) if device is not None else get_device(verbose=False)
        self.losses: list[float] = []

    def params(self) -> dict[str, Any]:
        return {"dim": self.dim, "epochs": self.epochs, "lr": self.lr, "reg": self.reg}

    def _init_kwargs(self) -> dict[str, Any]:
        return {**self.params(), "batch_size": self.batch_size, "seed": self.seed, "cpu_threads": self.cpu_threads}

    @staticmethod
    def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``-mean log σ(pos - neg)`` for ``(B,)`` scores of positive and negative items."""
        return -F.logsigmoid(pos - neg).mean()

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator, rounds: int = 10) -> torch.Tensor:
        """``(B,)`` items drawn uniformly from ``1..n_items`` among those ``users`` have not seen.

        Draws, then redraws the ones that hit a training item (``rounds`` times; with the
        sparse data of recommendation one or two rounds suffice).
        """
        n = self.n_items
        neg = torch.randint(1, n + 1, users.shape, generator=generator, device=users.device)
        for _ in range(rounds):
            hit = self._is_positive(users, neg)
            if not hit.any():
                break
            neg[hit] = torch.randint(1, n + 1, (int(hit.sum()),), generator=generator, device=users.device)
        return neg

    def _is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * (self.n_items + 1) + items
        pos = torch.searchsorted(self._pos_keys, keys).clamp(max=len(self._pos_keys) - 1)
        return self._pos_keys[pos] == keys

    def _fit(self, X, data) -> None:
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and self.cpu_threads is not None:
            torch.set_num_threads(int(self.cpu_threads))
        try:
            self._train(X)
        finally:
            torch.set_num_threads(threads)

    def _train(self, X) -> None:
        from tqdm.auto import tqdm

        dev = self.device
        coo = X.tocoo()
        users = torch.from_numpy(coo.row.astype(np.int64)).to(dev)
        items = torch.from_numpy(coo.col.astype(np.int64)).to(dev)
        self._pos_keys = torch.sort(users * (self.n_items + 1) + items).values
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        init = torch.Generator().manual_seed(self.seed)
        self.user_factors = torch.nn.Parameter((0.1 * torch.randn(self.n_users, self.dim, generator=init)).to(dev))
        self.item_factors = torch.nn.Parameter((0.1 * torch.randn(self.n_items + 1, self.dim, generator=init)).to(dev))
        self.item_bias = torch.nn.Parameter(torch.zeros(self.n_items + 1, device=dev))
        opt = torch.optim.Adam([self.user_factors, self.item_factors, self.item_bias], lr=self.lr)
        self.losses = []
        bar = tqdm(range(self.epochs), desc="BPR-MF", disable=not self.progress, leave=False)
        for _ in bar:
            order = torch.randperm(len(users), generator=gen, device=dev)
            total, count = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                u, i = users[idx], items[idx]
                j = self.sample_negatives(u, gen)
                pu, qi, qj = self.user_factors[u], self.item_factors[i], self.item_factors[j]
                pos = (pu * qi).sum(-1) + self.item_bias[i]
                neg = (pu * qj).sum(-1) + self.item_bias[j]
                loss = self.bpr_loss(pos, neg)
                penalty = self.reg * (pu.pow(2).sum(-1) + qi.pow(2).sum(-1) + qj.pow(2).sum(-1)).mean()
                opt.zero_grad(set_to_none=True)
                (loss + penalty).backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            self.losses.append(total / count)
            bar.set_postfix(loss=f"{self.losses[-1]:.4f}")

    def _score_rows(self, R, users):
        with torch.no_grad():
            u = torch.from_numpy(users).to(self.device)
            return (self.user_factors[u] @ self.item_factors.T + self.item_bias).cpu()


# --------------------------------------------------------------------------- TF-IDF content
def item_text(items: pd.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """One string per row of an item table (row 0 of a split's table is padding → "").

    By default: ``title`` and ``description`` (the shop) or ``title`` and ``genres``
    (MovieLens, whose ``"Action|Comedy"`` becomes ``"Action Comedy"``), whichever exist.
    """
    if columns is None:
        columns = [c for c in ("title", "description", "genres") if c in items.columns]
    missing = [c for c in columns if c not in items.columns]
    if missing or not columns:
        raise ValueError(f"the item table has no column(s) {missing or list(columns)} for text; "
                         f"it has {list(items.columns)}")
    parts = [items[c].fillna("").astype(str).str.replace("|", " ", regex=False) for c in columns]
    text = parts[0]
    for p in parts[1:]:
        text = text + " " + p
    out = text.str.strip().tolist()
    if "title" in items.columns:  # the padding row of a split
        out = ["" if t == "<pad>" else s for t, s in zip(items["title"].astype(str), out)]
    return out


class TfidfContent(BaselineModel):
    """Content-based recommendation with TF-IDF item vectors (scikit-learn).

    Each item is a bag of words from its text (titles and descriptions, or titles and
    genres), weighted by TF-IDF, ``tfidf(t, i) = tf(t, i) · (log((1 + n) / (1 + df(t))) + 1)``,
    and L2-normalised: ``v_i``. A user's profile is the mean of the vectors of the items
    they have seen, ``p_u = mean_{i in I_u} v_i``; ``score(u, j) = p_u · v_j``.

    Needs no other user's behaviour, so it can recommend an item nobody has bought yet
    (cold start) — and it recommends "more of the same".

    Args:
        columns: item-table columns to read (default: see :func:`item_text`).
        **tfidf: passed to :class:`sklearn.feature_extraction.text.TfidfVectorizer`
            (default: English stop words removed, ``sublinear_tf=True``, ``min_df=1``).
    """

    name = "TF-IDF"
    _state = ("item_vectors",)

    def __init__(self, columns: Sequence[str] | None = None, **tfidf: Any) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None
        self.tfidf = {"stop_words": "english", "sublinear_tf": True, "min_df": 1, **tfidf}

    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, **{k: v for k, v in self.tfidf.items() if k != "stop_words"}}

    def _init_kwargs(self) -> dict[str, Any]:
        plain = (str, int, float, bool, type(None))
        return {"columns": self.columns, **{k: v for k, v in self.tfidf.items() if isinstance(v, plain)}}

    def fit(self, data: LeaveOneOutSplit | sp.spmatrix | np.ndarray, *, include_valid: bool = False,
            items: pd.DataFrame | Sequence[str] | None = None) -> "TfidfContent":
        """As :meth:`BaselineModel.fit`; ``items`` gives the item text when ``data`` is a bare
        matrix: an item table indexed by internal id (row 0 = padding) or one string per
        column of the matrix."""
        if isinstance(data, LeaveOneOutSplit):
            self._texts = item_text(data.items, self.columns)
        elif items is None:
            raise ValueError("TfidfContent needs item text: fit(split), or fit(matrix, items=...) with one "
                             "string per item column")
        else:
            self._texts = item_text(items, self.columns) if isinstance(items, pd.DataFrame) else list(items)
        return super().fit(data, include_valid=include_valid)

    def _fit(self, X, data) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if len(self._texts) != X.shape[1]:
            raise ValueError(f"{len(self._texts)} item texts for {X.shape[1]} item columns (padding included)")
        self.vectorizer = TfidfVectorizer(**self.tfidf)
        real = self.vectorizer.fit_transform(self._texts[1:]).astype(np.float32)  # (n_items, V), rows unit norm
        pad = sp.csr_matrix((1, real.shape[1]), dtype=np.float32)  # the padding row stays empty
        self.item_vectors = sp.vstack([pad, real]).tocsr()  # (N, V)

    def profiles(self, R: sp.csr_matrix) -> sp.csr_matrix:
        """``(B, V)`` user profiles: the mean TF-IDF vector of each row's items."""
        counts = np.asarray(R.sum(axis=1)).ravel()
        inv = np.divide(1.0, counts, out=np.zeros_like(counts, dtype=np.float64), where=counts > 0)
        return (sp.diags(inv.astype(np.float32)) @ R @ self.item_vectors).tocsr()

    def _score_rows(self, R, users):
        return (self.profiles(R) @ self.item_vectors.T).toarray()


# --------------------------------------------------------------------------- hybrid
class Hybrid(BaselineModel):
    """A weighted hybrid: the sum of several models' scores, each standardised per user.

    ``score(u, ·) = sum_m w_m · (s_m(u, ·) - mean_u) / std_u`` over the real items, so that
    models whose scores live on different scales (counts, cosines, regression weights)
    mix in the proportions ``weights`` say. The classic way to let content-based scores
    help collaborative filtering where it is blind: new and rare items.
    """

    name = "Hybrid"

    def __init__(self, models: Sequence[BaselineModel], weights: Sequence[float]) -> None:
        super().__init__()
        if len(models) == 0 or len(models) != len(weights):
            raise ValueError(f"need one weight per model; got {len(models)} models and {len(weights)} weights")
        self.models, self.weights = list(models), [float(w) for w in weights]
        self.uses_user_ids = any(m.uses_user_ids for m in models)

    def params(self) -> dict[str, Any]:
        return {"models": [m.name for m in self.models], "weights": self.weights}

    def _init_kwargs(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """As :meth:`BaselineModel.save_pretrained`, each part model in a sub-folder ``part-<i>``."""
        path = super().save_pretrained(directory)
        for i, m in enumerate(self.models):
            m.save_pretrained(path / f"part-{i}")
        return path

    @classmethod
    def _rebuild(cls, path: Path, init: dict[str, Any]) -> "Hybrid":
        models = [BaselineModel.from_pretrained(path / f"part-{i}") for i in range(len(init["weights"]))]
        return cls(models, init["weights"])

    def fit(self, data: LeaveOneOutSplit | sp.spmatrix | np.ndarray, *, include_valid: bool = False,
            **kwargs: Any) -> "Hybrid":
        """Fit every model on ``data`` (``kwargs`` go to models whose ``fit`` takes them)."""
        start = time.perf_counter()
        for m in self.models:
            if isinstance(m, TfidfContent):
                m.fit(data, include_valid=include_valid, **kwargs)
            else:
                m.fit(data, include_valid=include_valid)
        super().fit(data, include_valid=include_valid)
        self.fit_seconds = time.perf_counter() - start  # all the models together
        return self

    def _fit(self, X, data) -> None:
        pass

    @staticmethod
    def standardise(scores: torch.Tensor) -> torch.Tensor:
        """Per row, ``(s - mean) / std`` over columns ``1..n_items`` (column 0 stays ``-inf``)."""
        s = scores[:, 1:]
        std = s.std(dim=1, keepdim=True)
        z = (s - s.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
        return torch.cat([torch.full_like(scores[:, :1], -torch.inf), z], dim=1)

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the part models' standardised scores, ``(B, n_items + 1)``, column 0 ``-inf``."""
        self._check_fitted()
        self._check_input(users, histories)
        total = None
        for m, w in zip(self.models, self.weights):
            z = self.standardise(m.score(users, histories).float())
            total = w * z if total is None else total + w * z
        total[:, PAD] = -torch.inf
        return total

    __call__ = score


# --------------------------------------------------------------------------- tuning
def tune_baseline(make_model: Callable[..., BaselineModel], grid: Mapping[str, Iterable[Any]],
                  split: LeaveOneOutSplit, *, metric: str = "NDCG@10", ks: Sequence[int] = (10,),
                  users: Sequence[int] | None = None, progress: bool = False
                  ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Try every combination of ``grid`` on the **validation** stage; return the best and a table.

    (Called ``grid_search`` before; that name still works, but
    :func:`course_lib.train.grid_search` is the search over training runs, which returns a
    :class:`~course_lib.train.SearchResult`.)

    Each model is ``make_model(**params).fit(split)`` (training matrix only) and scored by
    :func:`~course_lib.evaluate.evaluate` on ``"valid"``. The test stage is never looked at.

    Returns:
        ``(best_params, table)``; the table has one row per combination with its metrics
        and fit seconds, sorted best first.
    """
    from tqdm.auto import tqdm

    keys = list(grid)
    combos = list(itertools.product(*(list(grid[k]) for k in keys)))
    if not combos:
        raise ValueError("the grid is empty")
    rows = []
    for values in tqdm(combos, desc="grid search", disable=not progress, leave=False):
        params = dict(zip(keys, values))
        model = make_model(**params).fit(split)
        result = evaluate(model, split, "valid", ks=ks, users=users)
        if metric not in result:
            raise ValueError(f"metric {metric!r} is not computed; choose one of {list(result)}")
        rows.append({**params, **result, "fit s": model.fit_seconds})
    table = pd.DataFrame(rows).sort_values(metric, ascending=False, kind="stable").reset_index(drop=True)
    best = {k: table.loc[0, k] for k in keys}
    best = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in best.items()}
    return best, table


grid_search = tune_baseline  # the old name (deprecated: course_lib.train.grid_search means another thing)


def fit_and_test(model: BaselineModel, split: LeaveOneOutSplit, *, ks: Sequence[int] = (10,),
                 users: Sequence[int] | None = None, per_user: bool = False
                 ) -> dict[str, float] | tuple[dict[str, float], pd.DataFrame]:
    """The test-stage protocol: refit ``model`` on train + validation, evaluate on ``"test"``.

    Returns what :func:`~course_lib.evaluate.evaluate` returns (with ``per_user``, the
    per-user table too); the model stays fitted on train + validation.
    """
    model.fit(split, include_valid=True)
    return evaluate(model, split, "test", ks=ks, users=users, per_user=per_user)


_BASELINES: dict[str, type[BaselineModel]] = {
    c.__name__: c for c in (MostPopular, ItemKNN, EASE, BPRMF, TfidfContent, Hybrid)}
