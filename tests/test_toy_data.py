import numpy as np
import pytest

from tolerances import U32, sum_rel_error
from data.toy import DATASETS, make_toy_data


@pytest.mark.parametrize("name", DATASETS)
def test_shapes_split_and_determinism(name):
    a = make_toy_data(name, n_samples=500, test_fraction=0.2, seed=3)
    b = make_toy_data(name, n_samples=500, test_fraction=0.2, seed=3)
    c = make_toy_data(name, n_samples=500, test_fraction=0.2, seed=4)
    assert a.train_x.shape == (400, 2) and a.test_x.shape == (100, 2)
    assert a.train_x.dtype == np.float32 and a.train_y.dtype == np.int32
    assert set(np.unique(a.train_y)) == {0, 1}
    assert abs(a.train_y.mean() - 0.5) < 0.01  # stratified
    np.testing.assert_array_equal(a.train_x, b.train_x)
    assert not np.array_equal(a.train_x, c.train_x)
    # Standardised, then stored in float32: each value rounded (u32), the 400-term mean and variance summed in
    # float32 in numpy's order (sum_rel_error), relative to the values' magnitudes (|x| <= ~3); the std's
    # +1e-8 guard shifts it by 1e-8 / std.
    n, mag = len(a.train_x), float(np.abs(a.train_x).max())
    np.testing.assert_allclose(a.train_x.mean(0), 0, atol=sum_rel_error(n + 1, U32) * mag)
    np.testing.assert_allclose(a.train_x.std(0), 1, atol=sum_rel_error(n + 2, U32) * mag ** 2 + 1e-7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy data set"):
        make_toy_data("spirals")
    with pytest.raises(ValueError, match="test-fraction"):
        make_toy_data("moons", test_fraction=1.5)
    with pytest.raises(ValueError, match="samples"):
        make_toy_data("moons", n_samples=3)
