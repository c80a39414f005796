"""The synthetic shop: reproducible, well-formed, and its planted structure is visible.

The structural checks run on the committed files (``load_shop()``) and recompute what
they check with plain pandas / numpy / scikit-learn, not with the generator's own code.
Determinism and edge cases use tiny shops (200 users, 300 items), which take < 0.1 s.
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from course_lib.data.core import datasets_dir
from course_lib.data.shop import SHOP_FILES, generate_shop, load_shop, save_shop

TINY = dict(n_users=200, n_items=300)


@pytest.fixture(scope="module")
def shop():
    """The committed dataset, verified against SHA256SUMS."""
    return load_shop()


@pytest.fixture(scope="module")
def tiny():
    return generate_shop(seed=7, **TINY)


@pytest.fixture(scope="module")
def joined(shop):
    """Interactions with each item's category and type, in the dataset's (user, time) order."""
    cols = ["item_id", "category", "product_type", "release_timestamp"]
    return shop.interactions.merge(shop.items[cols], on="item_id", how="left", validate="many_to_one")


# ---- reproducibility --------------------------------------------------------------------


def test_same_seed_same_shop_and_other_seed_differs(tiny):
    again = generate_shop(seed=7, **TINY)
    pd.testing.assert_frame_equal(tiny.interactions, again.interactions)
    pd.testing.assert_frame_equal(tiny.items, again.items)
    pd.testing.assert_frame_equal(tiny.users, again.users)
    pd.testing.assert_frame_equal(tiny.truth["events"], again.truth["events"])
    other = generate_shop(seed=8, **TINY)
    assert not tiny.items["title"].equals(other.items["title"])
    assert len(tiny.interactions) != len(other.interactions) or not tiny.interactions.equals(other.interactions)


def test_committed_files_equal_a_fresh_generation(tmp_path):
    """`python -m course_lib.data.shop --out datasets/shop` reproduces the committed bytes."""
    save_shop(generate_shop(), tmp_path)
    committed = datasets_dir() / "shop"
    for name in (*SHOP_FILES, "SHA256SUMS"):
        new, old = (tmp_path / name).read_bytes(), (committed / name).read_bytes()
        if name.endswith(".gz"):  # first the content, then the exact bytes
            assert gzip.decompress(new) == gzip.decompress(old), f"{name}: content differs from a fresh generation"
            assert new[:10] == b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x02\xff", f"{name}: gzip header not fixed"
        assert new == old, (f"{name} differs from a fresh generate_shop() (if only the .gz bytes differ, "
                            "this machine's zlib compresses differently)")


def test_save_load_round_trip_keeps_truth(tiny, tmp_path):
    save_shop(tiny, tmp_path)
    back = load_shop(tmp_path)
    assert back.name == "shop" and "generate_shop(seed=7)" in back.source
    pd.testing.assert_frame_equal(back.interactions, tiny.interactions)
    pd.testing.assert_frame_equal(back.items, tiny.items)
    pd.testing.assert_frame_equal(back.users, tiny.users)
    assert set(back.truth) == set(tiny.truth)
    for key, value in tiny.truth.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back.truth[key], value, obj=key)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(back.truth[key], value, obj=key)
        else:
            assert back.truth[key] == value, key


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    folder = tmp_path / "shop"
    shutil.copytree(datasets_dir() / "shop", folder)
    data = bytearray((folder / "items.csv.gz").read_bytes())
    data[-20] ^= 0xFF
    (folder / "items.csv.gz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"items\.csv\.gz.*git checkout datasets/shop.*course_lib\.data\.shop"):
        load_shop(folder)
    (folder / "users.csv.gz").unlink()
    (folder / "items.csv.gz").write_bytes((datasets_dir() / "shop" / "items.csv.gz").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"users\.csv\.gz is missing"):
        load_shop(folder)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_users=0), r"n_users must be at least 1"),
    (dict(n_items=100), r"n_items=100 is too small.*n_items >= 176"),
    (dict(seed="2024"), r"seed must be an integer"),
    (dict(seed=1.5), r"seed must be an integer"),
    (dict(seed=-1), r"seed must be at least 0"),
    (dict(p_complement=1.5), r"p_complement must be in \[0.0, 1.0\]"),
    (dict(mean_history=4), r"mean_history must be in"),
    (dict(cold_category="Gardens"), r"unknown cold_category 'Gardens'; choose one of: Phones"),
    (dict(start="yesterday-ish"), r"start must be a date"),
])
def test_bad_parameters_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_shop(**{**TINY, **kwargs})


def test_tiny_shop_is_well_formed(tiny):
    lengths = tiny.interactions.groupby("user_id").size()
    assert len(lengths) == 200 and lengths.min() >= 5
    assert len(tiny.items) == 300 and tiny.items["category"].nunique() == 15
    assert not tiny.interactions.duplicated(["user_id", "item_id"]).any()


# ---- the committed data: shapes and invariants -------------------------------------------------


def test_tables_have_the_documented_schema(shop):
    assert shop.name == "shop"
    assert list(shop.interactions.columns) == ["user_id", "item_id", "timestamp"]
    assert (shop.interactions.dtypes == "int64").all()
    items = shop.items
    assert list(items.columns) == ["item_id", "title", "description", "category", "product_type", "brand",
                                   "price", "release_timestamp"]
    assert items["item_id"].tolist() == list(range(1, 3001))
    assert items["price"].dtype == "float64" and items["release_timestamp"].dtype == "int64"
    for col in ("title", "description", "category", "product_type", "brand"):
        assert pd.api.types.is_string_dtype(items[col]) and items[col].str.len().min() > 0, col
    assert items["title"].is_unique
    cents = np.round(items["price"].to_numpy() * 100).astype(int) % 100
    assert (cents == 99).all() and items["price"].min() > 0
    assert list(shop.users.columns) == ["user_id", "signup_timestamp"] and len(shop.users) == 6000
    assert items["category"].nunique() >= 12 and items["product_type"].nunique() >= 60
    assert shop.interactions["item_id"].isin(items["item_id"]).all()


def test_sizes_and_history_lengths(shop):
    lengths = shop.interactions.groupby("user_id").size()
    assert lengths.index.tolist() == list(range(1, 6001))
    assert 120_000 <= lengths.sum() <= 200_000
    assert 20 <= lengths.mean() <= 30 and lengths.min() >= 5 and 150 <= lengths.max() <= 200
    assert lengths.median() < lengths.mean()  # a long tail of heavy users


def test_no_repeats_time_order_and_release(shop, joined):
    inter = shop.interactions
    assert not inter.duplicated(["user_id", "item_id"]).any()
    step = inter.groupby("user_id")["timestamp"].diff().dropna()
    assert (step > 0).all()
    assert (joined["timestamp"] >= joined["release_timestamp"]).all()
    first = inter.groupby("user_id")["timestamp"].min()
    signup = shop.users.set_index("user_id")["signup_timestamp"]
    assert (signup.loc[first.index] <= first).all()
    span_days = (inter["timestamp"].max() - inter["timestamp"].min()) / 86400
    assert 330 <= span_days <= 366
    released_late = (shop.items["release_timestamp"] > shop.truth["window_start"]).mean()
    assert 0.08 <= released_late <= 0.16  # new releases: natural cold-start items


def test_popularity_has_a_long_tail(shop):
    counts = np.sort(shop.interactions["item_id"].value_counts().to_numpy())[::-1]
    top = int(np.ceil(0.1 * len(counts)))
    share = counts[:top].sum() / counts.sum()
    assert 0.40 <= share <= 0.60
    # the planted popularity explains who is popular (rank correlation)
    pop = shop.truth["item_popularity"]
    n = shop.interactions["item_id"].value_counts().reindex(pop.index, fill_value=0)
    assert pop.rank().corr(n.rank()) > 0.6


# ---- planted structure ------------------------------------------------------------------


def test_complement_chain_is_visible(joined, shop):
    nxt_cat = joined.groupby("user_id")["category"].shift(-1)
    nxt_type = joined.groupby("user_id")["product_type"].shift(-1)
    base = (joined["category"] == "Phone Accessories").mean()
    after_phone = (nxt_cat[joined["product_type"] == "smartphone"] == "Phone Accessories").mean()
    assert after_phone > 3 * base, (after_phone, base)
    # every edge of the chain together: the next item's type follows an edge far more often
    # than the types' frequencies alone would make it
    edges = set(shop.truth["type_chain"])
    follows = np.array([(a, b) in edges for a, b in zip(joined["product_type"], nxt_type)])
    has_next = nxt_type.notna().to_numpy()
    freq = joined["product_type"].value_counts(normalize=True)
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    chance = {a: freq.reindex(succ.get(a, [])).fillna(0).sum() for a in freq.index}
    expected = joined["product_type"].map(chance)
    assert follows[has_next].mean() > 4 * expected[has_next].mean()
    # cross-category edges exist and show: coffee beans are followed by a mug
    after_beans = (nxt_type[joined["product_type"] == "coffee beans"] == "coffee mug").mean()
    assert after_beans > 5 * (joined["product_type"] == "coffee mug").mean()


def test_complement_events_follow_the_truth(shop):
    ev = shop.truth["events"]
    assert ev[["user_id", "item_id", "timestamp"]].equals(shop.interactions)
    comp = ev[ev["reason"] == "complement"]
    assert 0.25 <= len(comp) / len(ev) <= 0.5
    assert all(item in shop.truth["complements"][anchor] for item, anchor in zip(comp["item_id"],
                                                                                comp["anchor_item_id"]))
    assert (ev.loc[ev["reason"] == "taste", "anchor_item_id"] == 0).all()


def test_users_category_shares_follow_their_taste(shop, joined):
    taste = shop.truth["user_taste"]
    counts = pd.crosstab(joined["user_id"], joined["category"]).reindex(columns=taste.columns, fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    heavy = shares.index[counts.sum(axis=1) >= 20]
    r = np.corrcoef(shares.loc[heavy].to_numpy().ravel(), taste.loc[heavy].to_numpy().ravel())[0, 1]
    assert r > 0.75, r
    # tastes are sparse: a few dominant categories per user
    top3 = np.sort(taste.to_numpy(), axis=1)[:, -3:].sum(axis=1)
    assert np.median(top3) > 0.8
    assert np.allclose(taste.sum(axis=1), 1.0, atol=1e-3)


def test_text_carries_the_category(shop):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    items = shop.items
    train, test = train_test_split(items, test_size=0.3, random_state=0, stratify=items["category"])
    vec = TfidfVectorizer(sublinear_tf=True)
    clf = LogisticRegression(max_iter=1000).fit(vec.fit_transform(train["description"]), train["category"])
    accuracy = clf.score(vec.transform(test["description"]), test["category"])
    assert accuracy > 0.9, accuracy
    # not one keyword: with the type's own name removed from the text, it still works
    names = sorted(items["product_type"].unique(), key=len, reverse=True)
    strip = lambda s: pd.Series(s).str.replace("|".join(names), " ", case=False, regex=True)
    vec2 = TfidfVectorizer(sublinear_tf=True)
    clf2 = LogisticRegression(max_iter=1000).fit(vec2.fit_transform(strip(train["description"])),
                                                 train["category"])
    assert clf2.score(vec2.transform(strip(test["description"])), test["category"]) > 0.85


def test_cold_category_launches_late_and_stays_small(shop, joined):
    cold, launch = shop.truth["cold_category"], shop.truth["cold_category_launch"]
    assert cold in set(shop.items["category"])
    cold_rows = joined[joined["category"] == cold]
    assert len(cold_rows) > 500 and cold_rows["timestamp"].min() >= launch
    assert len(cold_rows) / len(joined) < 0.03
    assert (shop.items.loc[shop.items["category"] == cold, "release_timestamp"] >= launch).all()
    assert shop.truth["window_start"] < launch < shop.truth["window_end"]


def test_brands_span_related_categories_and_complements_prefer_them(shop):
    items = shop.items.set_index("item_id")
    spans = items.groupby("brand")["category"].nunique()
    assert (spans >= 2).sum() >= 5
    comps = shop.truth["complements"]
    same = [items.at[i, "brand"] == items.at[j, "brand"] for i, js in comps.items() for j in js]
    # by chance two items of a category share a brand ~1/4 of the time; the lists prefer it
    assert np.mean(same) > 0.35


def test_card_reports_the_committed_numbers(shop):
    card = (datasets_dir() / "shop" / "CARD.md").read_text(encoding="utf-8")
    stats = shop.stats()
    top10 = stats["top 10% items' share %"]
    for number in (f"{stats['interactions']:,}", f"{stats['users']:,}", f"{len(shop.items):,}", f"{top10:.1f}%"):
        assert number in card, f"CARD.md does not mention {number}; update its statistics"
    for name in SHOP_FILES:
        assert name in card
