"""The ``folder:PATH`` source: an image-folder tree, decoded with Pillow.

``PATH/{train,test}/<class>/*.{png,jpg,jpeg}``, exactly 10 classes of 32x32 images. Labels follow
the sorted class names (CIFAR-10's official order for its own names); rows are grouped by class,
then sorted file names, an order tests and users rely on. Modes without an exact RGB conversion
are refused, naming the file.
"""

from __future__ import annotations

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
from PIL import Image

from data.cifar10.cache import entry_path, read_cache, scandir, write_cache
from data.cifar10.dataset import IMAGE_SHAPE, NUM_CLASSES, ImageDataset
from data.errors import DataError

logger = logging.getLogger(__package__)  # messages under the package's name, data.cifar10

#: File extensions the folder source reads (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# Pillow modes whose convert("RGB") is exact (alpha dropped; CMYK as (255 - C) * (255 - K) / 255).
_RGB_CONVERTIBLE_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"})
# Below this many files a process pool costs more to start than it saves.
_PARALLEL_MIN_FILES = 2000


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
        """Names, count, size and newest mtime per class: one stat per file, yet any change shows."""
        h = hashlib.blake2b(digest_size=16)
        for split in ("train", "test"):
            for cls, files in zip(self.class_names, self.splits[split]):
                h.update(f"{split}/{cls}\0{len(files.names)}\0{files.total_size}\0"
                         f"{files.newest_mtime_ns}\0".encode())
                h.update("\0".join(files.names).encode())
        return h.hexdigest()


def load_folder(path: Path, cache_dir: Path, workers: int) -> ImageDataset:
    root = path.resolve()  # canonical: "..", symlinks and cwd must not split the cache
    source = f"folder:{root}"
    listing = _scan_folder(root)
    entry = entry_path(cache_dir, "folder", str(root), listing.fingerprint())
    cached = read_cache(entry, source)
    if cached is not None:
        return cached

    start = time.perf_counter()
    train_x = _decode_images(listing.paths(root, "train"), workers)
    test_x = _decode_images(listing.paths(root, "test"), workers)
    logger.info("decoded %d images from %s in %.1f s", len(train_x) + len(test_x), root,
                time.perf_counter() - start)
    dataset = ImageDataset(train_x, listing.labels("train"), test_x, listing.labels("test"),
                           listing.class_names, source)
    write_cache(entry, dataset)
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
            e.name for e in scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
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
    # Runs on every load, cache hit or not, so it stays lean: one stat() per image.
    names: list[str] = []
    total_size = newest = 0
    for e in scandir(class_dir):
        name = e.name
        if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        if not e.is_file():
            if e.is_symlink() and not e.is_dir():  # an image linked in, whose target is gone: not to be lost quietly
                raise DataError(f"image {e.path} is a link to {os.readlink(e.path)}, which cannot be opened")
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
    """Fork-based processes, as decoding holds the GIL and spawn re-imports ``__main__``; threads
    once a JAX backend runs, as forking it risks a deadlock."""
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    jax_running = bool(getattr(xla_bridge, "_backends", None))
    if sys.platform.startswith("linux") and not jax_running:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def _decode_files(paths: Sequence[str]) -> np.ndarray:
    """Worker: decodes ``paths`` in order into uint8 ``[len(paths), 32, 32, 3]``."""
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


def _to_rgb(image: Image.Image, path: str) -> np.ndarray:
    """uint8 RGB pixels, alpha dropped as torchvision does; DataError for modes without a sure conversion."""
    mode = image.mode
    if mode in ("P", "PA"):  # via RGBA: Pillow warns on P -> RGB when transparency is a byte table
        return np.asarray(image.convert("RGBA"))[..., :3]
    if mode in _RGB_CONVERTIBLE_MODES:
        return np.asarray(image if mode == "RGB" else image.convert("RGB"))
    if mode.startswith("I"):  # 16-bit grey PNGs open as I;16 (older Pillow: I); convert clips
        grey = np.asarray(image).astype(np.int64)
        if grey.size and 0 <= grey.min() and grey.max() <= 65535:
            grey = (grey * 255 + 32767) // 65535  # round(v * 255 / 65535)
            return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
        raise DataError(f"image {path} has mode {mode} with values outside 0..65535; "
                        f"save it as 8- or 16-bit PNG or as JPEG")
    raise DataError(f"image {path} has mode {mode}, which has no reliable conversion to RGB; "
                    f"save it as 8- or 16-bit PNG or as JPEG")
