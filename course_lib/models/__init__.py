"""Sequential recommenders, one file per model (each reads like nanoGPT's ``model.py``).

* :mod:`.sasrec` — SASRec, a causal transformer over the history (chapter 04), built from
  the blocks of :mod:`course_lib.attention`.
* :mod:`.gru4rec` — GRU4Rec, the recurrent baseline (chapter 04).
* :mod:`.bert4rec` — BERT4Rec, masked item modelling on ``transformers.BertForMaskedLM`` (chapter 06).
* :mod:`.gpt_rec` — a GPT-2 next-item model with ``generate()`` (chapter 06).
* :mod:`.two_tower` — a feature-aware two-tower retrieval model, in-batch softmax with log-Q,
  optional MMoE gates per domain (chapter 09).
* :mod:`.dcn` — DCN-v2, a deep & cross ranker over (user, candidate) features (chapter 09).

Every model has the same interface, so the evaluator, :class:`course_lib.train.Trainer`,
:class:`course_lib.infer.Recommender` and the serving bundle treat them alike (and like the
baselines): ``training_loss(batch) -> scalar``; ``score(users, histories) -> (B, n_items + 1)``
with column 0 = ``-inf`` (the :class:`course_lib.scoring.Scorer` protocol; sequential
models also accept ``score(histories)``); ``save_pretrained(dir)`` /
``Class.from_pretrained(dir)`` (``config.json`` + ``model.safetensors``). Sizes are named
``d_model``, ``n_heads``, ``n_layers``, ``d_ff`` everywhere; :mod:`._hf` maps them to the
names of the Hugging Face configs.

Import the module you need (``from course_lib.models.sasrec import SASRec, SASRecConfig``);
this package imports nothing heavy itself.
"""
