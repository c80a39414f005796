"""BERT4Rec: masked item modelling on Hugging Face ``transformers`` (``BertForMaskedLM``).

BERT4Rec (Sun et al., CIKM 2019) treats a user's history as a sentence whose words are
item ids and pre-trains it the way BERT pre-trains text: hide some items behind a
``[MASK]`` token and predict them from **both** sides (a bidirectional encoder, no causal
mask). To recommend, append ``[MASK]`` after the history and read the prediction there.

The model *is* a ``transformers.BertForMaskedLM``: the checkpoint that ``save_pretrained``
writes (``config.json`` + ``model.safetensors``) loads back with
``BERT4Rec.from_pretrained`` and also with plain ``BertForMaskedLM.from_pretrained``.

Item vocabulary (``vocab_size = n_items + 2``)::

    0              padding ([PAD]; never recommended, never a target)
    1 .. n_items   the items, with the internal ids of LeaveOneOutSplit
    n_items + 1    [MASK]

Shapes: ``B`` batch, ``T`` sequence length (``max_len``), ``H`` hidden size,
``V = n_items + 2`` vocabulary, ``M`` the number of masked positions in a batch.

The masked-only loss
--------------------
``BertForMaskedLM(labels=...)`` applies the output head (``H -> V``, a dense layer, GELU,
LayerNorm and the decoder tied to the item embeddings) at **every** position, then
ignores the unmasked ones (label ``-100``). With 20 % masking, 80 % of that work is thrown
away. :meth:`BERT4Rec.mlm_loss` gathers the ``M`` masked hidden states first and applies
the head to ``(M, H)`` only; the loss is the same number (``tests/test_bert4rec.py``).

Item text as side input
-----------------------
With ``text_dim > 0`` every item also has a fixed text vector ``t_i`` (e.g. all-MiniLM-L6-v2
of its title, :mod:`course_lib.text`) stored in the buffer ``item_text`` ``(V, text_dim)``,
and the item's representation becomes ``e_i = E_id[i] + W t_i`` with a learned ``W``
(``text_proj``, ``text_dim -> H``). ``e_i`` embeds the input *and* scores the output (tied),
so an item that was never trained on still gets a meaningful ``W t_i`` from its text: the
cold-start path. Two helpers make that path work:

* :meth:`BERT4Rec.block_items` keeps given items out of the training softmax (items that
  "do not exist yet" get no gradient, not even as negatives), and :meth:`BERT4Rec.forget_items`
  sets their ID embeddings and output biases to zero: all the model knows of them is their text.
* ``id_dropout = p`` (as DropoutNet, Volkovs et al. 2017): in each training step every
  item's ID embedding and bias are dropped (set to zero) with probability ``p``, so the
  model also learns to score items from their text alone, as it must for cold items.

>>> from course_lib.models.bert4rec import BERT4Rec, MaskedItemCollator
>>> model = BERT4Rec.for_items(n_items=3416, max_len=200)     # the paper's ML-1M setting
>>> collate = MaskedItemCollator(n_items=3416, max_len=200, mask_prob=0.2)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM

from ..data.protocol import PAD, pad_sequences
from ..scoring import ScorerMixin
from ._hf import course_sizes, hf_kwargs

IGNORE = -100  # label of positions that do not count in the loss (PyTorch's default ignore_index)


def bert4rec_config(n_items: int, *, max_len: int = 200, d_model: int | None = None, n_layers: int | None = None,
                    n_heads: int | None = None, d_ff: int | None = None, dropout: float = 0.1,
                    attn_dropout: float | None = None, text_dim: int = 0, id_dropout: float = 0.0,
                    attn_implementation: str = "sdpa", hidden_size: int | None = None, num_layers: int | None = None,
                    num_heads: int | None = None, intermediate_size: int | None = None, alibi: bool = False,
                    alibi_max_bias: float = 8.0, pass_through_init: float = 0.0, **extra) -> BertConfig:
    """A ``BertConfig`` for an item vocabulary of ``n_items`` (defaults: the paper's ML-1M model).

    Sun et al. (2019) use 2 layers, 2 heads, hidden size 64, inner size ``4 H``, dropout 0.1,
    ``max_len`` 200 on ML-1M. Sizes take the course's names (``d_model``, ``n_heads``,
    ``n_layers``, ``d_ff``; :mod:`course_lib.models._hf` maps them to ``BertConfig``'s, and
    accepts the older ``hidden_size``, ``num_heads``, ``num_layers``, ``intermediate_size``).
    ``attn_dropout`` is the dropout on the attention weights
    (default: ``dropout``); on a CPU it is costly (a random ``B × heads × T × T`` mask per
    layer, and the fused attention kernel cannot be used), so short runs set it to 0.
    ``text_dim > 0`` adds the text side input and ``id_dropout`` its ID dropout (module docstring).
    ``alibi=True`` adds ALiBi's distance penalty to the attention scores (Press et al., ICLR 2022):
    head ``h`` of ``n`` subtracts ``2^(-m (h+1) / n) · |i - j|`` with ``m = alibi_max_bias`` (the
    paper's 8), so at initialisation each head already prefers nearby items, one sharply, the last
    almost not at all (see :meth:`BERT4Rec.attention_bias`); a smaller ``m`` makes every head
    more local (with 2 heads, ``m = 4`` gives slopes 1/4 and 1/16 instead of 1/16 and 1/256).
    A checkpoint with it needs this class to load: plain ``BertForMaskedLM`` ignores the flag.
    ``pass_through_init = s > 0`` starts every attention layer's value projection at the identity
    and its output projection at ``s`` × identity, and the output head's dense layer at the
    identity (see :meth:`BERT4Rec.init_pass_through`): from the first step a masked position
    holds the attention-weighted average of the items around it, and the tied output head scores
    every item by its similarity to that average. Only the initial weights change; a checkpoint
    loads as any other.
    ``attn_implementation``: ``"sdpa"`` (PyTorch's fused
    ``scaled_dot_product_attention``) or ``"eager"`` (the textbook matmul–softmax–matmul).
    """
    sizes = course_sizes(dict(d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_ff=d_ff, hidden_size=hidden_size,
                              num_layers=num_layers, num_heads=num_heads, intermediate_size=intermediate_size),
                         dict(d_model=64, n_layers=2, n_heads=2, d_ff=None))
    if sizes["d_ff"] is None:
        sizes["d_ff"] = 4 * sizes["d_model"]
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if sizes["d_model"] % sizes["n_heads"]:
        raise ValueError(f"d_model ({sizes['d_model']}) must be divisible by n_heads ({sizes['n_heads']})")
    if not (alibi_max_bias > 0.0 and np.isfinite(alibi_max_bias)):
        raise ValueError(f"alibi_max_bias must be a finite number > 0, got {alibi_max_bias}")
    if not (pass_through_init >= 0.0 and np.isfinite(pass_through_init)):
        raise ValueError(f"pass_through_init must be a finite number >= 0, got {pass_through_init}")
    if attn_dropout is not None and not 0.0 <= attn_dropout < 1.0:
        raise ValueError(f"attn_dropout must be in [0, 1) or None, got {attn_dropout}")
    if not 0.0 <= id_dropout < 1.0 or (id_dropout and not text_dim):
        raise ValueError(f"id_dropout must be in [0, 1) and needs text_dim > 0; "
                         f"got {id_dropout} with text_dim={text_dim}")
    return BertConfig(
        vocab_size=n_items + 2, **hf_kwargs(sizes, "bert"),
        hidden_act="gelu", hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout if attn_dropout is None else attn_dropout,
        max_position_embeddings=max_len, type_vocab_size=1, pad_token_id=PAD,
        n_items=n_items, mask_token_id=n_items + 1, max_len=max_len, text_dim=int(text_dim),
        id_dropout=float(id_dropout), alibi=bool(alibi),
        alibi_max_bias=float(alibi_max_bias), pass_through_init=float(pass_through_init),
        attn_implementation=attn_implementation, **extra,
    )


class BERT4Rec(ScorerMixin, BertForMaskedLM):
    """``BertForMaskedLM`` over items, with the recommendation-specific pieces.

    * :meth:`mlm_loss`: masked item modelling loss (masked positions only, or the full head);
    * :meth:`score` (``score(users, histories)`` or ``score(histories)``, the
      :class:`course_lib.scoring.Scorer` protocol): next-item scores ``(B, n_items + 1)``,
      column 0 = ``-inf``;
    * :attr:`item_embeddings`: the ``(n_items + 1, H)`` item table (row 0 = padding).
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        text_dim = int(getattr(config, "text_dim", 0) or 0)
        self.text_proj = None
        if text_dim:
            self.text_proj = torch.nn.Linear(text_dim, config.hidden_size, bias=False)
            torch.nn.init.normal_(self.text_proj.weight, std=config.initializer_range)
            self.register_buffer("item_text", torch.zeros(config.vocab_size, text_dim))
        self._blocked: torch.Tensor | None = None
        if float(getattr(config, "pass_through_init", 0.0) or 0.0) > 0:
            self.init_pass_through(float(config.pass_through_init))

    @torch.no_grad()
    def init_pass_through(self, scale: float = 4.0) -> None:
        """Start each block's attention as a copy of what it attends to, and the head as the identity.

        Every layer's value projection becomes the identity and its output projection ``scale``
        × identity (biases zero), and the output head's dense layer the identity. Attention then
        adds ``scale`` × (the attention-weighted average of its inputs) to the residual stream:
        at a masked position, where the input holds only ``[MASK]`` and a position, that average
        of the neighbouring items is the only trace of the context, and with Hugging Face's
        random 0.02-scale weights it is scrambled and small until the projections have learnt to
        carry it (the popularity plateau, chapter 06). ``scale`` makes the average, over many
        items a short vector, count against the residual stream that the layer norm rescales.
        """
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        H = self.config.hidden_size
        eye = torch.eye(H, device=self.device, dtype=self.dtype)
        for layer in self.bert.encoder.layer:
            for lin, s in ((layer.attention.self.value, 1.0), (layer.attention.output.dense, scale)):
                lin.weight.copy_(s * eye)
                lin.bias.zero_()
        dense = self.cls.predictions.transform.dense
        dense.weight.copy_(eye)
        dense.bias.zero_()

    @classmethod
    def for_items(cls, n_items: int, **config_kwargs) -> "BERT4Rec":
        """A randomly initialised model; keyword arguments go to :func:`bert4rec_config`."""
        return cls(bert4rec_config(n_items, **config_kwargs))

    # ------------------------------------------------------------------ vocabulary
    @property
    def n_items(self) -> int:
        return int(self.config.n_items)

    @property
    def mask_id(self) -> int:
        return int(self.config.mask_token_id)

    @property
    def max_len(self) -> int:
        return int(self.config.max_position_embeddings)

    @property
    def item_embeddings(self) -> torch.Tensor:
        """``(n_items + 1, H)`` the input (= tied output) embeddings of padding and items."""
        return self.item_table()[: self.n_items + 1]

    # ------------------------------------------------------------------ item text
    @property
    def has_text(self) -> bool:
        return self.text_proj is not None

    def set_item_text(self, vectors: np.ndarray | torch.Tensor) -> None:
        """Store the items' text vectors: ``(n_items + 1, text_dim)`` (row 0 = padding) or ``(n_items, text_dim)``."""
        if not self.has_text:
            raise ValueError("this model has no text side input; build it with text_dim=<size of the text vectors>")
        v = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
        if v.dim() != 2 or v.shape[1] != self.item_text.shape[1] or v.shape[0] not in (self.n_items, self.n_items + 1):
            raise ValueError(f"text vectors must be (n_items [+ 1], {self.item_text.shape[1]}) = "
                             f"({self.n_items} or {self.n_items + 1}, {self.item_text.shape[1]}); got {tuple(v.shape)}")
        if v.shape[0] == self.n_items:
            v = torch.cat([torch.zeros(1, v.shape[1]), v])
        with torch.no_grad():
            self.item_text.zero_()
            self.item_text[: self.n_items + 1] = v.to(self.item_text.device)
            self.item_text[PAD] = 0.0

    def init_text_projection(self, vectors: np.ndarray | torch.Tensor | None = None, *, freeze: bool = True) -> float:
        """Set the text projection ``W`` to the top ``H`` principal directions of text vectors.

        ``W t`` then gives the coordinates of ``t`` along the ``H`` directions in which the
        text vectors vary most (PCA, rows centred before the SVD): the item space keeps the
        text space's similarity structure as far as ``H`` dimensions can. With
        ``freeze=True`` ``W`` is not trained, so it stays that way also for items and
        categories the model is never trained on (a learned ``W`` fits the training items
        and may discard the directions that tell unseen items apart). Call it before
        building the optimizer.

        Args:
            vectors: ``(N, text_dim)`` text vectors to fit the directions on (default: the
                stored ``item_text``, padding row excluded). Text is known for every item,
                also those without interactions, so fitting on all of them leaks nothing.
        Returns:
            the share of the text vectors' variance that the ``H`` directions keep.
        """
        if not self.has_text:
            raise ValueError("this model has no text side input; build it with text_dim=<size of the text vectors>")
        v = self.item_text[1: self.n_items + 1] if vectors is None else torch.as_tensor(np.asarray(vectors))
        v = v.detach().to(torch.float64).cpu()
        H = self.config.hidden_size
        if v.dim() != 2 or v.shape[1] != self.item_text.shape[1] or v.shape[0] < 2:
            raise ValueError(f"vectors must be (N >= 2, {self.item_text.shape[1]}); got {tuple(v.shape)}")
        if H > min(v.shape):
            raise ValueError(f"need at least hidden_size={H} vectors of dimension >= {H}; got {tuple(v.shape)}")
        centred = v - v.mean(dim=0, keepdim=True)
        _, S, Vt = torch.linalg.svd(centred, full_matrices=False)               # Vt: (min(N, D), D)
        with torch.no_grad():
            self.text_proj.weight.copy_(Vt[:H].to(self.text_proj.weight))        # (H, text_dim)
        self.text_proj.weight.requires_grad_(not freeze)
        return float((S[:H] ** 2).sum() / (S ** 2).sum())

    def item_table(self, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``(V, H)`` every token's representation: ``E_id`` (plus ``W t`` with text side input).

        ``keep`` ``(V,)`` 0/1: which ID embeddings to keep (ID dropout); default all.
        """
        table = self.bert.embeddings.word_embeddings.weight                     # (V, H)
        if keep is not None:
            table = table * keep[:, None]
        if self.has_text:
            table = table + self.text_proj(self.item_text)                     # (V, H)
        return table

    def forget_items(self, items: Sequence[int] | np.ndarray) -> None:
        """Zero the ID embeddings and output biases of ``items`` (what is left is their text)."""
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64))
        with torch.no_grad():
            self.bert.embeddings.word_embeddings.weight[idx] = 0.0
            self.cls.predictions.bias[idx] = 0.0

    def sub_catalogue(self, items: Sequence[int] | np.ndarray) -> "BERT4Rec":
        """A copy of the model over a smaller vocabulary: ``items`` (this model's ids) become ``1..len(items)``.

        Everything that does not depend on the vocabulary (the transformer blocks, positions,
        the head's transform, the text projection) is copied unchanged; the rows of the
        vocabulary tables (ID embeddings, output bias, text vectors) of padding, ``items``
        and ``[MASK]`` are gathered in that order. In eval mode the copy's scores of a
        history of ``items`` are this model's scores of the same history, restricted to the
        columns of ``items``. It is how a model pretrained on a whole catalogue is
        fine-tuned on one category, with the category's own item ids.
        """
        import copy

        items = np.asarray(items, dtype=np.int64).ravel()
        if len(items) == 0 or items.min() < 1 or items.max() > self.n_items or len(np.unique(items)) != len(items):
            raise ValueError(f"items must be distinct item ids in 1..{self.n_items}; got {len(items)} ids "
                             f"in [{items.min() if len(items) else '-'}, {items.max() if len(items) else '-'}]")
        index = torch.as_tensor(np.concatenate([[PAD], items, [self.mask_id]]))             # (n + 2,)
        config = copy.deepcopy(self.config)
        config.vocab_size, config.n_items, config.mask_token_id = len(items) + 2, len(items), len(items) + 1
        sub = type(self)(config)
        vocab_tables = ("word_embeddings.weight", "predictions.bias", "predictions.decoder.weight",
                        "predictions.decoder.bias", "item_text")
        state = {k: (v[index.to(v.device)] if k.endswith(vocab_tables) else v) for k, v in self.state_dict().items()}
        sub.load_state_dict(state)
        return sub.to(self.device).train(self.training)

    def freeze_body(self, freeze: bool = True) -> int:
        """Freeze everything except the vocabulary tables; returns the number of trainable parameters.

        With ``freeze=True`` only the ID embeddings (which are also the tied output weights)
        and the output biases stay trainable: the transformer blocks, the position
        embeddings, the head's transform and the text projection keep their (pretrained)
        values. It is the cheapest way to adapt a pretrained model to new items: learn
        where the new items sit, keep what the model knows about sequences.
        ``freeze=False`` makes every parameter trainable again. Call it *before* building
        the optimizer (the :class:`~course_lib.train.Trainer` only optimises trainable ones).
        """
        vocab = {id(self.bert.embeddings.word_embeddings.weight), id(self.cls.predictions.bias)}
        for p in self.parameters():
            p.requires_grad_(not freeze or id(p) in vocab)
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _id_keep(self) -> torch.Tensor | None:
        """A fresh ID-dropout mask ``(V,)`` while training with ``id_dropout > 0``, else ``None``."""
        p = float(getattr(self.config, "id_dropout", 0.0) or 0.0)
        if not (self.training and p > 0):
            return None
        keep = (torch.rand(self.config.vocab_size, device=self.device) >= p).float()
        keep[PAD] = 1.0
        keep[self.mask_id] = 1.0
        return keep

    def block_items(self, items: Sequence[int] | np.ndarray | None) -> None:
        """Keep ``items`` out of the training softmax (``None`` lifts the block). Not saved."""
        if items is None:
            self._blocked = None
            return
        mask = torch.zeros(self.config.vocab_size, dtype=torch.bool)
        mask[torch.as_tensor(np.asarray(items, dtype=np.int64))] = True
        self._blocked = mask

    def _logits(self, hidden: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Output head: ``(..., H)`` hidden states → ``(..., V)`` scores of every token."""
        if not self.has_text:
            return self.cls(hidden)
        pred = self.cls.predictions
        bias = pred.bias if keep is None else pred.bias * keep
        return pred.transform(hidden) @ self.item_table(keep).T + bias

    # ------------------------------------------------------------------ training
    def position_ids(self, width: int) -> torch.Tensor:
        """``(1, W)`` positions of a left-padded input ``W <= max_len`` columns wide: ``max_len - W … max_len - 1``.

        Histories are left-padded, so the most recent item is always in the last column,
        position ``max_len - 1``. A batch trimmed of its all-padding columns
        (``MaskedItemCollator(trim=True)``) keeps those positions: the same model output as
        the full-width batch, for less work.
        """
        if not 1 <= width <= self.max_len:
            raise ValueError(f"inputs must have 1..max_len={self.max_len} columns, got {width}")
        return torch.arange(self.max_len - width, self.max_len, device=self.device).unsqueeze(0)

    def attention_bias(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """ALiBi: ``(B, W)`` 1/0 padding mask → ``(B, heads, W, W)`` additive attention bias.

        ``bias[b, h, i, j] = -slope_h · |i - j|`` with ``slope_h = 2^(-m (h+1) / heads)``, ``m`` the
        config's ``alibi_max_bias`` (the ALiBi paper's slopes with its ``m = 8``, bidirectional), and
        the most negative number where ``j`` is padding, so that no position attends to padding.
        """
        B, W = attention_mask.shape
        heads = self.config.num_attention_heads
        dtype = self.bert.embeddings.word_embeddings.weight.dtype
        if torch.is_autocast_enabled(self.device.type):
            dtype = torch.get_autocast_dtype(self.device.type)
        m = float(getattr(self.config, "alibi_max_bias", 8.0))
        slopes = 2.0 ** (-m * torch.arange(1, heads + 1, device=self.device) / heads)            # (heads,)
        pos = torch.arange(W, device=self.device)
        dist = (pos[:, None] - pos[None, :]).abs()                                              # (W, W)
        bias = (-slopes[:, None, None] * dist).unsqueeze(0).repeat(B, 1, 1, 1)                 # (B, heads, W, W)
        bias = bias.masked_fill(attention_mask[:, None, None, :] == 0, torch.finfo(dtype).min)
        return bias.to(dtype)

    def encode(self, input_ids: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, W)`` left-padded item ids (0 = padding), ``W <= max_len`` → ``(B, W, H)`` hidden states."""
        attention_mask = (input_ids != PAD).long()                             # (B, W)
        positions = self.position_ids(input_ids.shape[1])                      # (1, W)
        if getattr(self.config, "alibi", False):
            attention_mask = self.attention_bias(attention_mask)               # (B, heads, W, W), additive
        if self.has_text:
            embeds = F.embedding(input_ids, self.item_table(keep))             # (B, W, H)
            return self.bert(inputs_embeds=embeds, attention_mask=attention_mask,
                             position_ids=positions).last_hidden_state
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).last_hidden_state

    def mlm_loss(self, input_ids: torch.Tensor, labels: torch.Tensor, *, masked_only: bool = True) -> torch.Tensor:
        """Mean cross-entropy of the masked items.

        Args:
            input_ids: ``(B, W)`` items with some replaced by ``[MASK]`` (left-padded, ``W <= max_len``).
            labels: ``(B, W)`` the hidden item at masked positions, ``-100`` elsewhere.
            masked_only: apply the output head to the ``M`` masked positions only (fast);
                ``False`` runs ``BertForMaskedLM``'s own loss, with the head at all ``B T``
                positions. Both give the same value.
        """
        if masked_only:
            keep = self._id_keep()                                             # (V,) or None
            hidden = self.encode(input_ids, keep)                              # (B, T, H)
            sel = labels != IGNORE                                             # (B, T)
            logits = self._logits(hidden[sel], keep)                           # (M, V)
            if self._blocked is not None:
                logits = logits.masked_fill(self._blocked.to(logits.device), -torch.inf)
            return F.cross_entropy(logits, labels[sel])
        if self.has_text or self._blocked is not None or getattr(self.config, "alibi", False):
            raise ValueError("masked_only=False runs BertForMaskedLM's own forward pass, which knows neither the "
                             "text side input, blocked items nor the ALiBi bias; use masked_only=True")
        attention_mask = (input_ids != PAD).long()
        return self(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                    position_ids=self.position_ids(input_ids.shape[1])).loss

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loss of a batch from :class:`MaskedItemCollator` (the hook the training loops call)."""
        return self.mlm_loss(batch["input_ids"], batch["labels"])

    # ------------------------------------------------------------------ inference
    def _scores(self, histories: torch.Tensor, *, bucket: int | None = 64) -> torch.Tensor:
        """Next-item scores: ``(B, L)`` left-padded histories → ``(B, n_items + 1)`` logits.

        The last ``max_len - 1`` items are kept and ``[MASK]`` is appended; the head's output
        at that position scores every item (:meth:`score` sets column 0, padding, to ``-inf``).

        ``bucket`` (``model.score(h, bucket=...)``): score the rows in groups of this many
        histories of similar length, each group cut to its longest history. Positions count
        from the right, so the scores are those of the full-width input (up to float
        rounding), for much less work when short and long histories are mixed (the
        evaluator pads every history to ``max_len``). ``None``: all rows at once, at full
        width (what ONNX export traces: its shapes do not depend on the data).
        """
        keep = histories[:, -(self.max_len - 1):]                              # (B, L'), L' <= T - 1
        mask_col = torch.full_like(keep[:, :1], self.mask_id)                  # (B, 1), B symbolic for export
        x = torch.cat([keep, mask_col], dim=1)                                 # (B, W): history + [MASK]
        if bucket is None:
            return self._score_rows(x)
        lengths = (x != PAD).sum(dim=1)                                        # (B,) items + 1
        out = None
        for idx in torch.argsort(lengths, stable=True).split(int(bucket)):
            width = int(lengths[idx].max())
            part = self._score_rows(x[idx, x.shape[1] - width:])              # (b, n_items + 1)
            if out is None:
                out = part.new_empty((len(x), part.shape[1]))
            out[idx] = part
        return out

    def _static_scores(self, histories: torch.Tensor) -> torch.Tensor:
        return self._scores(histories, bucket=None)

    def _score_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, W)`` left-padded inputs ending in ``[MASK]`` → ``(B, n_items + 1)`` scores at that position."""
        hidden = self.encode(x)[:, -1]                                         # (B, H)
        return self._logits(hidden)[:, : self.n_items + 1]                     # (B, n_items + 1)


class MaskedItemCollator:
    """Turn item sequences into masked-item-modelling batches.

    Each sequence is cut to its last ``max_len`` items (or, with ``crop="random"``, to a
    random window of ``max_len`` consecutive items, so long histories contribute all their
    items over the epochs), left-padded, then masked:

    * with probability ``last_item_prob`` only the **last** item is masked (the exact
      situation of inference: predict what comes after the history; BERT4Rec adds such
      samples, and it is the *fine-tuning* objective);
    * otherwise each item is masked with probability ``mask_prob`` (at least one per
      sequence). BERT's 80/10/10 rule (80 % ``[MASK]``, 10 % a random token, 10 % unchanged)
      is available with ``random_prob`` / ``keep_prob``; BERT4Rec's code always uses ``[MASK]``.

    With ``trim=True`` the leading columns that are padding in every row are dropped: a
    batch of short histories is narrower than ``max_len`` (``W`` columns), which saves
    work in every layer (attention is quadratic in ``W``) and changes nothing else, since
    :meth:`BERT4Rec.encode` numbers positions from the right. Pair it with
    ``TrainConfig(bucket_by_length=True)`` so that histories of similar length share a batch.

    Returns ``{"input_ids": (B, W), "labels": (B, W)}`` LongTensors (``W = max_len`` unless
    trimmed); ``labels`` is the hidden item at masked positions and ``-100`` elsewhere.
    """

    def __init__(self, n_items: int, max_len: int, *, mask_prob: float = 0.2, last_item_prob: float = 0.0,
                 random_prob: float = 0.0, keep_prob: float = 0.0, crop: str = "last",
                 trim: bool = False, seed: int | None = None) -> None:
        if not 0.0 < mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
        if not 0.0 <= last_item_prob <= 1.0:
            raise ValueError(f"last_item_prob must be in [0, 1], got {last_item_prob}")
        if random_prob < 0 or keep_prob < 0 or random_prob + keep_prob >= 1.0:
            raise ValueError("random_prob and keep_prob must be >= 0 and sum to less than 1")
        if crop not in ("last", "random"):
            raise ValueError(f"crop must be 'last' or 'random', got {crop!r}")
        self.n_items, self.max_len, self.mask_id = int(n_items), int(max_len), int(n_items) + 1
        self.mask_prob, self.last_item_prob = float(mask_prob), float(last_item_prob)
        self.random_prob, self.keep_prob, self.crop = float(random_prob), float(keep_prob), crop
        self.trim = bool(trim)
        self.rng = np.random.default_rng(seed)

    def _window(self, seq: np.ndarray) -> np.ndarray:
        if self.crop == "random" and len(seq) > self.max_len:
            start = int(self.rng.integers(0, len(seq) - self.max_len + 1))
            return seq[start:start + self.max_len]
        return seq[-self.max_len:]

    def __call__(self, seqs: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        x = pad_sequences([self._window(np.asarray(s, dtype=np.int64)) for s in seqs], self.max_len).numpy()
        real = x != PAD                                                         # (B, T)
        if not real.any(axis=1).all():
            raise ValueError("a sequence in the batch is empty; drop users without training items")
        B, T = x.shape
        masked = (self.rng.random((B, T)) < self.mask_prob) & real
        # At least one masked item per sequence: if none was drawn, mask one real position at random.
        for row in np.flatnonzero(~masked.any(axis=1)):
            cols = np.flatnonzero(real[row])
            masked[row, self.rng.choice(cols)] = True
        last_only = self.rng.random(B) < self.last_item_prob
        masked[last_only] = False
        # left padding: the last column is the last item
        masked[last_only, T - 1] = True
        labels = np.where(masked, x, IGNORE)
        inputs = x.copy()
        u = self.rng.random((B, T))
        use_mask = masked & ((u >= self.random_prob + self.keep_prob) | last_only[:, None])
        use_random = masked & (u < self.random_prob) & ~last_only[:, None]
        inputs[use_mask] = self.mask_id
        inputs[use_random] = self.rng.integers(1, self.n_items + 1, size=int(use_random.sum()))
        if self.trim:
            first = int(real.any(axis=0).argmax())                             # first column with a real item
            inputs, labels = inputs[:, first:], labels[:, first:]              # (B, W)
        return {"input_ids": torch.from_numpy(np.ascontiguousarray(inputs)),
                "labels": torch.from_numpy(np.ascontiguousarray(labels))}


__all__ = ["BERT4Rec", "IGNORE", "MaskedItemCollator", "bert4rec_config"]
