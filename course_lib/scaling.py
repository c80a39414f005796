"""Scaling arithmetic: parameters, training memory, FLOPs, communication and index sizes.

Formulas first, each paired with a way to *measure* the same quantity, so that a notebook
can check the arithmetic against the machine:

==========================  ===============================  =====================================
quantity                    formula                          measured with
==========================  ===============================  =====================================
parameters of SASRec        :func:`sasrec_parameters`        ``model.parameters()``
weights + grads + AdamW     :func:`training_state_bytes`     :func:`measured_state_bytes`
activations kept for        —                                :func:`saved_activation_bytes`
backward                                                     (a ``saved_tensors_hooks`` count)
training FLOPs per token    :func:`sasrec_train_flops`       ``torch.utils.flop_counter``
DDP bytes per step          :func:`allreduce_bytes`          (gloo/NCCL ring all-reduce)
IVF-PQ index bytes          :func:`ivfpq_bytes`              ``faiss.serialize_index``
==========================  ===============================  =====================================

Units: bytes and FLOPs (a multiply-add is 2 FLOPs). Shapes: ``V = n_items + 1`` rows of the
item table, ``d`` model size, ``L`` layers, ``T`` positions (``max_len``), ``f`` feed-forward size.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}


def sasrec_parameters(n_items: int, max_len: int, d_model: int, n_layers: int,
                      d_ff: int | None = None) -> dict[str, int]:
    """Parameters of :class:`~course_lib.models.SASRec`, by part.

    Returns ``{"item_table": V·d, "positions": T·d, "blocks": L·(4d² + 4d + 4d + 2df + f + d),
    "final_norm": 2d, "total": …}`` (q, k, v, out projections with biases; two LayerNorms per
    block; a two-layer feed-forward network of inner size ``f`` = ``d_ff`` or ``d``).
    """
    d, f = d_model, d_ff or d_model
    per_block = (4 * d * d + 4 * d) + 4 * d + (d * f + f + f * d + d)
    parts = {"item_table": (n_items + 1) * d, "positions": max_len * d, "blocks": n_layers * per_block,
             "final_norm": 2 * d}
    parts["total"] = sum(parts.values())
    return parts


def training_state_bytes(n_params: int, *, weights: str = "fp32", optimizer: str = "adamw",
                         master_copy: bool = False) -> dict[str, int]:
    """Bytes of what training keeps besides activations: weights, gradients, optimizer states.

    AdamW keeps two fp32 moments per parameter (8 bytes); SGD with momentum one (4 bytes);
    plain SGD none. Gradients have the weights' dtype. ``master_copy`` adds the fp32 copy that
    mixed-precision training with bf16/fp16 *weights* keeps (4 bytes per parameter).

    Returns ``{"weights", "gradients", "optimizer", "master", "total"}`` in bytes.
    """
    if weights not in BYTES:
        raise ValueError(f"unknown weights dtype {weights!r}; choose one of: {', '.join(BYTES)}")
    per_state = {"adamw": 8, "adam": 8, "sgd_momentum": 4, "sgd": 0}
    if optimizer not in per_state:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of: {', '.join(per_state)}")
    w = BYTES[weights] * n_params
    out = {"weights": w, "gradients": w, "optimizer": per_state[optimizer] * n_params,
           "master": 4 * n_params if master_copy else 0}
    out["total"] = sum(out.values())
    return out


def measured_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes actually held by the weights, their ``.grad`` and the optimizer's state tensors (after a step)."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    states = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                 if torch.is_tensor(v) and v.dim() > 0)
    return {"weights": weights, "gradients": grads, "optimizer": states, "total": weights + grads + states}


def saved_activation_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs its forward pass.

    Counts each saved tensor's storage once (views of one storage are not double-counted).
    Parameters saved for backward are included, as they would be on any device; subtract
    them if you want activations alone. Deterministic: it depends on shapes, not on timing.
    """
    seen: dict[Any, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), t.device)] = storage.nbytes()
        except (RuntimeError, NotImplementedError):       # tensors without storage (sparse, nested)
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return int(sum(seen.values()))


