"""The cache of decoded ``tfds`` and ``folder`` data: one uncompressed ``.npz`` per entry.

An entry is ``<cache_dir>/cifar10-<kind>-<hash of location>-<hash of contents>.npz``, keyed by
the source kind, the resolved path and a cheap fingerprint of the files (names, sizes and
modification times, gathered with ``os.scandir``), so editing the tree invalidates the entry.
Cache files are written atomically with a SHA-256 digest of their arrays, checked on every
load; an entry that is unreadable, truncated or fails the digest is reported in a one-line
warning and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from data.cifar10.dataset import IMAGE_SHAPE, ImageDataset
from data.errors import DataError
from data.files import atomic_file

logger = logging.getLogger(__package__)  # warnings under the package's name, data.cifar10

# Bump when decoding or the cache layout changes, so that old entries miss.
CACHE_VERSION = 2  # 2: a SHA-256 digest of the arrays is stored and checked
_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "class_names")


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
    """``cifar10-<kind>-<hash of location>-<hash of contents>.npz`` under cache_dir.

    The location hash lets a rebuild delete the now-stale entries of the same
    tree; the contents hash (with the cache version) makes edits miss.
    """
    where = hashlib.sha256(f"{kind}\0{identity}".encode()).hexdigest()[:16]
    what = hashlib.sha256(f"v{CACHE_VERSION}\0{fingerprint}".encode()).hexdigest()[:16]
    return cache_dir / f"cifar10-{kind}-{where}-{what}.npz"


def read_cache(path: Path, source: str) -> ImageDataset | None:
    """The cached data set, or None when absent or failing verification (then it is rebuilt).

    ``np.load`` checks each member's CRC-32 and the arrays must match the
    SHA-256 digest written with them (which also binds them to this entry's
    name, so an entry rewritten with other contents, or copied under another
    key, fails too).
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
                    or y.shape != x.shape[:1]
                    or (y.size and not 0 <= y.min() <= y.max() < len(names))):
                raise ValueError(f"bad {split} arrays {x.dtype}{x.shape} / {y.dtype}{y.shape}")
    except Exception as e:  # noqa: BLE001 - whatever is wrong with it, rebuild it
        reason = " ".join(str(e).split()) or type(e).__name__
        logger.warning("cache file %s fails verification (%s); rebuilding it from %s",
                       path, reason, source)
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


def write_cache(path: Path, dataset: ImageDataset) -> None:
    """Writes ``dataset`` to ``path`` atomically; a failure only costs a warning."""
    arrays = {key: np.asarray(getattr(dataset, key)) for key in _CACHE_KEYS[:-1]}
    arrays["class_names"] = np.asarray(dataset.class_names, dtype=str)
    try:
        with atomic_file(path) as f:
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
