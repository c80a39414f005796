"""Load tests and bad-input checks for the recommendation service, with a real HTTP client.

* :func:`load_test` — a **closed-loop** load test: ``concurrency`` clients each send a
  request, wait for the answer, and send the next, until ``n_requests`` have been sent or
  ``time_limit_s`` has passed. Reports throughput and latency percentiles (p50/p95/p99).
  By Little's law, ``throughput ≈ concurrency / mean latency`` in such a test.
* :func:`bad_input_cases` and :func:`run_cases` — a barrage of malformed and wrong requests,
  each with the status code it must get; the result table says which got what.

Safety: both only talk to loopback addresses (``127.0.0.1``, ``localhost``, ``::1``) and are
bounded in count (at most :data:`MAX_REQUESTS`) and time (at most :data:`MAX_SECONDS`); they
stop by themselves. The load test's client is ``aiohttp``'s on one event loop (``client="httpx"``
gives ``httpx``'s async client, which the bad-input checks use). It runs on the same machine as
the server and takes CPU from it, so the numbers are those of a busy laptop, not of a data centre.

Why aiohttp: a load generator must be faster than what it measures. ``httpx.AsyncClient``'s
connection pool does work that grows with the number of open connections on every request
(encode/httpx#3215). At concurrency 64 on one core it sent about 150 requests/s to a server that
answers more than twice as many at concurrency 8, so the server's micro-batcher saw its requests
one or two at a time: the old concurrency-64 figures measured the client.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

MAX_REQUESTS = 100_000
MAX_SECONDS = 600.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_loopback(url: str) -> str:
    """Return ``url`` without a trailing slash; raise ``ValueError`` unless it is a loopback HTTP URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise ValueError(f"load tests only target this machine (http://127.0.0.1:PORT), not {url!r}")
    return url.rstrip("/")


