"""The ``tfds`` source: tensorflow-datasets' ``cifar10``, read from a prepared build.

It never downloads: offline a download attempt hangs, retrying, so an unprepared build raises
:class:`DataError` at once, saying how to prepare it.  A build prepared as ``array_record`` is
read through tfds' random-access data source, which needs no TensorFlow; a ``tfrecord`` build is
read with ``tf.data`` and so needs TensorFlow (the ``tfds-prepare`` extra).

tensorflow_datasets (and TensorFlow) are imported inside the functions that need them: they are
slow to import and only this source uses them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from data.cifar10.cache import dir_fingerprint, entry_path, read_cache, write_cache
from data.cifar10.dataset import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES, ImageDataset
from data.errors import DataError

logger = logging.getLogger(__package__)  # warnings under the package's name, data.cifar10

# Examples fetched per data-source call when reading tfds (bounds memory).
_TFDS_CHUNK = 2048


def load_tfds(data_dir: str | os.PathLike | None, cache_dir: Path) -> ImageDataset:
    source = "tfds" if data_dir is None else f"tfds:{Path(data_dir).expanduser().resolve()}"
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"data source {source!r} needs tensorflow-datasets ({e}); "
                        f"install it or use --data folder:PATH") from None

    tfds_dir = None if data_dir is None else os.fspath(Path(data_dir).expanduser())
    builder = tfds.builder("cifar10", data_dir=tfds_dir)
    variant_dir = Path(os.fspath(builder.data_path))
    # Never call download_and_prepare() here: offline it hangs.
    if not builder.is_prepared():
        raise DataError(_not_prepared_message(variant_dir.parents[1]))
    if builder.info.features["label"].num_classes != NUM_CLASSES:
        raise DataError(f"tfds cifar10 in {variant_dir} does not have {NUM_CLASSES} classes")

    entry = entry_path(cache_dir, "tfds", str(variant_dir.resolve()), dir_fingerprint(variant_dir))
    cached = read_cache(entry, source)
    if cached is not None:
        return cached

    (train_x, train_y), (test_x, test_y) = _read_splits(tfds, builder, variant_dir)
    dataset = ImageDataset(train_x, train_y, test_x, test_y, CLASS_NAMES, source)
    # Cache only what matches the build's recorded split sizes: anything else
    # (say, tfds.testing.mock_data's fake examples) must never pose as the build.
    expected = [builder.info.splits[s].num_examples for s in ("train", "test")]
    if expected == [len(train_y), len(test_y)]:
        write_cache(entry, dataset)
    else:
        logger.warning("tfds cifar10 in %s: read %d/%d examples, metadata says %d/%d; not caching",
                       variant_dir, len(train_y), len(test_y), *expected)
    return dataset


def _read_splits(tfds, builder, variant_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train_x, train_y), (test_x, test_y)]`` from the build; DataError when unreadable."""
    try:
        try:
            splits = builder.as_data_source(split=["train", "test"])
        except NotImplementedError:  # prepared as tfrecord: no random access
            return [_read_tfds_tfrecord(tfds, builder, variant_dir, split)
                    for split in ("train", "test")]
        return [_read_tfds_data_source(s, variant_dir) for s in splits]
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise DataError(f"cannot read tfds cifar10 from {variant_dir}: {reason}") from None


def _not_prepared_message(data_root: Path) -> str:
    # tfds looks for a URL's file in <data_dir>/downloads/manual before fetching
    # it, so the genuine archive there prepares offline (its sha256 is checked).
    return (
        f"tfds cifar10 is not prepared in {data_root} (and is never downloaded here): either put "
        f"the official cifar-10-binary.tar.gz in {data_root / 'downloads' / 'manual'}/, install "
        f"the tfds-prepare extra (pip install -e '.[tfds-prepare]', it brings TensorFlow) and run "
        f"python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('cifar10', data_dir='{data_root}', file_format='array_record')"
        f".download_and_prepare()\" (array_record reads back without TensorFlow), "
        f"or use --data folder:PATH with an image-folder copy"
    )


def _read_tfds_data_source(data_source, variant_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads a random-access (array_record) split into uint8 NHWC images and labels."""
    n = len(data_source)
    images = np.empty((n, *IMAGE_SHAPE), np.uint8)
    labels = np.empty((n,), np.int32)
    for start in range(0, n, _TFDS_CHUNK):
        keys = list(range(start, min(start + _TFDS_CHUNK, n)))
        try:
            examples = data_source.__getitems__(keys)  # batched reads beat item by item
        except TypeError:
            # tfds.testing.mock_data's data source breaks __getitems__ (tfds
            # 4.9.10 sets it to an unbound functools.partial); items still work.
            examples = [data_source[k] for k in keys]
        for i, example in enumerate(examples, start):
            image = np.asarray(example["image"])
            if image.shape != IMAGE_SHAPE:
                raise DataError(f"tfds cifar10 in {variant_dir}: example {i} has shape "
                                f"{image.shape}, expected {IMAGE_SHAPE}")
            images[i] = image
            labels[i] = example["label"]
    return images, labels


def _read_tfds_tfrecord(tfds, builder, variant_dir: Path,
                        split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a tfrecord split through tf.data, which needs TensorFlow."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise DataError(f"tfds cifar10 in {variant_dir} is stored as tfrecord, which needs "
                        f"TensorFlow: install the tfds-prepare extra, or re-prepare it with "
                        f"file_format='array_record'") from None
    # Finite batches, not batch_size=-1: that crashes TF 2.21 under mock_data,
    # and batching keeps tf.data's own buffers small.
    ds = builder.as_dataset(split=split, batch_size=_TFDS_CHUNK, shuffle_files=False)
    images, labels = [], []
    for batch in tfds.as_numpy(ds):
        images.append(np.asarray(batch["image"], np.uint8))
        labels.append(np.asarray(batch["label"], np.int32))
    x = np.concatenate(images) if images else np.empty((0, *IMAGE_SHAPE), np.uint8)
    if x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"tfds cifar10 in {variant_dir}: images have shape {x.shape[1:]}, "
                        f"expected {IMAGE_SHAPE}")
    y = np.concatenate(labels) if labels else np.empty((0,), np.int32)
    return x, y
