"""Tests for the data.cifar10 package: the tfds, folder and synthetic sources and the cache.

Everything runs on tiny generated data in tmp_path and takes well under a
second per test, except ``test_shared_copy`` (marked slow), which decodes the
real 60,000-image copy in ``shared/datasets/cifar10-jpg`` and is skipped when
that copy is absent.

The tfds tests need no network and no TensorFlow: ``tiny_tfds_build`` prepares
a real ``array_record`` build of cifar10 from a handful of fake images by
feeding tfds' own cifar10 builder (its download and TensorFlow-based file
reader replaced), so both the real read path and ``tfds.testing.mock_data``
are exercised.  The tfrecord fallback needs TensorFlow and is skipped without
it (its no-TensorFlow error is tested instead).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

import data.cifar10 as cifar10
import data.cifar10.cache as cifar_cache
import data.cifar10.folder as cifar_folder
import data.cifar10.tfds as cifar_tfds
from data.cifar10 import CLASS_NAMES, DataError, ImageDataset, channel_stats, load_cifar10

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpg"
HAS_TF = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(autouse=True)
def _private_default_cache(tmp_path, monkeypatch):
    """Any load that forgets cache_dir still stays out of ~/.cache."""
    monkeypatch.setenv("JAX_CURRICULUM_CACHE", str(tmp_path / "default-cache"))


def random_image(rng: np.random.Generator, size=(32, 32)) -> np.ndarray:
    return rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def make_tree(root: Path, classes=CLASS_NAMES, n_train=2, n_test=1, seed=0) -> dict[str, np.ndarray]:
    """Writes root/{train,test}/<class>/NN.{png,jpg}; returns {relative path: decoded RGB}.

    Even class indices (in the order given) get PNGs, odd ones JPEGs.  For a
    PNG the returned pixels are the generated ones (PNG is lossless, so a
    loader must return exactly these); for a JPEG, what Pillow decodes from
    the written file.
    """
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in (("train", n_train), ("test", n_test)):
        for ci, cls in enumerate(classes):
            class_dir = root / split / cls
            class_dir.mkdir(parents=True)
            for i in range(count):
                ext = "png" if ci % 2 == 0 else "jpg"
                path = class_dir / f"{i:02d}.{ext}"
                pixels = random_image(rng)
                Image.fromarray(pixels).save(path)
                if ext == "jpg":
                    with Image.open(path) as im:
                        pixels = np.asarray(im.convert("RGB"))
                written[f"{split}/{cls}/{path.name}"] = pixels
    return written


def row_of(ds: ImageDataset, root: Path, relpath: str) -> np.ndarray:
    """The row a file lands in: sorted classes, then sorted file names."""
    split, cls, name = relpath.split("/")
    label = ds.class_names.index(cls)
    offset = sum(len(_images(root / split / c)) for c in ds.class_names[:label])
    index = offset + _images(root / split / cls).index(name)
    x, y = (ds.train_x, ds.train_y) if split == "train" else (ds.test_x, ds.test_y)
    assert y[index] == label
    return x[index]


def _images(class_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(class_dir)
                  if not n.startswith(".") and n.lower().endswith((".png", ".jpg", ".jpeg")))


def assert_well_formed(ds: ImageDataset, n_train: int, n_test: int) -> None:
    assert ds.train_x.shape == (n_train, 32, 32, 3) and ds.train_x.dtype == np.uint8
    assert ds.test_x.shape == (n_test, 32, 32, 3) and ds.test_x.dtype == np.uint8
    assert ds.train_y.shape == (n_train,) and ds.train_y.dtype == np.int32
    assert ds.test_y.shape == (n_test,) and ds.test_y.dtype == np.int32
    assert len(ds.class_names) == 10
    for y in (ds.train_y, ds.test_y):
        assert 0 <= y.min() and y.max() < 10


# --------------------------------------------------------------------------
# folder:PATH
# --------------------------------------------------------------------------


def test_folder_labels_follow_sorted_class_order_and_pixels_round_trip(tmp_path):
    # Created in reverse order: labels must still follow sorted names.
    written = make_tree(tmp_path / "tree", classes=CLASS_NAMES[::-1])
    ds = load_cifar10(f"folder:{tmp_path / 'tree'}", cache_dir=tmp_path / "cache", workers=1)

    assert_well_formed(ds, 20, 10)
    assert ds.class_names == CLASS_NAMES
    assert ds.source == f"folder:{(tmp_path / 'tree').resolve()}"
    assert ds.train_y.tolist() == [c for c in range(10) for _ in range(2)]
    assert ds.test_y.tolist() == list(range(10))
    for relpath, pixels in written.items():
        np.testing.assert_array_equal(row_of(ds, tmp_path / "tree", relpath), pixels, err_msg=relpath)


def test_folder_rows_follow_sorted_file_names_and_skip_other_files(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, n_train=1, n_test=1)
    rng = np.random.default_rng(1)
    bird = root / "train" / "bird"
    expected = {}
    for name in ("b.png", "A.PNG", "10.png", "9.jpeg"):  # sorted: 10, 9, A, b
        expected[name] = random_image(rng)
        Image.fromarray(expected[name]).save(bird / name, format="PNG")
    (bird / ".hidden.png").write_bytes(b"not an image")  # hidden: ignored
    (bird / "notes.txt").write_text("ignored")            # not an image extension
    (bird / "sub.png").mkdir()                            # a directory: ignored

    ds = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    assert_well_formed(ds, 10 + 4, 10)
    start = 2  # airplane and automobile come first, one image each
    order = ["00.png", "10.png", "9.jpeg", "A.PNG", "b.png"]
    assert ds.train_y[start:start + 5].tolist() == [2] * 5
    for i, name in enumerate(order[1:], start + 1):
        np.testing.assert_array_equal(ds.train_x[i], expected[name], err_msg=name)


def test_folder_converts_grey_and_rgba_to_rgb(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, n_train=1, n_test=1)
    Image.new("L", (32, 32), 77).save(root / "train" / "airplane" / "00.png")
    Image.new("RGBA", (32, 32), (1, 2, 3, 4)).save(root / "train" / "automobile" / "00.png")
    (root / "train" / "automobile" / "00.jpg").unlink()
    ds = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    assert (ds.train_x[0] == 77).all()
    assert (ds.train_x[1] == np.array([1, 2, 3], np.uint8)).all()


def _save_at(root: Path, relpath: str, image: Image.Image, **save_kwargs) -> None:
    """Replaces the tree's file at ``relpath`` (``make_tree`` layout) with ``image``."""
    for old in (root / relpath).parent.glob(Path(relpath).stem + ".*"):
        old.unlink()
    image.save(root / relpath, **save_kwargs)


