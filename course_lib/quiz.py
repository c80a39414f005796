"""End-of-chapter concept quizzes: multiple choice or a number, checked on the spot.

In a notebook::

    from course_lib.quiz import quiz
    quiz("04")              # the chapter's questions as widgets: pick, press "Check", read why

Without widgets (a terminal, a plain-text export) the same questions print as text, and
:func:`answer` checks a response: ``answer("04.1", 2)`` or ``answer("04.1", "the option's text")``.

The questions live in ``course_lib/quizzes/chNN.py`` as ``QUESTIONS = [Question(...), ...]``.
A numeric answer is written as the expression that computes it (``3707 * 64``), not a typed
result. ``tests/test_quiz.py`` checks that every right answer is accepted and every wrong
option, 0, NaN and a 10 % error are rejected, as the exercises are.
"""

from __future__ import annotations

import importlib
import logging
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """One question.

    Attributes:
        id: ``"CC.N"`` (chapter, number).
        text: the question (Markdown is fine).
        answer: the index of the right option, or the number for a numeric question.
        why: the explanation shown after any attempt.
        options: the choices of a multiple-choice question; empty for a numeric one.
        rtol: relative tolerance of a numeric answer.
    """

    id: str
    text: str
    answer: int | float
    why: str
    options: tuple[str, ...] = field(default_factory=tuple)
    rtol: float = 0.01

    def __post_init__(self) -> None:
        if self.options and not (isinstance(self.answer, int) and 0 <= self.answer < len(self.options)):
            raise ValueError(f"question {self.id}: answer must index one of its {len(self.options)} options")
        if self.options and len(set(self.options)) != len(self.options):
            raise ValueError(f"question {self.id}: two options are the same")

    @property
    def numeric(self) -> bool:
        return not self.options


def _load() -> dict[str, list[Question]]:
    from . import quizzes

    out: dict[str, list[Question]] = {}
    for info in pkgutil.iter_modules(quizzes.__path__):
        if info.name.startswith("ch"):
            module = importlib.import_module(f"{quizzes.__name__}.{info.name}")
            out[info.name[2:]] = list(module.QUESTIONS)
    return out


def questions(chapter: str | None = None) -> list[Question]:
    """The questions of one chapter (``"04"``), or of all chapters."""
    every = _load()
    if chapter is None:
        return [q for ch in sorted(every) for q in every[ch]]
    if chapter not in every:
        raise KeyError(f"no quiz for chapter {chapter!r}; chapters with a quiz: {', '.join(sorted(every))}")
    return every[chapter]


def get(question_id: str) -> Question:
    for q in questions(question_id.split(".")[0]):
        if q.id == question_id:
            return q
    raise KeyError(f"no question {question_id!r}")


def answer(question_id: str, response: Any) -> tuple[bool, str]:
    """Check ``response`` to a question: ``(right?, feedback with the explanation)``.

    Multiple choice: the option's index (0-based) or its exact text. Numeric: a number.
    """
    q = get(question_id)
    if q.numeric:
        try:
            value = float(response)
        except (TypeError, ValueError):
            return False, f"✗ expected a number. {q.why}"
        if math.isnan(value) or math.isinf(value):
            return False, f"✗ {value} is not a useful answer. {q.why}"
        ok = math.isclose(value, float(q.answer), rel_tol=q.rtol, abs_tol=0.0)
        return ok, ("✓ right. " if ok else f"✗ not quite ({'too high' if value > q.answer else 'too low'}). ") + q.why
    if isinstance(response, str):
        if response not in q.options:
            return False, f"✗ that is not one of the options. {q.why}"
        index = q.options.index(response)
    elif isinstance(response, (int,)) and not isinstance(response, bool):
        index = response
    else:
        return False, f"✗ give the option's number (0-based) or its text. {q.why}"
    ok = index == q.answer
    return ok, ("✓ right. " if ok else "✗ not this one. ") + q.why


def as_text(chapter: str) -> str:
    """The chapter's quiz as plain text (the answers are not in it)."""
    lines = []
    for q in questions(chapter):
        lines.append(f"{q.id}  {q.text}")
        for i, opt in enumerate(q.options):
            lines.append(f"    {i}) {opt}")
        if q.numeric:
            lines.append("    (a number)")
    return "\n".join(lines)


def as_html(chapter: str) -> str:
    """The chapter's quiz as HTML without the answers: what a static page (the website) shows."""
    from html import escape

    parts = [f"<div class='course-quiz'><p><b>Quiz, chapter {escape(chapter)}</b> "
             "(open the notebook in JupyterLab to check your answers)</p><ol>"]
    for q in questions(chapter):
        parts.append(f"<li><b>{escape(q.id)}</b> {escape(q.text)}")
        if q.options:
            parts.append("<ol start='0'>" + "".join(f"<li>{escape(o)}</li>" for o in q.options) + "</ol>")
        else:
            parts.append(" <i>(a number)</i>")
        parts.append("</li>")
    parts.append("</ol></div>")
    return "".join(parts)


def widget(q: Question):
    """An ipywidgets box for one question: the choices, a Check button and the feedback."""
    import ipywidgets as w

    header = w.HTML(f"<b>{q.id}</b> {q.text}")
    if q.numeric:
        control = w.FloatText(value=None, description="answer:", layout=w.Layout(width="260px"))
    else:
        control = w.RadioButtons(options=list(q.options), value=None, layout=w.Layout(width="auto"))
    button = w.Button(description="Check", button_style="primary", layout=w.Layout(width="90px"))
    feedback = w.HTML("")

    def on_click(_):
        if control.value is None:
            feedback.value = "<i>choose an answer first</i>"
            return
        ok, text = answer(q.id, control.value)
        colour = "#1a7f37" if ok else "#b42318"
        feedback.value = f"<span style='color:{colour}'>{text}</span>"

    button.on_click(on_click)
    box = w.VBox([header, control, w.HBox([button, feedback])],
                 layout=w.Layout(border="1px solid #ddd", padding="6px", margin="4px 0"))
    box.control, box.button, box.feedback = control, button, feedback  # for tests and curious learners
    return box


def quiz(chapter: str):
    """Show a chapter's quiz: widgets in a notebook, text elsewhere.

    The notebook output carries the widgets and, beside them, an HTML list of the questions
    (no answers): JupyterLab shows the widgets, a static page (the website, GitHub) the list.
    """
    try:
        import ipywidgets as w
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is None:
            raise ImportError("not in IPython")
    except ImportError:
        print(as_text(chapter))
        print('\nCheck an answer with course_lib.quiz.answer("CC.N", your_choice)')
        return None
    box = w.VBox([widget(q) for q in questions(chapter)])
    bundle = box._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else dict(bundle)
    bundle["text/html"] = as_html(chapter)
    bundle["text/plain"] = as_text(chapter)
    display(bundle, raw=True)
    return None


__all__ = ["Question", "answer", "as_html", "as_text", "get", "questions", "quiz", "widget"]
