"""The CNN matches the spec: activation shape after each block, parameter count, pooling semantics."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jax_models.cnn import CNN, max_pool_3x3_s2


def test_block_shapes_and_param_count():
    model = CNN(rngs=nnx.Rngs(0))
    feats = model.features(jnp.zeros((2, 32, 32, 3)))
    assert [f.shape for f in feats] == [(2, 16, 16, 64), (2, 8, 8, 128), (2, 4, 4, 256), (2, 2, 2, 512), (2, 1, 1, 512)]
    assert model(jnp.zeros((2, 32, 32, 3))).shape == (2, 10)
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    expected = sum(9 * i * o + o + 2 * o for i, o in convs) + 512 * 10 + 10  # conv w+b, BN scale+bias, head
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == expected == 9_231_114
    stats = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert stats == 2 * sum(o for _, o in convs)


def test_max_pool_matches_pytorch_semantics():
    # MaxPool2d(3, stride=2, padding=1) pads with -inf: output (i, j) is the max over rows 2i-1..2i+1.
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 1)).astype(np.float32)
    y = np.asarray(max_pool_3x3_s2(jnp.asarray(x)))
    ref = np.zeros((1, 2, 2, 1), np.float32)
    for i in range(2):
        for j in range(2):
            ref[0, i, j, 0] = x[0, max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2, 0].max()
    np.testing.assert_array_equal(y, ref)
    neg = -np.abs(x) - 1  # all negative: zero padding would wrongly win
    assert (np.asarray(max_pool_3x3_s2(jnp.asarray(neg))) < 0).all()


def test_train_mode_updates_batch_stats_eval_mode_does_not():
    model = CNN(rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    model(x, train=False)
    same = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(same)))
    model(x, train=True)
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_bf16_compute_keeps_fp32_params():
    model = CNN(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert model.features(jnp.zeros((1, 32, 32, 3)))[0].dtype == jnp.bfloat16
