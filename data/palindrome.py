"""Palindrome data set for the RNN part (Part 3) of the assignment.

A sample is a palindrome of ``T + 1`` digits (leading zeros allowed); the model sees the first
``T`` and predicts the last, which equals the first, so it must carry information across the
whole sequence. Palindromes are distinct, so no sample is in both splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SequenceDataset", "num_palindromes", "make_palindrome_data"]

# Largest half length whose space 10**h still fits in int64 (10**18 < 2**63).
_MAX_INT64_HALF = 18


@dataclass(frozen=True)
class SequenceDataset:
    """Digits uint8 ``[N, T]`` / ``[M, T]`` with int32 labels ``[N]`` / ``[M]``; ``input_length`` is ``T``."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    input_length: int


def _half_length(input_length: int) -> int:
    """Digits that determine a palindrome of ``input_length + 1`` digits."""
    return (input_length + 2) // 2  # == ceil((T + 1) / 2) without floats


def num_palindromes(input_length: int) -> int:
    """``10**ceil((T+1)/2)`` distinct palindromes, a Python int as it exceeds int64 for ``T >= 36``."""
    if input_length < 1:
        raise ValueError(f"input_length must be >= 1, got {input_length}")
    return 10 ** _half_length(input_length)


def _distinct_halves(rng: np.random.Generator, half_len: int, n: int) -> np.ndarray:
    """``n <= 10**half_len`` distinct uniform digit rows, uint8 ``[n, half_len]``, without enumerating the space."""
    if half_len <= _MAX_INT64_HALF:
        codes = rng.choice(10**half_len, size=n, replace=False, shuffle=True)
        powers = 10 ** np.arange(half_len - 1, -1, -1, dtype=np.int64)
        return ((codes[:, None] // powers) % 10).astype(np.uint8)

    # Beyond int64 the space is >= 1e19, so i.i.d. rows rarely collide: de-duplicate and top up.
    # First-occurrence order of an i.i.d. uniform stream is a uniform draw without replacement.
    rows = np.empty((0, half_len), dtype=np.uint8)
    while rows.shape[0] < n:
        extra = rng.integers(0, 10, size=(n - rows.shape[0], half_len), dtype=np.uint8)
        rows = np.ascontiguousarray(np.concatenate([rows, extra], axis=0))
        # A void view compares whole rows as byte strings, avoiding np.unique(axis=0)'s structured dtype.
        keys = rows.view(np.dtype((np.void, half_len))).ravel()
        _, first = np.unique(keys, return_index=True)
        rows = rows[np.sort(first)]
    return rows


def split_sizes(input_length: int, data_size: int, portion_train: float = 0.8) -> tuple[int, int]:
    """(n_train, n_test) of :func:`make_palindrome_data` with these arguments, without drawing the data."""
    n = min(int(data_size), num_palindromes(int(input_length)))
    n_train = min(max(int(round(portion_train * n)), 1), n - 1)
    return n_train, n - n_train


def make_palindrome_data(
    input_length: int,
    data_size: int = 100_000,
    portion_train: float = 0.8,
    seed: int = 0,
) -> SequenceDataset:
    """Train/test split of ``data_size`` distinct palindromes, capped at ``num_palindromes(T)``.

    Both splits are kept non-empty; equal arguments give equal data.
    """
    if isinstance(input_length, bool) or not isinstance(input_length, (int, np.integer)) or input_length < 1:
        raise ValueError(f"input_length must be an integer >= 1, got {input_length!r}")
    if isinstance(data_size, bool) or not isinstance(data_size, (int, np.integer)) or data_size < 2:
        raise ValueError(f"data_size must be an integer >= 2, got {data_size!r}")
    if not (0.0 < float(portion_train) < 1.0):
        raise ValueError(f"portion_train must be in (0, 1), got {portion_train!r}")

    input_length = int(input_length)
    half_len = _half_length(input_length)
    n = min(int(data_size), num_palindromes(input_length))

    rng = np.random.default_rng(seed)
    half = _distinct_halves(rng, half_len, n)

    # Mirror the half; an odd length keeps its middle digit once.
    full = np.concatenate([half, half[:, : input_length + 1 - half_len][:, ::-1]], axis=1)
    x = np.ascontiguousarray(full[:, :input_length])
    y = full[:, input_length].astype(np.int32)

    # Shuffle so the split does not depend on which path drew the halves.
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]

    n_train = split_sizes(input_length, n, portion_train)[0]
    return SequenceDataset(
        train_x=x[:n_train],
        train_y=y[:n_train],
        test_x=x[n_train:],
        test_y=y[n_train:],
        input_length=input_length,
    )
