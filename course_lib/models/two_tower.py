"""A feature-aware two-tower retrieval model (YouTube DNN / Yi et al. 2019 style).

Two networks that never see each other's input until the very end::

    item tower   v_i = normalize(MLP([E_id[i] · known(i), E_f[feat_i], x_num_i, W_text t_i]))     (N, d)
    user tower   u   = normalize(MLP([mean_j v_{h_j}, v_{h_last}, E_u[user/context feats]]))    (B, d)
    score(u, i)  = u · v_i / τ

Because the score is an inner product, every item vector can be computed once, stored and
searched with an index (chapter 07's faiss); only the user tower runs per request.

* An item's **id embedding** is used only for items seen in training (``item_known``);
  during training it is dropped at random (``id_dropout``), so the tower learns to place an
  item from its features and text alone: what a brand-new item has.
* **In-batch sampled softmax**: the other targets of the batch are the negatives. Popular
  items are in many batches, so they are punished too often; the **log-Q correction**
  subtracts ``log q_j`` (``q_j`` the probability that item ``j`` is a batch target) from each
  logit, making the sampled softmax an unbiased stand-in for the full one (Yi et al.,
  RecSys 2019). Duplicates of the positive in the batch are masked, not counted as negatives.
* **Domains** (optional, ``n_domains > 0``): an MMoE-style gate (Ma et al., KDD 2018): ``K``
  expert heads share the user tower's bottom; each domain (here: a shop category) mixes
  them with its own softmax gate, ``u_c = Σ_k g_{c,k} expert_k(x)``; an item is scored
  with the user vector of its own domain.

Shapes: ``B`` batch, ``T`` history length, ``N = n_items + 1`` items (row 0 = padding),
``d`` the vector size, ``F_i`` / ``F_u`` item / user categorical fields, ``D`` domains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.protocol import PAD
from ..scoring import check_histories, check_users, mask_padding
from ._pretrained import PretrainedMixin

UNKNOWN = 1


@dataclass
class TwoTowerConfig:
    """Hyper-parameters of :class:`TwoTower` (everything needed to rebuild it).

    Attributes:
        n_items: items ``1..n_items`` (0 = padding).
        max_len: longest history the user tower reads.
        d_model: ``d``, the vector size of both towers.
        item_cardinalities: embedding rows of each categorical item field (0 fields: none).
        n_item_numeric: numeric item features.
        text_dim: size of the item text vectors (0: no text).
        user_cardinalities: embedding rows of each categorical user / context field.
        d_field: embedding size of one categorical field.
        use_ids: give items an id embedding (``False``: features and text only).
        id_dropout: probability of hiding an item's id embedding in a training step.
        temperature: ``τ``; scores are cosines divided by it.
        logq: subtract ``log q`` from in-batch logits.
        loss: ``"inbatch"`` (sampled softmax over the batch's targets) or ``"full"``.
        n_domains, n_experts: the MMoE gate (``n_domains = 0``: one user vector).
        dropout: dropout in both towers' MLPs.
    """

    n_items: int
    max_len: int = 50
    d_model: int = 64
    item_cardinalities: tuple[int, ...] = ()
    n_item_numeric: int = 0
    text_dim: int = 0
    user_cardinalities: tuple[int, ...] = ()
    d_field: int = 16
    use_ids: bool = True
    id_dropout: float = 0.1
    temperature: float = 0.05
    logq: bool = True
    loss: str = "inbatch"
    n_domains: int = 0
    n_experts: int = 4
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.item_cardinalities = tuple(int(c) for c in self.item_cardinalities)
        self.user_cardinalities = tuple(int(c) for c in self.user_cardinalities)
        if self.n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {self.n_items}")
        if self.loss not in ("inbatch", "full"):
            raise ValueError(f"loss must be 'inbatch' or 'full', got {self.loss!r}")
        if not (self.use_ids or self.item_cardinalities or self.n_item_numeric or self.text_dim):
            raise ValueError("the item tower has no input: set use_ids=True or give item features or text")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def _mlp(d_in: int, d: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 2 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * d, d))


class TwoTower(PretrainedMixin, nn.Module):
    """The two-tower model (see the module docstring). Item features live in buffers, so a
    saved model is self-contained; the user feature table does not (it is per stage)."""

    config_class = TwoTowerConfig

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        self.config = c = config
        N, d = c.n_items + 1, c.d_model
        self.item_id = nn.Embedding(N, d, padding_idx=PAD) if c.use_ids else None
        self.item_fields = nn.ModuleList(nn.Embedding(card, c.d_field, padding_idx=PAD)
                                         for card in c.item_cardinalities)
        self.text_proj = nn.Linear(c.text_dim, d) if c.text_dim else None
        d_item = d * c.use_ids + c.d_field * len(c.item_cardinalities) + c.n_item_numeric + d * bool(c.text_dim)
        self.item_mlp = _mlp(d_item, d, c.dropout)
        self.user_fields = nn.ModuleList(nn.Embedding(card, c.d_field, padding_idx=PAD)
                                         for card in c.user_cardinalities)
        d_user = 2 * d + c.d_field * len(c.user_cardinalities)
        if c.n_domains:
            self.user_bottom = nn.Sequential(nn.Linear(d_user, 2 * d), nn.GELU(), nn.Dropout(c.dropout))
            self.experts = nn.Linear(2 * d, c.n_experts * d)
            self.gates = nn.Embedding(c.n_domains + 1, c.n_experts)
            nn.init.zeros_(self.gates.weight)
        else:
            self.user_mlp = _mlp(d_user, d, c.dropout)
        # item side data (saved with the weights)
        self.register_buffer("item_cat", torch.zeros(N, len(c.item_cardinalities), dtype=torch.long))
        self.register_buffer("item_num", torch.zeros(N, c.n_item_numeric))
        self.register_buffer("item_text", torch.zeros(N, c.text_dim))
        self.register_buffer("item_known", torch.ones(N, dtype=torch.bool))
        self.register_buffer("item_domain", torch.zeros(N, dtype=torch.long))
        self.register_buffer("log_q", torch.full((N,), -math.log(N)))
        # per-stage user table (not saved: a served model sees unknown users)
        self.register_buffer("user_cat", torch.zeros(0, len(c.user_cardinalities), dtype=torch.long), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.05)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    # ------------------------------------------------------------------ data
    @property
    def max_len(self) -> int:
        return self.config.max_len

    def set_item_data(self, *, categorical: np.ndarray | None = None, numeric: np.ndarray | None = None,
                      text: np.ndarray | None = None, known: np.ndarray | None = None,
                      domain: np.ndarray | None = None, counts: np.ndarray | None = None) -> "TwoTower":
        """Load item features ``(N, F_i)``, numeric ``(N, F_n)``, text ``(N, text_dim)``, the
        ``(N,)`` masks of items seen in training and their domain ids, and ``(N,)`` training
        target counts (for log-Q: ``q = (count + 1) / sum``)."""
        N = self.config.n_items + 1
        for name, value, dtype in (("item_cat", categorical, torch.long), ("item_num", numeric, torch.float32),
                                   ("item_text", text, torch.float32), ("item_known", known, torch.bool),
                                   ("item_domain", domain, torch.long)):
            if value is None:
                continue
            t = torch.as_tensor(np.asarray(value), dtype=dtype, device=self.item_cat.device)
            buf = getattr(self, name)
            if t.shape != buf.shape:
                raise ValueError(f"{name} must have shape {tuple(buf.shape)} (N = n_items + 1 rows), "
                                 f"got {tuple(t.shape)}")
            buf.copy_(t)
        if counts is not None:
            c = torch.as_tensor(np.asarray(counts, dtype=np.float64), dtype=torch.float64)
            if c.shape != (N,):
                raise ValueError(f"counts must have shape ({N},), got {tuple(c.shape)}")
            q = (c + 1.0) / (c + 1.0).sum()
            self.log_q.copy_(q.log().float())
        return self

    def set_user_features(self, table: np.ndarray | torch.Tensor | None) -> "TwoTower":
        """``(U, F_u)`` categorical user / context ids that ``score_fn(users, ...)`` looks up
        (``None``: forget them; every user is then unknown)."""
        F_u = len(self.config.user_cardinalities)
        if table is None:
            self.user_cat = torch.zeros(0, F_u, dtype=torch.long, device=self.item_cat.device)
            return self
        t = torch.as_tensor(np.asarray(table), dtype=torch.long, device=self.item_cat.device)
        if t.ndim != 2 or t.shape[1] != F_u:
            raise ValueError(f"the user table must be (U, {F_u}), got {tuple(t.shape)}")
        self.user_cat = t
        return self

    # ------------------------------------------------------------------ towers
    def item_vectors_all(self) -> torch.Tensor:
        """``(N, d)`` unit-length item vectors (row 0 = zeros). Id dropout applies in training."""
        c = self.config
        parts = []
        if self.item_id is not None:
            keep = self.item_known.float()
            if self.training and c.id_dropout > 0:
                keep = keep * (torch.rand_like(keep) >= c.id_dropout).float()
            parts.append(self.item_id.weight * keep[:, None])
        parts += [emb(self.item_cat[:, j]) for j, emb in enumerate(self.item_fields)]
        if c.n_item_numeric:
            parts.append(self.item_num)
        if self.text_proj is not None:
            parts.append(self.text_proj(self.item_text))
        v = F.normalize(self.item_mlp(torch.cat(parts, dim=1)), dim=-1)
        return v.masked_fill((torch.arange(len(v), device=v.device) == PAD)[:, None], 0.0)

    @property
    def item_embeddings(self) -> torch.Tensor:
        """``(N, d)`` the stored item table for retrieval: ``score(h) = user_vector(h) @ item_embeddings.T``."""
        was = self.training
        self.eval()
        with torch.no_grad():
            v = self.item_vectors_all()
        self.train(was)
        return v

    def _user_input(self, histories: torch.Tensor, V: torch.Tensor, user_cat: torch.Tensor | None) -> torch.Tensor:
        h = histories[:, -self.max_len:]
        mask = (h != PAD).float()                                              # (B, T)
        hv = V[h]                                                              # (B, T, d)
        mean = (hv * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        last = hv[:, -1]
        parts = [mean, last]
        if self.user_fields:
            if user_cat is None:
                user_cat = torch.full((len(h), len(self.user_fields)), UNKNOWN, dtype=torch.long, device=h.device)
            parts += [emb(user_cat[:, j]) for j, emb in enumerate(self.user_fields)]
        return torch.cat(parts, dim=1)

    def _user_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` or, with domains, ``(B, D + 1, d)`` unit-length user vectors."""
        if not self.config.n_domains:
            return F.normalize(self.user_mlp(x), dim=-1)
        c = self.config
        experts = self.experts(self.user_bottom(x)).view(len(x), c.n_experts, c.d_model)    # (B, K, d)
        gates = torch.softmax(self.gates.weight, dim=-1)                                   # (D + 1, K)
        return F.normalize(torch.einsum("dk,bkx->bdx", gates, experts), dim=-1)            # (B, D + 1, d)

    def _lookup_users(self, users: torch.Tensor | None, n: int, device) -> torch.Tensor | None:
        if users is None or len(self.user_cat) == 0 or not self.user_fields:
            return None
        users = users.to(device)
        ok = (users >= 0) & (users < len(self.user_cat))
        out = torch.full((n, len(self.user_fields)), UNKNOWN, dtype=torch.long, device=device)
        out[ok] = self.user_cat[users[ok]]
        return out

    def user_vector(self, histories: torch.Tensor, user_cat: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, d)`` the query vector ``normalize(u) / τ`` (models without domains only)."""
        if self.config.n_domains:
            raise TypeError("a model with domain gates has one user vector per domain; use score()")
        u = self._user_vectors(self._user_input(histories, self.item_vectors_all(), user_cat))
        return u / self.config.temperature

    def _scores(self, histories: torch.Tensor, user_cat: torch.Tensor | None) -> torch.Tensor:
        V = self.item_vectors_all()
        u = self._user_vectors(self._user_input(histories, V, user_cat))
        if self.config.n_domains:
            s = torch.einsum("bdx,nx->bdn", u, V)                                  # (B, D + 1, N)
            s = s.gather(1, self.item_domain[None, None, :].expand(len(u), 1, -1)).squeeze(1)
        else:
            s = u @ V.T
        s = s / self.config.temperature
        s[:, PAD] = -torch.inf
        return s

    @property
    def n_items(self) -> int:
        return self.config.n_items

    def score(self, users, histories=None) -> torch.Tensor:
        """``(B, n_items + 1)`` scores of every item (column 0 = -inf): the scoring contract
        (:class:`course_lib.scoring.Scorer`).

        ``users``: ``(B,)`` internal ids whose row of the user feature table is used (``-1`` or
        ``None``: unknown users); ``score(histories)`` (one argument) scores unknown users.
        Runs in eval mode without gradients and restores the training mode afterwards.
        """
        if histories is None:
            users, histories = None, users
        h = check_histories(histories, self.n_items)
        users = check_users(users, len(h))
        device = self.item_known.device
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self._scores(h.to(device), self._lookup_users(users, len(h), device)).float()
        finally:
            self.train(was_training)
        return mask_padding(out)

    def score_fn(self, users: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
        """The evaluator's interface: the same as :meth:`score`."""
        return self.score(users, histories)

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sampled (in-batch) or full softmax cross-entropy of each example's target.

        ``batch``: ``histories`` ``(B, T)``, ``targets`` ``(B,)``, optional ``user_cat`` ``(B, F_u)``.
        """
        c = self.config
        V = self.item_vectors_all()
        t = batch["targets"]
        u = self._user_vectors(self._user_input(batch["histories"], V, batch.get("user_cat")))
        if c.n_domains:
            u = u[torch.arange(len(t), device=t.device), self.item_domain[t]]       # (B, d) the target's domain
        if c.loss == "full":
            logits = (u @ V.T) / c.temperature
            logits[:, PAD] = -torch.inf
            return F.cross_entropy(logits, t)
        logits = (u @ V[t].T) / c.temperature                                       # (B, B)
        return in_batch_softmax_loss(logits, t, self.log_q[t] if c.logq else None)


def in_batch_softmax_loss(logits: torch.Tensor, targets: torch.Tensor,
                          log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the diagonal of ``logits`` ``(B, B)`` (row ``b`` = user ``b``, column
    ``j`` = the target of example ``j``), with the log-Q correction and duplicates masked.

    ``logits[b, j] - log_q[j]`` for every column; a column ``j != b`` whose target equals
    ``targets[b]`` is the same item as the positive, so it is masked (``-inf``).
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1] or logits.shape[0] != len(targets):
        raise ValueError(f"logits must be (B, B) with B = len(targets) = {len(targets)}; got {tuple(logits.shape)}")
    if log_q is not None:
        logits = logits - log_q[None, :]
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, -torch.inf)
    return F.cross_entropy(logits, torch.arange(len(targets), device=logits.device))


__all__ = ["TwoTower", "TwoTowerConfig", "in_batch_softmax_loss"]
