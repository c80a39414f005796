"""Inference: from a trained model to fast, filtered, explainable top-K answers.

A trained sequential model answers one question — "how much does this user want each item
next?" — with a score for **every** item. Serving turns those scores into a short list that
a shop can show, quickly. This package holds the pieces, one submodule per concept, in the
order chapter 07 teaches them (every name is also importable from ``course_lib.infer``):

1. **Scoring and ranking** (:mod:`.ranking`: :class:`Catalogue`, :class:`Filters`, :class:`Recommender`):
   batched full-catalogue scoring, masking the items a user already has, business filters
   (category, in stock, price range), ``torch.topk``, and answers with titles.
2. **Retrieval** (:mod:`.retrieval`: :func:`user_vectors`, :func:`item_vectors`, :class:`ExactIndex`,
   :class:`FaissIndex`, :func:`ann_recall`, :func:`sweep_ann`): when a model scores items
   by an inner product ``s(u, i) = h_u · e_i``, recommending is a *maximum inner-product
   search* for the user vector ``h_u`` among the item vectors ``e_i``; ``faiss`` answers it
   exactly (flat) or approximately (IVF, HNSW), trading recall for speed.
3. **Caching** (:mod:`.cache`: :class:`LRUCache`, :func:`history_fingerprint`): keep user vectors (or
   results) that were computed before, and throw them away when the history changes.
4. **Compression and export** (:mod:`.compress`: :func:`quantize_dynamic_int8`, :func:`to_bfloat16`,
   :func:`quantize_rows_int8`, :func:`export_onnx`, :class:`OnnxScorer`,
   :func:`prune_linear`, :func:`model_size_bytes`; the distillation loss lives with the
   other losses, :func:`course_lib.losses.distillation_loss`, and is re-exported here).

The model interface
-------------------
:class:`Recommender` wraps anything that scores (:func:`course_lib.scoring.as_score_fn`):
a :class:`course_lib.scoring.Scorer` (every course model and baseline: ``score(users,
histories) -> (B, n_items + 1)``, ``histories`` a ``(B, L)`` LongTensor of left-padded
internal item ids, 0 = padding, most recent item in the last column; column 0 of the
scores is ``-inf``), an object with the older ``score(histories)``, or a callable
``score_fn(users, histories)``. For histories that belong to no known user, ``users`` is ``-1``.

Retrieval also needs ``user_vector(histories) -> (B, d)`` and an item table
``item_embeddings`` ``(n_items + 1, d)`` (a tensor attribute, a property or a method) such that
``score(h) == user_vector(h) @ item_embeddings.T``. For models without ``user_vector``,
:func:`user_vectors` falls back on ``hidden(histories)[:, -1]`` or
``encode(histories)[:, -1]`` when the model has one of those.

Shapes: ``B`` users in a batch, ``L`` history length (``max_len``), ``N = n_items + 1``
score columns, ``d`` the embedding size, ``k`` the list length.
"""

from __future__ import annotations

from ..losses import distillation_loss
from .cache import LRUCache, history_fingerprint
from .compress import (
                       CastScorer,
                       OnnxScorer,
                       ScoreModule,
                       dequantize_rows,
                       export_onnx,
                       model_size_bytes,
                       prune_linear,
                       quantize_dynamic_int8,
                       quantize_rows_int8,
                       to_bfloat16,
)
from .compress import _linear_layers as _linear_layers  # private; re-exported for tests/test_infer.py
from .ranking import NEG_INF, Catalogue, Filters, Recommender, TopK, mask_items
from .retrieval import (
                       ExactIndex,
                       FaissIndex,
                       ann_recall,
                       has_retrieval,
                       item_vectors,
                       retrieval_matches_scores,
                       sweep_ann,
                       time_call,
                       user_vectors,
)

__all__ = [
    "NEG_INF", "Catalogue", "CastScorer", "ExactIndex", "FaissIndex", "Filters", "LRUCache", "OnnxScorer",
    "Recommender", "ScoreModule", "TopK", "ann_recall", "dequantize_rows", "distillation_loss", "export_onnx",
    "has_retrieval", "history_fingerprint", "item_vectors", "mask_items", "prune_linear", "quantize_dynamic_int8",
    "quantize_rows_int8", "retrieval_matches_scores", "model_size_bytes", "sweep_ann", "time_call", "to_bfloat16",
    "user_vectors",
]
