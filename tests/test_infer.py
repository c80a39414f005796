"""course_lib.infer against independent references: NumPy ranking, brute-force search, hand formulas.

The model here is a tiny stand-in with the interface every course model has
(``score(histories)``, ``user_vector``, ``item_embeddings``), so that these tests do not depend on
any real model's training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import infer as I
from course_lib.data import leave_one_out

N_ITEMS, D, MAX_LEN = 60, 12, 6


class TinySeq(nn.Module):
    """Mean of (item + position) embeddings, a residual MLP; scores = user vector @ item table."""

    def __init__(self, n_items: int = N_ITEMS, d: int = D, max_len: int = MAX_LEN, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.max_len = max_len

    @property
    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def user_vector(self, h: torch.Tensor) -> torch.Tensor:
        h = h[:, -self.max_len:]
        x = self.item_emb(h) + self.pos.weight[-h.shape[1]:]
        m = (h != 0).unsqueeze(-1).to(x.dtype)
        x = (x * m).sum(1) / m.sum(1).clamp_min(1)
        return x + self.mlp(x)

    def score(self, h: torch.Tensor) -> torch.Tensor:
        return self.user_vector(h) @ self.item_emb.weight.T


class WithBias(TinySeq):
    """Scores with a per-item bias: not a pure inner product, so retrieval must not be assumed."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(N_ITEMS + 1))

    def score(self, h: torch.Tensor) -> torch.Tensor:
        return super().score(h) + self.bias


def _items(n: int = N_ITEMS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cats = np.array(["Books", "Toys", "Garden", "Books|Toys"])
    return pd.DataFrame({
        "item_id": [None] + list(range(1001, 1001 + n)),
        "title": ["<pad>"] + [f"item {i}" for i in range(n)],
        "category": [None] + list(cats[np.arange(n) % 4]),
        "price": [np.nan] + list(np.round(rng.uniform(1, 100, n), 2)),
    })


@pytest.fixture(scope="module")
def catalogue() -> I.Catalogue:
    stock = np.ones(N_ITEMS + 1, dtype=bool)
    stock[::5] = False
    return I.Catalogue(_items(), in_stock=stock, popularity=np.r_[0.0, np.arange(N_ITEMS, 0, -1)])


@pytest.fixture(scope="module")
def model() -> TinySeq:
    return TinySeq().eval()


def _random_histories(n: int, seed: int = 1, lo: int = 1, hi: int = 9) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(lo, hi), replace=False) for _ in range(n)]


def _reference_topk(scores: np.ndarray, k: int, seen: list[np.ndarray] | None, allowed: np.ndarray | None):
    """NumPy: mask, stable argsort, take k finite."""
    s = scores.astype(np.float64).copy()
    s[:, 0] = -np.inf
    if seen is not None:
        for r, items in enumerate(seen):
            s[r, items] = -np.inf
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[int(i) for i in row if np.isfinite(s[r, i])] for r, row in enumerate(order)]


# ---------------------------------------------------------------------------- catalogue and filters
def test_catalogue_ids_and_lookup(catalogue):
    assert catalogue.n_items == N_ITEMS and catalogue.id_kind == "int"
    assert catalogue.item_ids[1] == 1001 and isinstance(catalogue.item_ids[1], int)
    ids, unknown = catalogue.lookup([1001, "1001", 5, 1060, True])
    assert ids.tolist() == [1, 60] and unknown == ["1001", 5, True]
    with pytest.raises(KeyError, match="unknown item id"):
        catalogue.internal([1001, 7])


