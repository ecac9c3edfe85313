"""What the CIFAR-10 data tests share: image trees written to tmp_path, and checks of a loaded set."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.cifar10 import CLASS_NAMES, ImageDataset

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared/datasets/cifar10-jpg"
HAS_TF = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(autouse=True)
def private_default_cache(tmp_path, monkeypatch):
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
    offset = sum(len(_image_files(root / split / c)) for c in ds.class_names[:label])
    index = offset + _image_files(root / split / cls).index(name)
    x, y = (ds.train_x, ds.train_y) if split == "train" else (ds.test_x, ds.test_y)
    assert y[index] == label
    return x[index]


def _image_files(class_dir: Path) -> list[str]:
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
