"""The one scoring interface every course model and baseline speaks.

A **scorer** is any object with

* ``n_items``: the number of real items (ids ``1..n_items``; 0 is padding), and
* ``score(users, histories) -> scores``: ``users`` a ``(B,)`` LongTensor of internal user
  ids (``-1`` = a user the model does not know), ``histories`` a ``(B, L)`` LongTensor of
  left-padded internal item ids (0 = padding, the most recent item in the last column),
  ``scores`` a ``(B, n_items + 1)`` float tensor, higher = better, **column 0 = -inf** so
  padding is never recommended.

That is :class:`Scorer` (a ``typing.Protocol``: nothing to inherit). Because every model
speaks it, the object itself can be handed to :func:`course_lib.evaluate.evaluate`,
:class:`course_lib.infer.Recommender`, the Trainer's validation and
:func:`course_lib.serve.save_bundle`. A bare function ``score_fn(users, histories)`` (the
interface documented in CONTRIBUTING.md) is still accepted everywhere:
:func:`as_score_fn` turns either into the function.

Torch models get the method from :class:`ScorerMixin`: they write ``_scores(histories)``
(the forward computation, ``(B, L) -> (B, n_items + 1)``) and the mixin adds the checks
(shapes, dtypes, id ranges, with errors that say what to do), eval mode, ``no_grad``, the
device move and column 0 = -inf. Sequential models read only the history, so their
``users`` argument may be omitted: ``model.score(histories)`` is the same as
``model.score(None, histories)``.

>>> from course_lib.scoring import Scorer
>>> isinstance(EASE(lam=300).fit(split), Scorer)        # doctest: +SKIP
True
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from .data.protocol import PAD

ScoreFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | np.ndarray"]

__all__ = ["NotAScorerError", "PAD", "ScoreFn", "Scorer", "ScorerMixin", "as_score_fn", "check_histories",
           "check_users", "mask_padding"]


class NotAScorerError(TypeError, ValueError):
    """Something that cannot score was given where a model was expected (a ``TypeError``
    and, for code that caught the older ``ValueError``, a ``ValueError`` too)."""


@runtime_checkable
class Scorer(Protocol):
    """What every course model and baseline implements (see the module docstring).

    ``score(users, histories)``: ``(B,)`` user ids (``-1`` = unknown) and ``(B, L)``
    left-padded item ids → ``(B, n_items + 1)`` float scores with column 0 = ``-inf``.
    """

    n_items: Any  # int (a baseline has None until it is fitted)

    def score(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        ...


def _as_long(x: Any, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a tensor or array of integer ids, got {type(x).__name__} ({err})") from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer ids, got dtype {t.dtype}; convert with .long()")
    return t.long()


def check_histories(histories: Any, n_items: int) -> torch.Tensor:
    """Check and return ``histories`` as a ``(B, L)`` LongTensor of ids in ``[0, n_items]``.

    Raises:
        TypeError: not integer ids.
        ValueError: not 2-D, or an id outside ``0..n_items`` (the message says what to do).
    """
    h = _as_long(histories, "histories")
    if h.ndim == 1:
        raise ValueError(f"histories must be 2-D (B, L), got a 1-D tensor of length {len(h)}; "
                         "for one user pass histories[None] (a batch of one)")
    if h.ndim != 2:
        raise ValueError(f"histories must be 2-D (B, L), left-padded with 0; got shape {tuple(h.shape)}")
    if h.shape[1] == 0:
        raise ValueError("histories has no columns; left-pad each history to at least one column (0 = padding)")
    if h.numel():
        low, high = int(h.min()), int(h.max())
        if low < 0 or high > n_items:
            raise ValueError(f"histories hold item ids {low}..{high}, outside 0..{n_items} (0 = padding, "
                             f"1..{n_items} = items); map the dataset's ids to internal ids first "
                             "(LeaveOneOutSplit / Catalogue.internal)")
    return h


def check_users(users: Any, batch: int) -> torch.Tensor | None:
    """Check ``users`` (``None`` or a ``(B,)`` integer tensor of ``batch`` entries); return it as a LongTensor."""
    if users is None:
        return None
    u = _as_long(users, "users")
    if u.ndim != 1:
        raise ValueError(f"users must be 1-D (B,), got shape {tuple(u.shape)}")
    if len(u) != batch:
        raise ValueError(f"{len(u)} users but {batch} histories; pass one user id (or -1) per history")
    return u


def mask_padding(scores: torch.Tensor) -> torch.Tensor:
    """Set column 0 (padding) of ``(B, n_items + 1)`` scores to ``-inf``, in place; return them."""
    scores[:, PAD] = -torch.inf
    return scores


def _takes_users(fn: Callable) -> bool:
    """Whether ``fn`` accepts two positional arguments (``score(users, histories)``), not only ``score(histories)``."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: assume the protocol
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def as_score_fn(model: Any) -> ScoreFn:
    """The function ``score_fn(users, histories) -> (B, n_items + 1)`` of anything that scores.

    In order: an object's ``score_fn`` method (every course model and baseline,
    :class:`~course_lib.infer.Recommender`), its ``score(users, histories)`` (a
    :class:`Scorer`), an older ``score(histories)`` that reads no user (wrapped to ignore
    ``users``), or a plain callable (a ``score_fn`` itself).

    Raises:
        NotAScorerError: (a ``TypeError``) ``model`` cannot score; the message says what would.
    """
    fn = getattr(model, "score_fn", None)
    if callable(fn):
        return fn
    score = getattr(model, "score", None)
    if callable(score):
        if _takes_users(score):
            return score
        return lambda users, histories: score(histories)
    if isinstance(model, torch.nn.Module):
        raise NotAScorerError(f"{type(model).__name__} is a torch module without score(users, histories); its forward "
                        "is not a scorer. Give the class course_lib.scoring.ScorerMixin (and a _scores(histories) "
                        "method), or pass a function score_fn(users, histories) -> (B, n_items + 1)")
    if callable(model) and not isinstance(model, (np.ndarray, torch.Tensor, type)):
        return model
    raise NotAScorerError(f"cannot score with a {type(model).__name__}: pass a model with score(users, histories) "
                    "and n_items (course_lib.scoring.Scorer), or a function score_fn(users, histories)")


