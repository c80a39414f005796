"""Federated learning with Flower's FedAvg: clients train locally, the server averages.

Each round the server sends the global weights ``w`` to every client; client ``c`` trains on
its own users' sequences (which never leave it) for ``local_epochs`` and sends back ``w_c``
and its number of examples ``n_c``; the server's new weights are Flower's FedAvg aggregate
``Σ_c n_c w_c / Σ_c n_c`` (``flwr.server.strategy.FedAvg.aggregate_fit``, the same code a
Flower server runs). With one client that is exactly centralised training, one epoch per
round — the check that the loop is right.

Flower's own simulation engine (``flwr.simulation.run_simulation``) needs the ``ray``
package (``flwr[simulation]``), which this course does not install; without it Flower exits
with code 701 ("`ray` backend selected for simulation, but `ray` is not installed").
:func:`fedavg` therefore runs the clients one after another in this process and hands their
results to Flower's strategy as a Flower server would (:func:`flower_simulation_error` tells
whether the engine is available here).

Bytes per round are what Flower serialises: the ``Parameters`` message of the global model
sent to each client plus each client's reply.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's ``state_dict`` as a list of numpy arrays (Flower's ``NDArrays``)."""
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> nn.Module:
    keys = list(model.state_dict().keys())
    model.load_state_dict({k: torch.from_numpy(np.asarray(w)).clone() for k, w in zip(keys, weights)}, strict=True)
    return model


def local_train(model: nn.Module, sequences: Sequence[Sequence[int]], *, epochs: int, batch_size: int, lr: float,
                max_len: int, seed: int) -> float:
    """Train ``model`` (a course sequential model with ``training_loss``) on ``sequences``; returns the mean loss.

    Deterministic given ``seed``: the batch order and dropout draw from it; a fresh Adam each
    call (a federated client keeps no optimiser state between rounds).
    """
    from .train import SequenceCollator

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    collate = SequenceCollator(model.n_items, max_len, loss="ce", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(sequences))
        for s in range(0, len(order), batch_size):
            batch = collate([sequences[i] for i in order[s:s + batch_size]])
            opt.zero_grad()
            loss = model.training_loss(batch)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    model.eval()
    return float(np.mean(losses)) if losses else float("nan")


def parameters_bytes(weights: Sequence[np.ndarray]) -> int:
    """Size of the Flower ``Parameters`` message that carries ``weights`` (serialised tensors)."""
    from flwr.common import ndarrays_to_parameters

    return int(sum(len(t) for t in ndarrays_to_parameters(list(weights)).tensors))


def fedavg(make_model: Callable[[], nn.Module], clients: Sequence[Sequence[Sequence[int]]], *, rounds: int,
           local_epochs: int = 1, batch_size: int = 64, lr: float = 1e-3, max_len: int = 50, seed: int = 0,
           evaluate: Callable[[nn.Module], float] | None = None, strategy=None) -> dict:
    """Federated averaging over ``clients`` (each a list of user sequences) with Flower's ``FedAvg``.

    Args:
        make_model: builds the (identically initialised) model; the server's copy starts from it.
        clients: the clients' data.
        rounds: communication rounds; every client takes part in every round.
        evaluate: ``model -> metric`` after each round (e.g. validation NDCG@10).
        strategy: a Flower strategy (default ``FedAvg()``); its ``aggregate_fit`` combines the replies.

    Returns ``{"model", "history": [{"round", "metric", "loss", "bytes", "seconds"}, ...]}``.
    """
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAvg

    strategy = strategy or FedAvg()
    server = make_model()
    weights = get_weights(server)
    size = parameters_bytes(weights)
    history = []
    for r in range(rounds):
        t0 = time.perf_counter()
        results, losses = [], []
        for c, data in enumerate(clients):
            local = set_weights(make_model(), weights)
            losses.append(local_train(local, data, epochs=local_epochs, batch_size=batch_size, lr=lr,
                                      max_len=max_len, seed=seed + 1000 * r + c))
            res = FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(get_weights(local)),
                         num_examples=len(data), metrics={})
            results.append((None, res))
        params, _ = strategy.aggregate_fit(r + 1, results, [])
        weights = parameters_to_ndarrays(params)
        set_weights(server, weights)
        history.append({"round": r + 1, "metric": evaluate(server) if evaluate else float("nan"),
                        "loss": float(np.average(losses, weights=[len(d) for d in clients])),
                        "bytes": 2 * size * len(clients), "seconds": time.perf_counter() - t0})
    return {"model": server, "history": history}


def centralised(make_model: Callable[[], nn.Module], sequences: Sequence[Sequence[int]], *, epochs: int,
                batch_size: int = 64, lr: float = 1e-3, max_len: int = 50, seed: int = 0,
                evaluate: Callable[[nn.Module], float] | None = None) -> dict:
    """The same training with all data in one place, one epoch at a time (seeds as client 0 of :func:`fedavg`)."""
    model = make_model()
    history = []
    for r in range(epochs):
        loss = local_train(model, sequences, epochs=1, batch_size=batch_size, lr=lr, max_len=max_len,
                           seed=seed + 1000 * r)
        history.append({"round": r + 1, "metric": evaluate(model) if evaluate else float("nan"), "loss": loss})
    return {"model": model, "history": history}


def shard_users(labels: np.ndarray, n_clients: int, *, iid: bool, seed: int = 0) -> list[np.ndarray]:
    """Split users into ``n_clients`` shards: at random (``iid``) or by ``labels`` (e.g. each user's main category).

    Non-IID: users sorted by label, then cut into equal consecutive shards, so each client
    holds a few labels only (the usual "pathological non-IID" split).
    """
    rng = np.random.default_rng(seed)
    users = np.arange(len(labels))
    if iid:
        order = rng.permutation(users)
    else:
        order = np.lexsort((rng.random(len(users)), np.asarray(labels)))
    return [np.sort(s) for s in np.array_split(order, n_clients)]


def flower_simulation_error() -> str | None:
    """``None`` if Flower's simulation engine can run here, else why not (the message Flower gives)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return ("flwr.simulation.run_simulation exits with code 701: \"`ray` backend selected for simulation, "
                "but `ray` is not installed\" (it needs `flwr[simulation]`)")
    return None


__all__ = ["centralised", "fedavg", "flower_simulation_error", "get_weights", "local_train", "parameters_bytes",
           "set_weights", "shard_users"]
