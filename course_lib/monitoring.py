"""Monitoring a recommendation service: Prometheus metrics and a drift check on incoming histories.

A service that answers is not yet a service that works. :func:`instrument` wraps chapter 07's
FastAPI app (``course_lib.serve.create_app``) in a plain ASGI middleware that counts requests
and their status codes, times them, keeps track of which items it recommended, and serves
everything at ``GET /metrics`` in the Prometheus text format (``prometheus-client``)::

    app = instrument(create_app(service), n_items=service.catalogue.n_items,
                     drift=DriftMonitor(training_histories))
    # curl localhost:8000/metrics
    # recsys_requests_total{method="POST",path="/recommend",status="200"} 412.0
    # recsys_request_latency_seconds_bucket{le="0.01",path="/recommend"} 398.0
    # recsys_recommendation_coverage 0.31
    # recsys_history_drift_psi{feature="item_popularity"} 0.04

:class:`DriftMonitor` compares the histories that requests bring with the training data by the
*population stability index* of two features: how popular (in training) the items in them are,
and how long they are. ``PSI = Σ_b (c_b - r_b) · ln(c_b / r_b)`` over bins ``b`` with reference
shares ``r`` and current shares ``c``; the usual reading is < 0.1 stable, 0.1–0.2 watch,
> 0.2 drifted (a rule of thumb from credit scoring, not a test).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["DriftMonitor", "MetricsMiddleware", "instrument", "psi"]

PSI_DRIFTED = 0.2


def psi(reference: np.ndarray, current: np.ndarray, *, eps: float = 1e-4) -> float:
    """Population stability index of two histograms (counts or shares over the same bins).

    ``Σ_b (c_b - r_b) ln(c_b / r_b)`` with shares floored at ``eps`` so empty bins stay finite.
    0 for identical distributions; symmetric in its arguments.
    """
    r = np.asarray(reference, float)
    c = np.asarray(current, float)
    if r.shape != c.shape or r.ndim != 1:
        raise ValueError(f"psi needs two 1-D histograms over the same bins; got {r.shape} and {c.shape}")
    if r.sum() <= 0 or c.sum() <= 0:
        raise ValueError("psi needs histograms with positive totals")
    r = np.maximum(r / r.sum(), eps)
    c = np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


class DriftMonitor:
    """Drift of incoming histories against the training histories.

    Items are put into ``n_bins`` bins by their training popularity (equal shares of training
    interactions per bin, most popular last) plus one bin for items never seen in training;
    history lengths into bins at the training lengths' quantiles.

    Args:
        reference: the training histories (sequences of item ids, any id type that hashes).
        n_bins: bins per feature.
    """

    def __init__(self, reference: Sequence[Sequence], n_bins: int = 10) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        seqs = [list(s) for s in reference if len(s)]
        if not seqs:
            raise ValueError("DriftMonitor needs at least one non-empty reference history")
        items, counts = np.unique(np.concatenate([np.asarray(s) for s in seqs]), return_counts=True)
        order = np.argsort(counts, kind="stable")                       # least popular first
        share = np.cumsum(counts[order]) / counts.sum()
        bins = np.minimum((share * n_bins - 1e-9).astype(int), n_bins - 1)
        self.item_bin = {k.item() if hasattr(k, "item") else k: int(b) for k, b in zip(items[order], bins)}
        self.n_bins = n_bins
        lengths = np.array([len(s) for s in seqs])
        self.length_edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_bins + 1)[1:-1]))
        self.reference = {"item_popularity": self._item_hist(seqs), "history_length": self._length_hist(lengths)}
        self.current = {k: np.zeros_like(v) for k, v in self.reference.items()}

    def _item_hist(self, seqs) -> np.ndarray:
        h = np.zeros(self.n_bins + 1)
        for s in seqs:
            for i in s:
                h[self.item_bin.get(i.item() if hasattr(i, "item") else i, self.n_bins)] += 1
        return h

    def _length_hist(self, lengths) -> np.ndarray:
        return np.bincount(np.searchsorted(self.length_edges, np.asarray(lengths), side="right"),
                           minlength=len(self.length_edges) + 1).astype(float)

    def observe(self, history: Sequence) -> None:
        """Add one incoming history (item ids as in the reference) to the current window."""
        history = list(history)
        if not history:
            return
        self.current["item_popularity"] += self._item_hist([history])
        self.current["history_length"] += self._length_hist([len(history)])

    def reset(self) -> None:
        """Start a new window (e.g. every hour)."""
        self.current = {k: np.zeros_like(v) for k, v in self.reference.items()}

    @property
    def n_observed(self) -> int:
        return int(self.current["history_length"].sum())

    def report(self) -> dict[str, float | bool]:
        """``{"item_popularity": PSI, "history_length": PSI, "new_item_share": ..., "drifted": bool}``
        over the histories observed since the last reset (PSIs are NaN before any)."""
        if self.n_observed == 0:
            return {"item_popularity": float("nan"), "history_length": float("nan"), "new_item_share": float("nan"),
                    "drifted": False}
        out: dict[str, float | bool] = {k: psi(self.reference[k], self.current[k]) for k in self.reference}
        cur = self.current["item_popularity"]
        out["new_item_share"] = float(cur[-1] / cur.sum())
        out["drifted"] = bool(max(out["item_popularity"], out["history_length"]) > PSI_DRIFTED)
        return out


class MetricsMiddleware:
    """Plain ASGI middleware: Prometheus counters around an app, and ``GET /metrics``.

    Metrics (all prefixed ``recsys_``): ``requests_total{method,path,status}``,
    ``request_latency_seconds{path}`` (histogram), ``recommended_items_total`` (items in
    /recommend answers), ``recommendation_coverage`` (distinct items recommended since start /
    catalogue size), ``history_drift_psi{feature}`` and ``history_drift_observed`` (with a
    :class:`DriftMonitor`). Paths are the app's known routes or ``"other"``, so that random
    URLs cannot blow up the number of time series.
    """

    ROUTES = ("/recommend", "/health", "/items", "/users", "/metrics")

    def __init__(self, app, *, n_items: int, drift: DriftMonitor | None = None, registry=None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        if n_items < 1:
            raise ValueError(f"n_items must be the catalogue size (>= 1), got {n_items}")
        self.app, self.n_items, self.drift = app, int(n_items), drift
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("recsys_requests", "HTTP requests by route and status", ["method", "path", "status"],
                                registry=self.registry)
        self.latency = Histogram("recsys_request_latency_seconds", "time to answer, seconds", ["path"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                                 registry=self.registry)
        self.recommended = Counter("recsys_recommended_items", "items returned by /recommend", registry=self.registry)
        self.coverage = Gauge("recsys_recommendation_coverage", "distinct items recommended / catalogue size",
                              registry=self.registry)
        self.drift_psi = Gauge("recsys_history_drift_psi", "PSI of incoming histories vs training", ["feature"],
                               registry=self.registry)
        self.drift_n = Gauge("recsys_history_drift_observed", "incoming histories in the drift window",
                             registry=self.registry)
        self.seen_items: set = set()

    def _route(self, path: str) -> str:
        for r in self.ROUTES:
            if path == r or path.startswith(r + "/"):
                return r
        return "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = self._route(scope.get("path", ""))
        if path == "/metrics" and scope.get("method") == "GET":
            await self._serve_metrics(send)
            return
        start = time.perf_counter()
        status = {"code": 500}
        request_body: list[bytes] = []
        response_body: list[bytes] = []
        watch = path == "/recommend"

        async def receive_wrapper():
            message = await receive()
            if watch and message["type"] == "http.request":
                request_body.append(message.get("body", b""))
            return message

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body" and watch:
                response_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self.requests.labels(scope.get("method", "?"), path, str(status["code"])).inc()
            self.latency.labels(path).observe(time.perf_counter() - start)
            if watch and status["code"] == 200:
                self._after_recommend(b"".join(request_body), b"".join(response_body))

    def _after_recommend(self, request: bytes, response: bytes) -> None:
        try:
            items = [it["item_id"] for it in json.loads(response).get("items", [])]
        except (ValueError, AttributeError, KeyError, TypeError):
            log.warning("could not read a /recommend answer for the metrics")
            return
        self.recommended.inc(len(items))
        self.seen_items.update(items)
        self.coverage.set(len(self.seen_items) / self.n_items)
        if self.drift is not None:
            try:
                history = json.loads(request).get("history")
            except (ValueError, AttributeError):
                history = None
            if history:
                self.drift.observe(history)
                rep = self.drift.report()
                self.drift_psi.labels("item_popularity").set(rep["item_popularity"])
                self.drift_psi.labels("history_length").set(rep["history_length"])
                self.drift_n.set(self.drift.n_observed)

    async def _serve_metrics(self, send) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.registry)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def instrument(app, *, n_items: int, drift: DriftMonitor | None = None, registry=None) -> MetricsMiddleware:
    """Wrap an ASGI app (e.g. ``course_lib.serve.create_app(...)``) with :class:`MetricsMiddleware`.

    The result is itself an ASGI app: run it with uvicorn or ``course_lib.serve.ThreadedServer``.
    Its ``registry`` holds the metrics; ``GET /metrics`` serves them.
    """
    return MetricsMiddleware(app, n_items=n_items, drift=drift, registry=registry)
