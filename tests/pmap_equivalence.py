"""Run by tests/test_data_parallel.py in a subprocess with N simulated CPU devices.

For each model, trains a few fused steps on 1 device (plain jit) and on N devices
(each data-parallel path: pmap, shard_map, jit) from the same initial state on the
same global batches, and prints, as JSON, the largest absolute difference from
1 device (and between the paths) in parameters, model state (batch-norm
statistics) and evaluation metrics.
"""

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jax_models.cnn import BLOCKS, CNN
from jax_models.mlp import MLP
from jax_models.rnn import RNNClassifier
from train.backends.jax_backend import JaxBackend
from train.engine.schedule import epoch_batches
from train.runtime import enable_compilation_cache
from train.backends.jax_parallel import PARALLEL, model_axis

PATHS = PARALLEL


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def train(make_model, tx, arrays, batch, steps, devs, path, periods, preprocess, fuse):
    model = make_model(model_axis(path))
    be = JaxBackend(model, tx, preprocess, arrays, seed=0, devices=devs, eval_batch=8, fuse=fuse, parallel=path)
    evs = []
    for p in range(periods):
        be.train(epoch_batches(len(arrays["train_y"]), batch, p, 0)[:steps])
        evs.append(be.evaluate())
    return be.host_state(), evs, be.last_predictions


def diffs(one, other):
    (s1, e1, p1), (sn, en, pn) = one, other
    return {"params": max_diff(s1.params, sn.params),
            "model_state": max_diff(s1.model_state, sn.model_state) if jax.tree.leaves(s1.model_state) else 0.0,
            "eval": max(abs(a[s][k] - b[s][k]) for a, b in zip(e1, en) for s in a for k in ("loss", "accuracy")),
            "predictions_equal": bool(all(np.array_equal(p1[s], pn[s]) for s in p1)), "steps": int(sn.step)}


def case(name, make_model, tx, arrays, batch, steps, n_dev, periods=2, preprocess=lambda x: x, fuse_n=True):
    """{path: differences from one device}, and each path's from pmap's under "<path>-vs-pmap"."""
    run = functools.partial(train, make_model, tx, arrays, batch, steps, periods=periods, preprocess=preprocess)
    one = run(jax.local_devices()[:1], None, fuse=True)
    runs = {path: run(jax.local_devices()[:n_dev], path, fuse=fuse_n) for path in PATHS}
    out = {path: diffs(one, r) for path, r in runs.items()}
    out.update({f"{path}-vs-pmap": diffs(runs["pmap"], r) for path, r in runs.items() if path != "pmap"})
    return out


def main(n_dev):
    assert jax.local_device_count() >= n_dev, jax.local_devices()
    enable_compilation_cache()  # as every training command does: a rerun loads its programs
    rng = np.random.default_rng(0)
    report = {}
    xt = rng.normal(size=(64, 2)).astype(np.float32)
    yt = (xt[:, 0] * xt[:, 1] > 0).astype(np.int32)
    report["mlp-toy"] = case("mlp-toy", lambda ax: MLP(2, (20,), 2, rngs=nnx.Rngs(0)), optax.sgd(0.1),
                             {"train_x": xt, "train_y": yt, "test_x": xt[:20], "test_y": yt[:20]}, 16, 3, n_dev)
    xc = rng.integers(0, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    yc = rng.integers(0, 10, size=64).astype(np.int32)
    cifar = {"train_x": xc, "train_y": yc, "test_x": xc[:12], "test_y": yc[:12]}
    to_float = lambda x: x.astype(jnp.float32) / 255.0  # noqa: E731
    # SGD rather than AdamW for the batch-norm models: the bias before a batch norm gets a gradient that is
    # zero up to float noise, and Adam rescales that noise to a full learning-rate step, in either run.
    report["mlp-improved"] = case(
        "mlp-improved", lambda ax: MLP(192, (32, 16), 10, batch_norm=True, dropout=0.25, axis_name=ax, rngs=nnx.Rngs(0)),
        optax.sgd(0.05, momentum=0.9), cifar, 16, 3, n_dev, preprocess=to_float)
    # 16x16 inputs and 8 examples per device: with fewer, channels after the last ReLU are all zero in a
    # batch, batch norm divides by sqrt(eps) and float rounding gets amplified by ~300x.
    xc16 = rng.integers(0, 256, size=(64, 16, 16, 3), dtype=np.uint8)
    # The unfused path (one compiled call per step, used for convnets on CPU) against the fused one.
    report["mlp-improved-unfused"] = case(
        "mlp-improved-unfused", lambda ax: MLP(192, (32, 16), 10, batch_norm=True, axis_name=ax, rngs=nnx.Rngs(0)),
        optax.sgd(0.05, momentum=0.9), cifar, 16, 3, n_dev, preprocess=to_float, fuse_n=False)
    # The seed's block structure at an eighth of its width: what is checked does not depend on width.
    narrow = tuple(tuple(c // 8 for c in block) for block in BLOCKS)
    report["cnn"] = case("cnn", lambda ax: CNN(axis_name=ax, blocks=narrow, rngs=nnx.Rngs(0)), optax.sgd(0.01),
                         {"train_x": xc16, "train_y": yc, "test_x": xc16[:12], "test_y": yc[:12]}, 32, 2, n_dev,
                         periods=1, preprocess=to_float)
    xr = rng.integers(0, 10, size=(64, 7), dtype=np.uint8)
    yr = xr[:, 0].astype(np.int32)
    report["rnn"] = case("rnn", lambda ax: RNNClassifier(hidden=32, rngs=nnx.Rngs(0)),
                         optax.chain(optax.clip_by_global_norm(10.0), optax.rmsprop(1e-3, decay=0.99, eps_in_sqrt=False)),
                         {"train_x": xr, "train_y": yr, "test_x": xr[:10], "test_y": yr[:10]}, 16, 3, n_dev)
    print(json.dumps(report))


if __name__ == "__main__":
    main(int(sys.argv[1]))
