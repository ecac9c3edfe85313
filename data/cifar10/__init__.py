"""CIFAR-10 for the CNN part (Part 2): one loader, several sources.

``load_cifar10(source, data_dir=..., cache_dir=..., seed=..., workers=...)``
returns an :class:`ImageDataset` of uint8 NHWC images and int32 labels, whatever
the source.  The training CLI passes its ``--data SOURCE`` and ``--data-dir DIR``
straight through.  Sources, each in its own module:

``tfds`` (default), :mod:`data.cifar10.tfds`
    tensorflow-datasets' ``cifar10``, read from ``data_dir`` (``None``: tfds'
    default, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).  It never
    downloads; an unprepared build raises :class:`DataError` at once, saying
    how to prepare it.  An ``array_record`` build needs no TensorFlow.

``folder:PATH`` (or bare ``folder``: PATH from ``data_dir``), :mod:`data.cifar10.folder`
    An image-folder tree ``PATH/{train,test}/<class>/*.{png,jpg,jpeg}`` with
    exactly 10 class folders, decoded with Pillow in parallel; labels follow
    the sorted class names, rows the sorted file names within each class.

``synthetic`` or ``synthetic:N``, :mod:`data.cifar10.synthetic`
    N (default 2048) random, learnable CIFAR-shaped training images and
    ``max(N // 5, 10)`` test images, deterministic for ``seed``.

Decoded ``tfds`` and ``folder`` data is cached under ``cache_dir`` (default
``$JAX_CURRICULUM_CACHE`` or ``~/.cache/jax_curriculum``) as a folder of
``.npy`` files per entry, keyed by the source and a cheap fingerprint of its
files, verified against a SHA-256 digest on every load and rebuilt with a
one-line warning when it fails (:mod:`data.cifar10.cache`).
``python -m data.cifar10 SOURCE`` loads twice and summarises (:mod:`data.cifar10.cli`).
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
    """Loads CIFAR-10 (or a stand-in) from ``source``; see the module docstring.

    Args:
        source: ``"tfds"``, ``"folder:PATH"``, ``"folder"``, ``"synthetic"`` or
            ``"synthetic:N"``.
        data_dir: tfds data directory for ``tfds``; the tree's root for a bare
            ``folder``; unused otherwise.
        cache_dir: where decoded arrays are cached; ``None`` means
            :func:`default_cache_dir`.
        seed: seed of the ``synthetic`` source (ignored by the others).
        workers: decoding processes for ``folder``; ``None`` means one per
            available CPU, ``1`` decodes in this process.

    Returns:
        The data set, uint8 ``[N, 32, 32, 3]`` images and int32 ``[N]`` labels.

    Raises:
        DataError: the source is unknown, missing, malformed or unprepared.
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