def test_filter_masks_match_pandas(catalogue):
    items = catalogue.items
    price = items["price"].to_numpy(dtype=float)
    sets = [set() if not isinstance(c, str) else set(c.split("|")) for c in items["category"]]
    f = I.Filters(categories=["Toys"], min_price=20, max_price=70, in_stock=True, exclude_items=(2,))
    want = np.array([("Toys" in s) and 20 <= p <= 70 and catalogue.in_stock[i] and i != 2
                     for i, (s, p) in enumerate(zip(sets, price))])
    got = catalogue.allowed(f).numpy()
    assert got.tolist() == want.tolist() and want.sum() > 0
    assert not catalogue.allowed(None)[0] and catalogue.allowed(None)[1:].all()
    excl = catalogue.allowed(I.Filters(exclude_categories=["Books"])).numpy()
    assert excl.tolist() == [i > 0 and "Books" not in s for i, s in enumerate(sets)]
    # a multi-valued "Books|Toys" item counts as Books *and* as Toys
    assert catalogue.allowed(I.Filters(categories=["Books"]))[4]
    assert catalogue.allowed(I.Filters(categories=["Toys"]))[4]


def test_bad_filters_say_what_is_wrong(catalogue):
    with pytest.raises(ValueError, match="unknown category.*choose from: Books, Garden, Toys"):
        catalogue.allowed(I.Filters(categories=["Shoes"]))
    with pytest.raises(ValueError, match="larger than max_price"):
        I.Filters(min_price=10, max_price=5)
    with pytest.raises(ValueError, match="non-negative"):
        I.Filters(min_price=-1)
    bare = I.Catalogue(_items().drop(columns=["price", "category"]))
    with pytest.raises(ValueError, match="no price column"):
        bare.allowed(I.Filters(max_price=5))
    with pytest.raises(ValueError, match="no category column"):
        bare.allowed(I.Filters(categories=["Books"]))


def test_describe_gives_titles_in_rank_order(catalogue):
    table = catalogue.describe([3, 1], [0.5, 0.25])
    assert table["rank"].tolist() == [1, 2] and table["item_id"].tolist() == [1003, 1001]
    assert table["title"].tolist() == ["item 2", "item 0"] and table["score"].tolist() == [0.5, 0.25]


# ---------------------------------------------------------------------------- masking and ranking
def test_mask_items_tensor_and_lists_agree():
    scores = torch.rand(3, 10)
    a, b = scores.clone(), scores.clone()
    I.mask_items(a, torch.tensor([[0, 2, 3], [0, 0, 9], [1, 1, 1]]))
    I.mask_items(b, [np.array([2, 3]), np.array([9]), np.array([1])])
    torch.testing.assert_close(a, b)
    want = scores.clone()
    want[0, [0, 2, 3]] = want[1, [0, 9]] = want[2, [0, 1]] = -torch.inf
    torch.testing.assert_close(a, want)
    with pytest.raises(ValueError, match="item ids must be in 0..9"):
        I.mask_items(scores.clone(), [np.array([10]), np.array([]), np.array([])])


def test_topk_equals_numpy_reference(model, catalogue):
    rec = I.Recommender(model, catalogue, max_len=MAX_LEN, batch_size=7)
    hist = _random_histories(25)
    f = I.Filters(categories=["Books", "Garden"], max_price=80)
    top = rec.topk(hist, 8, filters=f)
    with torch.no_grad():
        scores = model.score(rec.pad(hist)).numpy()
    want = _reference_topk(scores, 8, hist, catalogue.allowed(f).numpy())
    for r in range(len(hist)):
        assert top.row(r)[0].tolist() == want[r]


def test_masking_really_masks():
    """A model that loves what you already have: unmasked lists are full of seen items, masked ones have none."""

    class Echo(nn.Module):
        def score(self, h):
            s = torch.zeros(len(h), N_ITEMS + 1)
            return s.scatter(1, h, 10.0) + torch.linspace(0, 1, N_ITEMS + 1)

    rec = I.Recommender(Echo(), I.Catalogue(_items()), max_len=MAX_LEN)
    hist = _random_histories(10, lo=5, hi=6)
    raw = rec.topk(hist, 5, exclude_seen=False)
    masked = rec.topk(hist, 5)
    for r, h in enumerate(hist):
        assert set(raw.row(r)[0]) == set(h.tolist())          # all five slots wasted on seen items
        assert not set(masked.row(r)[0]) & set(h.tolist())


