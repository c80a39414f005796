"""Next-item losses: which items does the model push down when it pushes the right one up?

A sequential recommender turns a history into a hidden state ``h`` (one per position) and
scores item ``i`` by the dot product ``s_i = h · e_i`` with the item's embedding ``e_i``
(the same table that embeds the input items: *shared* or *tied* embeddings). The three
losses below differ only in the set of items that compete with the target ``t``:

* :func:`bce_loss` — **binary cross-entropy with sampled negatives** (the SASRec paper,
  Kang & McAuley 2018): the target is a positive, each of ``K`` random items a negative,
  and each is judged alone::

      L = -log σ(s_t) - Σ_{j=1..K} log(1 - σ(s_{n_j}))

* :func:`sampled_softmax_loss` — **softmax over the target and K sampled negatives**::

      L = -s'_t + log( exp(s'_t) + Σ_j exp(s'_{n_j}) ),   s'_i = s_i - log Q(i)

  When negatives are drawn with probability ``Q`` (e.g. proportional to popularity) the
  *log-Q correction* subtracts ``log Q(i)`` from every logit, so that popular items are
  not over-punished for being drawn often (Bengio & Senécal 2008; Yi et al., RecSys 2019).
  With uniform ``Q`` the correction is a constant and changes nothing.

* :func:`full_cross_entropy` — **softmax over the whole catalogue** (SASRec+, Klenitskiy &
  Vasilev, RecSys 2023)::

      L = -s_t + log Σ_{i=1..n_items} exp(s_i)

  Every item competes at every step: the most informative gradient, and on ML-1M the
  largest single improvement over the paper's BCE. Its cost is one ``(N, d) × (d, n_items)``
  matrix product, affordable for catalogues of thousands to a few hundred thousand items.

Shapes: ``N`` positions that have a target (padding positions are dropped *before* the
loss, so the output layer is computed only where it is used), ``d`` hidden size,
``V = n_items + 1`` rows of the item table (row 0 is padding and never a candidate), ``K``
negatives. All losses return the mean over the ``N`` positions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data.protocol import PAD

LOSSES = ("ce", "bce", "sampled")


def _check(hidden: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor) -> None:
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be (N, d); got shape {tuple(hidden.shape)} — select the "
                         "positions with a target first, e.g. hidden[labels != 0]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be (N,) = ({hidden.shape[0]},); got {tuple(targets.shape)}")
    if item_embeddings.dim() != 2 or item_embeddings.shape[1] != hidden.shape[1]:
        raise ValueError(f"item_embeddings must be (n_items + 1, d={hidden.shape[1]}); "
                         f"got {tuple(item_embeddings.shape)}")
    if len(targets) == 0:
        raise ValueError("no position has a target (N = 0); every sequence in the batch is empty")
    if bool((targets <= PAD).any()) or bool((targets >= len(item_embeddings)).any()):
        raise ValueError(f"targets must be item ids in 1..{len(item_embeddings) - 1} "
                         "(0 = padding is never a target)")


def full_cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, item_embeddings: torch.Tensor,
                       *, chunk_size: int | None = None) -> torch.Tensor:
    """Softmax cross-entropy over the whole catalogue (padding row excluded).

    Args:
        hidden: ``(N, d)`` hidden states at positions that have a target.
        targets: ``(N,)`` the next item at each position, in ``1..n_items``.
        item_embeddings: ``(n_items + 1, d)`` the output item table; row 0 (padding) is not
            a candidate.
        chunk_size: ``None`` builds the ``(N, n_items)`` logits and calls
            :func:`torch.nn.functional.cross_entropy` (the plain way). An integer computes the
            same loss and gradients ``chunk_size`` rows at a time (:class:`ChunkedCrossEntropy`):
            the logits never exist whole, each chunk stays in the CPU's cache, and the
            backward pass recomputes them instead of reading them back from memory.

    Returns:
        scalar, the mean of ``-s_t + logsumexp_i s_i`` over the ``N`` positions.
    """
    _check(hidden, targets, item_embeddings)
    if chunk_size is not None:
        return ChunkedCrossEntropy.apply(hidden, item_embeddings[1:], targets - 1, int(chunk_size))
    logits = hidden @ item_embeddings[1:].T                                   # (N, n_items)
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets - 1)


class ChunkedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of ``hidden @ weight.T``, computed ``chunk`` rows at a time.

    Forward keeps only ``lse = logsumexp(logits)`` per row ``(N,)``. Backward recomputes each
    chunk's logits and uses ``∂L/∂logits = (softmax(logits) - onehot(target)) / N``::

        ∂L/∂hidden = G @ weight        ∂L/∂weight = Gᵀ @ hidden

    One extra matrix product, but no ``(N, n_items)`` tensor ever goes to memory and back.
    ``apply(hidden (N, d), weight (C, d), targets (N,) in 0..C-1, chunk)``.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk):
        N = hidden.shape[0]
        acc = torch.promote_types(hidden.dtype, torch.float32)                 # float32 (or float64)
        lse = torch.empty(N, dtype=acc, device=hidden.device)                  # (N,)
        for s in range(0, N, chunk):
            logits = (hidden[s:s + chunk] @ weight.T).to(acc)                  # (c, C)
            lse[s:s + chunk] = torch.logsumexp(logits, dim=-1)
        target_logit = (hidden.to(acc) * weight[targets].to(acc)).sum(-1)      # (N,)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        kind = hidden.device.type
        # under autocast the forward's products ran in bf16/fp16: run the backward's alike
        ctx.dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else hidden.dtype
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, targets, lse = ctx.saved_tensors
        N, chunk, dtype = hidden.shape[0], ctx.chunk, ctx.dtype
        acc = lse.dtype
        w = weight.to(dtype)                                                   # (C, d)
        grad_h = torch.empty(hidden.shape, dtype=acc, device=hidden.device)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        scale = grad_out.to(acc) / N
        for s in range(0, N, chunk):
            h = hidden[s:s + chunk].to(dtype)                                  # (c, d)
            g = torch.exp((h @ w.T).to(acc) - lse[s:s + chunk, None])          # (c, C) softmax
            g[torch.arange(len(h), device=g.device), targets[s:s + chunk]] -= 1.0
            g = (g * scale).to(dtype)
            grad_h[s:s + chunk] = g @ w                                        # (c, d)
            grad_w += g.T @ h                                                  # (C, d)
        # the target logit's own gradient (-1 at the target) is inside g; nothing else to add
        return grad_h.to(hidden.dtype), grad_w.to(weight.dtype), None, None


def bce_loss(hidden: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
             item_embeddings: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy: target vs ``K`` sampled negatives, each judged on its own (SASRec).

    Args:
        hidden: ``(N, d)``; targets: ``(N,)``.
        negatives: ``(N,)`` one negative per position (the paper) or ``(N, K)``.
        item_embeddings: ``(n_items + 1, d)``.

    Returns:
        scalar, the mean over positions of ``-log σ(s_t) - Σ_j log(1 - σ(s_{n_j}))``.
    """
    _check(hidden, targets, item_embeddings)
    if negatives.dim() == 1:
        negatives = negatives[:, None]                                        # (N, 1)
    if negatives.shape[0] != hidden.shape[0]:
        raise ValueError(f"negatives must be (N,) or (N, K) with N = {hidden.shape[0]}; "
                         f"got {tuple(negatives.shape)}")
    acc = torch.promote_types(hidden.dtype, torch.float32)
    pos = (hidden * item_embeddings[targets]).sum(-1).to(acc)                 # (N,)
    neg = torch.einsum("nd,nkd->nk", hidden, item_embeddings[negatives]).to(acc)   # (N, K)
    # -log σ(x) = softplus(-x);  -log(1 - σ(x)) = softplus(x): stable for large |x|
    return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
                         item_embeddings: torch.Tensor, *, log_q: torch.Tensor | None = None,
                         remove_accidental_hits: bool = True) -> torch.Tensor:
    """Softmax over the target and ``K`` sampled negatives, with the log-Q correction.

    Args:
        hidden: ``(N, d)``; targets: ``(N,)``.
        negatives: ``(K,)`` shared by every position (one matrix product, the fast and usual
            way) or ``(N, K)`` per position.
        item_embeddings: ``(n_items + 1, d)``.
        log_q: ``(n_items + 1,)`` log-probability with which the sampler draws each item;
            ``s_i - log_q[i]`` replaces every logit (target's too). ``None``: no correction.
        remove_accidental_hits: a negative that *is* the position's target gets logit
            ``-inf`` (it must not compete with itself).

    Returns:
        scalar mean cross-entropy, the target being class 0 of ``[t, n_1, …, n_K]``.
        With every item as a negative this equals :func:`full_cross_entropy`.
    """
    _check(hidden, targets, item_embeddings)
    pos = (hidden * item_embeddings[targets]).sum(-1, keepdim=True)           # (N, 1)
    if negatives.dim() == 1:
        neg = hidden @ item_embeddings[negatives].T                            # (N, K)
        neg_ids = negatives[None, :].expand(len(hidden), -1)                   # (N, K)
    elif negatives.dim() == 2 and negatives.shape[0] == hidden.shape[0]:
        neg = torch.einsum("nd,nkd->nk", hidden, item_embeddings[negatives])   # (N, K)
        neg_ids = negatives
    else:
        raise ValueError(f"negatives must be (K,) or (N={hidden.shape[0]}, K); got {tuple(negatives.shape)}")
    logits = torch.cat([pos, neg], dim=1)                                      # (N, 1 + K)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if log_q is not None:
        if log_q.shape != (len(item_embeddings),):
            raise ValueError(f"log_q must be (n_items + 1,) = ({len(item_embeddings)},); got {tuple(log_q.shape)}")
        ids = torch.cat([targets[:, None], neg_ids], dim=1)                    # (N, 1 + K)
        logits = logits - log_q.to(logits.dtype)[ids]
    if remove_accidental_hits:
        hit = neg_ids == targets[:, None]                                      # (N, K)
        logits[:, 1:] = logits[:, 1:].masked_fill(hit, -torch.inf)
    zeros = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, zeros)


