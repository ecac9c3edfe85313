"""Per-channel statistics of a training set, for input normalisation."""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 18  # pixels per chunk: bounds the temporaries to a few MB


def channel_stats(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of ``train_x / 255``.

    Args:
        train_x: ``[..., C]`` images, typically uint8 ``[N, 32, 32, 3]``.

    Returns:
        ``(mean, std)``, each float32 ``[C]``, for normalising inputs as
        ``(x / 255 - mean) / std``.
    """
    x = np.asarray(train_x)
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"channel_stats needs a non-empty [..., C] array, got shape {x.shape}")
    pixels = x.reshape(-1, x.shape[-1])
    if x.dtype == np.uint8:
        total, total_sq = _uint8_moments(pixels)
    else:
        total = np.zeros(pixels.shape[1], np.float64)
        total_sq = np.zeros(pixels.shape[1], np.float64)
        for start in range(0, len(pixels), _CHUNK):
            chunk = pixels[start:start + _CHUNK].astype(np.float64)
            total += chunk.sum(axis=0)
            total_sq += np.square(chunk).sum(axis=0)
    mean = total / len(pixels)
    var = np.maximum(total_sq / len(pixels) - mean**2, 0.0)
    return (mean / 255.0).astype(np.float32), (np.sqrt(var) / 255.0).astype(np.float32)


def _uint8_moments(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sums of values and squares of uint8 ``[P, C]`` pixels, exactly.

    Per-channel value histograms, then moments from them: exact, and much faster than
    float64 sums.
    """
    hist = np.zeros((pixels.shape[1], 256), np.int64)
    for start in range(0, len(pixels), _CHUNK):
        channels = np.ascontiguousarray(pixels[start:start + _CHUNK].T)  # bincount wants 1-D rows
        for c, values in enumerate(channels):
            hist[c] += np.bincount(values, minlength=256)
    levels = np.arange(256, dtype=np.float64)
    return hist @ levels, hist @ levels**2
