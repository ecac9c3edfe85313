"""The framework axis: which frameworks a --framework value names, and what each backend can run."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jax_models.mlp import MLP
from train.backends import base
from train.errors import UsageError
from train.experiments import cifar, mlp_toy, rnn
from train.precision import TABLE


def test_a_comma_list_runs_in_the_experiments_order():
    assert tuple(base.choose("jax,numpy", ("numpy", "jax"))) == ("numpy", "jax")
    assert tuple(base.choose("both", ("numpy", "jax"), aliases=mlp_toy.ALIASES)) == ("numpy", "jax")
    assert tuple(mlp_toy.frameworks(mlp_toy.ToyConfig())) == ("numpy", "jax")  # the toy's default


def test_all_is_every_installed_framework_the_settings_can_run(monkeypatch):
    assert set(base.choose("all", ("jax",))) | set(base.choose("all").missing) == set(base.FRAMEWORKS)
    monkeypatch.setattr(base, "available", lambda fw: fw != "torch")
    chosen = cifar.frameworks(cifar.cnn_config(framework="all"))
    assert tuple(chosen) == ("jax",) and chosen.missing == ("torch",)  # the CNN has no NumPy model
    assert tuple(rnn.frameworks(rnn.RNNConfig(framework="all"))) == ("jax",)


@pytest.mark.parametrize("value, message", [
    ("tensorflow", "--framework must be one of"),
    ("jax,tensorflow", "--framework must be one of"),
    (",", "--framework must name a framework"),
])
def test_a_bad_framework_is_a_usage_error(value, message):
    with pytest.raises(UsageError, match=message):
        base.choose(value, ("jax",))


def test_an_explicit_framework_that_is_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(base, "available", lambda fw: fw != "torch")
    with pytest.raises(UsageError, match=r"needs PyTorch: pip install"):
        base.choose("jax,torch", ("jax",))


def test_numpy_runs_only_plain_mlps():
    improved = MLP(4, (3,), 2, batch_norm=True, rngs=nnx.Rngs(0))
    recipe = base.Recipe(base.Optimizer("sgd", 0.1), 0, TABLE["fp32"])
    arrays = {"train_x": np.zeros((4, 4), np.float32), "train_y": np.zeros(4, np.int32)}
    with pytest.raises(UsageError, match="only MLPs without batch norm or dropout"):
        base.from_jax("numpy", improved, recipe, arrays)
    plain = MLP(4, (3,), 2, rngs=nnx.Rngs(0))
    backend = base.from_jax("numpy", plain, recipe, {**arrays, "test_x": arrays["train_x"], "test_y": arrays["train_y"]})
    np.testing.assert_array_equal(backend.model.linears[0].params["W"], np.asarray(plain.linears[0].kernel[...]))
    assert backend.platform == "cpu" and backend.param_count == 4 * 3 + 3 + 3 * 2 + 2


ECHO_BACKEND = '''
"""A stand-in framework: the NumPy backend under another name."""
from train.backends import numpy_backend

NAME = "Echo"
MISSING = "Echo is not installed"


def available():
    return True


def from_jax(jax_model, recipe, arrays):
    backend = numpy_backend.from_jax(jax_model, recipe, arrays)
    backend.framework = "echo"
    return backend
'''


def test_a_new_framework_is_one_backend_module_and_one_registry_line(tmp_path, monkeypatch):
    """Registering a module is all an experiment needs: its run folder, metrics and the comparison
    follow. The stand-in computes what NumPy computes, so their metrics are equal exactly."""
    import json

    import train

    (tmp_path / "echo_backend.py").write_text(ECHO_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(base.FRAMEWORKS, "echo", "echo_backend")
    out = tmp_path / "out"
    train.run("mlp-toy", out=out, quick=True, framework="numpy,echo", steps=60)
    rows = {fw: [json.loads(line) for line in (out / "mlp-toy" / f"moons-{fw}-s0" / "metrics.jsonl").open()]
            for fw in ("numpy", "echo")}
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time_s"} for r in rs]  # noqa: E731
    assert len(rows["echo"]) > 0 and strip(rows["echo"]) == strip(rows["numpy"])
    compared = json.loads((out / "mlp-toy" / "moons-compare-s0" / "compare.json").read_text())
    assert [r["framework"] for r in compared["runs"]] == ["numpy", "echo"]