class NegativeSampler:
    """Draw negative items, uniformly or in proportion to popularity, and know ``log Q``.

    Args:
        n_items: items are ``1..n_items`` (0 = padding is never drawn).
        strategy: ``"uniform"`` or ``"popularity"`` (``Q(i) ∝ counts[i] ** alpha``).
        counts: ``(n_items + 1,)`` interaction counts (for ``"popularity"``), e.g.
            ``split.item_popularity()``.
        alpha: popularity exponent (1 = proportional; word2vec used 0.75).

    ``sample(shape, rng)`` draws i.i.d. from ``Q`` with a NumPy generator; ``log_q`` is the
    ``(n_items + 1,)`` tensor of log-probabilities (``-inf`` for padding) that
    :func:`sampled_softmax_loss` subtracts.
    """

    def __init__(self, n_items: int, strategy: str = "uniform", counts: np.ndarray | None = None,
                 alpha: float = 1.0) -> None:
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        self.n_items, self.strategy = int(n_items), strategy
        if strategy == "uniform":
            probs = np.full(n_items + 1, 1.0 / n_items)
        elif strategy == "popularity":
            if counts is None or len(counts) != n_items + 1:
                raise ValueError("popularity sampling needs counts of shape (n_items + 1,), "
                                 "e.g. split.item_popularity()")
            w = np.clip(np.asarray(counts, dtype=np.float64), 0, None) ** alpha
            w[1:] += 1e-3 * (w[1:].mean() if w[1:].sum() > 0 else 1.0)  # every item may be drawn
            probs = w / w[1:].sum()
        else:
            raise ValueError(f"unknown strategy {strategy!r}; choose 'uniform' or 'popularity'")
        probs[PAD] = 0.0
        self.probs = probs                                                    # (n_items + 1,) float64
        with np.errstate(divide="ignore"):
            self.log_q = torch.from_numpy(np.log(probs)).float()             # (n_items + 1,), -inf at 0

    def sample(self, shape: tuple[int, ...] | int, rng: np.random.Generator) -> np.ndarray:
        """int64 item ids of the given shape, drawn i.i.d. (with replacement) from ``Q``."""
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if self.strategy == "uniform":
            return rng.integers(1, self.n_items + 1, size=shape, dtype=np.int64)
        return rng.choice(self.n_items + 1, size=shape, p=self.probs).astype(np.int64)





