"""Retrieval: user and item vectors, exact and approximate (faiss) maximum inner-product search.

When a model scores items by an inner product ``s(u, i) = h_u · e_i``, recommending is a
*maximum inner-product search* for the user vector ``h_u`` among the item vectors ``e_i``;
``faiss`` answers it exactly (flat) or approximately (IVF, HNSW), trading recall for speed.

Shapes: ``B`` queries, ``N = n_items + 1`` item rows (row 0 = padding), ``d`` the embedding size.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from ..data.protocol import PAD
from ..scoring import as_score_fn
from .ranking import NEG_INF, _check_k, mask_items


# ============================================================================ retrieval
def _get_items_attr(model: Any) -> torch.Tensor | None:
    for name in ("item_embeddings", "item_embedding", "item_emb"):
        value = getattr(model, name, None)
        if value is None:
            continue
        if callable(value) and not isinstance(value, (torch.Tensor, nn.Module)):
            value = value()
        if isinstance(value, nn.Embedding):
            value = value.weight
        if isinstance(value, torch.Tensor):
            return value
    return None


def has_retrieval(model: Any) -> bool:
    """Whether ``model`` exposes an item table and a way to compute user vectors.

    (That ``user_vector(h) @ item_table.T`` really equals ``score(h)`` is checked by
    :func:`retrieval_matches_scores`.)
    """
    if _get_items_attr(model) is None:
        return False
    return isinstance(model, nn.Module) or any(callable(getattr(model, n, None))
                                               for n in ("user_vector", "hidden", "encode"))


def item_vectors(model: Any) -> torch.Tensor:
    """``(n_items + 1, d)`` the item table a model scores against (row 0 = padding)."""
    table = _get_items_attr(model)
    if table is None:
        raise TypeError(f"{type(model).__name__} has no item table: give it an `item_embeddings` "
                        "attribute, property or method returning (n_items + 1, d)")
    return table


def user_vectors(model: Any, histories: torch.Tensor) -> torch.Tensor:
    """``(B, d)`` user vectors: the model's representation of each history.

    In order: ``model.user_vector(histories)``; else the last position of the ``(B, L, d)``
    hidden states from ``model.hidden(histories)``, ``model.encode(histories)`` or
    ``model(histories)`` (the course's SASRec and GRU4Rec return hidden states from
    ``forward``). For a causal model reading left-padded histories, the last position has
    read the whole history: its hidden state is the user vector. Histories are cut to the
    model's ``max_len`` (if it has one) as its ``score`` does.
    """
    max_len = getattr(model, "max_len", None)
    if isinstance(max_len, int) and histories.shape[1] > max_len:
        histories = histories[:, -max_len:]
    with torch.no_grad():
        fn = getattr(model, "user_vector", None)
        if callable(fn):
            return fn(histories)
        for name in ("hidden", "encode"):
            fn = getattr(model, name, None)
            if callable(fn):
                return fn(histories)[:, -1]
        if isinstance(model, nn.Module):
            out = model(histories)
            if isinstance(out, torch.Tensor) and out.ndim == 3:
                return out[:, -1]
    raise TypeError(f"{type(model).__name__} has no user_vector(histories) (nor hidden/encode, nor a forward "
                    "returning (B, L, d)); retrieval needs h such that score = h @ item_embeddings.T")


def retrieval_matches_scores(model: Any, histories: torch.Tensor, *, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
    """Whether ``user_vectors(model, h) @ item_vectors(model).T`` equals ``model.score(h)``.

    Compared on the finite entries (models set the padding column to ``-inf``). A model
    with a bias per item, or an output layer that is not the item table, fails.
    """
    if not has_retrieval(model) or not callable(getattr(model, "score", None)):
        return False
    with torch.no_grad():
        try:
            via = user_vectors(model, histories).float() @ item_vectors(model).float().T
        except (TypeError, RuntimeError):
            return False
        direct = as_score_fn(model)(None, histories).float()
    if via.shape != direct.shape:
        return False
    finite = torch.isfinite(direct)
    return bool(torch.allclose(via[finite], direct[finite], rtol=rtol, atol=atol))


def _as_numpy_f32(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _filter_rows(ids: np.ndarray, scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None,
                 allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep each row's first ``k`` ids that are valid, not excluded and allowed. Returns short-row count."""
    B = len(ids)
    out_ids = np.zeros((B, k), dtype=np.int64)
    out_scores = np.full((B, k), NEG_INF, dtype=np.float32)
    short = 0
    for r in range(B):
        row_ids, row_scores = ids[r], scores[r]
        keep = row_ids > 0
        if allowed is not None:
            keep &= allowed[np.maximum(row_ids, 0)]
        if exclude is not None and len(exclude[r]):
            keep &= ~np.isin(row_ids, exclude[r])
        got_ids, got_scores = row_ids[keep][:k], row_scores[keep][:k]
        out_ids[r, :len(got_ids)] = got_ids
        out_scores[r, :len(got_ids)] = got_scores
        short += len(got_ids) < k
    return out_scores, out_ids, short


