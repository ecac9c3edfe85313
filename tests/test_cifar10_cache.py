"""The data.cifar10 cache: one .npy per array with a SHA-256 list, hits, invalidation and damage."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data.cifar10 as cifar10
import data.cifar10.cache as cifar_cache
import data.cifar10.folder as cifar_folder
from data.cifar10 import ImageDataset, load_cifar10

from cifar10_trees import assert_well_formed, make_tree, private_default_cache  # noqa: F401 - private_default_cache is an autouse fixture

# --------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------


ARRAY_KEYS = ("train_x", "train_y", "test_x", "test_y")
ENTRY_FILES = ["class_names.npy", "sha256.txt", "test_x.npy", "test_y.npy", "train_x.npy",
               "train_y.npy"]


def _only_entry(cache: Path) -> Path:
    """The cache folder's one entry, checked to hold exactly the entry's files (no leftovers)."""
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].is_dir(), entries  # no temporary file or folder
    assert entries[0].name.startswith("cifar10-")
    assert sorted(p.name for p in entries[0].iterdir()) == ENTRY_FILES
    return entries[0]


def _assert_same_arrays(a: ImageDataset, b: ImageDataset) -> None:
    for key in ARRAY_KEYS:
        x, y = getattr(a, key), getattr(b, key)
        assert (x.dtype, x.shape) == (y.dtype, y.shape), key
        assert x.tobytes() == y.tobytes(), key


def _forbid_decoding(monkeypatch):
    def fail(paths):
        raise AssertionError("decoded although the cache should have answered")

    monkeypatch.setattr(cifar_folder, "_decode_files", fail)


def test_cache_hit_is_identical_and_skips_decoding(tmp_path, monkeypatch):
    root, cache = tmp_path / "tree", tmp_path / "cache"
    make_tree(root)
    first = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    entry = _only_entry(cache)
    assert entry.name.startswith("cifar10-folder-")

    _forbid_decoding(monkeypatch)
    second = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    _assert_same_arrays(first, second)
    for key in ARRAY_KEYS:  # plain, writable arrays, as a decoding load returns them
        array = getattr(second, key)
        assert type(array) is np.ndarray and array.flags.writeable, key
    assert second.class_names == first.class_names and second.source == first.source
    # Another spelling of the same folder is the same cache entry.
    third = load_cifar10(f"folder:{root / '..' / 'tree'}", cache_dir=cache, workers=1)
    assert third.source == first.source
    assert _only_entry(cache) == entry


def test_cache_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(11)
    names = ("äpfel", "b", "c", "d", "e", "f", "g", "h", "i", "zebra crossing")
    ds = ImageDataset(rng.integers(0, 256, (37, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 37).astype(np.int32),
                      rng.integers(0, 256, (11, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 11).astype(np.int32), names, "folder:/somewhere")
    entry = cifar_cache.entry_path(tmp_path / "cache", "folder", "/somewhere", "fingerprint")
    cifar_cache.write_cache(entry, ds)
    assert _only_entry(tmp_path / "cache") == entry
    for key in ARRAY_KEYS:  # each a plain .npy file that numpy reads by itself
        stored = np.load(entry / f"{key}.npy", allow_pickle=False)
        assert stored.dtype == getattr(ds, key).dtype
        np.testing.assert_array_equal(stored, getattr(ds, key))

    back = cifar_cache.read_cache(entry, "another source")
    assert back.class_names == names and back.source == "another source"
    _assert_same_arrays(back, ds)
    back.train_x[0] = 0  # copy-on-write: the file keeps what was written
    _assert_same_arrays(cifar_cache.read_cache(entry, "x"), ds)


def test_default_cache_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_CURRICULUM_CACHE", str(tmp_path / "env-cache"))
    make_tree(tmp_path / "tree", n_train=1, n_test=1)
    load_cifar10(f"folder:{tmp_path / 'tree'}", workers=1)
    assert _only_entry(tmp_path / "env-cache").name.startswith("cifar10-folder-")
    monkeypatch.delenv("JAX_CURRICULUM_CACHE")
    assert cifar10.default_cache_dir() == Path.home() / ".cache" / "jax_curriculum"


def test_editing_the_tree_invalidates_and_replaces_the_entry(tmp_path):
    root, cache = tmp_path / "tree", tmp_path / "cache"
    make_tree(root)
    before = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    old_entry = _only_entry(cache)

    # Rewrite one image in place, same name: only its size/mtime change.
    path = root / "train" / "airplane" / "00.png"
    Image.new("RGB", (32, 32), (9, 8, 7)).save(path)
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    after = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    assert (after.train_x[0] == np.array([9, 8, 7], np.uint8)).all()
    assert not np.array_equal(before.train_x[0], after.train_x[0])
    assert _only_entry(cache) != old_entry  # the stale entry is gone


def _rewrite(entry: Path, key: str, change) -> None:
    """Rewrites ``entry/<key>.npy`` as a valid .npy file holding ``change(array)``."""
    path = entry / f"{key}.npy"
    np.save(path, change(np.load(path)))


def _flip_bytes(path: Path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))


def _damage(entry: Path, case: str, good: ImageDataset) -> None:
    train_x = entry / "train_x.npy"
    if case == "garbage":
        train_x.write_bytes(b"this is not a .npy file")
    elif case == "truncated .npy":
        train_x.write_bytes(train_x.read_bytes()[: train_x.stat().st_size // 2])
    elif case == "one byte short":
        (entry / "test_y.npy").write_bytes((entry / "test_y.npy").read_bytes()[:-1])
    elif case == "empty file":
        (entry / "test_y.npy").write_bytes(b"")
    elif case == "missing array":
        (entry / "train_y.npy").unlink()
    elif case == "missing digest":
        (entry / "sha256.txt").unlink()
    elif case == "other digest":
        (entry / "sha256.txt").write_text("0" * 64 + "\n")
    elif case == "wrong arrays":
        np.save(train_x, np.zeros((3, 8, 8, 3), np.uint8))
    elif case == "flipped train_x bytes":  # 4,096 bytes inside the data, from image 5 on
        start = train_x.read_bytes().find(good.train_x[5].tobytes())
        assert start > 0
        _flip_bytes(train_x, start, 4096)
    elif case == "one flipped byte":  # the last pixel value of the last test image
        _flip_bytes(entry / "test_x.npy", (entry / "test_x.npy").stat().st_size - 1, 1)
    elif case == "label dtype in header":  # int32 labels read back as uint32
        path = entry / "train_y.npy"
        path.write_bytes(path.read_bytes().replace(b"'<i4'", b"'<u4'", 1))
    elif case == "shifted labels":
        for key in ("train_y", "test_y"):
            _rewrite(entry, key, lambda y: ((y + 1) % 10).astype(np.int32))
    elif case == "rows dropped":
        for key in ("train_x", "train_y"):
            _rewrite(entry, key, lambda a: a[:-1])
    else:
        raise AssertionError(case)


# Damage and the words the warning must hold besides the entry's path and "rebuilding".
CACHE_DAMAGE = {
    "garbage": "train_x.npy", "truncated .npy": "train_x.npy", "one byte short": "test_y.npy",
    "empty file": "test_y.npy", "missing array": "train_y.npy is missing",
    "missing digest": "sha256.txt", "other digest": "SHA-256", "wrong arrays": "SHA-256",
    "flipped train_x bytes": "SHA-256", "one flipped byte": "SHA-256",
    "label dtype in header": "SHA-256", "shifted labels": "SHA-256", "rows dropped": "SHA-256",
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, damage, caplog):
    # The last ones are valid .npy files: only the digest written with the arrays tells.
    root, cache = tmp_path / "tree", tmp_path / "cache"
    make_tree(root)
    good = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    entry = _only_entry(cache)
    _damage(entry, damage, good)

    with caplog.at_level("WARNING", logger="data.cifar10"):
        rebuilt = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "data.cifar10"]
    assert str(entry) in warning and "rebuilding" in warning and "\n" not in warning
    assert CACHE_DAMAGE[damage] in warning, warning
    _assert_same_arrays(rebuilt, good)
    # ... and the rewritten entry, in the same place and nothing else, verifies again.
    assert _only_entry(cache) == entry
    caplog.clear()
    with caplog.at_level("WARNING", logger="data.cifar10"):
        _assert_same_arrays(cifar_cache.read_cache(entry, "x"), good)
    assert not caplog.records


def test_old_npz_cache_files_are_ignored_and_the_trees_own_removed(tmp_path, caplog):
    # Version 2 kept an entry as one cifar10-<kind>-<where>-<what>.npz file: never read now; a
    # rebuild deletes the same tree's (as it deletes its stale entries), others stay.
    root, cache = tmp_path / "tree", tmp_path / "cache"
    make_tree(root, n_train=1, n_test=1)
    good = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    entry = _only_entry(cache)
    shutil.rmtree(cache)
    cache.mkdir()
    where = entry.name.split("-")[2]
    same_tree = cache / f"cifar10-folder-{where}-0123456789abcdef.npz"
    other_tree = cache / "cifar10-folder-00000000000000ff-0123456789abcdef.npz"
    for old in (same_tree, other_tree):
        old.write_bytes(b"PK\x03\x04 an old cache file")

    with caplog.at_level("WARNING", logger="data.cifar10"):
        again = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
        hit = load_cifar10(f"folder:{root}", cache_dir=cache, workers=1)
    assert not caplog.records
    _assert_same_arrays(again, good)
    _assert_same_arrays(hit, good)
    assert sorted(p.name for p in cache.iterdir()) == sorted([entry.name, other_tree.name])


def test_an_unwritable_cache_costs_only_a_warning(tmp_path, caplog):
    root, blocker = tmp_path / "tree", tmp_path / "a-file"
    make_tree(root, n_train=1, n_test=1)
    blocker.write_text("not a folder")
    with caplog.at_level("WARNING", logger="data.cifar10"):
        ds = load_cifar10(f"folder:{root}", cache_dir=blocker / "cache", workers=1)
    assert_well_formed(ds, 10, 10)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "data.cifar10"]
    assert warning.startswith("could not write cache entry") and str(blocker) in warning
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "tree"]
