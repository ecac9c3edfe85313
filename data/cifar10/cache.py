"""The cache of decoded ``tfds`` and ``folder`` data: one folder of ``.npy`` files per entry.

An entry is named ``cifar10-<kind>-<hash of location>-<hash of contents>``: the location hash lets a
rebuild delete the same tree's stale entries, the contents hash (a cheap file fingerprint) makes
an edited tree miss. Entries are written whole and loads are memory-mapped copy-on-write and
digest-checked; a failing entry is rebuilt with a one-line warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from data.cifar10.dataset import IMAGE_SHAPE, ImageDataset
from data.errors import DataError
from data.files import atomic_directory, remove_quietly

logger = logging.getLogger(__package__)  # warnings under the package's name, data.cifar10

# Bump when decoding or the cache layout changes, so that old entries miss.
CACHE_VERSION = 3  # 2: a SHA-256 digest of the arrays; 3: a folder of .npy files per entry
_ARRAYS = ("train_x", "train_y", "test_x", "test_y", "class_names")
_DIGEST_FILE = "sha256.txt"


def default_cache_dir() -> Path:
    """``$JAX_CURRICULUM_CACHE`` if set, else ``~/.cache/jax_curriculum``."""
    env = os.environ.get("JAX_CURRICULUM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jax_curriculum"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def scandir(path: Path) -> list[os.DirEntry]:
    """The entries of ``path``; DataError naming it when it cannot be listed."""
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as e:
        raise DataError(f"cannot list {path}: {e.strerror or e}") from None


def dir_fingerprint(directory: Path) -> str:
    """A hash of the names, sizes and modification times of the files in ``directory``."""
    h = hashlib.blake2b(digest_size=16)
    for e in sorted(scandir(directory), key=lambda e: e.name):
        if e.is_file():
            st = e.stat()
            h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def entry_path(cache_dir: Path, kind: str, identity: str, fingerprint: str) -> Path:
    """``cifar10-<kind>-<hash of location>-<hash of contents>`` under cache_dir."""
    where = hashlib.sha256(f"{kind}\0{identity}".encode()).hexdigest()[:16]
    what = hashlib.sha256(f"v{CACHE_VERSION}\0{fingerprint}".encode()).hexdigest()[:16]
    return cache_dir / f"cifar10-{kind}-{where}-{what}"


def read_cache(entry: Path, source: str) -> ImageDataset | None:
    """The cached data set, or None (rebuild). The digest binds the arrays to the entry's name too,
    so an entry copied under another key fails."""
    if not entry.is_dir():
        return None
    try:
        arrays = {key: _load_array(entry / f"{key}.npy") for key in _ARRAYS}
        stored = (entry / _DIGEST_FILE).read_text(encoding="ascii").strip()
        if stored != _digest(entry.name, arrays):
            raise ValueError("its arrays do not match the SHA-256 digest stored with them")
        names = tuple(str(s) for s in arrays.pop("class_names"))
        _check_arrays(arrays, len(names))
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, rebuild it
        reason = " ".join(str(e).split()) or type(e).__name__
        logger.warning("cache entry %s fails verification (%s); rebuilding it from %s",
                       entry, reason, source)
        return None
    return ImageDataset(class_names=names, source=source, **arrays)


def write_cache(entry: Path, dataset: ImageDataset) -> None:
    """Writes ``dataset`` as the entry ``entry``, atomically; a failure only costs a warning."""
    arrays = {key: np.asarray(getattr(dataset, key)) for key in _ARRAYS[:-1]}
    arrays["class_names"] = np.asarray(dataset.class_names, dtype=str)
    try:
        with atomic_directory(entry) as tmp:
            for key, array in arrays.items():
                np.save(tmp / f"{key}.npy", array, allow_pickle=False)
            (tmp / _DIGEST_FILE).write_text(_digest(entry.name, arrays) + "\n", encoding="ascii")
    except OSError as e:
        logger.warning("could not write cache entry %s: %s", entry, e)
        return
    _remove_stale(entry)


def _load_array(path: Path) -> np.ndarray:
    """The array in the ``.npy`` file ``path``, memory-mapped copy-on-write."""
    try:
        # A plain ndarray (not np.memmap) over the mapping; writable, the file untouched.
        return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))
    except FileNotFoundError:
        raise ValueError(f"{path.name} is missing") from None
    except Exception as e:  # noqa: BLE001 - name the file, keep the reason
        raise ValueError(f"{path.name}: {' '.join(str(e).split()) or type(e).__name__}") from None


def _digest(name: str, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the entry's name and each array's key, dtype, shape and bytes."""
    h = hashlib.sha256(f"{name}\0".encode())
    for key in _ARRAYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _check_arrays(arrays: dict[str, np.ndarray], num_classes: int) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if (x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or y.dtype != np.int32
                or y.shape != x.shape[:1]):
            raise ValueError(f"bad {split} arrays {x.dtype}{x.shape} / {y.dtype}{y.shape}")
        if y.size and not 0 <= y.min() <= y.max() < num_classes:
            raise ValueError(f"{split} labels outside 0..{num_classes - 1}")


def _remove_stale(entry: Path) -> None:
    """Delete the same source's other entries (``.npz`` files included): each is a whole data set."""
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for stale in entry.parent.glob(f"{prefix}*"):
        if stale != entry:
            remove_quietly(stale)