def next_item_loss(hidden: torch.Tensor, batch: dict[str, torch.Tensor], item_embeddings: torch.Tensor,
                   loss: str = "ce", *, targets_only: bool = True, chunk_size: int | None = None) -> torch.Tensor:
    """The loss of a next-item batch, from the model's hidden states at every position.

    Args:
        hidden: ``(B, T, d)`` the model's output at every position.
        batch: ``labels`` ``(B, T)`` (0 = no target) and, for ``"bce"`` / ``"sampled"``,
            ``negatives`` (and optionally ``log_q``), as :class:`course_lib.train.SequenceCollator` makes them.
        item_embeddings: ``(n_items + 1, d)`` the output item table.
        loss: ``"ce"`` (:func:`full_cross_entropy`), ``"bce"`` (:func:`bce_loss`) or
            ``"sampled"`` (:func:`sampled_softmax_loss`).
        targets_only: compute the output layer only at the ``N`` positions with a target
            (the fast way); ``False`` computes it at all ``B T`` positions and ignores padding
            afterwards (the same value, more work; ``"ce"`` only — for the speed comparison).
        chunk_size: for ``"ce"``, see :func:`full_cross_entropy`.
    """
    labels = batch["labels"]                                                   # (B, T)
    if hidden.shape[:2] != labels.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and labels {tuple(labels.shape)} disagree on (B, T)")
    if not targets_only:
        if loss != "ce":
            raise ValueError("targets_only=False is implemented for loss='ce' only")
        logits = hidden.reshape(-1, hidden.shape[-1]) @ item_embeddings[1:].T   # (B T, n_items)
        return F.cross_entropy(logits.float(), labels.reshape(-1) - 1, ignore_index=-1)
    sel = labels != PAD                                                        # (B, T)
    h, t = hidden[sel], labels[sel]                                            # (N, d), (N,)
    if loss == "ce":
        return full_cross_entropy(h, t, item_embeddings, chunk_size=chunk_size)
    if "negatives" not in batch:
        raise ValueError(f"loss {loss!r} needs batch['negatives']; make batches with "
                         f"SequenceCollator(..., loss={loss!r})")
    if loss == "bce":
        return bce_loss(h, t, batch["negatives"][sel], item_embeddings)
    if loss == "sampled":
        return sampled_softmax_loss(h, t, batch["negatives"], item_embeddings, log_q=batch.get("log_q"))
    raise ValueError(f"unknown loss {loss!r}; choose 'ce', 'bce' or 'sampled'")



