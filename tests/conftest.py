"""Shared fixtures. MovieLens is fetched by `make test` before pytest runs (`make data`)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("COURSE_DEVICE", "cpu")  # tests compare numbers; keep them on the CPU


@pytest.fixture(scope="session")
def ml100k():
    from course_lib.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="session")
def ml1m():
    from course_lib.data import load_dataset

    return load_dataset("ml-1m")


@pytest.fixture
def tiny_interactions() -> pd.DataFrame:
    """Three users; user 1 has a tie in time (items 30 and 20 at t=3)."""
    return pd.DataFrame({
        "user_id": [1, 1, 1, 1, 2, 2, 2, 3, 3],
        "item_id": [10, 30, 20, 40, 10, 20, 30, 10, 20],
        "timestamp": [1, 3, 3, 4, 5, 6, 7, 1, 2],
    })


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
