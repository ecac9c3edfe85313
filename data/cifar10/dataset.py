"""What every CIFAR-10 source returns: :class:`ImageDataset`, and the data set's constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: CIFAR-10's classes in its official label order (which is also alphabetical).
CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = len(CLASS_NAMES)


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
