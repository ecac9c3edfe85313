"""``python -m data.cifar10 [SOURCE]``: load once (filling the cache), again, and summarise."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np

from data.cifar10 import VALID_SOURCES, channel_stats, load_cifar10
from data.errors import DataError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.cifar10",
        description="Load CIFAR-10 once (filling the cache) and summarise it.")
    parser.add_argument("source", nargs="?", default="tfds", help=VALID_SOURCES)
    parser.add_argument("--data-dir")
    parser.add_argument("--cache-dir")
    parser.add_argument("--workers", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for attempt in ("first", "second"):
            start = time.perf_counter()
            ds = load_cifar10(args.source, data_dir=args.data_dir, cache_dir=args.cache_dir,
                              workers=args.workers)
            print(f"{attempt} load: {time.perf_counter() - start:.2f} s")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mean, std = channel_stats(ds.train_x)
    print(f"{ds.source}: train {ds.train_x.shape}, test {ds.test_x.shape}, "
          f"classes {ds.class_names}")
    print(f"train counts {np.bincount(ds.train_y).tolist()}, "
          f"test counts {np.bincount(ds.test_y).tolist()}")
    print(f"channel mean {np.round(mean, 4).tolist()}, std {np.round(std, 4).tolist()}")
    return 0
