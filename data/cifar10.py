"""CIFAR-10 for the CNN part (Part 2): one loader, several sources.

``load_cifar10(source, data_dir=..., cache_dir=..., seed=..., workers=...)``
returns an :class:`ImageDataset` of uint8 NHWC images and int32 labels, whatever
the source.  The training CLI passes its ``--data SOURCE`` and ``--data-dir DIR``
straight through.  Sources:

``tfds`` (default)
    tensorflow-datasets' ``cifar10``, read from ``data_dir`` (``None``: tfds'
    default, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).  It never
    downloads: offline a download attempt hangs for minutes, so an unprepared
    build raises :class:`DataError` at once, saying how to prepare it.  A build
    prepared as ``array_record`` is read through tfds' random-access data source,
    which needs no TensorFlow; a ``tfrecord`` build is read with ``tf.data`` and
    so needs TensorFlow (the ``tfds-prepare`` extra).  tensorflow_datasets is
    imported only for this source.

``folder:PATH`` (or bare ``folder``, which takes PATH from ``data_dir``)
    An image-folder tree ``PATH/{train,test}/<class>/*.{png,jpg,jpeg}``:
    exactly 10 class folders, the same names in both splits.  Labels are class
    indices in sorted-name order (for CIFAR-10's own names that is also the
    official label order, see :data:`CLASS_NAMES`).  Row order, which tests and
    users can rely on: within a split, rows are grouped by class in label order
    and, within a class, follow the sorted file names; so ``train/cat/0000.jpg``
    of a 5,000-per-class tree is train row ``3 * 5000 + 0``.  Hidden entries and
    files with other extensions are ignored.  Images are decoded with Pillow,
    in parallel processes (threads once a JAX backend runs, see
    ``_make_executor``), and converted to RGB; each must be 32x32.  Grey,
    1-bit, palette, CMYK and alpha modes are converted exactly (alpha dropped),
    16-bit grey as round(v * 255 / 65535); other modes (a float TIFF named
    .png, say) are refused with an error naming the file.

``synthetic`` or ``synthetic:N``
    N (default 2048) random CIFAR-shaped training images and ``max(N // 5, 10)``
    test images, deterministic for ``seed``, labels balanced.  Every class has
    its own mean colour and low-frequency pattern under Gaussian noise, so a
    model can learn it (well above the 10 % chance level): meant for smoke
    tests and benchmarks that must not depend on a real copy.

Decoded ``tfds`` and ``folder`` data is cached as an uncompressed ``.npz`` under
``cache_dir`` (default ``$JAX_CURRICULUM_CACHE`` or ``~/.cache/jax_curriculum``),
keyed by the source kind, the resolved path and a cheap fingerprint of the files
(names, sizes and modification times, gathered with ``os.scandir``), so editing
the tree invalidates the entry.  Decoding 60,000 JPEGs takes seconds; loading
the cache well under one.  Cache files are written atomically with a SHA-256
digest of their arrays, checked on every load (~0.14 s for CIFAR-10's 180 MB);
an entry that is unreadable, truncated or fails the digest is reported in a
one-line warning and rebuilt.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.files import atomic_file

__all__ = [
    "CLASS_NAMES",
    "DataError",
    "ImageDataset",
    "channel_stats",
    "default_cache_dir",
    "load_cifar10",
]

logger = logging.getLogger(__name__)

#: CIFAR-10's classes in its official label order (which is also alphabetical).
CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = len(CLASS_NAMES)

#: File extensions the folder source reads (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_SYNTHETIC_SIZE = 2048
VALID_SOURCES = "tfds, folder:PATH (or folder with --data-dir), synthetic, synthetic:N"

# Bump when decoding or the cache layout changes, so that old entries miss.
_CACHE_VERSION = 2  # 2: a SHA-256 digest of the arrays is stored and checked
_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "class_names")
# Pillow modes whose convert("RGB") is exact (alpha dropped; CMYK as (255 - C) * (255 - K) / 255).
_RGB_CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
# Below this many files a process pool costs more to start than it saves.
_PARALLEL_MIN_FILES = 2000
# Examples fetched per data-source call when reading tfds (bounds memory).
_TFDS_CHUNK = 2048




@dataclass(frozen=True, eq=False)  # eq=False: == on arrays is ambiguous, so compare by identity
class ImageDataset:
    """An image-classification data set held in memory.

    Attributes:
        train_x: uint8 ``[N, 32, 32, 3]`` training images (NHWC, RGB).
        train_y: int32 ``[N]`` training labels in ``[0, len(class_names))``.
        test_x: uint8 ``[M, 32, 32, 3]`` test images.
        test_y: int32 ``[M]`` test labels.
        class_names: the name of each label index.
        source: canonical description of where the data came from, such as
            ``"folder:/abs/path"``, ``"tfds"``, ``"tfds:/abs/data_dir"`` or
            ``"synthetic:2048"``.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


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
        raise DataError(f"data source must be a string, got {source!r}; valid sources: {VALID_SOURCES}")
    kind, has_arg, arg = source.strip().partition(":")
    if workers is None:
        workers = _available_cpus()
    elif workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    if kind == "synthetic":
        return _load_synthetic(_parse_synthetic_size(source, arg if has_arg else None), seed)
    if kind == "folder":
        path = arg if has_arg else (os.fspath(data_dir) if data_dir is not None else "")
        if not path:
            raise DataError(f"data source {source!r} needs a path: use --data folder:PATH or --data-dir PATH")
        return _load_folder(Path(path).expanduser(), _resolve_cache_dir(cache_dir), workers)
    if kind == "tfds" and not has_arg:
        return _load_tfds(data_dir, _resolve_cache_dir(cache_dir))
    raise DataError(f"unknown data source {source!r}; valid sources: {VALID_SOURCES}")


