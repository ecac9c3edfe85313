"""The ``synthetic`` and ``synthetic:N`` sources: a learnable, CIFAR-shaped stand-in.

N (default 2048) random training images and ``max(N // 5, 10)`` test images, deterministic for
the seed, labels balanced.  Every class has its own mean colour and low-frequency pattern under
Gaussian noise, so a model can learn it (well above the 10 % chance level): meant for smoke
tests and benchmarks that must not depend on a real copy.
"""

from __future__ import annotations

import numpy as np

from data.cifar10.dataset import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES, ImageDataset
from data.errors import DataError

DEFAULT_SYNTHETIC_SIZE = 2048
_CHUNK = 4096  # images drawn at a time: bounds the float32 temporary


def parse_synthetic_size(source: str, arg: str | None) -> int:
    """N of ``synthetic:N`` (``arg``), the default for a bare ``synthetic`` (``None``)."""
    if arg is None:
        return DEFAULT_SYNTHETIC_SIZE
    try:
        n = int(arg)
    except ValueError:
        n = 0
    if n < 1:
        raise DataError(f"data source {source!r}: N in synthetic:N must be a positive integer")
    return n


def load_synthetic(n: int, seed: int) -> ImageDataset:
    if seed < 0:
        raise DataError(f"data source 'synthetic:{n}' needs a seed >= 0, got {seed}")
    prototypes = _class_prototypes()

    def make(count: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.int32)
        images = np.empty((count, *IMAGE_SHAPE), np.uint8)
        for start in range(0, count, _CHUNK):
            y = labels[start:start + _CHUNK]
            noise = rng.normal(0.0, 40.0, size=(len(y), *IMAGE_SHAPE)).astype(np.float32)
            pixels = np.clip(np.rint(prototypes[y] + noise), 0, 255)
            images[start:start + _CHUNK] = pixels.astype(np.uint8)
        return images, labels

    train_x, train_y = make(n, 0)
    test_x, test_y = make(max(n // 5, NUM_CLASSES), 1)
    return ImageDataset(train_x, train_y, test_x, test_y, CLASS_NAMES, f"synthetic:{n}")


def _class_prototypes() -> np.ndarray:
    """float32 ``[10, 32, 32, 3]``: each class's mean colour plus its coarse pattern.

    Fixed (not seeded) so that every seed describes the same task; only the labels and the
    noise depend on the seed.
    """
    rng = np.random.default_rng(20240601)
    colours = rng.uniform(48.0, 208.0, size=(NUM_CLASSES, 1, 1, 3))
    # A 4x4 grid upsampled to 32x32: a low-frequency pattern a CNN can pick up.
    coarse = rng.normal(0.0, 28.0, size=(NUM_CLASSES, 4, 4, 3))
    patterns = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    return (colours + patterns).astype(np.float32)
