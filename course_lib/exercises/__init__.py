"""Self-checking exercises.

A notebook cell leaves ``answer = None`` until the learner fills it in::

    answer = None  # your code here
    check("00.1", answer, dataset=shop)

* ``answer is None`` → a hint is printed and the cell passes (this is what CI runs);
* a right answer → ``✓``; a wrong one → ``✗`` with a message that helps, and the hint.

The expected answer is never hard-coded: each exercise has a reference solution that
computes it from the same context (the data the learner has). Chapters register their
exercises in ``course_lib/exercises/chNN.py``; this package imports them all.

Tests (``tests/test_exercises.py``) run every reference solution through the checker (it
must pass) and a set of *plausible* wrong answers (they must all fail, with the hint):
the generic ones every numeric exercise gets (0, NaN, ±inf, a sign flip, an off-by-one for
integers, a 10 % error) and the exercise's own ``wrong_answers`` (the neighbouring
sub-question's answer, the unmasked or unfiltered variant, a p-value read as a percentage...).
Tolerances are chosen per quantity: ``rtol`` relative, ``atol`` absolute and 0 by default,
so a tiny right answer such as a p-value of 3e-10 is not matched by 0.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

REGISTRY: dict[str, "Exercise"] = {}


@dataclass
class Exercise:
    """One exercise: how to compute the right answer, how to compare, how to test the checker.

    Attributes:
        id: ``"CC.N"`` (chapter, number).
        title: one line saying what to do.
        hint: printed when the answer is missing or wrong.
        solution: ``solution(**context) -> expected answer`` (the reference solution).
        cases: for exercises whose answer is a *function*: argument tuples to call both the
            learner's function and the reference function with.
        rtol, atol: tolerance for numbers and arrays (relative, absolute). ``atol`` is 0
            by default: set it only for quantities whose right value may be 0.
        example_context: builds a small context for the tests.
        wrong: ``wrong(**context) -> a wrong answer`` (default: a perturbed reference).
        wrong_answers: ``wrong_answers(**context) -> [(label, answer), ...]``: the plausible
            mistakes of this exercise (neighbouring sub-question, unmasked variant, off by
            one, ...). ``tests/test_exercises.py`` requires every one to be rejected.
    """

    id: str
    title: str
    hint: str
    solution: Callable[..., Any]
    cases: Callable[..., list[tuple]] | None = None
    rtol: float = 1e-6
    atol: float = 0.0
    example_context: Callable[[], dict] = field(default=dict)
    wrong: Callable[..., Any] | None = None
    wrong_answers: Callable[..., list[tuple[str, Any]]] | None = None


def register(id: str, title: str, hint: str, **options) -> Callable:
    """Decorator: register ``solution`` as exercise ``id``."""

    def wrap(solution: Callable) -> Callable:
        if id in REGISTRY:
            raise ValueError(f"exercise {id!r} is registered twice")
        REGISTRY[id] = Exercise(id=id, title=title, hint=hint, solution=solution, **options)
        return solution

    return wrap


def _compare(answer: Any, expected: Any, rtol: float, atol: float) -> tuple[bool, str]:
    """(ok, message) for plain values: numbers, arrays, strings, collections."""
    if isinstance(expected, (bool, np.bool_)):
        ok = bool(answer) == bool(expected) and isinstance(answer, (bool, np.bool_))
        return ok, "" if ok else "expected True or False, and not this one"
    if isinstance(expected, (int, float, np.integer, np.floating)):
        try:
            value = float(answer)
        except (TypeError, ValueError):
            return False, f"expected a number, got {type(answer).__name__}"
        if math.isnan(value):
            return False, "your answer is NaN"
        if math.isclose(value, float(expected), rel_tol=rtol, abs_tol=atol):
            return True, ""
        direction = "too high" if value > float(expected) else "too low"
        return False, f"your answer {value:.6g} is {direction}"
    if isinstance(expected, str):
        ok = isinstance(answer, str) and answer.strip().lower() == expected.strip().lower()
        return ok, "" if ok else f"{answer!r} is not the answer"
    if isinstance(expected, (set, frozenset)):
        try:
            got = set(answer)
        except TypeError:
            return False, f"expected a collection, got {type(answer).__name__}"
        if got == expected:
            return True, ""
        return False, f"{len(got - expected)} item(s) should not be there, {len(expected - got)} missing"
    exp = np.asarray(expected)
    try:
        got = np.asarray(answer, dtype=exp.dtype if exp.dtype != object else None)
    except (TypeError, ValueError):
        return False, f"expected something like an array of shape {exp.shape}"
    if got.shape != exp.shape:
        return False, f"shape {got.shape}, expected {exp.shape}"
    if np.issubdtype(exp.dtype, np.number):
        ok = bool(np.allclose(got, exp, rtol=rtol, atol=atol, equal_nan=False))
        return ok, "" if ok else f"values differ (largest gap {float(np.max(np.abs(got - exp))):.3g})"
    ok = bool((got == exp).all())
    return ok, "" if ok else "some entries differ"


def evaluate_answer(exercise_id: str, answer: Any, **context) -> tuple[bool, str]:
    """Compare ``answer`` with the reference solution; (ok, message). Raises KeyError for unknown ids."""
    ex = get(exercise_id)
    expected = ex.solution(**context)
    if callable(expected):
        if not callable(answer):
            return False, f"expected a function, got {type(answer).__name__}"
        cases = ex.cases(**context) if ex.cases else []
        for args in cases:
            try:
                got = answer(*args)
            except Exception as err:  # the learner's code failed: say where
                return False, f"your function raised {type(err).__name__}: {err} on input {args!r}"
            ok, msg = _compare(got, expected(*args), ex.rtol, ex.atol)
            if not ok:
                return False, f"on input {args!r}: {msg}"
        return True, ""
    return _compare(answer, expected, ex.rtol, ex.atol)


def check(exercise_id: str, answer: Any, **context) -> bool | None:
    """Check a learner's answer and print the verdict.

    Returns ``None`` when the answer is still ``None`` (not attempted), else True/False.
    """
    ex = get(exercise_id)
    if answer is None:
        print(f"Exercise {ex.id} — {ex.title}\n  not attempted yet (answer is None). Hint: {ex.hint}")
        return None
    ok, message = evaluate_answer(exercise_id, answer, **context)
    if ok:
        print(f"✓ Exercise {ex.id}: correct.")
    else:
        print(f"✗ Exercise {ex.id}: not yet — {message}.\n  Hint: {ex.hint}")
    return ok


def plausible_wrong_answers(exercise_id: str, **context) -> list[tuple[str, Any]]:
    """The wrong answers a checker must reject: generic ones for the answer's type plus the
    exercise's own ``wrong_answers``. Each is ``(label, answer)``; answers that happen to equal
    the reference (e.g. 0 when the right answer is 0) are left out."""
    ex = get(exercise_id)
    expected = ex.solution(**context)
    out: list[tuple[str, Any]] = []
    if callable(expected):
        out += [("a function returning 0", lambda *a: 0.0), ("a function returning NaN", lambda *a: float("nan"))]
    elif isinstance(expected, (bool, np.bool_)):
        out += [("the opposite", not bool(expected)), ("the string 'yes'", "yes"), ("1 instead of True", 1)]
    elif isinstance(expected, (int, float, np.integer, np.floating)):
        v = float(expected)
        out += [("0", 0.0), ("NaN", float("nan")), ("+inf", float("inf")), ("-inf", float("-inf")),
                ("10 % too high", v * 1.1 if v != 0 else 1e-3), ("a string", str(v))]
        if v != 0:
            out.append(("the sign flipped", -v))
        if isinstance(expected, (int, np.integer)) or float(v).is_integer():
            out += [("off by one (+1)", v + 1), ("off by one (-1)", v - 1)]
    elif isinstance(expected, str):
        out += [("an empty string", ""), ("None-like text", "none")]
    elif isinstance(expected, (set, frozenset)):
        out += [("an empty set", set())]
        if expected:
            out.append(("one item missing", set(list(expected)[1:])))
    else:
        arr = np.asarray(expected)
        if np.issubdtype(arr.dtype, np.number) and arr.size:
            out += [("all zeros", np.zeros_like(arr, dtype=float)), ("NaNs", np.full(arr.shape, np.nan)),
                    ("the wrong shape", np.zeros(arr.size + 1))]
    if ex.wrong is not None:
        out.append(("the exercise's wrong answer", ex.wrong(**context)))
    if ex.wrong_answers is not None:
        out += list(ex.wrong_answers(**context))
    kept = []
    for label, answer in out:
        same, _ = _compare(answer, expected, ex.rtol, ex.atol) if not callable(expected) else (False, "")
        if not same or label.startswith("!"):
            kept.append((label, answer))
    return kept


def get(exercise_id: str) -> Exercise:
    _load_chapters()
    if exercise_id not in REGISTRY:
        raise KeyError(f"no exercise {exercise_id!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[exercise_id]


_LOADED = False


def _load_chapters() -> None:
    """Import every ``chNN`` module of this package so their exercises register."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("ch"):
            importlib.import_module(f"{__name__}.{info.name}")


def all_exercises() -> dict[str, Exercise]:
    _load_chapters()
    return dict(REGISTRY)


__all__ = [
    "Exercise", "REGISTRY", "all_exercises", "check", "evaluate_answer", "get",
    "plausible_wrong_answers", "register",
]
