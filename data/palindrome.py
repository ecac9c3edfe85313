"""Palindrome data set for the RNN part (Part 3) of the assignment.

A sample is a palindrome of ``T + 1`` decimal digits (``T = input_length``).
The model sees its first ``T`` digits and must predict the last one, which by
symmetry equals the first digit, so solving the task requires carrying
information across the whole sequence: exactly what exposes vanishing
gradients in a vanilla RNN.

Leading zeros are allowed: a palindrome here is any digit string equal to its
reverse.  Such a string is fully determined by its first ``h = ceil((T+1)/2)``
digits (its "half"), so there are ``10**h`` of them.  The data set holds
``data_size`` *distinct* palindromes, drawn uniformly without replacement
(capped at ``10**h``), shuffled and split into train/test.  Because every
palindrome is drawn at most once, no sample can appear in both splits.

Generation is vectorised and never materialises the whole space:

* ``h <= 18`` (``T <= 35``): the half is an integer below ``10**h <= 10**18``,
  which fits in int64, and ``Generator.choice(..., replace=False)`` samples
  without replacement in O(n) (Floyd's algorithm when ``n`` is small relative
  to the space, a permutation otherwise).  This also covers tiny spaces that
  are sampled in full, where rejection sampling would be a coupon collector.
* ``h > 18``: the space no longer fits in int64 but is so large (>= 1e19)
  that i.i.d. digit rows almost never collide; rows are de-duplicated with a
  byte-view ``np.unique`` and topped up until ``n`` distinct rows exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SequenceDataset", "num_palindromes", "make_palindrome_data"]

# Largest half length whose space 10**h still fits in int64 (10**18 < 2**63).
_MAX_INT64_HALF = 18


@dataclass(frozen=True)
class SequenceDataset:
    """Train/test split of digit sequences with integer class labels.

    Attributes:
        train_x: uint8 ``[N, T]``, digits 0..9.
        train_y: int32 ``[N]``, labels 0..9.
        test_x: uint8 ``[M, T]``, digits 0..9.
        test_y: int32 ``[M]``, labels 0..9.
        input_length: ``T``, the number of input digits per sample.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    input_length: int


def _half_length(input_length: int) -> int:
    """Digits that determine a palindrome of ``input_length + 1`` digits."""
    return (input_length + 2) // 2  # == ceil((T + 1) / 2) without floats


def num_palindromes(input_length: int) -> int:
    """Number of distinct ``(input_length + 1)``-digit palindromes, ``10**ceil((T+1)/2)``.

    Returned as an exact Python int (it exceeds int64 for ``T >= 36``).
    """
    if input_length < 1:
        raise ValueError(f"input_length must be >= 1, got {input_length}")
    return 10 ** _half_length(input_length)


def _distinct_halves(rng: np.random.Generator, half_len: int, n: int) -> np.ndarray:
    """Draw ``n`` distinct digit rows of length ``half_len`` uniformly without replacement.

    Returns uint8 ``[n, half_len]`` in random order.  Requires ``n <= 10**half_len``.
    """
    if half_len <= _MAX_INT64_HALF:
        codes = rng.choice(10**half_len, size=n, replace=False, shuffle=True)
        # Most significant digit first; the order of digits is irrelevant to
        # uniformity but makes the rows read like the integers they encode.
        powers = 10 ** np.arange(half_len - 1, -1, -1, dtype=np.int64)
        return ((codes[:, None] // powers) % 10).astype(np.uint8)

    # Space >= 1e19: collisions among ~1e5 i.i.d. rows have probability
    # ~n^2 / 2e19, so one round almost always suffices.  The loop runs over
    # rounds, not samples.  Keeping rows in order of first occurrence of an
    # i.i.d. uniform stream yields a uniform draw without replacement.
    rows = np.empty((0, half_len), dtype=np.uint8)
    while rows.shape[0] < n:
        extra = rng.integers(0, 10, size=(n - rows.shape[0], half_len), dtype=np.uint8)
        rows = np.ascontiguousarray(np.concatenate([rows, extra], axis=0))
        # A void view compares whole rows as byte strings; much faster than
        # np.unique(axis=0), which builds a structured dtype per call.
        keys = rows.view(np.dtype((np.void, half_len))).ravel()
        _, first = np.unique(keys, return_index=True)
        rows = rows[np.sort(first)]
    return rows


def make_palindrome_data(
    input_length: int,
    data_size: int = 100_000,
    portion_train: float = 0.8,
    seed: int = 0,
) -> SequenceDataset:
    """Build a train/test split of distinct palindromes.

    Args:
        input_length: ``T`` >= 1; the palindromes have ``T + 1`` digits.
        data_size: number of distinct palindromes (>= 2), capped at
            ``num_palindromes(T)`` (e.g. only 1,000 exist for ``T = 5``).
        portion_train: fraction in (0, 1) of samples used for training; the
            first ``round(portion_train * n)`` shuffled samples, clamped so
            that both splits are non-empty.
        seed: seed of the NumPy generator; equal arguments give equal data.

    Returns:
        A ``SequenceDataset`` with ``x`` = first ``T`` digits (uint8
        ``[*, T]``) and ``y`` = last digit (int32 ``[*]``).
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

    # Mirror: digit i from the end equals digit i of the half.  For T + 1
    # digits only floor((T+1)/2) digits are mirrored; an odd length keeps its
    # middle digit once.
    full = np.concatenate([half, half[:, : input_length + 1 - half_len][:, ::-1]], axis=1)
    x = np.ascontiguousarray(full[:, :input_length])
    y = full[:, input_length].astype(np.int32)

    # choice() already returns a random order, but the large-space path keeps
    # first-occurrence order; an explicit shuffle makes the split independent
    # of how the halves were drawn.
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]

    n_train = min(max(int(round(portion_train * n)), 1), n - 1)
    return SequenceDataset(
        train_x=x[:n_train],
        train_y=y[:n_train],
        test_x=x[n_train:],
        test_y=y[n_train:],
        input_length=input_length,
    )