class ExactIndex:
    """Exact maximum inner-product search with torch: ``scores = Q @ E.T``, then ``topk``.

    Args:
        item_vectors: ``(n_items + 1, d)`` (row 0 = padding, never returned).
    """

    kind = "exact"

    def __init__(self, item_vectors: torch.Tensor | np.ndarray) -> None:
        self.items = torch.as_tensor(_as_numpy_f32(item_vectors))
        self.n_items = len(self.items) - 1
        self.d = self.items.shape[1]

    def search(self, queries: torch.Tensor | np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               allowed: np.ndarray | torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, both ``(B, k)``; ids are internal (0 and ``-inf`` where nothing is left)."""
        k = _check_k(k, self.n_items)
        q = torch.as_tensor(_as_numpy_f32(queries))
        scores = q @ self.items.T                                             # (B, N)
        if exclude is not None:
            mask_items(scores, [np.asarray(e, dtype=np.int64) for e in exclude])
        scores[:, PAD] = NEG_INF
        if allowed is not None:
            scores.masked_fill_(~torch.as_tensor(np.asarray(allowed, dtype=bool)), NEG_INF)
        s, i = torch.topk(scores, k, dim=1)
        i = i.masked_fill(~torch.isfinite(s), PAD)
        return s.numpy(), i.numpy()


class FaissIndex:
    """Inner-product search with ``faiss``: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate).

    * **flat** (``IndexFlatIP``): compares the query with every item — exact, O(n d) per query.
    * **IVF** (``IndexIVFFlat``): k-means splits the items into ``nlist`` cells; a query
      visits only the ``nprobe`` cells whose centroids score highest. Recall grows with
      ``nprobe``; ``nprobe = nlist`` is exact again.
    * **HNSW** (``IndexHNSWFlat``): a layered graph whose nodes link to ``m`` near
      neighbours; a query walks the graph greedily, keeping ``ef_search`` candidates. Recall
      grows with ``ef_search``.

    Args:
        item_vectors: ``(n_items + 1, d)``; row 0 (padding) is left out of the index.
        kind: ``"flat"``, ``"ivf"`` or ``"hnsw"``.
        nlist: IVF cells (default ``round(4 sqrt(n))``).
        nprobe: IVF cells visited per query.
        m: HNSW neighbours per node; ``ef_construction``, ``ef_search``: HNSW beam widths.
        threads: faiss's OpenMP threads (default: leave as is).

    Search parameters can be changed after building (``index.nprobe = 16``,
    ``index.ef_search = 128``); ids returned are internal item ids.
    """

    KINDS = ("flat", "ivf", "hnsw")

    def __init__(self, item_vectors: torch.Tensor | np.ndarray, kind: str = "hnsw", *, nlist: int | None = None,
                 nprobe: int = 8, m: int = 32, ef_construction: int = 80, ef_search: int = 64,
                 threads: int | None = None, seed: int = 0) -> None:
        import faiss

        if kind not in self.KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of: {', '.join(self.KINDS)}")
        self._faiss = faiss
        if threads is not None:
            faiss.omp_set_num_threads(int(threads))
        x = _as_numpy_f32(item_vectors)[1:]
        n, d = x.shape
        if n < 1:
            raise ValueError("the index needs at least one item")
        self.kind, self.n_items, self.d = kind, n, d
        start = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = int(nlist or max(1, round(4 * math.sqrt(n))))
            if nlist > n:
                raise ValueError(f"nlist={nlist} exceeds the {n} items; use at most n_items cells")
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.cp.min_points_per_centroid = 1          # small catalogues: no warning spam
            index.train(x)
            self.nlist = nlist
            self._quantizer = quantizer                     # keep it alive with the index
        else:
            index = faiss.IndexHNSWFlat(d, int(m), faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(ef_construction)
            self.m = int(m)
        index.add(x)
        self.build_s = time.perf_counter() - start
        self.index = index
        self.nprobe = int(nprobe)
        self.ef_search = int(ef_search)

    def _params(self, selector=None):
        faiss = self._faiss
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=min(self.nprobe, self.nlist))
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries: torch.Tensor | np.ndarray, k: int, *, exclude: Sequence[np.ndarray] | None = None,
               allowed: np.ndarray | torch.Tensor | None = None,
               fetch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)``, both ``(B, k)``, internal ids (0 and ``-inf`` where nothing is left).

        ``allowed`` (``(n_items + 1,)`` booleans, a shared filter) is applied *inside* the search
        with a faiss ID selector. Per-row ``exclude`` lists (the items each user has seen) are
        removed *after* it: the index is asked for ``fetch`` candidates (default ``k`` plus the
        longest exclusion list) and the first ``k`` survivors kept.
        """
        k = _check_k(k, self.n_items)
        q = _as_numpy_f32(queries)
        if q.ndim != 2 or q.shape[1] != self.d:
            raise ValueError(f"queries must be (B, {self.d}), got {q.shape}")
        selector, allowed_np = None, None
        if allowed is not None:
            allowed_np = np.asarray(allowed.cpu() if isinstance(allowed, torch.Tensor) else allowed, dtype=bool)
            ok = np.flatnonzero(allowed_np[1:]).astype(np.int64)         # faiss ids are internal - 1
            selector = self._faiss.IDSelectorBatch(ok)
        longest = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        fetch = min(self.n_items, int(fetch or k + longest))
        scores, ids = self.index.search(q, fetch, params=self._params(selector))
        ids = np.where(ids >= 0, ids + 1, 0)
        out_scores, out_ids, short = _filter_rows(ids, scores, k, exclude, allowed_np)
        self.last_short_rows = short
        return out_scores, out_ids

    def __repr__(self) -> str:
        extra = {"ivf": lambda: f", nlist={self.nlist}, nprobe={self.nprobe}",
                 "hnsw": lambda: f", m={self.m}, ef_search={self.ef_search}"}.get(self.kind, lambda: "")()
        return f"FaissIndex({self.kind}, {self.n_items} items, d={self.d}{extra})"