def test_folder_scales_16bit_grayscale_png_to_8_bits(tmp_path):
    # Pillow opens a 16-bit grey PNG as mode I;16, whose convert("RGB") clips
    # every value above 255 to white; the right 8-bit value is round(v / 257)
    # (v * 255 / 65535), the same grey in all three channels.
    root = tmp_path / "tree"
    make_tree(root, n_train=1, n_test=1)
    rng = np.random.default_rng(5)
    grey16 = rng.integers(0, 65536, size=(32, 32), dtype=np.uint16)
    grey16[0, :8] = [0, 1, 128, 129, 257, 32767, 65534, 65535]
    _save_at(root, "train/airplane/00.png", Image.fromarray(grey16))
    with Image.open(root / "train/airplane/00.png") as im:  # really a 16-bit file
        assert im.mode.startswith("I") and np.asarray(im).max() > 255

    ds = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    expected = np.rint(grey16 / 257.0).astype(np.uint8)
    assert expected[0, :8].tolist() == [0, 0, 0, 1, 1, 127, 255, 255]
    np.testing.assert_array_equal(ds.train_x[0], np.repeat(expected[..., None], 3, axis=2))
    assert abs(ds.train_x[0].mean() - 127.5) < 5  # not the near-white 254 of clipping


def test_folder_decodes_palette_pngs_quietly_and_exactly(tmp_path):
    # A palette PNG whose transparency is a byte table made Pillow warn on
    # every convert("RGB"); the pixels must be the palette's colours either way.
    root = tmp_path / "tree"
    make_tree(root, n_train=1, n_test=1)
    rng = np.random.default_rng(6)
    palette = rng.integers(0, 256, size=(16, 3), dtype=np.uint8)
    indices = [rng.integers(0, 16, size=(32, 32), dtype=np.uint8) for _ in range(3)]
    for k, (relpath, transparency) in enumerate([("train/airplane/00.png", None),
                                                 ("train/bird/00.png", 3),
                                                 ("train/cat/00.png", bytes(range(0, 256, 16)))]):
        image = Image.fromarray(indices[k], mode="P")
        image.putpalette(palette.ravel().tolist())
        _save_at(root, relpath, image, **({} if transparency is None else {"transparency": transparency}))
        with Image.open(root / relpath) as im:
            assert im.mode == "P" and ("transparency" in im.info) == (transparency is not None)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    for k, row in enumerate([0, 2, 3]):  # airplane, bird, cat: one training image per class
        np.testing.assert_array_equal(ds.train_x[row], palette[indices[k]], err_msg=str(row))


