"""Tests for the palindrome data set (data/palindrome.py)."""

import numpy as np
import pytest

from data.palindrome import SequenceDataset, make_palindrome_data, num_palindromes


def _all_x(ds: SequenceDataset) -> np.ndarray:
    return np.concatenate([ds.train_x, ds.test_x])


def _all_y(ds: SequenceDataset) -> np.ndarray:
    return np.concatenate([ds.train_y, ds.test_y])


def _row_set(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.ascontiguousarray(x)}


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 19, 36, 37, 50])
def test_samples_are_palindromes_with_label_last_digit(T):
    ds = make_palindrome_data(T, data_size=2_000, seed=1)
    x, y = _all_x(ds), _all_y(ds)
    assert ds.input_length == T
    assert x.dtype == np.uint8 and y.dtype == np.int32
    assert x.shape[1] == T and x.shape[0] == y.shape[0]
    assert x.min() >= 0 and x.max() <= 9 and y.min() >= 0 and y.max() <= 9
    full = np.concatenate([x.astype(np.int32), y[:, None]], axis=1)
    np.testing.assert_array_equal(full, full[:, ::-1])
    np.testing.assert_array_equal(x[:, 0], y)


@pytest.mark.parametrize("T", [3, 5, 19, 40])
def test_rows_distinct_and_splits_disjoint(T):
    ds = make_palindrome_data(T, data_size=5_000, seed=2)
    n = ds.train_x.shape[0] + ds.test_x.shape[0]
    assert len(_row_set(_all_x(ds))) == n  # x determines the palindrome
    assert not (_row_set(ds.train_x) & _row_set(ds.test_x))


def test_sizes_and_capping():
    assert num_palindromes(1) == 10
    assert num_palindromes(5) == 1_000
    assert num_palindromes(4) == 1_000
    assert num_palindromes(30) == 10**16
    assert num_palindromes(60) == 10**31

    ds = make_palindrome_data(5)  # default data_size=100_000 capped at 1,000
    assert ds.train_x.shape == (800, 5) and ds.test_x.shape == (200, 5)
    assert ds.train_y.shape == (800,) and ds.test_y.shape == (200,)
    # The whole space is drawn, so every palindrome occurs exactly once.
    assert len(_row_set(_all_x(ds))) == 1_000

    ds = make_palindrome_data(1)
    assert ds.train_x.shape == (8, 1) and ds.test_x.shape == (2, 1)
    np.testing.assert_array_equal(np.sort(_all_y(ds)), np.arange(10))

    ds = make_palindrome_data(3, data_size=10**6)  # 100 exist
    assert ds.train_x.shape[0] + ds.test_x.shape[0] == 100

    ds = make_palindrome_data(10, data_size=1_000, portion_train=0.7)
    assert ds.train_x.shape == (700, 10) and ds.test_x.shape == (300, 10)


def test_both_splits_nonempty_for_extreme_portions():
    ds = make_palindrome_data(4, data_size=2, portion_train=0.01)
    assert ds.train_x.shape[0] == 1 and ds.test_x.shape[0] == 1
    ds = make_palindrome_data(4, data_size=2, portion_train=0.99)
    assert ds.train_x.shape[0] == 1 and ds.test_x.shape[0] == 1


@pytest.mark.parametrize("T", [5, 12, 40])
def test_deterministic_for_seed_and_seeds_differ(T):
    a = make_palindrome_data(T, data_size=1_000, seed=7)
    b = make_palindrome_data(T, data_size=1_000, seed=7)
    c = make_palindrome_data(T, data_size=1_000, seed=8)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.train_x, c.train_x)


def test_default_size_large_T():
    # Not timed here (see the report); exercising both generation paths at the
    # default size keeps a regression to per-sample Python loops visible.
    for T in (19, 30, 60):
        ds = make_palindrome_data(T)
        assert ds.train_x.shape == (80_000, T) and ds.test_x.shape == (20_000, T)
        assert ds.train_y.shape == (80_000,) and ds.test_y.shape == (20_000,)
        np.testing.assert_array_equal(ds.train_x[:, 0], ds.train_y)


def test_labels_roughly_uniform():
    y = _all_y(make_palindrome_data(19, data_size=20_000))
    counts = np.bincount(y, minlength=10)
    assert counts.min() > 1_700 and counts.max() < 2_300


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_length=0),
        dict(input_length=-3),
        dict(input_length=2.5),
        dict(input_length=5, data_size=1),
        dict(input_length=5, portion_train=0.0),
        dict(input_length=5, portion_train=1.0),
        dict(input_length=5, portion_train=1.5),
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        make_palindrome_data(**kwargs)
    with pytest.raises(ValueError):
        num_palindromes(0)
