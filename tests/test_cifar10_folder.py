"""The image-folder source of data.cifar10 (tiny generated trees in tmp_path), and the real shared copy
(``test_shared_copy``, marked slow: it decodes all 60,000 images; skipped when the copy is absent)."""

from __future__ import annotations

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

import data.cifar10.folder as cifar_folder
from data.cifar10 import CLASS_NAMES, DataError, channel_stats, load_cifar10

from cifar10_trees import SHARED_CIFAR, assert_well_formed, make_tree, private_default_cache, random_image, row_of  # noqa: F401 - private_default_cache is an autouse fixture

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
# the real copy in shared/datasets (skipped when absent)
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cifar10-cache")


@pytest.mark.slow
@pytest.mark.full  # decodes all 60,000 images of the real copy: `make test-all` (CI)
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
    # Statistical, not rounding: the published figures of the original PNG set; the JPEG copy's lossy
    # compression moves a channel's mean and spread by far less than 0.02, a wrong channel order by 0.04.
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
