"""Datasets, the synthetic shop, and the evaluation protocol.

>>> from course_lib.data import load_dataset, leave_one_out
>>> ds = load_dataset("ml-1m")            # doctest: +SKIP
>>> split = leave_one_out(ds, min_item_interactions=5)   # doctest: +SKIP
"""

from __future__ import annotations

from .core import Dataset, cache_dir, check_chronological, datasets_dir, repo_root
from .protocol import (
    PAD,
    LeaveOneOutSplit,
    implicit,
    k_core,
    leave_one_out,
    pad_sequences,
    sample_negatives,
    sequences_to_csr,
    shifted_sequences,
)

DATASETS = ("shop", "ml-100k", "ml-1m")


def load_dataset(name: str, *, offline: bool | None = None) -> Dataset:
    """Load one of the course's datasets in canonical form.

    Args:
        name: ``"shop"`` (synthetic, shipped in ``datasets/shop``), ``"ml-100k"`` or
            ``"ml-1m"`` (fetched once into the cache, see :mod:`course_lib.data.movielens`).
        offline: never use the network (default: ``$COURSE_OFFLINE == "1"``).

    Raises:
        ValueError: unknown name (the message lists the choices).
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "shop":
        from .shop import load_shop

        return load_shop()
    from .movielens import load_movielens

    return load_movielens(name, offline=offline)


__all__ = [
    "DATASETS", "PAD", "Dataset", "LeaveOneOutSplit", "cache_dir", "check_chronological",
    "datasets_dir", "implicit", "k_core", "leave_one_out", "load_dataset", "pad_sequences",
    "repo_root", "sample_negatives", "sequences_to_csr", "shifted_sequences",
]
