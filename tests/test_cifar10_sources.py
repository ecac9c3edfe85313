"""The synthetic and tfds sources of data.cifar10, and the source dispatch.

The tfds tests need no network and no TensorFlow: ``tiny_tfds_build`` prepares a real ``array_record``
build of cifar10 from a handful of fake images by feeding tfds' own cifar10 builder (its download and
TensorFlow-based file reader replaced), so both the real read path and ``tfds.testing.mock_data`` are
exercised. The tfrecord fallback needs TensorFlow and is skipped without it (its no-TensorFlow error
is tested instead)."""

from __future__ import annotations

import sys
from unittest import mock

import numpy as np
import pytest
from PIL import Image

import data.cifar10.tfds as cifar_tfds
from data.cifar10 import CLASS_NAMES, DataError, channel_stats, load_cifar10

from tolerances import U32, U64, sum_rel_error
from cifar10_trees import HAS_TF, assert_well_formed, private_default_cache  # noqa: F401 - private_default_cache is an autouse fixture

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
    # Sums in float64 (n u64 ~ 3e-11, negligible), then one float32 rounding of the result: u32, and twice
    # that for the reference's own. The variance E[x^2] - mean^2 cancels: its float64 error is multiplied
    # by the condition E[x^2] / var.
    n = len(reference)
    np.testing.assert_allclose(mean, reference.mean(0), rtol=2 * U32 + sum_rel_error(n, U64))
    cond = (reference ** 2).mean(0) / reference.var(0)
    np.testing.assert_allclose(std, reference.std(0), rtol=2 * U32 + cond.max() * sum_rel_error(n, U64))


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