def test_folder_converts_other_modes_to_rgb_against_references(tmp_path):
    # Alpha is ignored (as torchvision's pil_loader and tf.image.decode_png(channels=3)
    # do); 1-bit is 0/255; CMYK is Pillow's (255 - C) * (255 - K) / 255.
    root = tmp_path / "tree"
    make_tree(root, n_train=1, n_test=1)
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)
    la = rng.integers(0, 256, size=(32, 32, 2), dtype=np.uint8)
    bits = rng.integers(0, 2, size=(32, 32)).astype(bool)
    cmyk = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)
    _save_at(root, "train/airplane/00.png", Image.fromarray(rgba, mode="RGBA"))
    _save_at(root, "train/automobile/00.png", Image.fromarray(la, mode="LA"))
    _save_at(root, "train/bird/00.png", Image.fromarray(bits))
    _save_at(root, "train/cat/00.jpg", Image.fromarray(cmyk, mode="CMYK"), quality=95)
    with Image.open(root / "train/cat/00.jpg") as im:
        assert im.mode == "CMYK"
        c, m, y, k = np.moveaxis(np.asarray(im).astype(np.int64), -1, 0)  # what the JPEG holds
    cmyk_reference = np.stack([np.rint((255 - v) * (255 - k) / 255) for v in (c, m, y)], -1)

    ds = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    np.testing.assert_array_equal(ds.train_x[0], rgba[..., :3])
    np.testing.assert_array_equal(ds.train_x[1], np.repeat(la[..., :1], 3, axis=2))
    np.testing.assert_array_equal(ds.train_x[2], np.repeat(bits[..., None], 3, axis=2) * np.uint8(255))
    np.testing.assert_array_equal(ds.train_x[3], cmyk_reference.astype(np.uint8))


def _odd_image(mode: str) -> Image.Image:
    if mode == "F":  # 32-bit float: no defined 8-bit scale
        return Image.fromarray(np.linspace(-1.0, 2.0, 32 * 32, dtype=np.float32).reshape(32, 32))
    if mode == "I":  # 32-bit integers beyond 16 bits
        return Image.fromarray(np.arange(32 * 32, dtype=np.int32).reshape(32, 32) * 1000)
    return Image.new(mode, (32, 32), (50, 0, 0))  # LAB: Pillow has no LAB -> RGB conversion


@pytest.mark.parametrize("mode", ["F", "I", "LAB"])
def test_folder_refuses_image_modes_it_cannot_convert(tmp_path, mode):
    # Pillow opens files by content, so a TIFF named .png is read, in modes
    # whose convert("RGB") clips or garbles silently.
    root = tmp_path / "tree"
    make_tree(root, n_train=1, n_test=1)
    bad = root / "test" / "horse" / "00.png"
    _save_at(root, "test/horse/00.png", _odd_image(mode), format="TIFF")
    with Image.open(bad) as im:
        assert im.mode == mode
    with pytest.raises(DataError) as info:
        load_cifar10(f"folder:{root}", cache_dir=tmp_path / "cache", workers=1)
    message = str(info.value)
    assert str(bad) in message and f"mode {mode}" in message and "\n" not in message


def test_bare_folder_source_uses_data_dir(tmp_path):
    make_tree(tmp_path / "tree", n_train=1, n_test=1)
    ds = load_cifar10("folder", data_dir=tmp_path / "tree", cache_dir=tmp_path / "cache", workers=1)
    assert ds.source == f"folder:{(tmp_path / 'tree').resolve()}"
    with pytest.raises(DataError, match="folder:PATH"):
        load_cifar10("folder", cache_dir=tmp_path / "cache")


def test_parallel_decoding_matches_serial_and_reports_bad_files(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    make_tree(root, n_train=3, n_test=2)
    # Force the process pool even for this tiny tree.
    monkeypatch.setattr(cifar_folder, "_PARALLEL_MIN_FILES", 1)
    serial = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "c1", workers=1)
    parallel = load_cifar10(f"folder:{root}", cache_dir=tmp_path / "c2", workers=2)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(serial, key), getattr(parallel, key))

    bad = root / "test" / "truck" / "01.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=str(bad)):
        load_cifar10(f"folder:{root}", cache_dir=tmp_path / "c3", workers=2)


