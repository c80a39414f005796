"""Shared fixtures, and the `slow` marker of the library tests that take seconds.

MovieLens is fetched by `make test` / `make unit` before pytest runs (`make data`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("COURSE_DEVICE", "cpu")  # tests compare numbers; keep them on the CPU

# Library tests marked `slow` (and so left out of `make unit`), in one place so that test
# files need no decorators. A node id without "[...]" marks every parametrisation. Chosen
# from `pytest tests -m "not notebook" --durations=60` (CONTRIBUTING.md "Tests"); a test
# that takes more than about 2 s belongs here.
SLOW_TESTS: frozenset[str] = frozenset({
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW_TESTS or item.nodeid.split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


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