class ScorerMixin:
    """:class:`Scorer` for ``torch.nn.Module`` models: write ``_scores``, get ``score``.

    The class must provide ``n_items`` and ``_scores(histories) -> (B, n_items + 1)`` for a
    ``(B, L)`` LongTensor on the model's device (it may assume valid input). Models whose
    ``_scores`` has data-dependent shapes (e.g. bucketing) override :meth:`_static_scores`,
    the path that ONNX export traces.
    """

    n_items: int

    def _scores(self, histories: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _static_scores(self, histories: torch.Tensor) -> torch.Tensor:
        """``_scores`` with shapes that depend only on the input's shape (what an exported graph runs)."""
        return self._scores(histories)

    @property
    def _param_device(self) -> torch.device:
        p = next(self.parameters(), None)  # type: ignore[attr-defined]
        return p.device if p is not None else torch.device("cpu")

    def score(self, users: Any, histories: Any = None, **options: Any) -> torch.Tensor:
        """``(B, n_items + 1)`` float32 scores of the next item; column 0 = ``-inf``.

        Args:
            users: ``(B,)`` internal user ids (``-1`` = unknown); sequential models do not
                read them. ``score(histories)`` (one argument) is accepted too.
            histories: ``(B, L)`` left-padded internal item ids (0 = padding); the model
                reads the last ``max_len`` of them.
            **options: passed to the model's ``_scores`` (e.g. BERT4Rec's ``bucket``).

        Runs in eval mode without gradients and restores the training mode afterwards.
        """
        if histories is None:
            users, histories = None, users
        h = check_histories(histories, int(self.n_items))
        check_users(users, len(h))
        was_training = self.training  # type: ignore[attr-defined]
        self.eval()  # type: ignore[attr-defined]
        try:
            with torch.no_grad():
                out = self._scores(h.to(self._param_device), **options).float()
        finally:
            self.train(was_training)  # type: ignore[attr-defined]
        if out.shape != (len(h), int(self.n_items) + 1):  # pragma: no cover - a model bug
            raise RuntimeError(f"{type(self).__name__}._scores returned shape {tuple(out.shape)}, expected "
                               f"({len(h)}, {int(self.n_items) + 1})")
        return mask_padding(out)

    def score_fn(self, users: torch.Tensor | None, histories: torch.Tensor) -> torch.Tensor:
        """``score_fn(users, histories)``: the same as :meth:`score` (the evaluator's interface)."""
        return self.score(users, histories)


def users_or_none(users: Sequence[int] | torch.Tensor | None, batch: int) -> torch.Tensor:
    """``users`` as a ``(B,)`` LongTensor, or ``-1`` for every row when ``None``."""
    if users is None:
        return torch.full((batch,), -1, dtype=torch.long)
    out = check_users(users, batch)
    assert out is not None
    return out