def break_tree(root: Path, case: str) -> tuple[Path, Path]:
    """Breaks a good tree; returns (path to load, path the error must name)."""
    if case == "missing root":
        return root / "nowhere", root / "nowhere"
    if case == "root is a file":
        (root / "file.txt").write_text("x")
        return root / "file.txt", root / "file.txt"
    if case in ("no train", "no test"):
        shutil.rmtree(root / case.split()[1])
        return root, root
    if case == "nine classes":
        shutil.rmtree(root / "train" / "truck")
        shutil.rmtree(root / "test" / "truck")
        return root, root / "train"
    if case == "eleven classes":
        for split in ("train", "test"):
            (root / split / "zebra").mkdir()
            Image.new("RGB", (32, 32)).save(root / split / "zebra" / "00.png")
        return root, root / "train"
    if case == "classes differ":
        os.rename(root / "test" / "truck", root / "test" / "lorry")
        return root, root / "test"
    if case == "empty class":
        for p in (root / "test" / "cat").iterdir():
            p.unlink()
        (root / "test" / "cat" / "README.txt").write_text("not an image")
        return root, root / "test" / "cat"
    if case == "corrupt image":
        bad = root / "train" / "dog" / "00.jpg"
        bad.write_bytes(b"garbage")
        return root, bad
    if case in ("truncated png", "truncated jpeg"):
        bad = root / "train" / ("bird/01.png" if case.endswith("png") else "automobile/01.jpg")
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
        return root, bad
    if case == "not 32x32":
        bad = root / "test" / "ship" / "00.png"
        Image.new("RGB", (33, 32)).save(bad)
        return root, bad
    raise AssertionError(case)


FOLDER_ERRORS = ["missing root", "root is a file", "no train", "no test", "nine classes",
                 "eleven classes", "classes differ", "empty class", "corrupt image",
                 "truncated png", "truncated jpeg", "not 32x32"]


@pytest.mark.parametrize("case", FOLDER_ERRORS)
def test_folder_errors_name_the_path(tmp_path, case):
    root = tmp_path / "tree"
    make_tree(root, n_train=2, n_test=1)
    source_path, offending = break_tree(root, case)
    with pytest.raises(DataError) as info:
        load_cifar10(f"folder:{source_path}", cache_dir=tmp_path / "cache", workers=1)
    message = str(info.value)
    assert str(offending) in message
    assert "\n" not in message


def test_no_fork_once_jax_is_running(monkeypatch):
    # Forking a process whose JAX backend runs risks a deadlock: use threads then.
    fake_bridge = mock.Mock(_backends={"cpu": object()})
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", fake_bridge)
    executor = cifar_folder._make_executor(2)
    executor.shutdown()
    assert isinstance(executor, ThreadPoolExecutor)
    fake_bridge._backends = {}
    executor = cifar_folder._make_executor(2)
    executor.shutdown()
    assert isinstance(executor, ProcessPoolExecutor) or not sys.platform.startswith("linux")


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


# --------------------------------------------------------------------------
# synthetic and source parsing
# --------------------------------------------------------------------------