def test_filters_really_exclude_and_short_lists_are_marked(model, catalogue):
    rec = I.Recommender(model, catalogue, max_len=MAX_LEN)
    f = I.Filters(categories=["Garden"], min_price=0, max_price=30, in_stock=True)
    allowed = catalogue.allowed(f).numpy()
    n_allowed = int(allowed.sum())
    top = rec.topk(_random_histories(6), n_allowed + 4, filters=f, exclude_seen=False)
    assert (top.valid.sum(dim=1) == n_allowed).all()            # every allowed item, nothing else
    for r in range(len(top)):
        ids, _ = top.row(r)
        assert allowed[ids].all()
        assert (top.ids[r][~top.valid[r]] == 0).all()


def test_recommend_all_masks_the_whole_history_and_matches_the_evaluator(model):
    from course_lib.evaluate import topk_items

    rng = np.random.default_rng(3)
    rows = []
    for u in range(40):
        items = rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(5, 20), replace=False)
        rows += [(u, int(1000 + i), t) for t, i in enumerate(items)]
    rows += [(99, 1000 + i, t) for t, i in enumerate(rng.permutation(np.arange(1, N_ITEMS + 1)))]  # every item
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    assert split.n_items == N_ITEMS
    rec = I.Recommender(model, split, max_len=MAX_LEN, batch_size=9)
    top = rec.recommend_all(split, "test", k=10)
    ref = topk_items(lambda users, h: model.score(h), split, "test", k=10, max_len=MAX_LEN)
    valid = top.valid.numpy()
    assert top.ids.numpy()[valid].tolist() == ref[valid].tolist()
    assert (valid.sum(axis=1) < 10).tolist() == [len(h) > N_ITEMS - 10 for h in split.history("test")]
    hist = split.history("test")
    long = [u for u in range(split.n_users) if len(hist[u]) > MAX_LEN]
    assert long, "the test needs histories longer than max_len"
    for u in long:   # items older than the model's window are masked too
        assert not set(top.ids[u].tolist()) & set(hist[u].tolist())


def test_batch_size_does_not_change_answers(model, catalogue):
    hist = _random_histories(30)
    a = I.Recommender(model, catalogue, max_len=MAX_LEN, batch_size=1).topk(hist, 5)
    b = I.Recommender(model, catalogue, max_len=MAX_LEN, batch_size=1000).topk(hist, 5)
    assert torch.equal(a.ids, b.ids)
    torch.testing.assert_close(a.scores, b.scores)


def test_empty_history_gets_popularity_and_bad_input_is_refused(model, catalogue):
    rec = I.Recommender(model, catalogue, max_len=MAX_LEN)
    top = rec.topk([[], [1, 2]], 3)
    assert top.source == ["popularity", "model"]
    assert top.row(0)[0].tolist() == [1, 2, 3]               # popularity decreases with the id here
    with pytest.raises(ValueError, match="empty history"):
        I.Recommender(model, I.Catalogue(_items()), max_len=MAX_LEN).topk([[]], 3)
    for k in (0, -1, N_ITEMS + 1, True, 2.0):
        with pytest.raises(ValueError, match="k"):
            rec.topk([[1]], k)
    with pytest.raises(ValueError, match="internal item ids in 0..60"):
        rec.topk([[1, 61]], 3)


def test_nan_scores_are_an_error_not_a_ranking(catalogue):
    rec = I.Recommender(lambda users, h: torch.full((len(h), N_ITEMS + 1), float("nan")), catalogue, max_len=4)
    with pytest.raises(RuntimeError, match="NaN"):
        rec.topk([[1]], 3)


def test_score_fn_models_receive_the_users(catalogue):
    seen_users = []

    def score_fn(users, histories):
        seen_users.append(users.tolist())
        return torch.arange(N_ITEMS + 1, dtype=torch.float32).repeat(len(users), 1)

    rec = I.Recommender(score_fn, catalogue, max_len=4, trim_padding=False)
    rec.topk([[1], [2]], 2, users=[5, 9])
    rec.topk([[1]], 2)
    assert seen_users == [[5, 9], [-1]]