def sasrec_train_flops(n_items: int, max_len: int, d_model: int, n_layers: int, d_ff: int | None = None,
                       *, full_softmax: bool = True) -> dict[str, float]:
    """Training FLOPs **per target token** of SASRec (forward + backward ≈ 3 × forward).

    Forward, per token: ``2 · L · (4d² + 2df)`` for the projections and the feed-forward
    network, ``2 · L · 2 · T · d`` for ``QKᵀ`` and ``AV`` over all ``T`` positions (the fused
    kernel computes the masked half too), and ``2 · d · V`` for scoring the whole catalogue
    (full cross-entropy; none with ``full_softmax=False``). Embedding look-ups are free.

    Returns ``{"blocks", "attention", "output", "forward", "train"}``, FLOPs per token.
    """
    d, f, L, T = d_model, d_ff or d_model, n_layers, max_len
    blocks = 2.0 * L * (4 * d * d + 2 * d * f)
    attention = 2.0 * L * 2 * T * d
    output = 2.0 * d * (n_items + 1) if full_softmax else 0.0
    forward = blocks + attention + output
    return {"blocks": blocks, "attention": attention, "output": output, "forward": forward, "train": 3 * forward}


def counted_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` as torch's own ``FlopCounterMode`` counts them (matmuls, attention, convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def allreduce_bytes(n_params: int, world_size: int, *, bytes_per_value: int = 4) -> float:
    """Bytes each rank sends (and receives) in one ring all-reduce of the gradients.

    A ring all-reduce is a reduce-scatter then an all-gather, each moving ``(W-1)/W`` of
    the buffer: ``2 · (W-1)/W · P · bytes``. It tends to twice the gradient size as ``W``
    grows, whatever ``W``: that is why data parallelism scales as long as the network keeps up.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return 2.0 * (world_size - 1) / world_size * n_params * bytes_per_value


def ivfpq_bytes(n_vectors: int, dim: int, *, nlist: int, m: int, nbits: int = 8, id_bytes: int = 8) -> dict[str, float]:
    """Memory of a faiss ``IndexIVFPQ``: codes + ids per vector, plus coarse centroids and PQ codebooks.

    ``codes = n · m · nbits / 8``, ``ids = n · id_bytes``, ``centroids = nlist · dim · 4``,
    ``codebooks = m · 2^nbits · (dim / m) · 4`` (= ``2^nbits · dim · 4``).
    Returns the parts, ``"total"`` and ``"per_vector"`` (the slope the extrapolation uses).
    """
    if dim % m:
        raise ValueError(f"dim ({dim}) must be divisible by m ({m}), the number of PQ sub-vectors")
    parts = {"codes": n_vectors * m * nbits / 8, "ids": n_vectors * id_bytes,
             "centroids": nlist * dim * 4.0, "codebooks": (2 ** nbits) * dim * 4.0}
    parts["total"] = sum(parts.values())
    parts["per_vector"] = m * nbits / 8 + id_bytes
    return parts


def measure_ivfpq(vectors, *, nlist: int, m: int, nbits: int = 8, train_size: int | None = None,
                  seed: int = 0) -> dict[str, float]:
    """Build a faiss ``IndexIVFPQ`` on ``vectors`` ``(n, dim)`` float32 and return its serialized size.

    Returns ``{"bytes": serialized bytes, "train_s": …, "add_s": …}``.
    """
    import time

    import faiss
    import numpy as np

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(n, min(n, train_size or max(40 * nlist, 256 * 40)), replace=False)]
    t0 = time.perf_counter()
    index.train(sample)
    t1 = time.perf_counter()
    index.add(x)
    t2 = time.perf_counter()
    return {"bytes": float(faiss.serialize_index(index).nbytes), "train_s": t1 - t0, "add_s": t2 - t1}


__all__ = ["BYTES", "allreduce_bytes", "counted_flops", "ivfpq_bytes", "measure_ivfpq", "measured_state_bytes",
           "sasrec_parameters", "sasrec_train_flops", "saved_activation_bytes", "training_state_bytes"]