def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *,
                      temperature: float = 2.0, alpha: float = 0.5, ignore_index: int = PAD) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): match the teacher's softened scores.

    ``loss = alpha · T² · KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) · CE(s, y)``

    Args:
        student_logits, teacher_logits: ``(N, C)`` scores over the same items.
        targets: ``(N,)`` true next items; rows whose target is ``ignore_index`` are left out.
        temperature: ``T`` > 0; higher T exposes more of the teacher's ranking of the
            non-top items (its "dark knowledge"); ``T²`` keeps the gradients' scale.
        alpha: weight of the teacher term (0 = plain cross-entropy, 1 = teacher only).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student {tuple(student_logits.shape)} and teacher {tuple(teacher_logits.shape)} "
                         "logits must have the same shape")
    keep = targets != ignore_index
    s, t, y = student_logits[keep], teacher_logits[keep].detach(), targets[keep]
    if len(y) == 0:
        return student_logits.sum() * 0.0
    kd = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                  log_target=True, reduction="batchmean") * temperature ** 2
    ce = F.cross_entropy(s, y)
    return alpha * kd + (1 - alpha) * ce


__all__ = ["ChunkedCrossEntropy", "LOSSES", "NegativeSampler", "bce_loss", "distillation_loss", "full_cross_entropy",
           "next_item_loss", "sampled_softmax_loss"]
