"""Concept quizzes, one module per chapter (``chNN.py`` with ``QUESTIONS``); see :mod:`course_lib.quiz`."""