class LeftPositions(TinySeq):
    """Positions counted from the left edge of the padded window: padding changes the output."""

    def user_vector(self, h: torch.Tensor) -> torch.Tensor:
        x = self.item_emb(h) + self.pos.weight[: h.shape[1]]
        m = (h != 0).unsqueeze(-1).to(x.dtype)
        x = (x * m).sum(1) / m.sum(1).clamp_min(1)
        return x + self.mlp(x)


@pytest.mark.parametrize("model_cls, trims", [(TinySeq, True), (LeftPositions, False)])
def test_padding_is_trimmed_only_when_it_changes_nothing(model_cls, trims, catalogue):
    m = model_cls().eval()
    hist = _random_histories(40, lo=1, hi=7)
    auto = I.Recommender(m, catalogue, max_len=MAX_LEN, batch_size=8)
    never = I.Recommender(m, catalogue, max_len=MAX_LEN, batch_size=8, trim_padding=False)
    a, b = auto.score(hist), never.score(hist)
    assert auto.trim_padding is trims
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    widths = [w for _, w in auto._batches(auto.pad(hist), torch.arange(len(hist)))]
    assert (min(widths) < MAX_LEN) is trims


def _sasrec(seed: int = 0):
    from course_lib.models.sasrec import SASRec, SASRecConfig

    torch.manual_seed(seed)
    return SASRec(SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=16, n_heads=2, n_layers=2,
                               init_std=0.3)).eval()


def _plain_topk(model, histories, k):
    """The reference: left-pad every history to max_len, the model's own score, mask what was seen, topk."""
    from course_lib.data import pad_sequences

    with torch.no_grad():
        scores = model.score(pad_sequences(histories, MAX_LEN)).clone()
    for r, h in enumerate(histories):
        scores[r, np.asarray(h, dtype=np.int64)] = float("-inf")
    return torch.topk(scores, k, dim=1)


def test_fast_path_is_on_for_sasrec_and_gives_the_plain_lists(catalogue):
    m = _sasrec()
    hist = _random_histories(50, lo=1, hi=3 * MAX_LEN)          # shorter and longer than max_len
    fast = I.Recommender(m, catalogue, max_len=MAX_LEN, batch_size=7)
    slow = I.Recommender(m, catalogue, max_len=MAX_LEN, batch_size=7, fast_path=False)
    a, b = fast.topk(hist, 5), slow.topk(hist, 5)
    assert fast.fast_path is True and slow.fast_path is False
    ref = _plain_topk(m, hist, 5)
    assert torch.equal(a.ids, ref.indices) and torch.equal(b.ids, ref.indices)
    torch.testing.assert_close(a.scores, ref.values, rtol=1e-5, atol=1e-5)
    # the stand-in has no encode_last: the plain path, and asking for the fast one is an error
    tiny = I.Recommender(TinySeq().eval(), catalogue, max_len=MAX_LEN)
    tiny.topk(hist, 5)
    assert tiny.fast_path is False
    with pytest.raises(ValueError, match="encode_last"):
        I.Recommender(TinySeq().eval(), catalogue, max_len=MAX_LEN, fast_path=True)