@dataclass
class LoadResult:
    """What one load test measured. Latencies in milliseconds; throughput in requests per second."""

    concurrency: int
    requests: int
    wall_s: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    status_counts: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def n_5xx(self) -> int:
        return sum(n for code, n in self.status_counts.items() if code >= 500)

    @property
    def n_ok(self) -> int:
        return sum(n for code, n in self.status_counts.items() if 200 <= code < 300)

    def row(self) -> dict[str, Any]:
        """A flat dict for a results table (no raw latencies)."""
        d = asdict(self)
        d.pop("latencies_ms")
        d.pop("status_counts")
        d["ok"] = self.n_ok
        d["5xx"] = self.n_5xx
        return d


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation (NumPy's default method)."""
    if not len(values):
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


CLIENTS = ("aiohttp", "httpx")


async def _load(url: str, path: str, payloads: Sequence[Any], concurrency: int, n_requests: int,
                time_limit_s: float, timeout_s: float, method: str, client: str = "aiohttp",
                warmup: int = 0) -> LoadResult:
    """``warmup`` requests first, then ``n_requests`` measured ones, on the same connections without a pause."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    finished: list[float] = []          # when each request (warm-up ones too) got its answer
    window_start: float | None = None   # when the first measured request was sent
    sent = 0
    # bodies encoded once, as a client that has its request ready would send it
    bodies = [json.dumps(p, separators=(",", ":")).encode() for p in payloads]
    headers = {"content-type": "application/json"}

    if client == "aiohttp":
        import aiohttp

        errors_caught: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
        session = aiohttp.ClientSession(base_url=url, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                        connector=aiohttp.TCPConnector(limit=concurrency))

        async def send(body: bytes) -> int:
            async with session.request(method, path, data=body, headers=headers) as r:
                await r.read()
                return r.status
    else:
        import httpx

        errors_caught = (httpx.HTTPError,)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        session = httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout_s)

        async def send(body: bytes) -> int:
            r = await session.request(method, path, content=body, headers=headers)
            return r.status_code

    start = time.perf_counter()
    deadline = start + time_limit_s

    async def worker() -> None:
        nonlocal sent, errors, window_start
        while True:
            if sent >= warmup + n_requests or time.perf_counter() >= deadline:
                return
            i = sent
            sent += 1
            t0 = time.perf_counter()
            if i == warmup:
                window_start = t0
            try:
                code = await send(bodies[i % len(bodies)])
            except errors_caught:
                errors += i >= warmup
                continue
            t1 = time.perf_counter()
            finished.append(t1)
            if i >= warmup:
                latencies.append(1e3 * (t1 - t0))
                statuses[code] = statuses.get(code, 0) + 1

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if client == "aiohttp":
            await session.close()
        else:
            await session.aclose()
    end = time.perf_counter()
    # the measured window: from the first measured request to the last answer. Throughput counts every answer
    # in it (warm-up requests still in flight at its start answer inside it), so that it is the steady rate
    t_from = start if window_start is None else window_start
    wall = end - t_from
    lat = np.asarray(latencies)
    done = len(latencies)
    answered = sum(t >= t_from for t in finished) if warmup else done
    return LoadResult(concurrency=concurrency, requests=done, wall_s=wall,
                      throughput_rps=answered / wall if wall and done else 0.0,
                      p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), p99_ms=percentile(lat, 99),
                      mean_ms=float(lat.mean()) if done else math.nan, max_ms=float(lat.max()) if done else math.nan,
                      status_counts=dict(sorted(statuses.items())), transport_errors=errors,
                      latencies_ms=latencies)


def _run_coroutine(factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion, also from inside a running event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(factory())
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=target, name="loadtest")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def load_test(url: str, payloads: Sequence[Any], *, concurrency: int, n_requests: int,
              time_limit_s: float = 30.0, path: str = "/recommend", method: str = "POST",
              timeout_s: float = 10.0, warmup: int = 0, client: str = "aiohttp") -> LoadResult:
    """Closed-loop load test of ``{url}{path}`` (see the module docstring).

    Args:
        url: the service's loopback base URL, e.g. ``http://127.0.0.1:8123``.
        payloads: JSON bodies, used in turn (request ``i`` sends ``payloads[i % len]``).
        concurrency: clients in flight at once.
        n_requests: stop after this many requests (at most :data:`MAX_REQUESTS`).
        time_limit_s: or after this many seconds (at most :data:`MAX_SECONDS`).
        timeout_s: a request slower than this counts as a transport error.
        warmup: requests sent first, not measured, on the same connections and at the same concurrency, with
            no pause before the measured ones: those then meet the service in its steady state (connections
            open, and the start-up burst of ``concurrency`` simultaneous first requests, which a micro-batching
            server answers as one big batch, over). The measured window starts when the first measured
            request is sent; ``throughput_rps`` counts every answer inside it.
        client: ``"aiohttp"`` (default) or ``"httpx"`` (slower per request at high concurrency:
            the module docstring says why; kept to reproduce earlier figures).
    """
    url = check_loopback(url)
    if not payloads:
        raise ValueError("payloads is empty: give at least one request body")
    if not 1 <= concurrency <= 1024:
        raise ValueError(f"concurrency must be in 1..1024, got {concurrency}")
    if not 1 <= n_requests <= MAX_REQUESTS:
        raise ValueError(f"n_requests must be in 1..{MAX_REQUESTS}, got {n_requests}")
    if not 0 < time_limit_s <= MAX_SECONDS:
        raise ValueError(f"time_limit_s must be in (0, {MAX_SECONDS:.0f}], got {time_limit_s}")
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, got {client!r}")
    if not 0 <= warmup <= MAX_REQUESTS:
        raise ValueError(f"warmup must be in 0..{MAX_REQUESTS}, got {warmup}")
    return _run_coroutine(lambda: _load(url, path, payloads, concurrency, n_requests, time_limit_s, timeout_s,
                                        method, client, warmup))


def load_table(results: Sequence[LoadResult], **labels: Any) -> pd.DataFrame:
    """Results as a table, with extra constant columns (e.g. ``batching="on"``)."""
    frame = pd.DataFrame([r.row() for r in results])
    for key, value in labels.items():
        frame.insert(0, key, value)
    return frame


# ============================================================================ bad input
@dataclass
class Case:
    """One request and the status code it must get.

    ``body`` is sent as JSON; ``raw`` (bytes) is sent as is, with ``content_type``.
    """

    name: str
    method: str
    path: str
    expected: int
    body: Any = None
    raw: bytes | None = None
    content_type: str | None = "application/json"


def bad_input_cases(health: dict) -> list[Case]:
    """Wrong requests for a service described by its ``/health`` answer, each with its expected code.

    Also two good requests (expected 200), so that the barrage shows the service still answers.
    """
    n, max_len = int(health["n_items"]), int(health["max_len"])
    ints = health.get("item_id_type", "int") == "int"
    unknown_item = 10**9 + 7 if ints else "no such item (1900)"
    wrong_type_item = "1" if ints else 1
    post = "/recommend"
    good_user = {"user_id": health["example_user"], "k": 5} if health.get("example_user") is not None else None
    good_item = health.get("example_item")
    cases = [
        Case("malformed JSON", "POST", post, 400, raw=b'{"user_id": 1, "k": ', content_type="application/json"),
        Case("not JSON (form data)", "POST", post, 415, raw=b"user_id=1&k=5",
             content_type="application/x-www-form-urlencoded"),
        Case("no body", "POST", post, 422, raw=b"", content_type="application/json"),
        Case("body is a list", "POST", post, 422, body=[1, 2, 3]),
        Case("body is a string", "POST", post, 422, body="recommend me something"),
        Case("neither user_id nor history", "POST", post, 422, body={"k": 5}),
        Case("both user_id and history", "POST", post, 422, body={"user_id": health.get("example_user", 1),
                                                                   "history": [good_item], "k": 5}),
        Case("unknown user", "POST", post, 404, body={"user_id": -987654}),
        Case("k = 0", "POST", post, 422, body={"history": [good_item], "k": 0}),
        Case("k negative", "POST", post, 422, body={"history": [good_item], "k": -3}),
        Case("k larger than the catalogue", "POST", post, 422, body={"history": [good_item], "k": n + 1}),
        Case("k as a string", "POST", post, 422, body={"history": [good_item], "k": "10"}),
        Case("k as a float", "POST", post, 422, body={"history": [good_item], "k": 2.5}),
        Case("k as a boolean", "POST", post, 422, body={"history": [good_item], "k": True}),
        Case("k is null", "POST", post, 422, body={"history": [good_item], "k": None}),
        Case("history not a list", "POST", post, 422, body={"history": good_item, "k": 5}),
        Case("unknown item in history", "POST", post, 422, body={"history": [good_item, unknown_item], "k": 5}),
        Case("item id of the wrong type", "POST", post, 422, body={"history": [wrong_type_item], "k": 5}),
        Case("null in history", "POST", post, 422, body={"history": [good_item, None], "k": 5}),
        Case("nested list in history", "POST", post, 422, body={"history": [[good_item]], "k": 5}),
        Case("history longer than max_len", "POST", post, 422, body={"history": [good_item] * (max_len + 1), "k": 5}),
        Case("unknown field", "POST", post, 422, body={"history": [good_item], "k": 5, "top_k": 5}),
        Case("unknown filter", "POST", post, 422, body={"history": [good_item], "filters": {"colour": "red"}}),
        Case("unknown category", "POST", post, 422,
             body={"history": [good_item], "filters": {"categories": ["No Such Category"]}}),
        Case("empty category list", "POST", post, 422, body={"history": [good_item], "filters": {"categories": []}}),
        Case("negative price", "POST", post, 422, body={"history": [good_item], "filters": {"min_price": -5}}),
        Case("min_price > max_price", "POST", post, 422,
             body={"history": [good_item], "filters": {"min_price": 50, "max_price": 10}}),
        Case("price as a string", "POST", post, 422, body={"history": [good_item], "filters": {"max_price": "cheap"}}),
        Case("in_stock as a string", "POST", post, 422, body={"history": [good_item], "filters": {"in_stock": "yes"}}),
        Case("exclude_seen as a number", "POST", post, 422, body={"history": [good_item], "exclude_seen": 1}),
        Case("body over 1 MiB", "POST", post, 413, raw=b'{"history": [' + b"1, " * 400_000 + b'1]}'),
        Case("GET on /recommend", "GET", post, 405),
        Case("unknown route", "GET", "/recommendations", 404),
        Case("unknown item page", "GET", f"/items/{unknown_item}", 404),
        Case("event for unknown user", "POST", "/users/-987654/events", 404, body={"item_id": good_item}),
        Case("event with unknown item", "POST", f"/users/{health.get('example_user', 1)}/events", 422,
             body={"item_id": unknown_item}),
        Case("good: a history", "POST", post, 200, body={"history": [good_item], "k": 5}),
    ]
    if good_user is not None:
        cases.append(Case("good: a known user", "POST", post, 200, body=good_user))
    return cases


async def _run_cases(url: str, cases: Sequence[Case], timeout_s: float) -> list[dict]:
    import httpx

    rows = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
        for case in cases:
            headers = {"content-type": case.content_type} if case.content_type else {}
            if case.raw is not None:
                content = case.raw
            elif case.body is not None:
                content = json.dumps(case.body).encode()
            else:
                content = None
            try:
                r = await client.request(case.method, case.path, content=content,
                                         headers=headers if content is not None else {})
                code = r.status_code
                try:
                    is_json = r.headers.get("content-type", "").startswith("application/json")
                    message = r.json().get("error", "") if is_json else r.text
                except (ValueError, AttributeError):
                    message = r.text
            except httpx.HTTPError as err:
                code, message = -1, f"transport error: {type(err).__name__}"
            rows.append({"case": case.name, "request": f"{case.method} {case.path}", "expected": case.expected,
                         "got": code, "ok": code == case.expected, "message": str(message)[:200]})
    return rows


def run_cases(url: str, cases: Sequence[Case], *, timeout_s: float = 10.0) -> pd.DataFrame:
    """Send every case once (loopback only) and return a table: case, expected, got, ok, message."""
    url = check_loopback(url)
    if len(cases) > 1000:
        raise ValueError("at most 1000 cases per barrage")
    return pd.DataFrame(_run_coroutine(lambda: _run_cases(url, cases, timeout_s)))


__all__ = ["Case", "LoadResult", "MAX_REQUESTS", "MAX_SECONDS", "bad_input_cases", "check_loopback", "load_table",
           "load_test", "percentile", "run_cases"]
