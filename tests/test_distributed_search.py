"""Two worker processes share one optuna study through a SQLite file (course_lib.train.distributed_search)."""

from __future__ import annotations

import pytest

from course_lib.train.distributed_search import launch_workers, load_shared_study


@pytest.mark.slow
def test_two_workers_fill_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    codes = launch_workers(storage, "planted", n_workers=2, trials_per_worker=6, objective="quadratic")
    assert codes == [0, 0]
    study = load_shared_study(storage, "planted")
    trials = [t for t in study.trials if t.value is not None]
    assert len(trials) == 12                                         # both workers' trials, in one place
    assert sorted({t.user_attrs["worker"] for t in trials}) == [0, 1]
    assert abs(study.best_params["x"] - 2.0) < 2.0                   # near the planted optimum x = 2
    assert study.best_value == max(t.value for t in trials)


def test_unknown_objective_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        launch_workers(f"sqlite:///{tmp_path / 's.db'}", "x", objective="bogus")