def channel_stats(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of ``train_x / 255``.

    Args:
        train_x: ``[..., C]`` images, typically uint8 ``[N, 32, 32, 3]``.

    Returns:
        ``(mean, std)``, each float32 ``[C]``, for normalising inputs as
        ``(x / 255 - mean) / std``.
    """
    x = np.asarray(train_x)
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"channel_stats needs a non-empty [..., C] array, got shape {x.shape}")
    pixels = x.reshape(-1, x.shape[-1])
    step = 1 << 18  # pixels per chunk: bounds the temporaries to a few MB
    if x.dtype == np.uint8:
        # Exact and fast (~0.5 s for CIFAR-10's 51M pixels, against ~4 s for
        # float64 sums): per-channel value histograms, then moments from them.
        hist = np.zeros((pixels.shape[1], 256), np.int64)
        for start in range(0, len(pixels), step):
            channels = np.ascontiguousarray(pixels[start:start + step].T)  # bincount wants 1-D rows
            for c, values in enumerate(channels):
                hist[c] += np.bincount(values, minlength=256)
        levels = np.arange(256, dtype=np.float64)
        total, total_sq = hist @ levels, hist @ levels**2
    else:
        total = np.zeros(pixels.shape[1], np.float64)
        total_sq = np.zeros(pixels.shape[1], np.float64)
        for start in range(0, len(pixels), step):
            chunk = pixels[start:start + step].astype(np.float64)
            total += chunk.sum(axis=0)
            total_sq += np.square(chunk).sum(axis=0)
    mean = total / len(pixels)
    var = np.maximum(total_sq / len(pixels) - mean**2, 0.0)
    return (mean / 255.0).astype(np.float32), (np.sqrt(var) / 255.0).astype(np.float32)


def default_cache_dir() -> Path:
    """``$JAX_CURRICULUM_CACHE`` if set, else ``~/.cache/jax_curriculum``."""
    env = os.environ.get("JAX_CURRICULUM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jax_curriculum"


# --------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------


def _parse_synthetic_size(source: str, arg: str | None) -> int:
    if arg is None:
        return DEFAULT_SYNTHETIC_SIZE
    try:
        n = int(arg)
    except ValueError:
        n = 0
    if n < 1:
        raise DataError(f"data source {source!r}: N in synthetic:N must be a positive integer")
    return n


def _load_synthetic(n: int, seed: int) -> ImageDataset:
    if seed < 0:
        raise DataError(f"data source 'synthetic:{n}' needs a seed >= 0, got {seed}")
    # The class prototypes are fixed (not seeded) so that every seed describes
    # the same task; only the labels and the noise depend on ``seed``.
    proto_rng = np.random.default_rng(20240601)
    colours = proto_rng.uniform(48.0, 208.0, size=(NUM_CLASSES, 1, 1, 3))
    # A 4x4 grid upsampled to 32x32: a low-frequency pattern a CNN can pick up.
    coarse = proto_rng.normal(0.0, 28.0, size=(NUM_CLASSES, 4, 4, 3))
    patterns = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    prototypes = (colours + patterns).astype(np.float32)  # [10, 32, 32, 3]

    def make(count: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.int32)
        images = np.empty((count, *IMAGE_SHAPE), np.uint8)
        for start in range(0, count, 4096):  # chunks bound the float32 temporary
            y = labels[start:start + 4096]
            noisy = prototypes[y] + rng.normal(0.0, 40.0, size=(len(y), *IMAGE_SHAPE)).astype(np.float32)
            images[start:start + 4096] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return images, labels

    train_x, train_y = make(n, 0)
    test_x, test_y = make(max(n // 5, NUM_CLASSES), 1)
    return ImageDataset(train_x, train_y, test_x, test_y, CLASS_NAMES, f"synthetic:{n}")


# --------------------------------------------------------------------------
# folder:PATH
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ClassFiles:
    """One class folder of one split, as a single ``os.scandir`` pass saw it."""

    names: list[str]  # image file names, sorted
    total_size: int
    newest_mtime_ns: int


@dataclass(frozen=True)
class _FolderListing:
    """A validated image-folder tree: class names and, per split, their files."""

    class_names: tuple[str, ...]
    splits: dict[str, list[_ClassFiles]]  # "train"/"test" -> one per class, label order

    def paths(self, root: Path, split: str) -> list[str]:
        return [
            os.path.join(root, split, cls, name)
            for cls, files in zip(self.class_names, self.splits[split])
            for name in files.names
        ]

    def labels(self, split: str) -> np.ndarray:
        counts = [len(files.names) for files in self.splits[split]]
        return np.repeat(np.arange(len(counts), dtype=np.int32), counts)

    def fingerprint(self) -> str:
        """Per class folder: file names, count, total size and newest mtime.

        Cheap (one stat per file, no reads) yet it changes when a file is
        added, removed, renamed or rewritten.
        """
        h = hashlib.blake2b(digest_size=16)
        for split in ("train", "test"):
            for cls, files in zip(self.class_names, self.splits[split]):
                h.update(f"{split}/{cls}\0{len(files.names)}\0{files.total_size}\0"
                         f"{files.newest_mtime_ns}\0".encode())
                h.update("\0".join(files.names).encode())
        return h.hexdigest()


def _load_folder(path: Path, cache_dir: Path, workers: int) -> ImageDataset:
    root = path.resolve()  # canonical: "..", symlinks and cwd must not split the cache
    source = f"folder:{root}"
    listing = _scan_folder(root)
    cache_file = _cache_file(cache_dir, "folder", str(root), listing.fingerprint())
    cached = _read_cache(cache_file, source)
    if cached is not None:
        return cached

    start = time.perf_counter()
    train_x = _decode_images(listing.paths(root, "train"), workers)
    test_x = _decode_images(listing.paths(root, "test"), workers)
    logger.info("decoded %d images from %s in %.1f s", len(train_x) + len(test_x), root,
                time.perf_counter() - start)
    dataset = ImageDataset(train_x, listing.labels("train"), test_x, listing.labels("test"),
                           listing.class_names, source)
    _write_cache(cache_file, dataset)
    return dataset


def _scan_folder(root: Path) -> _FolderListing:
    """Lists and validates ``root/{train,test}/<class>/*``; raises DataError."""
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"image folder {root} is not a directory")
    split_classes: dict[str, list[str]] = {}
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            raise DataError(f"image folder {root} has no {split}/ directory "
                            f"(expected {root}/{{train,test}}/<class>/*.png|jpg)")
        split_classes[split] = sorted(
            e.name for e in _scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
        )

    train_classes, test_classes = split_classes["train"], split_classes["test"]
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataError(f"class folders differ between {root / 'train'} and {root / 'test'}: "
                        f"only in train {only_train}, only in test {only_test}")
    if len(train_classes) != NUM_CLASSES:
        raise DataError(f"image folder {root / 'train'} has {len(train_classes)} class folders "
                        f"{train_classes}; CIFAR-10 needs {NUM_CLASSES}")

    splits = {split: [_scan_class(root / split / cls) for cls in train_classes]
              for split in ("train", "test")}
    return _FolderListing(tuple(train_classes), splits)


def _scan_class(class_dir: Path) -> _ClassFiles:
    # This runs on every load, cache hit or not (60,000 files for CIFAR-10),
    # so the loop stays lean: d_type-based is_file(), one stat() per image.
    names: list[str] = []
    total_size = newest = 0
    for e in _scandir(class_dir):
        name = e.name
        if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS) or not e.is_file():
            continue
        st = e.stat()
        names.append(name)
        total_size += st.st_size
        if st.st_mtime_ns > newest:
            newest = st.st_mtime_ns
    if not names:
        raise DataError(f"class folder {class_dir} has no {'/'.join(IMAGE_EXTENSIONS)} images")
    names.sort()
    return _ClassFiles(names, total_size, newest)


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as e:
        raise DataError(f"cannot list {path}: {e.strerror or e}") from None


def _decode_images(paths: Sequence[str], workers: int) -> np.ndarray:
    """Decodes image files into uint8 ``[len(paths), 32, 32, 3]``, keeping order."""
    if workers <= 1 or len(paths) < _PARALLEL_MIN_FILES:
        return _decode_files(paths)
    # A few chunks per worker balance the load without much pickling overhead.
    chunks = [list(c) for c in np.array_split(np.asarray(paths, dtype=object), workers * 4)]
    executor = _make_executor(workers)
    try:
        parts = list(executor.map(_decode_files, chunks))
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return np.concatenate(parts)


def _make_executor(workers: int) -> Executor:
    """A fork-based process pool when that is safe, else threads.

    Decoding a 32x32 image is mostly Python-level Pillow overhead that holds the
    GIL, so threads barely beat one core while processes scale (measured on two
    cores: serial 13 s, threads 12-18 s, processes 6.6 s for 60,000 JPEGs).
    Fork is used because spawn/forkserver re-import the caller's ``__main__``
    (for the CLI, JAX and all) in every worker.  But forking a process whose
    JAX backend is already running risks a deadlock, so then threads it is.
    """
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    jax_running = bool(getattr(xla_bridge, "_backends", None))
    if sys.platform.startswith("linux") and not jax_running:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def _decode_files(paths: Sequence[str]) -> np.ndarray:
    """Worker: decodes ``paths`` in order into uint8 ``[len(paths), 32, 32, 3]``."""
    from PIL import Image  # imported here so that the tfds/synthetic paths never need it

    out = np.empty((len(paths), *IMAGE_SHAPE), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                if image.size != IMAGE_SHAPE[1::-1]:
                    raise DataError(f"image {path} is {image.size[0]}x{image.size[1]}; "
                                    f"CIFAR-10 images must be 32x32")
                image.load()  # decode errors surface here, not inside np.asarray
                out[i] = _to_rgb(image, path)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - any decoding failure means a bad file
            reason = " ".join(str(e).split()) or type(e).__name__
            raise DataError(f"cannot decode image {path}: {reason}") from None
    return out


def _to_rgb(image, path: str) -> np.ndarray:
    """uint8 RGB pixels of a decoded Pillow image; DataError for modes without a sure conversion.

    Alpha is ignored, as torchvision's and tf.image's 3-channel loaders do.
    """
    mode = image.mode
    if mode in ("P", "PA"):  # via RGBA: Pillow warns on P -> RGB when transparency is a byte table
        return np.asarray(image.convert("RGBA"))[..., :3]
    if mode in _RGB_CONVERTIBLE_MODES:
        return np.asarray(image if mode == "RGB" else image.convert("RGB"))
    if mode.startswith("I"):  # 16-bit grey PNGs open as I;16 (older Pillow: I); convert("RGB") clips at 255
        grey = np.asarray(image).astype(np.int64)
        if grey.size and 0 <= grey.min() and grey.max() <= 65535:
            grey = (grey * 255 + 32767) // 65535  # round(v * 255 / 65535)
            return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
        raise DataError(f"image {path} has mode {mode} with values outside 0..65535; "
                        f"save it as 8- or 16-bit PNG or as JPEG")
    raise DataError(f"image {path} has mode {mode}, which has no reliable conversion to RGB; "
                    f"save it as 8- or 16-bit PNG or as JPEG")


# --------------------------------------------------------------------------
# tfds
# --------------------------------------------------------------------------


def _load_tfds(data_dir: str | os.PathLike | None, cache_dir: Path) -> ImageDataset:
    source = "tfds" if data_dir is None else f"tfds:{Path(data_dir).expanduser().resolve()}"
    try:
        # Imported lazily: it is slow to import and only this source needs it.
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"data source {source!r} needs tensorflow-datasets ({e}); "
                        f"install it or use --data folder:PATH") from None

    builder = tfds.builder("cifar10", data_dir=None if data_dir is None else os.fspath(Path(data_dir).expanduser()))
    variant_dir = Path(os.fspath(builder.data_path))
    # Never call download_and_prepare() here: offline it hangs for minutes.
    if not builder.is_prepared():
        raise DataError(_not_prepared_message(variant_dir.parents[1]))
    if builder.info.features["label"].num_classes != NUM_CLASSES:
        raise DataError(f"tfds cifar10 in {variant_dir} does not have {NUM_CLASSES} classes")

    cache_file = _cache_file(cache_dir, "tfds", str(variant_dir.resolve()), _dir_fingerprint(variant_dir))
    cached = _read_cache(cache_file, source)
    if cached is not None:
        return cached

    try:
        try:
            splits = builder.as_data_source(split=["train", "test"])
        except NotImplementedError:  # prepared as tfrecord: no random access
            arrays = [_read_tfds_tfrecord(tfds, builder, variant_dir, split) for split in ("train", "test")]
        else:
            arrays = [_read_tfds_data_source(s, variant_dir) for s in splits]
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"cannot read tfds cifar10 from {variant_dir}: {' '.join(str(e).split())}") from None

    (train_x, train_y), (test_x, test_y) = arrays
    dataset = ImageDataset(train_x, train_y, test_x, test_y, CLASS_NAMES, source)
    # Cache only what matches the build's recorded split sizes: anything else
    # (say, tfds.testing.mock_data's fake examples) must never pose as the build.
    expected = [builder.info.splits[s].num_examples for s in ("train", "test")]
    if expected == [len(train_y), len(test_y)]:
        _write_cache(cache_file, dataset)
    else:
        logger.warning("tfds cifar10 in %s: read %d/%d examples, metadata says %d/%d; not caching",
                       variant_dir, len(train_y), len(test_y), *expected)
    return dataset


def _not_prepared_message(data_root: Path) -> str:
    # tfds looks for a URL's file in <data_dir>/downloads/manual before fetching
    # it, so the genuine archive there prepares offline (its sha256 is checked).
    return (
        f"tfds cifar10 is not prepared in {data_root} (and is never downloaded here): either put the "
        f"official cifar-10-binary.tar.gz in {data_root / 'downloads' / 'manual'}/, install the "
        f"tfds-prepare extra (pip install -e '.[tfds-prepare]', it brings TensorFlow) and run "
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
            # Batched reads are ~1.5x faster than item by item.
            examples = data_source.__getitems__(keys)
        except TypeError:
            # tfds.testing.mock_data's data source breaks __getitems__ (tfds
            # 4.9.10 sets it to an unbound functools.partial); items still work.
            examples = [data_source[k] for k in keys]
        for i, example in enumerate(examples, start):
            image = np.asarray(example["image"])
            if image.shape != IMAGE_SHAPE:
                raise DataError(f"tfds cifar10 in {variant_dir}: example {i} has shape {image.shape}, "
                                f"expected {IMAGE_SHAPE}")
            images[i] = image
            labels[i] = example["label"]
    return images, labels


def _read_tfds_tfrecord(tfds, builder, variant_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a tfrecord split through tf.data, which needs TensorFlow."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise DataError(f"tfds cifar10 in {variant_dir} is stored as tfrecord, which needs TensorFlow: "
                        f"install the tfds-prepare extra, or re-prepare it with "
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
        raise DataError(f"tfds cifar10 in {variant_dir}: images have shape {x.shape[1:]}, expected {IMAGE_SHAPE}")
    y = np.concatenate(labels) if labels else np.empty((0,), np.int32)
    return x, y


def _dir_fingerprint(directory: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    for e in sorted(_scandir(directory), key=lambda e: e.name):
        if e.is_file():
            st = e.stat()
            h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------


def _resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _cache_file(cache_dir: Path, kind: str, identity: str, fingerprint: str) -> Path:
    """``cifar10-<kind>-<hash of location>-<hash of contents>.npz`` under cache_dir.

    The location hash lets a rebuild delete the now-stale entries of the same
    tree; the contents hash (with the cache version) makes edits miss.
    """
    where = hashlib.sha256(f"{kind}\0{identity}".encode()).hexdigest()[:16]
    what = hashlib.sha256(f"v{_CACHE_VERSION}\0{fingerprint}".encode()).hexdigest()[:16]
    return cache_dir / f"cifar10-{kind}-{where}-{what}.npz"


def _read_cache(path: Path, source: str) -> ImageDataset | None:
    """The cached data set, or None when absent or failing verification (then it is rebuilt).

    ``np.load`` checks each member's CRC-32 and the arrays must match the
    SHA-256 digest written with them (which also binds them to this entry's
    name, so an entry rewritten with other contents, or copied under another
    key, fails too).  Hashing CIFAR-10's 180 MB takes ~0.14 s on one core.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in (*_CACHE_KEYS, "sha256")}
        if not np.array_equal(arrays.pop("sha256"), _cache_digest(path.name, arrays)):
            raise ValueError("its arrays do not match the SHA-256 digest stored with them")
        names = tuple(str(s) for s in arrays.pop("class_names"))
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if (x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or y.dtype != np.int32
                    or y.shape != x.shape[:1] or (y.size and not 0 <= y.min() <= y.max() < len(names))):
                raise ValueError(f"bad {split} arrays {x.dtype}{x.shape} / {y.dtype}{y.shape}")
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, rebuild it
        reason = " ".join(str(e).split()) or type(e).__name__
        logger.warning("cache file %s fails verification (%s); rebuilding it from %s", path, reason, source)
        return None
    return ImageDataset(class_names=names, source=source, **arrays)


def _cache_digest(name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """SHA-256 of the entry's name and each array's key, dtype, shape and bytes."""
    h = hashlib.sha256(f"{name}\0".encode())
    for key in _CACHE_KEYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return np.frombuffer(h.digest(), np.uint8)


def _write_cache(path: Path, dataset: ImageDataset) -> None:
    """Writes ``dataset`` to ``path`` atomically; a failure only costs a warning."""
    try:
        with atomic_file(path) as f:
            arrays = dict(train_x=dataset.train_x, train_y=dataset.train_y, test_x=dataset.test_x,
                          test_y=dataset.test_y, class_names=np.asarray(dataset.class_names, dtype=str))
            np.savez(f, **arrays, sha256=_cache_digest(path.name, arrays))
    except OSError as e:
        logger.warning("could not write cache file %s: %s", path, e)
        return
    # Entries for older versions of the same tree are dead weight (~180 MB each).
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for stale in path.parent.glob(f"{prefix}*.npz"):
        if stale != path:
            with contextlib.suppress(OSError):
                stale.unlink()


# --------------------------------------------------------------------------
# python -m data.cifar10 SOURCE: load (filling the cache) and summarise
# --------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load CIFAR-10 once (filling the cache) and summarise it.")
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
    print(f"{ds.source}: train {ds.train_x.shape}, test {ds.test_x.shape}, classes {ds.class_names}")
    print(f"train counts {np.bincount(ds.train_y).tolist()}, test counts {np.bincount(ds.test_y).tolist()}")
    print(f"channel mean {np.round(mean, 4).tolist()}, std {np.round(std, 4).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
