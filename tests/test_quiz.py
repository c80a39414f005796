"""Every quiz question accepts its right answer and rejects every wrong one, as the exercises do."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from course_lib import quiz

ALL = quiz.questions()
ROOT = Path(__file__).resolve().parents[1]


def test_every_chapter_has_a_quiz():
    chapters = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    have = {q.id.split(".")[0] for q in ALL}
    assert set(chapters) <= have, f"chapters without a quiz: {sorted(set(chapters) - have)}"
    for ch in chapters:
        assert len(quiz.questions(ch)) >= 3, f"chapter {ch}: fewer than 3 questions"


@pytest.mark.parametrize("q", ALL, ids=[q.id for q in ALL])
def test_right_accepted_wrong_rejected(q):
    right = q.answer if q.numeric else q.answer
    ok, text = quiz.answer(q.id, right)
    assert ok and text.startswith("✓") and q.why in text
    if q.numeric:
        v = float(q.answer)
        wrongs = [0.0, float("nan"), float("inf"), v * 1.1, v * 0.9, -v, "abc", None]
    else:
        wrongs = [i for i in range(len(q.options)) if i != q.answer]
        wrongs += [q.options[i] for i in wrongs] + ["not an option", True, None, len(q.options)]
    for w in wrongs:
        ok, text = quiz.answer(q.id, w)
        assert not ok, f"{q.id} accepts the wrong answer {w!r}"
        assert text.startswith("✗") and q.why in text
    if not q.numeric:
        assert quiz.answer(q.id, q.options[q.answer])[0]   # the option's text works too


def test_ids_are_unique_and_numbered_by_chapter():
    ids = [q.id for q in ALL]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"\d\d\.\d+", i) for i in ids)


def test_bad_questions_are_refused():
    with pytest.raises(ValueError, match="answer must index"):
        quiz.Question("99.1", "?", answer=5, why=".", options=("a", "b"))
    with pytest.raises(ValueError, match="two options are the same"):
        quiz.Question("99.1", "?", answer=0, why=".", options=("a", "a"))
    with pytest.raises(KeyError, match="no quiz for chapter"):
        quiz.questions("99")


def test_widgets_check_answers_when_clicked():
    pytest.importorskip("ipywidgets")
    mc = next(q for q in ALL if not q.numeric)
    box = quiz.widget(mc)
    box.button.click()
    assert "choose an answer first" in box.feedback.value
    box.control.value = mc.options[(mc.answer + 1) % len(mc.options)]
    box.button.click()
    assert "✗" in box.feedback.value
    box.control.value = mc.options[mc.answer]
    box.button.click()
    assert "✓" in box.feedback.value
    num = next(q for q in ALL if q.numeric)
    nbox = quiz.widget(num)
    nbox.control.value = float(num.answer)
    nbox.button.click()
    assert "✓" in nbox.feedback.value


def test_text_version_has_no_answers():
    text = quiz.as_text("03")
    assert "03.1" in text and "0)" in text
    for q in quiz.questions("03"):
        assert q.why not in text
    assert not math.isnan(len(text))


def test_html_version_lists_every_question_without_answers():
    html = quiz.as_html("03")
    for q in quiz.questions("03"):
        assert q.id in html and q.why not in html
    assert html.count("<li>") >= sum(len(q.options) for q in quiz.questions("03"))
