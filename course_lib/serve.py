"""A recommendation service over HTTP: FastAPI + uvicorn, the model loaded once at start-up.

Endpoints
---------
``POST /recommend``
    Body (JSON)::

        {"user_id": 42}                                   # a known user: their stored history
        {"history": [101, 7, 2203], "k": 5,               # or any history (the dataset's item ids,
         "filters": {"categories": ["Books"],             #  oldest first)
                     "min_price": 5, "max_price": 30, "in_stock": true},
         "exclude_seen": true}

    Answer: ``{"items": [{"item_id", "title", "score", ...}, ...], "source": "model"|"popularity", ...}``.
    An empty history gets the most popular items (``"source": "popularity"``).
``POST /users/{user_id}/events``
    ``{"item_id": 2203}`` appends an item to a known user's history (what a shop does when
    the user buys); cached results of that user become stale at once.
``GET /items/{item_id}``
    One item of the catalogue.
``GET /health``
    Liveness plus what is loaded (model, items, max_len) and counters (requests, batches,
    mean batch size, cache hits).

Bad input never causes a 500: it gets a 4xx whose JSON body has an ``error`` string saying
what was wrong and what to do — 400 malformed JSON, 404 unknown user/item/route, 405 wrong
method, 413 body too large, 415 not JSON, 422 a well-formed request with wrong values
(types, ``k`` out of range, unknown item ids, a history longer than ``max_len``, unknown
categories, ``min_price > max_price``, unknown fields).

Micro-batching
--------------
The model runs in one worker thread. Without micro-batching every request is one forward
pass; requests that arrive while the worker is busy wait in line. With micro-batching
(:class:`MicroBatcher`) the requests that queued up while the worker was busy go through it
**together**, in one forward pass of up to ``max_batch`` histories: at high concurrency the
per-request cost of the model falls, and with it the waiting. It never waits for a batch to
fill unless ``max_wait_ms > 0``, so a lone request is not delayed.

The serving bundle (``--checkpoint``)
-------------------------------------
:func:`save_bundle` writes a folder that holds everything the service needs::

    bundle.json          format, model name, max_len, n_items, id kind, SHA-256 of every file
    model.onnx           the model's score graph (runs in onnxruntime; no course code needed)
    model/               the model's save_pretrained folder (torch backend: config.json +
                         model.safetensors; every course model and baseline has one), with
    model.json           the course_lib class whose from_pretrained rebuilds it
    items.json           the catalogue (ids, titles, category, price, stock, popularity)
    users.npz            the known users' histories (internal item ids)

Run it::

    python -m course_lib.serve --checkpoint build/ch07/bundle --port 8000
    curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"user_id": 1, "k": 5}'

:class:`ServerProcess` starts the same command in a background process on a free loopback
port and stops it again (the notebook and the tests use it); :class:`ThreadedServer` runs an
app inside the current process. Both bind to ``127.0.0.1`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures
import contextlib
import dataclasses
import importlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .data.core import sha256_file
from .infer import Catalogue, Filters, Recommender, export_onnx, history_fingerprint

BUNDLE_FORMAT = "course_lib.bundle/1"
MODEL_DIR = "model"               # the save_pretrained folder inside a bundle
MAX_BODY_BYTES = 1 << 20          # 1 MiB: a history of max_len ids is a few kB
MAX_HISTORY_PARSE = 10_000        # the schema's hard cap; max_len (smaller) is checked with a clear message
LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("course_lib.serve")


# ============================================================================ bundle
_sha256 = sha256_file


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def save_bundle(path: str | os.PathLike, model: Any, catalogue: Catalogue, *, max_len: int,
                user_ids: Sequence | None = None, histories: Sequence[np.ndarray] | None = None,
                name: str | None = None, onnx: bool | None = None) -> Path:
    """Write a serving bundle (see the module docstring) and return its folder.

    Args:
        model: a :class:`~course_lib.scoring.Scorer`. Any course model or baseline (a
            ``course_lib`` class with ``save_pretrained`` / ``from_pretrained``) is saved
            for the torch backend; any torch module with ``score`` can be exported to ONNX.
        catalogue: the items to serve.
        max_len: the longest history the model reads (longer requests are refused).
        user_ids, histories: the known users (the dataset's ids) and their histories
            (internal item ids, oldest first), for ``{"user_id": ...}`` requests. The
            service passes a user's position in ``user_ids`` to the model as its internal
            user id, so give them in the split's order (``split.user_ids``,
            ``split.history(stage)``) for models that read user ids (BPR-MF).
        name: a name shown by ``/health`` (default: the model's class name).
        onnx: also export ``model.onnx`` (needed for ``--backend onnx``); default: when the
            model is a torch module (a baseline has no graph to export).

    Raises:
        ValueError: nothing could be saved, or ``onnx=True`` for a model that is not a torch module.
    """
    cls = type(model)
    if onnx is None:
        onnx = isinstance(model, torch.nn.Module)
    if onnx and not isinstance(model, torch.nn.Module):
        raise ValueError(f"cannot export a {cls.__name__} to ONNX: it is not a torch module; "
                         "save it with onnx=False (the torch backend serves it)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    if isinstance(model, torch.nn.Module):
        model = model.eval()
    n_items = getattr(model, "n_items", None)
    if isinstance(n_items, (int, np.integer)) and int(n_items) != catalogue.n_items:
        raise ValueError(f"the model scores {int(n_items)} items but the catalogue has {catalogue.n_items}; "
                         "save the catalogue of the split the model was trained on")
    torch_ok = cls.__module__.startswith("course_lib.") and callable(getattr(model, "save_pretrained", None)) \
        and callable(getattr(cls, "from_pretrained", None))
    if torch_ok:
        folder = path / MODEL_DIR
        if folder.exists():
            shutil.rmtree(folder)
        model.save_pretrained(folder)
        (path / "model.json").write_text(json.dumps({"module": cls.__module__, "class": cls.__qualname__,
                                                     "format": "pretrained", "dir": MODEL_DIR}, indent=1))
        files += sorted(p.relative_to(path).as_posix() for p in folder.rglob("*") if p.is_file())
        files.append("model.json")
    if onnx:
        export_onnx(model, path / "model.onnx", max_len=max_len, n_items=catalogue.n_items)
        files.append("model.onnx")
    if not files:
        raise ValueError(f"cannot save {cls.__name__}: it is not a course_lib model with save_pretrained "
                         "(torch backend) and onnx=False (ONNX backend)")
    items = catalogue.items
    keep = [c for c in ("item_id", "title", catalogue.category_column, "price", "brand") if c and c in items.columns]
    records = []
    for i, row in enumerate(items[keep].itertuples(index=False)):
        rec = {c: _jsonable(v) for c, v in zip(keep, row)}
        rec["in_stock"] = bool(catalogue.in_stock[i])
        records.append(rec)
    (path / "items.json").write_text(json.dumps({
        "category_column": catalogue.category_column, "items": records,
        "popularity": None if catalogue.popularity is None else catalogue.popularity.tolist()}))
    files.append("items.json")
    if user_ids is not None or histories is not None:
        if user_ids is None or histories is None or len(user_ids) != len(histories):
            raise ValueError("give user_ids and histories together, one history per user")
        uid = np.asarray([_jsonable(u) for u in user_ids])
        if uid.dtype == object:
            uid = uid.astype(str)
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        flat = (np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if lengths.sum()
                else np.zeros(0, np.int64))
        np.savez(path / "users.npz", user_ids=uid, indptr=np.concatenate([[0], np.cumsum(lengths)]), items=flat)
        files.append("users.npz")
    meta = {"format": BUNDLE_FORMAT, "name": name or cls.__name__, "max_len": int(max_len),
            "n_items": catalogue.n_items, "id_kind": catalogue.id_kind,
            "backends": (["torch"] if torch_ok else []) + (["onnx"] if onnx else []),
            "sha256": {f: _sha256(path / f) for f in files}}
    (path / "bundle.json").write_text(json.dumps(meta, indent=1))
    return path


@dataclasses.dataclass
class Bundle:
    """What :func:`load_bundle` returns: the scorer and the data the service answers from."""

    model: Any
    catalogue: Catalogue
    max_len: int
    name: str
    backend: str
    user_ids: list
    histories: list[np.ndarray]


class BundleError(RuntimeError):
    """A serving bundle is missing, corrupt or cannot be loaded with the requested backend."""


def load_bundle(path: str | os.PathLike, *, backend: str = "auto", precision: str = "fp32",
                threads: int | None = None) -> Bundle:
    """Load a bundle written by :func:`save_bundle`, verifying every file's SHA-256.

    Args:
        backend: ``"torch"``, ``"onnx"`` or ``"auto"`` (torch when the bundle has it).
        precision: torch backend only: ``"fp32"``, ``"int8"`` (dynamic quantisation of the
            linear layers) or ``"bf16"``.
        threads: onnxruntime intra-op threads (torch uses ``torch.set_num_threads``).
    """
    path = Path(path)
    meta, backend = verify_bundle(path, backend=backend, precision=precision)
    if backend == "onnx":
        from .infer import OnnxScorer

        model: Any = OnnxScorer(path / "model.onnx", threads=threads)
    else:
        model = _load_torch_model(path, precision)
    doc = json.loads((path / "items.json").read_text())
    import pandas as pd

    items = pd.DataFrame(doc["items"])
    items["item_id"] = pd.Series([None] + items["item_id"].tolist()[1:], dtype=object)
    in_stock = items.pop("in_stock").to_numpy(dtype=bool)
    pop = None if doc["popularity"] is None else np.asarray(doc["popularity"], dtype=np.float64)
    catalogue = Catalogue(items, in_stock=in_stock, category_column=doc["category_column"], popularity=pop)
    user_ids: list = []
    histories: list[np.ndarray] = []
    if (path / "users.npz").is_file():
        with np.load(path / "users.npz", allow_pickle=False) as z:
            user_ids = [u.item() for u in z["user_ids"]]
            indptr, flat = z["indptr"], z["items"]
            histories = [flat[indptr[i]:indptr[i + 1]].copy() for i in range(len(user_ids))]
    return Bundle(model=model, catalogue=catalogue, max_len=int(meta["max_len"]), name=meta["name"],
                  backend=backend + ("" if precision == "fp32" else f"/{precision}"), user_ids=user_ids,
                  histories=histories)


def verify_bundle(path: str | os.PathLike, *, backend: str = "auto", precision: str = "fp32") -> tuple[dict, str]:
    """Check a bundle's format, files and checksums without loading it: ``(bundle.json, backend)``.

    Raises:
        BundleError: saying what is wrong and what to do.
    """
    path = Path(path)
    meta_path = path / "bundle.json"
    if not meta_path.is_file():
        hint = (" — this looks like a training checkpoint; make a serving bundle with "
                "course_lib.serve.save_bundle(...)" if (path / "state.json").is_file() else "")
        raise BundleError(f"no serving bundle at {path} (bundle.json is missing){hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{meta_path} is not valid JSON ({err})") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: unknown bundle format {meta.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    for name, digest in meta["sha256"].items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"{path}: {name} is missing; the bundle is incomplete — save it again")
        if _sha256(f) != digest:
            raise BundleError(f"{path}: {name} does not match its recorded SHA-256; it was changed or "
                              "truncated after saving — save the bundle again")
    if backend == "auto":
        backend = "torch" if "torch" in meta["backends"] else "onnx"
    if backend not in ("torch", "onnx"):
        raise BundleError(f"unknown backend {backend!r}; choose torch, onnx or auto")
    if backend not in meta["backends"]:
        raise BundleError(f"this bundle has no {backend} model (it has: {', '.join(meta['backends'])})")
    if precision not in ("fp32", "int8", "bf16"):
        raise BundleError(f"unknown precision {precision!r}; choose fp32, int8 or bf16")
    if backend == "onnx" and precision != "fp32":
        raise BundleError("precision applies to the torch backend; the ONNX model runs in fp32")
    return meta, backend


def _load_torch_model(path: Path, precision: str) -> Any:
    spec = json.loads((path / "model.json").read_text())
    for key in ("module", "config_module"):
        if key in spec and not spec[key].startswith("course_lib."):
            raise BundleError(f"{path}: refusing to import {spec[key]!r}; bundles may only name course_lib classes")
    try:
        cls = _import(spec["module"], spec["class"])
        if spec.get("format") == "pretrained":
            model = cls.from_pretrained(path / spec["dir"])
        else:  # bundles written before save_pretrained: a dataclass config and one weights file
            from safetensors.torch import load_model

            config_cls = _import(spec["config_module"], spec["config_class"])
            model = cls(config_cls(**spec["config"]))
            load_model(model, str(path / "model.safetensors"), strict=True)
    except Exception as err:  # an import, config or shape problem: say which
        raise BundleError(f"{path}: cannot rebuild {spec['class']} from the bundle "
                          f"({type(err).__name__}: {err})") from None
    if not isinstance(model, torch.nn.Module):
        if precision != "fp32":
            raise BundleError(f"precision {precision!r} applies to torch modules; {spec['class']} is not one "
                              "(load it with precision='fp32')")
        return model
    model.eval()
    if precision == "int8":
        from .infer import quantize_dynamic_int8

        model = quantize_dynamic_int8(model)
    elif precision == "bf16":
        from .infer import to_bfloat16

        model = to_bfloat16(model)
    return model


def _import(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ============================================================================ the service core
class RequestError(Exception):
    """A request the service refuses: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Job:
    """One validated request, ready for the model."""

    history: np.ndarray            # internal ids, oldest first (the whole history)
    k: int
    filters: Filters | None
    exclude_seen: bool
    key: Any                       # cache key
    user_id: Any = None
    user: int = -1                 # the user's index in the bundle's users (-1: a request by history)


class MicroBatcher:
    """Collects concurrent jobs and runs them through ``run_batch`` together.

    One background task takes the first waiting job, then every other job already waiting
    (up to ``max_batch``; with ``max_wait_s > 0`` it also waits that long for more), and
    runs them in ``executor`` as one batch. While the batch runs, new jobs queue up and form
    the next batch. ``max_batch=1`` is no batching at all.
    """

    def __init__(self, run_batch: Callable[[list[Job]], list[Any]], executor: concurrent.futures.Executor, *,
                 max_batch: int = 64, max_wait_s: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch, self.executor = run_batch, executor
        self.max_batch, self.max_wait_s = int(max_batch), float(max_wait_s)
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.jobs = 0
        self.largest = 0

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def submit(self, job: Job) -> Any:
        assert self.queue is not None, "MicroBatcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((job, future))
        return await future

    async def _loop(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            if self.max_wait_s > 0:
                deadline = loop.time() + self.max_wait_s
                while len(batch) < self.max_batch:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                    except asyncio.TimeoutError:
                        break
            batch = [(j, f) for j, f in batch if not f.cancelled()]
            if not batch:
                continue
            self.batches += 1
            self.jobs += len(batch)
            self.largest = max(self.largest, len(batch))
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [j for j, _ in batch])
            except Exception as err:  # the model failed: every job of the batch gets the error
                for _, f in batch:
                    if not f.done():
                        f.set_exception(err)
                continue
            for (_, f), result in zip(batch, results):
                if not f.done():
                    if isinstance(result, BaseException):
                        f.set_exception(result)
                    else:
                        f.set_result(result)


class RecommendationService:
    """The service without HTTP: validation, batching, caching and answers.

    Args:
        recommender: the :class:`Recommender` (its catalogue is served).
        user_ids, histories: known users (the dataset's ids) and their histories (internal ids).
        micro_batching: run concurrent requests through the model together.
        max_batch, max_wait_ms: micro-batching settings (see :class:`MicroBatcher`).
        name, backend: shown by ``/health``.
    """

    def __init__(self, recommender: Recommender, *, user_ids: Sequence = (), histories: Sequence[np.ndarray] = (),
                 micro_batching: bool = True, max_batch: int = 64, max_wait_ms: float = 0.0,
                 name: str = "model", backend: str = "torch") -> None:
        if len(user_ids) != len(histories):
            raise ValueError(f"{len(user_ids)} user ids but {len(histories)} histories")
        self.rec = recommender
        self.catalogue = recommender.catalogue
        self.max_len = recommender.max_len
        self.users = {(int(u) if isinstance(u, np.integer) else u): i for i, u in enumerate(user_ids)}
        self.user_ids = list(self.users)
        self.histories = [np.asarray(h, dtype=np.int64) for h in histories]
        self.micro_batching = bool(micro_batching)
        self.max_batch = int(max_batch) if micro_batching else 1
        self.max_wait_s = float(max_wait_ms) / 1000 if micro_batching else 0.0
        self.name, self.backend = name, backend
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.batcher = MicroBatcher(self.run_batch, self.executor, max_batch=self.max_batch, max_wait_s=self.max_wait_s)
        self.requests = 0
        self.started = time.time()
        self.user_kind = "int" if all(isinstance(u, int) for u in self.user_ids) else "str"

    @classmethod
    def from_bundle(cls, path: str | os.PathLike, *, backend: str = "auto", precision: str = "fp32",
                    cache_size: int = 0, threads: int | None = None, **kwargs) -> "RecommendationService":
        b = load_bundle(path, backend=backend, precision=precision, threads=threads)
        rec = Recommender(b.model, b.catalogue, max_len=b.max_len, cache_size=cache_size)
        return cls(rec, user_ids=b.user_ids, histories=b.histories, name=b.name, backend=b.backend, **kwargs)

    # ------------------------------------------------------------------ validation
    def parse_user(self, raw: Any) -> int:
        """The internal index of a user id given as JSON (int or str) or a URL segment (str)."""
        key = raw
        if isinstance(raw, str) and self.user_kind == "int" and raw.lstrip("-").isdigit():
            key = int(raw)
        if isinstance(key, bool) or key not in self.users:
            example = self.user_ids[0] if self.user_ids else None
            raise RequestError(404, f"unknown user_id {raw!r}" + (
                f"; known users have ids like {example!r} ({len(self.users)} users)" if self.user_ids
                else "; this service knows no users: send a history instead"))
        return self.users[key]

    def parse_items(self, raw: Sequence, what: str) -> np.ndarray:
        ids, unknown = self.catalogue.lookup(raw)
        if unknown:
            kind = self.catalogue.id_kind
            example = self.catalogue.items["item_id"].iloc[1]
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise RequestError(422, f"{what} holds {len(unknown)} unknown item id(s): {shown}; item ids are the "
                               f"catalogue's ({'integers' if kind == 'int' else 'strings'}, e.g. {example!r}; "
                               "look one up with GET /items/{item_id})")
        return ids

    def make_job(self, body: "RecommendRequest") -> Job:
        """Check a request against the catalogue and the model; raise :class:`RequestError` if wrong."""
        n = self.catalogue.n_items
        if body.k > n:
            raise RequestError(422, f"k={body.k} is larger than the catalogue ({n} items); ask for at most {n}")
        if (body.user_id is None) == (body.history is None):
            raise RequestError(422, "give exactly one of user_id (a known user) or history (a list of item ids, "
                               "oldest first)" + (", not both" if body.user_id is not None else ""))
        filters = None
        if body.filters is not None:
            f = body.filters
            try:
                filters = Filters(categories=f.categories, exclude_categories=f.exclude_categories,
                                  min_price=f.min_price, max_price=f.max_price, in_stock=f.in_stock)
                self.catalogue.check(filters)
            except ValueError as err:
                raise RequestError(422, f"filters: {err}") from None
        if body.user_id is not None:
            if self.user_kind == "int" and isinstance(body.user_id, str):
                raise RequestError(422, f"user_id must be an integer in this service, got the string {body.user_id!r}")
            u = self.parse_user(body.user_id)
            history = self.histories[u]
            key = ("user", u)
            user_id = self.user_ids[u]
        else:
            if len(body.history) > self.max_len:
                raise RequestError(422, f"history has {len(body.history)} items; this model reads at most "
                                   f"max_len={self.max_len}: send the {self.max_len} most recent ones")
            history = self.parse_items(body.history, "history")
            key = ("history", history_fingerprint(history))
            user_id = None
        return Job(history=history, k=body.k, filters=filters, exclude_seen=body.exclude_seen, key=key,
                   user_id=user_id, user=u if body.user_id is not None else -1)

    # ------------------------------------------------------------------ the model's side
    def run_batch(self, jobs: list[Job]) -> list[dict]:
        """Score a batch of jobs in one forward pass, then rank each with its own k and filters."""
        rec = self.rec
        hist = [j.history for j in jobs]
        keys = [j.key for j in jobs] if rec.cache is not None else None
        h = rec.pad(hist)
        scores = rec.score(torch.tensor([j.user for j in jobs], dtype=torch.long), h, keys=keys)
        empty = (h == 0).all(dim=1).tolist()
        out = []
        for i, job in enumerate(jobs):
            top = rec.rank(scores[i:i + 1], job.k, filters=job.filters,
                           exclude=[job.history] if job.exclude_seen else None)
            ids, vals = top.row(0)
            out.append({"ids": ids, "scores": vals, "source": "popularity" if empty[i] else "model"})
        return out

    def _item_rows(self) -> list[dict]:
        """Each item's answer fields as plain JSON values, built once (a pandas table per request
        cost as much as the model's forward pass; measured)."""
        if getattr(self, "_rows", None) is None:
            table = self.catalogue.describe(np.arange(self.catalogue.n_items + 1))
            self._rows = [{k: _jsonable(v) for k, v in row.items() if k not in ("rank", "in_stock")}
                          for row in table.to_dict("records")]
            self._has_stock = "in_stock" in table.columns
        return self._rows

    def answer(self, job: Job, result: dict) -> dict:
        rows, in_stock = self._item_rows(), self.catalogue.in_stock          # stock is read at answer time
        ids = np.asarray(result["ids"].cpu() if isinstance(result["ids"], torch.Tensor) else result["ids"],
                         dtype=np.int64).tolist()
        scores = np.asarray(result["scores"].cpu() if isinstance(result["scores"], torch.Tensor) else result["scores"],
                            dtype=np.float64).tolist()
        items = []
        for i, score in zip(ids, scores):
            item = dict(rows[i])
            if self._has_stock:
                item["in_stock"] = bool(in_stock[i])
            item["score"] = score
            items.append(item)
        answer = {"user_id": job.user_id, "k": job.k, "n_items": len(items), "source": result["source"],
                  "history_length": int(len(job.history)), "items": items}
        if len(items) < job.k:
            answer["note"] = (f"only {len(items)} item(s) pass the filters and are not in the history; "
                              "relax the filters for a longer list")
        return answer

    async def recommend(self, body: "RecommendRequest") -> dict:
        job = self.make_job(body)
        self.requests += 1
        result = await self.batcher.submit(job)
        return self.answer(job, result)

    def add_event(self, raw_user: str, item: Any) -> dict:
        u = self.parse_user(raw_user)
        (internal,) = self.parse_items([item], "item_id")
        self.histories[u] = np.append(self.histories[u], internal)
        return {"user_id": self.user_ids[u], "history_length": int(len(self.histories[u]))}

    def item(self, raw: str) -> dict:
        key: Any = raw
        if self.catalogue.id_kind == "int":
            if not raw.lstrip("-").isdigit():
                raise RequestError(404, f"unknown item id {raw!r}; item ids in this catalogue are integers, "
                                   f"e.g. {self.catalogue.items['item_id'].iloc[1]!r}")
            key = int(raw)
        ids, unknown = self.catalogue.lookup([key])
        if unknown:
            raise RequestError(404, f"unknown item id {raw!r}; item ids run like "
                               f"{self.catalogue.items['item_id'].iloc[1]!r} ({self.catalogue.n_items} items)")
        row = self.catalogue.describe(ids).iloc[0].to_dict()
        row.pop("rank", None)
        return {k: _jsonable(v) for k, v in row.items()}

    def health(self) -> dict:
        b = self.batcher
        cache = self.rec.cache.stats() if self.rec.cache is not None else None
        return {"status": "ok", "model": self.name, "backend": self.backend, "n_items": self.catalogue.n_items,
                "n_users": len(self.users), "max_len": self.max_len, "item_id_type": self.catalogue.id_kind,
                "categories": self.catalogue.categories,
                "example_user": self.user_ids[0] if self.user_ids else None,
                "example_item": _jsonable(self.catalogue.items["item_id"].iloc[1]),
                "micro_batching": self.micro_batching,
                "max_batch": self.max_batch, "requests": self.requests, "batches": b.batches,
                "mean_batch_size": b.jobs / b.batches if b.batches else 0.0, "largest_batch": b.largest,
                "cache": cache, "torch_threads": torch.get_num_threads(), "uptime_s": time.time() - self.started}


# ============================================================================ HTTP
def _schemas():
    """The request models: strict types (``"10"`` is not the integer 10), no unknown fields."""
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

    Number = StrictInt | StrictFloat

    class FilterSpec(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        categories: list[StrictStr] | None = Field(None, min_length=1, description="keep only these categories")
        exclude_categories: list[StrictStr] | None = Field(None, description="drop these categories")
        min_price: Number | None = Field(None, ge=0, description="lowest price")
        max_price: Number | None = Field(None, ge=0, description="highest price")
        in_stock: StrictBool = Field(False, description="only items in stock")

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        user_id: StrictInt | StrictStr | None = Field(None, description="a known user (uses their stored history)")
        history: list[StrictInt | StrictStr] | None = Field(
            None, max_length=MAX_HISTORY_PARSE, description="item ids, oldest first (instead of user_id)")
        k: StrictInt = Field(10, ge=1, description="how many items to return")
        filters: FilterSpec | None = None
        exclude_seen: StrictBool = Field(True, description="never recommend an item of the history")

    class EventRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        item_id: StrictInt | StrictStr

    return FilterSpec, RecommendRequest, EventRequest


FilterSpec, RecommendRequest, EventRequest = _schemas()


def _merge_union_errors(errors: Sequence[dict]) -> list[dict]:
    """Pydantic reports a value that fits no branch of a union (``int | str``) once per branch; say it once."""
    branches = ("int", "str", "float")
    groups: dict[tuple, set] = {}
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if loc and loc[-1] in branches:
            groups.setdefault(loc[:-1], set()).add(loc[-1])
    out, done = [], set()
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if not (loc and loc[-1] in branches and len(groups.get(loc[:-1], ())) > 1):
            out.append(e)
            continue
        if loc[:-1] in done:
            continue
        done.add(loc[:-1])
        kinds = groups[loc[:-1]]
        msg = "must be an id (an integer or a string)" if "str" in kinds else "must be a number"
        out.append({**e, "loc": loc[:-1], "type": "union_type", "msg": msg})
    return out


def _describe_errors(errors: Sequence[dict]) -> str:
    parts = []
    errors = _merge_union_errors(errors)
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        msg = e.get("msg", "invalid")
        if e.get("type") == "missing":
            msg = "is required" if loc != "body" else "the request has no JSON body"
        elif e.get("type") == "extra_forbidden":
            msg = "is not a known field (known: user_id, history, k, filters, exclude_seen)" \
                if "." not in loc else "is not a known field"
        got = e.get("input", None)
        shown = "" if e.get("type") in ("missing", "extra_forbidden") else f" (got {json.dumps(got, default=str)[:60]})"
        parts.append(f"{loc}: {msg}{shown}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


class BodyLimitMiddleware:
    """Refuse oversized or malformed ``Content-Length`` before the body is read; turn a bug into a logged 500.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` (``BaseHTTPMiddleware``)
    does the same in a few lines but costs about a millisecond per request (measured).
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await _send_error(send, 400, f"invalid Content-Length header {length!r}")
                return
            if int(length) > MAX_BODY_BYTES:
                await _send_error(send, 413, f"request body of {int(length)} bytes is larger than the limit of "
                                  f"{MAX_BODY_BYTES} bytes; a history needs at most a few kB")
                return
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # a bug, not bad input: log it and answer 500 without internals
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_error(send, 500, "internal error; the service logged it")


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(service: RecommendationService | None = None, *, bundle: str | os.PathLike | None = None,
               backend: str = "auto", precision: str = "fp32", cache_size: int = 0, threads: int | None = None,
               micro_batching: bool = True, max_batch: int = 64, max_wait_ms: float = 0.0):
    """The FastAPI app. Give a ready ``service``, or a ``bundle`` folder loaded once at start-up."""
    if (service is None) == (bundle is None):
        raise ValueError("give create_app either a service or a bundle path")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = service
        if svc is None:
            svc = RecommendationService.from_bundle(bundle, backend=backend, precision=precision,
                                                    cache_size=cache_size, threads=threads,
                                                    micro_batching=micro_batching, max_batch=max_batch,
                                                    max_wait_ms=max_wait_ms)
            # One warm-up pass, so that the first client does not pay for lazy initialisation.
            svc.run_batch([Job(history=svc.histories[0] if svc.histories else np.array([1]), k=1, filters=None,
                               exclude_seen=True, key=None, user=0 if svc.histories else -1)])
        app.state.service = svc
        svc.batcher.start()
        try:
            yield
        finally:
            await svc.batcher.stop()

    app = FastAPI(title="course_lib recommendation service", version="1.0", lifespan=lifespan,
                  description="Chapter 07 of the course: a sequential recommender behind HTTP.")

    def error(status: int, message: str, **extra) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    app.add_middleware(BodyLimitMiddleware)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        ctype = request.headers.get("content-type", "")
        if request.method == "POST" and ctype and "json" not in ctype.lower():
            return error(415, f"the body must be JSON (Content-Type: application/json), got {ctype!r}")
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            ctx = bad_json[0].get("ctx", {}) or {}
            return error(400, f"malformed JSON body: {ctx.get('error', 'cannot parse it')}; send a JSON object "
                         'such as {"user_id": 1, "k": 10}')
        clean = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in _merge_union_errors(errors)]
        return error(422, f"invalid request: {_describe_errors(errors)}",
                     errors=json.loads(json.dumps(clean, default=str)))

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        messages = {404: f"no route {request.url.path!r}; the service has POST /recommend, "
                         "POST /users/{user_id}/events, GET /items/{item_id} and GET /health",
                    405: f"{request.method} is not allowed on {request.url.path}"}
        return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.get("/health")
    async def health(request: Request) -> dict:
        return request.app.state.service.health()

    @app.get("/items/{item_id}")
    async def get_item(item_id: str, request: Request) -> dict:
        return request.app.state.service.item(item_id)

    @app.post("/recommend")
    async def recommend(body: RecommendRequest, request: Request) -> JSONResponse:
        # a JSONResponse skips FastAPI's generic re-encoding of the answer (plain JSON values already)
        return JSONResponse(await request.app.state.service.recommend(body))

    @app.post("/users/{user_id}/events")
    async def add_event(user_id: str, body: EventRequest, request: Request) -> dict:
        return request.app.state.service.add_event(user_id, body.item_id)

    return app


# ============================================================================ running it
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_loopback(host: str) -> None:
    if host not in LOOPBACK:
        raise ValueError(f"this helper serves on loopback only (127.0.0.1), not {host!r}")


def wait_until_healthy(url: str, *, timeout_s: float = 60.0, process: subprocess.Popen | None = None) -> dict:
    """Poll ``GET {url}/health`` until it answers 200; return its JSON. Raises ``TimeoutError``."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before it was ready")
        try:
            r = httpx.get(f"{url}/health", timeout=2.0)
            if r.status_code == 200:
                return r.json()
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as err:
            last = type(err).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy within {timeout_s:.0f} s (last: {last})")


class ServerProcess:
    """``python -m course_lib.serve`` in a background process on a free loopback port.

    >>> with ServerProcess("build/ch07/bundle", micro_batching=True) as server:   # doctest: +SKIP
    ...     httpx.post(f"{server.url}/recommend", json={"user_id": 1}).json()

    Args:
        checkpoint: the bundle folder.
        port: default: a free one.
        startup_timeout_s: how long to wait for ``/health``.
        cpus: run the server on these CPU cores only (Linux; what ``taskset -c`` does), e.g.
            ``{1}`` with the load-test client pinned to core 0, so that the two do not take
            turns on the same cores. ``None``: wherever the OS puts it.
        **options: more command-line options, e.g. ``micro_batching=False``, ``max_batch=32``,
            ``cache_size=10000``, ``precision="int8"``, ``backend="onnx"``, ``threads=2``.
    """

    def __init__(self, checkpoint: str | os.PathLike, *, port: int | None = None, host: str = "127.0.0.1",
                 startup_timeout_s: float = 90.0, cpus: Sequence[int] | None = None, **options: Any) -> None:
        _check_loopback(host)
        if cpus is not None:
            cpus = sorted({int(c) for c in cpus})
            available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if not cpus or not set(cpus) <= set(available):
                raise ValueError(f"cpus must be a non-empty subset of this process's cores {available}, got {cpus}")
        self.cpus = cpus
        self.checkpoint, self.host = Path(checkpoint), host
        self.port = port or free_port(host)
        self.options = options
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.info: dict = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "course_lib.serve", "--checkpoint", str(self.checkpoint),
               "--host", self.host, "--port", str(self.port), "--exit-with-parent", str(os.getpid())]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                cmd.append(flag if value else "--no-" + key.replace("_", "-"))
            elif value is not None:
                cmd += [flag, str(value)]
        return cmd

    def start(self) -> "ServerProcess":
        if self.process is not None:
            raise RuntimeError("the server is already running")
        fd, name = tempfile.mkstemp(prefix="course-serve-", suffix=".log")
        self.log_path = Path(name)
        log_file = os.fdopen(fd, "w")
        cpus = self.cpus
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
        self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=pin)
        log_file.close()
        atexit.register(self.stop)          # a kernel that exits takes its servers with it
        try:
            self.info = wait_until_healthy(self.url, timeout_s=self.startup_timeout_s, process=self.process)
        except Exception as err:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"the service did not start: {err}\n--- its log ---\n{tail}") from None
        return self

    def log_tail(self, n: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Ask the server to stop (SIGTERM), kill it if it does not within ``timeout_s``; its exit code."""
        p = self.process
        if p is None:
            return None
        atexit.unregister(self.stop)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout_s)
        self.process = None
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
        return p.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ThreadedServer:
    """Run an ASGI app with uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, app, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        import uvicorn

        _check_loopback(host)
        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "ThreadedServer":
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout_s)
            self.thread = None

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.serve",
                                     description="Serve a course model over HTTP (see course_lib/serve.py).")
    parser.add_argument("--checkpoint", required=True, help="a serving bundle folder (course_lib.serve.save_bundle)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, this machine only; a container needs 0.0.0.0)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8", "bf16"], help="torch backend only")
    parser.add_argument("--micro-batching", dest="micro_batching", action=argparse.BooleanOptionalAction, default=True,
                        help="run concurrent requests through the model together (default on)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="wait this long for a batch to fill (default 0)")
    parser.add_argument("--cache-size", type=int, default=0, help="users whose vectors are cached (0 = no cache)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch / onnxruntime threads (default: all cores; with the load-test client on the same "
                             "machine, 1 gave lower latency on 2 cores: measured)")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                        help="stop when process PID ends (ServerProcess sets it: no orphaned servers)")
    args = parser.parse_args(argv)

    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        verify_bundle(args.checkpoint, backend=args.backend, precision=args.precision)   # fail fast, clearly
        app = create_app(bundle=args.checkpoint, backend=args.backend, precision=args.precision,
                         cache_size=args.cache_size, threads=args.threads, micro_batching=args.micro_batching,
                         max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    except (BundleError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.exit_with_parent:
        _watch_parent(args.exit_with_parent)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def _watch_parent(pid: int, every_s: float = 1.0) -> None:
    """Send ourselves SIGTERM (a clean uvicorn shutdown) once process ``pid`` is gone."""

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:  # exists, owned by someone else: still alive
                pass

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


__all__ = ["Bundle", "BundleError", "EventRequest", "FilterSpec", "Job", "MicroBatcher", "RecommendRequest",
           "RecommendationService", "RequestError", "ServerProcess", "ThreadedServer", "create_app", "free_port",
           "load_bundle", "main", "save_bundle", "verify_bundle", "wait_until_healthy"]


if __name__ == "__main__":
    sys.exit(main())
