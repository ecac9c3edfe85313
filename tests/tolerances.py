"""Where the tests' numerical bounds come from, written once.

Two kinds of bound, and nothing else: an error analysis (unit roundoff times a condition number, a
reduction length or a step count), or a multiple of a noise floor measured in the same test (the same
computation run again with every input moved by one ulp: what rounding alone does to the quantity).
"""

from __future__ import annotations

import numpy as np

# Unit roundoff u = eps / 2: a correctly rounded operation's relative error is at most u.
U32 = float(np.finfo(np.float32).eps) / 2  # 5.96e-8
U64 = float(np.finfo(np.float64).eps) / 2  # 1.11e-16
# GPUs would compute float32 matmuls in TF32 (u = 2^-11), far above U32: tests/conftest.py turns it off,
# so these bounds hold there too. A GPU's atomics sum in a run-dependent order: bounds for sums in any
# order (sum_rel_error) cover that.
U_BF16 = 2.0 ** -9  # bfloat16: 8 significant bits

# A measured floor times this: the quantity compared is a maximum over many entries (weights, steps),
# whose ratio to the floor's maximum stays within a few units; 10 leaves room for another summation order
# (another CPU's vector width, a GPU's kernels) without letting a real change (>= 100x the floor) through.
# run_bound's default margin for two implementations whose kernels differ, for the same reason.
FLOOR_MULTIPLE = 10.0


def sum_rel_error(n: int, u: float) -> float:
    """Relative error bound gamma_n = n u / (1 - n u) of a sum (or dot product) of n terms in any order,
    relative to the sum of the terms' magnitudes (Higham, Accuracy and Stability, 3.1)."""
    assert n * u < 1
    return n * u / (1 - n * u)


def adam_step_ratio(t: int, b1: float = 0.9, b2: float = 0.999) -> float:
    """The largest |m_hat| / sqrt(v_hat) Adam can reach at step t, over every gradient sequence.

    m_hat = sum_k a_k g_k and v_hat = sum_k c_k g_k^2 with a_k = (1 - b1) b1^(t-k) / (1 - b1^t) and
    c_k = (1 - b2) b2^(t-k) / (1 - b2^t); Cauchy-Schwarz gives |m_hat| <= sqrt(sum a_k^2 / c_k) sqrt(v_hat).
    Adam's step is lr times this at most, whatever the gradient: noise included.
    """
    k = np.arange(1, t + 1)
    a = (1 - b1) * b1 ** (t - k) / (1 - b1 ** t)
    c = (1 - b2) * b2 ** (t - k) / (1 - b2 ** t)
    return float(np.sqrt(np.sum(a * a / c)))


def adam_drift_bound(lr: float, steps: int, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0,
                     max_abs_weight: float = 1.0) -> float:
    """How far AdamW can move one weight of magnitude <= max_abs_weight in ``steps`` steps, whatever the
    gradients: the sum of lr x adam_step_ratio, plus the decoupled decay's lr x weight_decay x |w| a step."""
    return lr * sum(adam_step_ratio(t, b1, b2) + weight_decay * max_abs_weight for t in range(1, steps + 1))


def nudge(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every entry moved one ulp up or down at random, in its own dtype: an input that differs from ``a``
    by what one rounding does, for measuring a computation's noise floor."""
    a = np.asarray(a)
    direction = np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(a.dtype)
    return np.nextafter(a, direction)


def run_bound(u: float, n: int, steps: int = 1, scale: float = 1.0, margin: float = FLOOR_MULTIPLE) -> float:
    """A gap two implementations of the same run may show from rounding alone, times ``margin`` (1 where the
    two differ only in the order of the sums counted, FLOOR_MULTIPLE where their kernels differ too).

    Each step's longest reduction sums n terms of magnitude <= scale, in an order of each
    implementation's own (sum_rel_error); the steps' errors add (these runs are short, with learning
    rates small enough that a step does not amplify an earlier error: |1 - lr H| <= 1).
    """
    return margin * steps * sum_rel_error(n, u) * scale
