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
# Measured 2026-12-02 on the 2 shared cores at load 8-19 (444 library tests in 598 s); the
# seconds are that run's, for scale only.
SLOW_TESTS: frozenset[str] = frozenset({
    "tests/test_shop.py::test_committed_files_equal_a_fresh_generation",  # 81 s
    "tests/test_protocol.py::test_ml1m_five_core_matches_the_papers",  # 60 s (+ loads ML-1M)
    "tests/test_bert4rec.py::test_learns_a_planted_order_and_plugs_into_the_evaluator",  # 50 s, 600 steps
    "tests/test_infer.py::test_onnx_export_agrees_with_torch_for_any_batch_size",  # 31 s
    "tests/test_shop.py::test_text_carries_the_category",  # 30 s
    "tests/test_serve.py::test_cli_serves_the_bundle_in_another_process",  # 23 s, a server process
    "tests/test_serve.py::test_cli_explains_a_missing_bundle",  # 23 s, a CLI process
    "tests/test_data.py::test_ml1m_has_the_published_size",  # 24 s, loads ML-1M
    "tests/test_serve.py::test_bundle_round_trip_and_checksums",  # 13 s, builds the ONNX bundle
    "tests/test_runner.py::test_inplace_run_never_overwrites_a_notebook_with_a_failed_run",  # 11 s, two kernels
    "tests/test_nn_basics.py::test_item2vec_recovers_planted_groups",  # 9 s
    "tests/test_serve.py::test_small_load_has_no_server_errors",  # 8 s, load test
    "tests/test_exercises.py::test_plausible_wrong_answers_are_rejected[01.2]",  # 8 s
    "tests/test_baselines.py::test_collaborative_filtering_beats_popularity_on_movielens",  # 8 s
    "tests/test_sasrec.py::test_sasrec_learns_a_sequence_pattern",  # 3 x 6 s
    "tests/test_gru4rec.py::test_gru4rec_learns_a_sequence_pattern",  # 5 s
    "tests/test_analysis.py::test_paired_tests_find_a_real_difference_and_not_a_null_one",  # 5 s
    "tests/test_train.py::test_training_learns_the_toy_pattern",  # 5 s
    "tests/test_baselines.py::test_bpr_learns_two_taste_groups_and_is_deterministic",  # 4 s
    "tests/test_sasrec.py::test_fast_and_teaching_attention_agree",  # 4 s
    "tests/test_text.py::test_minilm_matches_sentence_transformers",  # 4 s
    "tests/test_serve.py::test_micro_batching_batches_and_gives_the_same_answers",  # 4 s
    "tests/test_semantic_ids.py::test_rqvae_trains_quantises_and_keeps_the_planted_clusters",  # 18 s at load 6
    "tests/test_privacy.py::test_dp_model_passes_opacus_validator_and_trains",  # 17 s, DP-SGD under opacus
    "tests/test_federated.py::test_one_client_equals_centralised_training",  # 7 s (imports flwr)
    "tests/test_privacy.py::test_retrain_without_is_training_on_the_reduced_data_with_the_same_seed",  # 21 s at load 4
    "tests/test_privacy.py::test_fine_tune_away_erases_the_membership_signal_of_the_forgotten_users",  # 5 s, 60 epochs
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