def ann_recall(approx_ids: np.ndarray | torch.Tensor, exact_ids: np.ndarray | torch.Tensor) -> float:
    """Recall of approximate top-k lists against exact ones: ``mean_u |A_u ∩ E_u| / |E_u|``.

    Both are ``(B, k)`` arrays of item ids; id 0 (nothing found) never counts as a hit.
    """
    a = np.asarray(approx_ids.cpu() if isinstance(approx_ids, torch.Tensor) else approx_ids)
    e = np.asarray(exact_ids.cpu() if isinstance(exact_ids, torch.Tensor) else exact_ids)
    if a.shape[0] != e.shape[0] or a.ndim != 2 or e.ndim != 2:
        raise ValueError(f"approx_ids and exact_ids must be (B, k) with the same B; got {a.shape} and {e.shape}")
    values = []
    for ar, er in zip(a, e):
        truth = set(er[er > 0].tolist())
        if truth:
            values.append(len(truth & set(ar[ar > 0].tolist())) / len(truth))
    if not values:
        raise ValueError("the exact lists are all empty; nothing to compare with")
    return float(np.mean(values))


def time_call(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _latency_per_query(index, queries: np.ndarray, k: int, n: int) -> float:
    """Median milliseconds of a one-query search over the first ``n`` queries."""
    times = []
    for r in range(min(n, len(queries))):
        q = queries[r:r + 1]
        start = time.perf_counter()
        index.search(q, k)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def sweep_ann(item_table: torch.Tensor | np.ndarray, queries: torch.Tensor | np.ndarray, k: int = 10, *,
              nlist: int | None = None, nprobes: Sequence[int] = (1, 2, 4, 8, 16, 32),
              m: int = 32, ef_construction: int = 80, ef_searches: Sequence[int] = (8, 16, 32, 64, 128),
              latency_queries: int = 200, threads: int | None = None) -> pd.DataFrame:
    """Recall@k against exact search and latency for flat, IVF and HNSW settings.

    Args:
        item_table: ``(n_items + 1, d)`` item vectors (row 0 = padding).
        queries: ``(Q, d)`` user vectors.
        k: list length.
        nprobes, ef_searches: the search settings to try (IVF and HNSW).
        latency_queries: how many one-query searches to time (the median is reported).

    Returns a DataFrame: ``index``, ``setting``, ``recall@k`` (vs exact, no masking),
    ``ms/query`` (one query at a time, median), ``queries/s`` (all queries in one batch),
    ``build s``, and ``params`` (the keyword arguments that rebuild the setting:
    ``FaissIndex(items, row["index"], **row["params"])``).
    """
    q = _as_numpy_f32(queries)
    exact = ExactIndex(item_table)
    _, truth = exact.search(q, k)
    rows = []

    def measure(index, name: str, setting: str, build_s: float, params: dict) -> None:
        batch_s = time_call(lambda: index.search(q, k), repeat=3)
        _, ids = index.search(q, k)
        rows.append({"index": name, "setting": setting, f"recall@{k}": ann_recall(ids, truth),
                     "ms/query": _latency_per_query(index, q, k, latency_queries),
                     "queries/s": len(q) / batch_s, "build s": build_s, "params": params})

    measure(exact, "exact (torch)", "-", 0.0, {})
    flat = FaissIndex(item_table, "flat", threads=threads)
    measure(flat, "flat", "-", flat.build_s, {})
    ivf = FaissIndex(item_table, "ivf", nlist=nlist, threads=threads)
    for p in nprobes:
        if p > ivf.nlist:
            continue
        ivf.nprobe = p
        measure(ivf, "ivf", f"nlist={ivf.nlist}, nprobe={p}", ivf.build_s, {"nlist": ivf.nlist, "nprobe": p})
    hnsw = FaissIndex(item_table, "hnsw", m=m, ef_construction=ef_construction, threads=threads)
    for ef in ef_searches:
        hnsw.ef_search = ef
        measure(hnsw, "hnsw", f"M={m}, efSearch={ef}", hnsw.build_s,
                {"m": m, "ef_construction": ef_construction, "ef_search": ef})
    return pd.DataFrame(rows)