def _split_and_sasrec(seed: int, n_users: int, longest: int):
    """A random leave-one-out split (histories of 3..longest-1 items) and an untrained SASRec seeded by ``seed``."""
    from course_lib.models.sasrec import SASRec, SASRecConfig

    rng = np.random.default_rng(seed + 4)
    rows = []
    for u in range(n_users):
        items = rng.choice(np.arange(1, N_ITEMS + 1), size=rng.integers(3, longest), replace=False)
        rows += [(u, int(1000 + i), t) for t, i in enumerate(items)]
    split = leave_one_out(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    torch.manual_seed(seed)
    m = SASRec(SASRecConfig(n_items=split.n_items, max_len=MAX_LEN, d_model=16, n_heads=2, init_std=0.3)).eval()
    return split, m, rng


def test_recommend_all_fast_path_equals_the_plain_loop():
    split, m, _ = _split_and_sasrec(1, 60, 25)
    rec = I.Recommender(m, split, max_len=MAX_LEN, batch_size=16)
    top = rec.recommend_all(split, "test", k=10)
    assert rec.fast_path is True
    ref = _plain_topk(m, split.history("test"), 10)
    assert torch.equal(top.ids, ref.indices)
    torch.testing.assert_close(top.scores, ref.values, rtol=1e-5, atol=1e-5)


def test_recommend_all_buckets_and_worker_threads_give_the_plain_lists():
    """The one-pass buckets on 1-3 threads: ids identical to the plain loop's, with filters, subsets, no mask."""
    split, m, rng = _split_and_sasrec(2, 70, 30)
    hist = split.history("test")
    assert any(len(h) > MAX_LEN for h in hist) and any(len(h) <= MAX_LEN for h in hist)
    ref = _plain_topk(m, hist, 10)
    threads = torch.get_num_threads()
    for workers, batch_tokens, batch_size in [(1, 8192, 1024), (2, 8192, 1024), (2, 7, 5), (3, 1, 4), (1, 20, 3)]:
        rec = I.Recommender(m, split, max_len=MAX_LEN, batch_size=batch_size)
        top = rec.recommend_all(split, "test", k=10, workers=workers, batch_tokens=batch_tokens)
        assert rec.fast_path is True
        assert torch.equal(top.ids, ref.indices), (workers, batch_tokens, batch_size)
        torch.testing.assert_close(top.scores, ref.values, rtol=1e-5, atol=1e-5)
        assert top.source == ["model"] * split.n_users
        assert torch.get_num_threads() == threads                      # the thread count is restored
    # filters, a subset of users in any order, and no masking: the same as the plain path of the wrapper
    fast = I.Recommender(m, split, max_len=MAX_LEN, batch_size=4)
    slow = I.Recommender(m, split, max_len=MAX_LEN, batch_size=4, fast_path=False)
    users = rng.permutation(split.n_users)[:25]
    shelf = I.Filters(exclude_items=tuple(range(1, split.n_items + 1, 3)))
    for options in [dict(filters=shelf), dict(exclude_seen=False), dict(users=users), dict(users=users, filters=shelf)]:
        a = fast.recommend_all(split, "test", k=10, workers=2, batch_tokens=16, **options)
        b = slow.recommend_all(split, "test", k=10, **options)
        assert torch.equal(a.ids, b.ids), options
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    a = fast.recommend_all(split, "test", k=10, filters=shelf, workers=2)
    assert not np.isin(a.ids.numpy(), shelf.exclude_items).any()
    for bad in (0, -1, 1.5, True, "two"):
        with pytest.raises(ValueError, match="workers"):
            fast.recommend_all(split, "test", workers=bad)
    with pytest.raises(ValueError, match="batch_tokens"):
        fast.recommend_all(split, "test", batch_tokens=0)


def test_cached_user_vectors_of_sasrec_equal_the_full_forward(catalogue):
    m = _sasrec(2)
    hist = _random_histories(20, lo=1, hi=2 * MAX_LEN)
    keys = [("user", i) for i in range(20)]
    cached = I.Recommender(m, catalogue, max_len=MAX_LEN, cache_size=100)
    first, again = cached.topk(hist, 5, keys=keys), cached.topk(hist, 5, keys=keys)
    assert cached._retrieval is True and cached.cache.hits == 20
    ref = _plain_topk(m, hist, 5)
    assert torch.equal(first.ids, ref.indices) and torch.equal(again.ids, ref.indices)
    torch.testing.assert_close(again.scores, ref.values, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- retrieval
def test_user_vector_times_item_table_is_the_score(model):
    h = I.Recommender(model, I.Catalogue(_items()), max_len=MAX_LEN).pad(_random_histories(5))
    via = I.user_vectors(model, h) @ I.item_vectors(model).T
    torch.testing.assert_close(via, model.score(h).detach())
    assert I.retrieval_matches_scores(model, h)
    assert not I.retrieval_matches_scores(WithBias().eval(), h)


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((N_ITEMS + 1, D)).astype(np.float32)
    q = rng.standard_normal((9, D)).astype(np.float32)
    exclude = [rng.choice(np.arange(1, N_ITEMS + 1), 4, replace=False) for _ in range(9)]
    allowed = rng.random(N_ITEMS + 1) < 0.6
    scores, ids = I.ExactIndex(items).search(q, 5, exclude=exclude, allowed=allowed)
    want = _reference_topk(q @ items.T, 5, exclude, allowed)
    assert ids.tolist() == want
    np.testing.assert_allclose(scores, np.take_along_axis(q @ items.T, ids, 1), rtol=1e-5)


@pytest.fixture(scope="module")
def clustered():
    """Items in 20 clusters (as trained embeddings are), queries near them."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((20, 16)).astype(np.float32) * 3
    items = np.vstack([np.zeros((1, 16), np.float32),
                       centres[rng.integers(0, 20, 2000)] + rng.standard_normal((2000, 16)).astype(np.float32)])
    queries = centres[rng.integers(0, 20, 200)] + rng.standard_normal((200, 16)).astype(np.float32)
    return items, queries


def test_faiss_flat_is_exact_and_ann_recall_is_measured(clustered):
    items, q = clustered
    _, truth = I.ExactIndex(items).search(q, 10)
    flat = I.FaissIndex(items, "flat")
    assert I.ann_recall(flat.search(q, 10)[1], truth) == 1.0
    ivf = I.FaissIndex(items, "ivf", nlist=32)
    ivf.nprobe = 32                                   # every cell: exact again
    assert I.ann_recall(ivf.search(q, 10)[1], truth) == 1.0
    ivf.nprobe = 1
    low = I.ann_recall(ivf.search(q, 10)[1], truth)
    assert 0.0 < low < 0.95                           # one cell misses neighbours in the next cells
    hnsw = I.FaissIndex(items, "hnsw", m=16, ef_search=256)
    assert I.ann_recall(hnsw.search(q, 10)[1], truth) >= 0.99
    hnsw.ef_search = 10
    assert I.ann_recall(hnsw.search(q, 10)[1], truth) <= I.ann_recall(
        I.FaissIndex(items, "hnsw", m=16, ef_search=256).search(q, 10)[1], truth)


def test_faiss_respects_exclusions_and_filters(clustered):
    items, q = clustered
    rng = np.random.default_rng(1)
    exclude = [rng.choice(np.arange(1, 2001), 30, replace=False) for _ in range(len(q))]
    allowed = rng.random(2001) < 0.3
    allowed[0] = False
    for kind in ("flat", "ivf", "hnsw"):
        index = I.FaissIndex(items, kind, nprobe=64, ef_search=256)
        _, ids = index.search(q, 10, exclude=exclude, allowed=allowed)
        for r in range(len(q)):
            got = ids[r][ids[r] > 0]
            assert allowed[got].all(), kind
            assert not set(got.tolist()) & set(exclude[r].tolist()), kind
    _, exact = I.ExactIndex(items).search(q, 10, exclude=exclude, allowed=allowed)
    _, flat = I.FaissIndex(items, "flat").search(q, 10, exclude=exclude, allowed=allowed)
    assert flat.tolist() == exact.tolist()


def test_ann_recall_by_hand():
    assert I.ann_recall([[1, 2, 3], [4, 5, 6]], [[3, 2, 9], [7, 8, 9]]) == pytest.approx((2 / 3 + 0) / 2)
    assert I.ann_recall([[1, 0]], [[1, 2]]) == 0.5                 # 0 = nothing found, never a hit
    with pytest.raises(ValueError):
        I.ann_recall([[1]], [[1], [2]])


def test_sweep_ann_reports_every_setting(clustered):
    items, q = clustered
    table = I.sweep_ann(items, q[:50], 10, nprobes=(1, 64), ef_searches=(8, 128), latency_queries=10)
    assert table["index"].tolist() == ["exact (torch)", "flat", "ivf", "ivf", "hnsw", "hnsw"]
    assert table.loc[table["index"].isin(["exact (torch)", "flat"]), "recall@10"].eq(1.0).all()
    assert (table["ms/query"] > 0).all() and (table["recall@10"] <= 1).all()


# ---------------------------------------------------------------------------- caching
def test_lru_cache_evicts_and_detects_stale_entries():
    c = I.LRUCache(2)
    c.put("a", 1, fingerprint="x")
    c.put("b", 2, fingerprint="y")
    assert c.get("a", fingerprint="x") == 1          # a is now the most recent
    c.put("c", 3)
    assert "b" not in c and "a" in c and c.evictions == 1
    assert c.get("a", fingerprint="changed") is None and c.stale == 1 and "a" not in c
    assert c.stats()["hits"] == 1 and c.stats()["misses"] == 1
    with pytest.raises(ValueError):
        I.LRUCache(0)


def test_fingerprint_ignores_padding_but_not_order():
    fp = I.history_fingerprint
    assert fp(torch.tensor([0, 0, 3, 4])) == fp([3, 4]) == fp(np.array([3, 4]))
    assert fp([3, 4]) != fp([4, 3]) and fp([3, 4]) != fp([3, 4, 5])


@pytest.mark.parametrize("model_cls", [TinySeq, WithBias])
def test_cache_gives_the_same_answers_and_invalidates_on_a_new_item(model_cls, catalogue):
    m = model_cls().eval()
    plain = I.Recommender(m, catalogue, max_len=MAX_LEN)
    cached = I.Recommender(m, catalogue, max_len=MAX_LEN, cache_size=100)
    hist = _random_histories(12)
    keys = [f"user{i}" for i in range(12)]
    first = cached.topk(hist, 5, keys=keys)
    again = cached.topk(hist, 5, keys=keys)
    want = plain.topk(hist, 5)
    assert torch.equal(first.ids, want.ids) and torch.equal(again.ids, want.ids)
    torch.testing.assert_close(again.scores, want.scores, rtol=1e-5, atol=1e-5)
    assert cached.cache.hits == 12 and cached.cache.misses == 12
    assert cached._retrieval is (model_cls is TinySeq)   # user vectors only when score = h @ E.T
    # user 0 buys their top item: the history changes, the cache must not answer from the old one
    bought = int(first.ids[0, 0])
    hist[0] = np.append(hist[0], bought)
    after = cached.topk(hist, 5, keys=keys)
    assert cached.cache.stale == 1 and bought not in after.ids[0].tolist()
    assert torch.equal(after.ids, plain.topk(hist, 5).ids)


# ---------------------------------------------------------------------------- compression and export
def test_dynamic_int8_quantisation_replaces_linears_and_stays_close(model):
    q = I.quantize_dynamic_int8(model)
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert any(type(m) is nn.Linear for m in model.modules())          # the original is untouched
    h = I.Recommender(model, I.Catalogue(_items()), max_len=MAX_LEN).pad(_random_histories(20))
    a, b = model.score(h).detach(), q.score(h)
    rel = (a - b).norm() / a.norm()
    assert 0 < rel < 0.05
    linear = sum(m.weight.numel() for m in model.modules() if type(m) is nn.Linear)
    saved = I.model_size_bytes(model) - I.model_size_bytes(q)
    assert 3 * linear - 64 <= saved <= 3 * linear        # 4 bytes -> 1 byte per weight, plus a few scales


def test_row_quantisation_by_hand():
    t = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-127.0, 63.5, 1.0]])
    q, scale = I.quantize_rows_int8(t)
    assert q.dtype == torch.int8
    assert q[0].tolist() == [127, -64, 32] and q[2].tolist() == [-127, 64, 1]   # round half to even: 63.5 -> 64
    torch.testing.assert_close(scale.flatten()[[0, 2]], torch.tensor([1 / 127, 1.0]))
    err = (I.dequantize_rows(q, scale) - t).abs()
    assert (err <= scale / 2 + 1e-7).all()


def test_bfloat16_copy_is_close_and_smaller(model):
    b = I.to_bfloat16(model)
    assert all(p.dtype == torch.bfloat16 for p in b.parameters())
    h = I.Recommender(model, I.Catalogue(_items()), max_len=MAX_LEN).pad(_random_histories(10))
    a, c = model.score(h).detach(), b.score(h).detach()
    assert c.dtype == torch.float32
    assert (a - c).norm() / a.norm() < 0.02
    assert 2 * I.model_size_bytes(b.inner) == I.model_size_bytes(model)


def test_onnx_export_agrees_with_torch_for_any_batch_size(model, tmp_path):
    path = I.export_onnx(model, tmp_path / "m.onnx", max_len=MAX_LEN, n_items=N_ITEMS)
    onnx_model = I.OnnxScorer(path, threads=1)
    rec = I.Recommender(model, I.Catalogue(_items()), max_len=MAX_LEN)
    for n in (1, 7, 33):
        h = rec.pad(_random_histories(n, seed=n))
        got = onnx_model.score(h)
        assert torch.isneginf(got[:, 0]).all()           # the exported graph masks padding (the Scorer protocol)
        torch.testing.assert_close(got[:, 1:], model.score(h).detach()[:, 1:], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="length 6"):
        onnx_model.score(torch.ones(2, 3, dtype=torch.long))
    # and the ONNX scorer drops into the Recommender like any model
    assert torch.equal(I.Recommender(onnx_model, I.Catalogue(_items()), max_len=MAX_LEN).topk([[1, 2]], 5).ids,
                       rec.topk([[1, 2]], 5).ids)


def test_pruning_zeroes_the_smallest_weights(model):
    pruned, sparsity = I.prune_linear(model, 0.5)
    assert sparsity == pytest.approx(0.5, abs=0.01)
    for (_, before), (_, after) in zip(I._linear_layers(model), I._linear_layers(pruned)):
        w, p = before.weight.detach().abs().flatten(), after.weight.detach().flatten()
        zeroed = p == 0
        assert w[zeroed].max() <= w[~zeroed].min()             # magnitude pruning, layer by layer
        kept = ~(after.weight == 0)
        torch.testing.assert_close(after.weight.detach()[kept], before.weight.detach()[kept])
    assert I.prune_linear(model, 0.0)[1] == 0.0
    with pytest.raises(ValueError):
        I.prune_linear(model, 1.0)


def test_distillation_loss_against_hand_formulas():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 9, generator=g), torch.randn(6, 9, generator=g)
    y = torch.tensor([1, 2, 0, 4, 5, 6])                      # row 2: padding target, ignored
    keep = y != 0
    ce = F.cross_entropy(s[keep], y[keep])
    torch.testing.assert_close(I.distillation_loss(s, t, y, alpha=0.0), ce)
    T = 2.0
    p = torch.softmax(t[keep] / T, -1)
    kl = (p * (p.log() - torch.log_softmax(s[keep] / T, -1))).sum(-1).mean() * T * T
    torch.testing.assert_close(I.distillation_loss(s, t, y, alpha=1.0, temperature=T), kl)
    torch.testing.assert_close(I.distillation_loss(s, t, y, alpha=0.3, temperature=T), 0.3 * kl + 0.7 * ce)
    assert I.distillation_loss(t, t, y, alpha=1.0).abs() < 1e-6
    with pytest.raises(ValueError):
        I.distillation_loss(s, t, y, temperature=0)


def test_time_call_returns_seconds():
    assert 0 <= I.time_call(lambda: sum(range(100)), repeat=3) < 1
