"""CIFAR-10 for the CNN part (Part 2): one loader, several sources.

Sources ``tfds`` (never downloads), ``folder:PATH`` and ``synthetic[:N]``, one module each, give
the same :class:`ImageDataset`; decoded data is cached and digest-checked (:mod:`data.cifar10.cache`).
The sources and cache are described in the README's data section.
"""

from __future__ import annotations

import os
from pathlib import Path

from data.cifar10.cache import default_cache_dir, resolve_cache_dir
from data.cifar10.dataset import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES, ImageDataset  # noqa: F401
from data.cifar10.folder import IMAGE_EXTENSIONS, load_folder  # noqa: F401
from data.cifar10.stats import channel_stats
from data.cifar10.synthetic import (DEFAULT_SYNTHETIC_SIZE, load_synthetic,  # noqa: F401
                                    parse_synthetic_size)
from data.cifar10.tfds import load_tfds
from data.errors import DataError

__all__ = [
    "CLASS_NAMES",
    "DataError",
    "ImageDataset",
    "channel_stats",
    "default_cache_dir",
    "load_cifar10",
]

VALID_SOURCES = "tfds, folder:PATH (or folder with --data-dir), synthetic, synthetic:N"


def load_cifar10(
    source: str = "tfds",
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    workers: int | None = None,
) -> ImageDataset:
    """CIFAR-10 or a stand-in: uint8 ``[N, 32, 32, 3]`` images, int32 ``[N]`` labels; DataError if unusable.

    ``data_dir`` is tfds' directory or a bare ``folder``'s root; ``workers`` None decodes one per CPU.
    """
    if not isinstance(source, str):
        raise DataError(f"data source must be a string, got {source!r}; "
                        f"valid sources: {VALID_SOURCES}")
    kind, has_arg, arg = source.strip().partition(":")
    if workers is None:
        workers = _available_cpus()
    elif workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    if kind == "synthetic":
        return load_synthetic(parse_synthetic_size(source, arg if has_arg else None), seed)
    if kind == "folder":
        path = arg if has_arg else (os.fspath(data_dir) if data_dir is not None else "")
        if not path:
            raise DataError(f"data source {source!r} needs a path: "
                            f"use --data folder:PATH or --data-dir PATH")
        return load_folder(Path(path).expanduser(), resolve_cache_dir(cache_dir), workers)
    if kind == "tfds" and not has_arg:
        return load_tfds(data_dir, resolve_cache_dir(cache_dir))
    raise DataError(f"unknown data source {source!r}; valid sources: {VALID_SOURCES}")


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
