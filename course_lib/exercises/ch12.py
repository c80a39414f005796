"""Exercises of chapter 12 (scaling up and out): memory, communication and learning-rate arithmetic."""

from __future__ import annotations

from . import register


def _table_context() -> dict:
    return {"n_items": 1_000_000, "d": 64}


@register(
    "12.1",
    "bytes needed to TRAIN an item table of n_items items (plus the padding row 0) and width d in fp32 with AdamW",
    "count four fp32 tensors of shape (n_items + 1, d): the weights, their gradients, and AdamW's two moments "
    "(exp_avg, exp_avg_sq) — 16 bytes per number; course_lib.scaling.training_state_bytes does the same",
    example_context=_table_context,
    rtol=1e-9,
    wrong_answers=lambda n_items, d: [
        ("weights only", 4 * (n_items + 1) * d),
        ("weights + gradients, no optimizer state", 8 * (n_items + 1) * d),
        ("one Adam moment instead of two", 12 * (n_items + 1) * d),
        ("forgot the padding row", 16 * n_items * d),
    ],
)
def adam_table_bytes(n_items: int, d: int) -> int:
    return 16 * (n_items + 1) * d


def _comm_context() -> dict:
    return {"n_params": 2_471_168, "world_size": 8}


@register(
    "12.2",
    "bytes each process sends per optimizer step when DDP ring-all-reduces n_params fp32 gradients "
    "over world_size processes",
    "a ring all-reduce is a reduce-scatter then an all-gather; each sends (W - 1)/W of the gradient buffer "
    "(n_params × 4 bytes): 2 · (W - 1)/W · n_params · 4",
    example_context=_comm_context,
    rtol=1e-9,
    wrong_answers=lambda n_params, world_size: [
        ("the gradient size once", 4 * n_params),
        ("the large-W limit 2 × gradient", 8 * n_params),
        ("reduce-scatter only", (world_size - 1) / world_size * n_params * 4),
        ("times the number of processes", 2 * (world_size - 1) * n_params * 4),
        ("counted in values, not bytes", 2 * (world_size - 1) / world_size * n_params),
    ],
)
def allreduce_step_bytes(n_params: int, world_size: int) -> float:
    return 2 * (world_size - 1) / world_size * n_params * 4


def _lr_context() -> dict:
    return {"lr": 3e-3, "world_size": 4, "global_batch": 256}


@register(
    "12.3",
    "the learning rate of a world_size-process DDP run that keeps the one-process run's global batch "
    "(lr was right for it)",
    "each rank back-propagates its share, and DDP AVERAGES the gradients over the ranks: with the global batch "
    "unchanged, the averaged gradient is the one-process gradient, so the step needs no rescaling",
    example_context=_lr_context,
    rtol=1e-9,
    wrong_answers=lambda lr, world_size, global_batch: [
        ("linear scaling rule (for a W-times bigger batch)", lr * world_size),
        ("divided by the processes", lr / world_size),
        ("square-root scaling", lr * world_size ** 0.5),
    ],
)
def ddp_learning_rate(lr: float, world_size: int, global_batch: int) -> float:
    return float(lr)


def _ivf_context() -> dict:
    return {"n_vectors": 100_000_000, "m": 16, "nbits": 8}


@register(
    "12.4",
    "bytes of the per-vector part of a faiss IVF-PQ index (PQ codes + 8-byte ids) for n_vectors items",
    "each vector keeps m sub-codes of nbits bits (m · nbits / 8 bytes) and its 64-bit id (8 bytes): "
    "n_vectors · (m · nbits / 8 + 8); centroids and codebooks are a fixed cost on top",
    example_context=_ivf_context,
    rtol=1e-9,
    wrong_answers=lambda n_vectors, m, nbits: [
        ("codes only, ids forgotten", n_vectors * m * nbits / 8),
        ("bits, not bytes", n_vectors * (m * nbits + 8)),
        ("one byte per sub-vector and no ids", n_vectors * m),
        ("the flat float32 vectors of width 64", n_vectors * 64 * 4),
    ],
)
def ivfpq_vector_bytes(n_vectors: int, m: int, nbits: int) -> float:
    return n_vectors * (m * nbits / 8 + 8)
