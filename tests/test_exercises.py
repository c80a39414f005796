"""Every exercise checker passes its reference solution and fails a wrong answer."""

import numpy as np
import pytest

from course_lib import exercises as E


def _wrong(ex, context, expected):
    if ex.wrong is not None:
        return ex.wrong(**context)
    if callable(expected):
        return lambda *args: -12345.0
    if isinstance(expected, (bool, np.bool_)):
        return not expected
    if isinstance(expected, (int, float, np.integer, np.floating)):
        return float(expected) * 1.5 + 1.0
    if isinstance(expected, str):
        return expected + " (wrong)"
    if isinstance(expected, (set, frozenset)):
        return set(expected) ^ {"__not_an_item__"}
    return np.asarray(expected, dtype=float) + 1.0


ALL = E.all_exercises()


@pytest.mark.parametrize("exercise_id", sorted(ALL))
def test_reference_passes_and_wrong_fails(exercise_id, capsys):
    ex = ALL[exercise_id]
    context = ex.example_context()
    expected = ex.solution(**context)
    assert E.check(exercise_id, expected, **context) is True
    assert E.check(exercise_id, _wrong(ex, context, expected), **context) is False
    out = capsys.readouterr().out
    assert "✓" in out and "✗" in out and ex.hint in out


@pytest.mark.parametrize("exercise_id", sorted(ALL))
def test_plausible_wrong_answers_are_rejected(exercise_id, capsys):
    """0, NaN, inf, sign flips, off-by-ones and the exercise's own plausible mistakes
    (the neighbouring sub-question, the unmasked variant, ...) are all rejected with the hint."""
    ex = ALL[exercise_id]
    context = ex.example_context()
    wrongs = E.plausible_wrong_answers(exercise_id, **context)
    assert wrongs, f"{exercise_id}: no wrong answers to test the checker with"
    accepted = []
    for label, answer in wrongs:
        capsys.readouterr()
        if E.check(exercise_id, answer, **context) is not False:
            accepted.append(label)
        elif ex.hint not in capsys.readouterr().out:
            accepted.append(f"{label} (rejected without the hint)")
    assert not accepted, f"{exercise_id} accepts plausible wrong answers: {accepted}"


@pytest.mark.parametrize("exercise_id", sorted(ALL))
def test_unattempted_prints_the_hint(exercise_id, capsys):
    ex = ALL[exercise_id]
    assert E.check(exercise_id, None, **ex.example_context()) is None
    assert "not attempted yet" in capsys.readouterr().out


def test_compare_rules():
    assert E._compare(0.5000000001, 0.5, 1e-6, 1e-9)[0]
    ok, msg = E._compare(0.7, 0.5, 1e-6, 1e-9)
    assert not ok and "too high" in msg
    assert not E._compare("abc", 1.0, 1e-6, 1e-9)[0]
    assert E._compare([1, 2], np.array([1, 2]), 1e-6, 1e-9)[0]
    assert "shape" in E._compare([1, 2, 3], np.array([1, 2]), 1e-6, 1e-9)[1]
    assert E._compare({"a", "b"}, {"b", "a"}, 0, 0)[0]


def test_unknown_exercise():
    with pytest.raises(KeyError, match="no exercise '99.9'"):
        E.check("99.9", 1)
