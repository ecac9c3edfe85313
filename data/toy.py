"""Two-class 2-D toy data sets from scikit-learn: moons, circles, blobs.

The original leaves sample count, noise and split unspecified; the defaults
here (1,000 samples, 80/20 split, noise 0.2 for moons, 0.1 with factor 0.5 for
circles, two blobs with std 1.0) are common choices and every one is a flag.
Features are standardised with the training set's mean and std so the same
learning rate suits all three sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.errors import DataError

DATASETS = ("moons", "circles", "blobs")
DEFAULT_NOISE = {"moons": 0.2, "circles": 0.1, "blobs": 1.0}


@dataclass(frozen=True)
class ToyDataset:
    name: str
    train_x: np.ndarray  # float32 [N, 2]
    train_y: np.ndarray  # int32 [N]
    test_x: np.ndarray   # float32 [M, 2]
    test_y: np.ndarray   # int32 [M]
    mean: np.ndarray     # float32 [2], subtracted from both splits
    std: np.ndarray      # float32 [2]


def make_toy_data(name: str, *, n_samples: int = 1000, noise: float | None = None,
                  test_fraction: float = 0.2, seed: int = 0, standardize: bool = True) -> ToyDataset:
    """Sample ``name`` with scikit-learn and split it, stratified, deterministically for ``seed``.

    ``noise`` is the moons/circles noise, or the blobs' cluster std; None picks the
    documented default for the set.
    """
    from sklearn import datasets as skd  # scikit-learn is slow to import; only the toy sets need it
    from sklearn.model_selection import train_test_split

    if name not in DATASETS:
        raise DataError(f"unknown toy data set {name!r}; choose one of {', '.join(DATASETS)}")
    if n_samples < 10:
        raise DataError(f"--samples must be at least 10, got {n_samples}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    noise = DEFAULT_NOISE[name] if noise is None else float(noise)
    if noise < 0:
        raise DataError(f"--noise must be >= 0, got {noise}")
    if name == "moons":
        x, y = skd.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    elif name == "circles":
        x, y = skd.make_circles(n_samples=n_samples, noise=noise, factor=0.5, random_state=seed)
    else:
        x, y = skd.make_blobs(n_samples=n_samples, centers=2, cluster_std=noise, random_state=seed)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    if standardize:
        mean, std = xtr.mean(axis=0), xtr.std(axis=0) + 1e-8
    else:
        mean, std = np.zeros(2), np.ones(2)
    f32 = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return ToyDataset(name, f32(xtr), ytr.astype(np.int32), f32(xte), yte.astype(np.int32),
                      mean.astype(np.float32), std.astype(np.float32))
