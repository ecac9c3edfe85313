"""JAX behind the backend interface: an NNX model trained by the compiled Trainer (jit or pmap)."""

from __future__ import annotations

import contextlib
import functools
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from train.backends.base import Optimizer, Recipe
from train.backends.jax_trainer import Trainer, create_state, eval_plan, matmul_scope, param_count
from train.errors import UsageError
from train.precision import Precision

NAME = "JAX"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint")
MISSING = "JAX is not installed"  # the project's own framework: always there


def available() -> bool:
    return True


def x64_scope(dtype: str | None):
    """JAX's 64-bit mode for a float64 run, and for that run only: its arrays and programs, and no
    other run's (JAX keys its compiled programs by this mode too, so none is shared across it)."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def clip_grad_norm(max_norm: float):
    """PyTorch's ``clip_grad_norm_`` as an optax transformation: ``g * min(1, max_norm / (||g|| + 1e-6))``.

    One scalar factor multiplies every gradient (optax's ``clip_by_global_norm`` divides by the norm):
    under ``jax.vmap`` XLA rewrites ``g / broadcast(norm)`` into ``g * broadcast(1 / norm)`` for a
    per-seed norm but not for a scalar one, so dividing would make side-by-side seeds differ from
    seeds trained alone in the last bit whenever clipping acts.
    """

    def update(updates, state, params=None):
        norm = optax.tree.norm(updates)
        scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def step_lr(lr: float, gamma: float, every: int):
    """PyTorch's StepLR by optimizer step: ``lr * gamma ** (step // every)``, in the parameters'
    precision (``optax.exponential_decay`` computes in float32 even in a float64 run)."""
    return lambda count: lr * gamma ** (count // every)


def optax_optimizer(opt: Optimizer, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """``opt`` in optax's spelling (see :class:`~train.backends.base.Optimizer`)."""
    if opt.kind == "sgd":
        return optax.sgd(opt.lr)
    if opt.kind == "adamw":
        return optax.adamw(opt.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=opt.weight_decay)
    if opt.kind == "rmsprop":
        rate = step_lr(opt.lr, opt.lr_gamma, opt.lr_step * steps_per_epoch) if opt.lr_step else opt.lr
        return optax.chain(clip_grad_norm(opt.clip_norm),
                           optax.rmsprop(rate, decay=0.99, eps=1e-8, eps_in_sqrt=False))
    raise UsageError(f"no optax spelling of optimizer {opt.kind!r}")


def norm_constants(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel float32 (mean, 1 / std) that :func:`normalize` takes."""
    return np.asarray(mean, np.float32), np.asarray(1.0 / np.asarray(std), np.float32)


def normalize(x, mean, inv_std):
    """uint8 NHWC -> float32 normalised with per-channel ``mean`` and ``inv_std`` (:func:`norm_constants`)."""
    return (x.astype(jnp.float32) * (1.0 / 255.0) - mean) * inv_std


def normalizer(mean: np.ndarray, std: np.ndarray):
    """uint8 NHWC -> float32 normalised with the training set's per-channel mean and std."""

    mean, inv_std = (jnp.asarray(a) for a in norm_constants(mean, std))
    return lambda x: normalize(x, mean, inv_std)


def fuses_on_cpu(model_type: type) -> bool:
    """Whether a period of ``model_type`` runs as one fused lax.scan on a CPU: XLA:CPU runs convolutions
    far faster one step per call than inside a scan, so a convnet trains step by step there."""
    from jax_models.cnn import CNN
    return not issubclass(model_type, CNN)


def fuses(jax_model, devices) -> bool:
    """Whether ``jax_model``'s periods run as one fused lax.scan on ``devices`` (None: the first local device)."""
    platform = (devices[0] if devices else jax.local_devices()[0]).platform
    return platform != "cpu" or fuses_on_cpu(type(jax_model))


def from_jax(jax_model, recipe: Recipe, arrays: Mapping[str, np.ndarray]) -> JaxBackend:
    """The JAX backend of ``recipe`` for ``jax_model`` itself."""
    pre = normalizer(*recipe.normalize) if recipe.normalize is not None else (lambda x: x)
    kw = {"eval_batch": recipe.eval_batch} if recipe.eval_batch is not None else {}
    options = {**(TINY_OPTIONS if recipe.tiny else {}), **model_compiler_options(type(jax_model), recipe.devices)}
    return JaxBackend(jax_model, optax_optimizer(recipe.optimizer, recipe.steps_per_epoch), pre, arrays,
                      seed=recipe.seed, devices=recipe.devices, eval_splits=recipe.eval_splits,
                      compiler_options=options or None, fuse=fuses(jax_model, recipe.devices),
                      precision=recipe.precision, parallel=recipe.parallel, **kw)


# A tiny model's run is mostly compiling its one period program: LLVM at -O0 compiles it faster.
TINY_OPTIONS = {"xla_backend_optimization_level": 0}


def model_compiler_options(model_type: type, devices=None) -> dict:
    """The XLA options ``model_type`` asks for on ``devices``' platform (its ``XLA_CPU_OPTIONS`` on a
    CPU), or none where this jaxlib does not know them."""
    device = devices[0] if devices else jax.local_devices()[0]
    options = getattr(model_type, "XLA_CPU_OPTIONS", None) if device.platform == "cpu" else None
    return dict(options) if options and _known(tuple(sorted(options.items())), device) else {}


@functools.cache
def _known(options: tuple, device) -> bool:
    """Whether XLA accepts ``options`` (an option of another jaxlib version fails the compile)."""
    x = jax.ShapeDtypeStruct((), np.float32, sharding=jax.sharding.SingleDeviceSharding(device))
    try:
        jax.jit(lambda v: v + 1).lower(x).compile(dict(options))
        return True
    except Exception:  # noqa: BLE001 - XLA reports an unknown option or value as a generic error
        return False


def grad_norms(graphdef, host_state, x, y, precision: Precision | None) -> list[float]:
    """An RNN's mean_b ||dL/dh_t||, t = 1..T, at the state ``host_state``, traced at ``precision``."""
    from flax import nnx

    from jax_models.rnn import grad_norms_wrt_hidden
    model = nnx.merge(graphdef, host_state.params, host_state.model_state)
    with matmul_scope(precision):
        return [float(v) for v in np.asarray(grad_norms_wrt_hidden(model, x, y))]


def jax_device_info() -> dict[str, Any]:
    """config.json's ``devices`` for a run on JAX's devices (all of this job's)."""
    devs = jax.devices()
    return {"platform": devs[0].platform, "device_kind": devs[0].device_kind,
            "local_device_count": jax.local_device_count(), "device_count": len(devs),
            "process_count": jax.process_count(), "host": platform.node()}


class JaxBackend:
    framework = "jax"
    compiler = "xla"

    def __init__(self, model, tx, preprocess, arrays: Mapping[str, np.ndarray], *, seed: int,
                 devices: Sequence | None = None, eval_batch: int = 1024,
                 eval_splits: Sequence[str] = ("train", "test"), compiler_options: dict | None = None,
                 fuse: bool = True, precision: Precision | None = None, parallel: str | None = None) -> None:
        graphdef, state = create_state(model, tx, seed)
        self.graphdef = graphdef
        self.precision = precision
        self.param_count = param_count(state.params)
        self.trainer = Trainer(graphdef, tx, preprocess, devices=devices, compiler_options=compiler_options, fuse=fuse,
                               precision=precision, parallel=parallel)
        self.state = self.trainer.replicate(state)
        self.data = self.trainer.replicate(dict(arrays))
        shards = self.trainer.shards
        self.evals = {s: eval_plan(len(arrays[f"{s}_y"]), eval_batch, shards) for s in eval_splits}
        self.last_predictions: dict[str, np.ndarray] = {}  # {split: labels predicted at the last evaluation}

    @property
    def compile_time_s(self) -> float:
        return self.trainer.compile_time_s

    @property
    def devices(self) -> int:
        return self.trainer.shards

    @property
    def platform(self) -> str:
        return self.trainer.devices[0].platform

    def device_info(self) -> dict:
        return jax_device_info()

    def train(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        self.state, step_metrics = self.trainer.train(self.state, self.data, idx)
        return self.trainer.host_step_metrics(step_metrics)

    def evaluate(self) -> dict[str, dict]:
        out = self.trainer.evaluate(self.state, self.data, self.evals)
        ev, self.last_predictions = self.trainer.host_evals(out, self.evals, order=self.evals)
        return ev

    def host_state(self):
        return self.trainer.unreplicate(self.state)

    def load_state(self, host_state) -> None:
        self.state = self.trainer.replicate(host_state)

    @property
    def global_state(self) -> bool:
        """Whether the state is one global array per leaf (shard_map, jit): a checkpoint then saves and
        restores it where it is (Checkpointer.save_sharded), on every process."""
        return self.trainer.path in ("shard_map", "jit")

    def device_state(self):
        return self.state

    def load_device_state(self, state) -> None:
        self.state = state

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        st = self.host_state()
        with matmul_scope(self.precision):
            logits, _ = self.trainer.fns.apply(st.params, st.model_state, x, train=False)
            return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))

    def grad_norms(self, x: np.ndarray, y: np.ndarray, run: int = 0) -> list[float]:
        """An RNN's mean_b ||dL/dh_t||, t = 1..T, now (``run``: see the multi-seed backend)."""
        return grad_norms(self.graphdef, self.host_state(), x, y, self.precision)