def test_synthetic_is_deterministic_balanced_and_learnable():
    ds = load_cifar10("synthetic:1000", seed=3)
    assert_well_formed(ds, 1000, 200)
    assert ds.source == "synthetic:1000" and ds.class_names == CLASS_NAMES
    assert np.bincount(ds.train_y, minlength=10).tolist() == [100] * 10
    again = load_cifar10("synthetic:1000", seed=3)
    np.testing.assert_array_equal(ds.train_x, again.train_x)
    np.testing.assert_array_equal(ds.test_y, again.test_y)
    other = load_cifar10("synthetic:1000", seed=4)
    assert not np.array_equal(ds.train_x, other.train_x)

    # Nearest class mean, fitted on train, scores far above chance (10 %) on test.
    x_train = ds.train_x.reshape(len(ds.train_x), -1).astype(np.float32)
    x_test = ds.test_x.reshape(len(ds.test_x), -1).astype(np.float32)
    means = np.stack([x_train[ds.train_y == c].mean(0) for c in range(10)])
    predictions = ((x_test[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predictions == ds.test_y).mean() > 0.5


def test_synthetic_defaults_and_small_sizes():
    ds = load_cifar10("synthetic")
    assert_well_formed(ds, 2048, 409)
    tiny = load_cifar10("synthetic:7")
    assert len(tiny.train_y) == 7 and len(tiny.test_y) == 10


@pytest.mark.parametrize("source", ["imagenet", "synthetic:abc", "synthetic:0", "synthetic:-5", "synthetic:",
                                    "tfds:somewhere", "", "folder:"])
def test_bad_sources_name_the_source(source, tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar10(source, cache_dir=tmp_path)
    assert repr(source) in str(info.value) or source in str(info.value)


def test_unknown_source_lists_valid_sources():
    with pytest.raises(DataError, match="tfds, folder:PATH.*synthetic"):
        load_cifar10("mnist")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_channel_stats_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    # Channels with different spreads, and more pixels than one internal chunk.
    x = np.clip(rng.normal([60, 128, 200], [10, 40, 30], size=(300, 32, 32, 3)), 0, 255)
    x = np.rint(x).astype(dtype)
    mean, std = channel_stats(x)
    reference = x.reshape(-1, 3).astype(np.float64) / 255.0
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (3,)
    np.testing.assert_allclose(mean, reference.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, reference.std(0), rtol=1e-5)


# --------------------------------------------------------------------------
# tfds
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tfds_build(tmp_path_factory):
    """A genuinely prepared array_record cifar10 build (20 train, 10 test images).

    tfds' own cifar10 builder generates it from fake ``cifar-10-batches-bin``
    files: its download is redirected to them and its TensorFlow-based file
    reader is replaced by one that yields PIL images, which tfds encodes with
    Pillow, so no TensorFlow and no network are involved.

    Returns ``(data_dir, images, labels)``, the generated examples in
    generation order (the build itself stores them shuffled).
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.image_classification import cifar

    base = tmp_path_factory.mktemp("tfds")
    batches = base / "extracted" / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    (batches / "batches.meta.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    labels = (np.arange(30) % 10).astype(np.int32)
    # The official binary layout: 1 label byte, then 3072 bytes of CHW pixels.
    records = np.concatenate([labels[:, None].astype(np.uint8),
                              images.transpose(0, 3, 1, 2).reshape(30, -1)], axis=1)
    for i in range(5):
        records[4 * i:4 * i + 4].tofile(batches / f"data_batch_{i + 1}.bin")
    records[20:].tofile(batches / "test_batch.bin")

    def load_data(path, labels_number=1):
        for row in np.fromfile(path, dtype=np.uint8).reshape(-1, 3073):
            yield [int(row[0])], Image.fromarray(row[1:].reshape(3, 32, 32).transpose(1, 2, 0))

    data_dir = base / "data"
    builder = tfds.builder("cifar10", data_dir=str(data_dir), file_format="array_record")
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract",
                           lambda self, url: str(base / "extracted")), \
            mock.patch.object(cifar, "_load_data", load_data):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
    assert builder.is_prepared()
    return data_dir, images, labels


def _as_multiset(x: np.ndarray, y: np.ndarray) -> list[tuple[int, bytes]]:
    return sorted(zip(y.tolist(), (row.tobytes() for row in x)))


def test_tfds_reads_a_prepared_array_record_build(tiny_tfds_build, tmp_path, monkeypatch):
    data_dir, images, labels = tiny_tfds_build
    tf_was_loaded = "tensorflow" in sys.modules
    ds = load_cifar10("tfds", data_dir=str(data_dir), cache_dir=tmp_path / "cache")

    assert_well_formed(ds, 20, 10)
    assert ds.class_names == CLASS_NAMES
    assert ds.source == f"tfds:{data_dir.resolve()}"
    # Stored as PNG, so every generated example comes back bit for bit.
    assert _as_multiset(ds.train_x, ds.train_y) == _as_multiset(images[:20], labels[:20])
    assert _as_multiset(ds.test_x, ds.test_y) == _as_multiset(images[20:], labels[20:])
    if not tf_was_loaded:
        assert "tensorflow" not in sys.modules  # array_record needs no TensorFlow

    # Second load: from the cache, without touching the build's records.
    monkeypatch.setattr(cifar_tfds, "_read_tfds_data_source", mock.Mock(side_effect=AssertionError))
    again = load_cifar10("tfds", data_dir=str(data_dir), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.train_x, ds.train_x)
    np.testing.assert_array_equal(again.test_y, ds.test_y)


def test_tfds_under_mock_data(tiny_tfds_build, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir, _, _ = tiny_tfds_build
    # USE_FILES: the build's real metadata (splits, label names), fake examples.
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(data_dir)):
        ds = load_cifar10("tfds", data_dir=str(tmp_path / "ignored"), cache_dir=tmp_path / "cache")
    assert_well_formed(ds, 12, 12)
    assert ds.class_names == CLASS_NAMES
    # Fake examples do not match the recorded split sizes, so they are not cached.
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_tfds_unprepared_fails_at_once_without_downloading(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        mock.Mock(side_effect=AssertionError("must never download")))
    data_dir = tmp_path / "empty"
    with pytest.raises(DataError) as info:
        load_cifar10("tfds", data_dir=str(data_dir), cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    for part in (str(data_dir), str(data_dir / "downloads" / "manual"), "cifar-10-binary.tar.gz",
                 "tfds-prepare", "file_format='array_record'", "download_and_prepare()", "folder:PATH"):
        assert part in message, part


def test_tfds_default_data_dir_is_tfds_own(monkeypatch, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds-home"))
    import tensorflow_datasets.core.constants as constants

    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tfds-home"), raising=False)
    with pytest.raises(DataError) as info:
        load_cifar10("tfds", cache_dir=tmp_path / "cache")
    assert str(tmp_path / "tfds-home") in str(info.value)


def _no_random_access(*args, **kwargs):
    raise NotImplementedError("prepared as tfrecord")


@pytest.mark.skipif(not HAS_TF, reason="reading a tfrecord build needs TensorFlow")
def test_tfds_tfrecord_fallback_under_mock_data(tiny_tfds_build, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir, _, _ = tiny_tfds_build
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(data_dir), as_data_source_fn=_no_random_access):
        ds = load_cifar10("tfds", data_dir=str(data_dir), cache_dir=tmp_path / "cache")
    assert_well_formed(ds, 5, 5)


@pytest.mark.skipif(HAS_TF, reason="checks the error shown when TensorFlow is missing")
def test_tfds_tfrecord_without_tensorflow_is_a_clear_error(tiny_tfds_build, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir, _, _ = tiny_tfds_build
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_FILES,
                                data_dir=str(data_dir), as_data_source_fn=_no_random_access):
        with pytest.raises(DataError, match="tfrecord.*TensorFlow"):
            load_cifar10("tfds", data_dir=str(data_dir), cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------
# the real copy in shared/datasets (skipped when absent)
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cifar10-cache")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason=f"{SHARED_CIFAR} is absent")
def test_shared_copy(shared_cache, monkeypatch):
    start = time.perf_counter()
    ds = load_cifar10(f"folder:{SHARED_CIFAR}", cache_dir=shared_cache)
    first = time.perf_counter() - start
    # A second load must come from the cache: decoding is made to fail. (Its time is printed,
    # not asserted: speed is measured by `python -m data.cifar10 folder:PATH`, not by tests.)
    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached load decoded images")

    monkeypatch.setattr(cifar_folder, "_decode_images", no_decoding)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        again = load_cifar10(f"folder:{SHARED_CIFAR}", cache_dir=shared_cache)
        seconds.append(time.perf_counter() - start)
    print(f"shared CIFAR-10 copy: first load {first:.2f} s, cache hits {seconds[0]:.2f} s, {seconds[1]:.2f} s")

    assert_well_formed(ds, 50_000, 10_000)
    assert ds.class_names == CLASS_NAMES
    assert np.bincount(ds.train_y).tolist() == [5000] * 10
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
    mean, std = channel_stats(ds.train_x)
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=0.02)
    np.testing.assert_allclose(std, [0.247, 0.243, 0.261], atol=0.02)

    for relpath in ("train/cat/0000.jpg", "train/airplane/4999.jpg", "test/truck/0999.jpg"):
        with Image.open(SHARED_CIFAR / relpath) as im:
            expected = np.asarray(im.convert("RGB"))
        np.testing.assert_array_equal(row_of(ds, SHARED_CIFAR, relpath), expected, err_msg=relpath)
    # Rows are grouped by class, files in sorted order: train/cat/0000.jpg is row 3 * 5000.
    with Image.open(SHARED_CIFAR / "train/cat/0000.jpg") as im:
        np.testing.assert_array_equal(ds.train_x[15_000], np.asarray(im.convert("RGB")))
    assert ds.train_y[15_000] == CLASS_NAMES.index("cat")
    for key in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(ds, key), getattr(again, key))
