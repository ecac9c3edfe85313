"""What the benchmark measures and names: frameworks, modes; one :class:`Record` a cell (the suites:
:mod:`train.bench.suites`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from train.precision import NAMES as PRECISIONS

FRAMEWORKS = ("numpy", "jax", "torch")
JAX_MODES = ("step-loop", "fused", "pmap")
# The data-parallel modes, one per path of the trainer (train.backends.jax_parallel), each timed on
# every --devices count: pmap (the default), shard_map, and jit, the global program partitioned by
# XLA over a 1-D mesh (on one device too; "fused" is plain single-device jit, no mesh).
PARALLEL_MODES = ("pmap", "shard_map", "jit")


@dataclass(frozen=True)
class TorchCandidate:
    """One way to run a PyTorch twin: its forward's ``torch.compile`` mode (None: eager), whether its
    optimizer step is compiled too, the RNN as ``nn.RNN`` rather than the loop over time steps."""

    compile_mode: str | None = None
    compile_optimizer: bool = False
    nn_rnn: bool = False             # only for suites whose twin is an RNN (Suite.torch_nn_rnn)
    cuda_only: bool = False


# The PyTorch candidates, each a mode of the table; "best PyTorch" is the fastest that ran.
TORCH_CANDIDATES = {
    "eager": TorchCandidate(),
    "compile": TorchCandidate("default"),
    "compile-max-autotune": TorchCandidate("max-autotune-no-cudagraphs"),
    "compile-cudagraphs": TorchCandidate("reduce-overhead", cuda_only=True),
    "compile+opt": TorchCandidate("default", compile_optimizer=True),
    "nn.RNN-eager": TorchCandidate(nn_rnn=True),
    "nn.RNN-compile": TorchCandidate("default", nn_rnn=True),
    "nn.RNN-compile+opt": TorchCandidate("default", compile_optimizer=True, nn_rnn=True),
}
TORCH_MODES = tuple(TORCH_CANDIDATES)
# Earlier runs' (and command lines') name for a forward under torch.compile in the device's mode:
# reduce-overhead on CUDA, default on CPU.
LEGACY_MODES = {"compiled": ("compile", "compile-cudagraphs")}
# The fused period compiled with GPU options (train.bench.jax_variants): asked for by name only.
JAX_VARIANT_MODES = ("fused-cb-off", "fused-cb-loop", "fused-cb-unroll")
DEFAULT_MODES = ("step", *JAX_MODES, *TORCH_MODES, "whole-run")  # "step": NumPy's plain loop
MODES = (*DEFAULT_MODES, *JAX_VARIANT_MODES, *PARALLEL_MODES[1:])


def canonical_mode(mode: str, settings: dict | None = None) -> str:
    """A record's mode in today's names: an earlier bench.json's "compiled" is the candidate of its
    ``compile_mode`` setting."""
    if mode not in LEGACY_MODES:
        return mode
    cm = (settings or {}).get("compile_mode")
    return next((m for m, c in TORCH_CANDIDATES.items()
                 if c.compile_mode == cm and not c.compile_optimizer and not c.nn_rnn), "compile")


@dataclass
class Record:
    """One measurement: a (suite, framework, mode, precision, devices) cell of the table."""

    suite: str
    framework: str                   # numpy | jax | torch
    # step | step-loop | fused | pmap | shard_map | jit | a TORCH_CANDIDATES name | whole-run[-cold|-warm]
    mode: str
    precision: str = "fp32"
    devices: int = 1
    batch_size: int = 0
    # JAX: the trainer's trace + lower + compile; torch.compile: first call; eager: first step
    compile_s: float | None = None
    step_s: float | None = None      # median over windows of (window time / steps per window)
    examples_per_s: float | None = None
    steps_per_window: int = 0
    windows: int = 0
    window_step_s: list[float] = field(default_factory=list)  # every window's per-step time
    total_s: float | None = None     # whole-run records: build + steps + evaluations + compiling
    peak_memory_bytes: int | None = None  # device.memory_stats() peak (process-wide) where reported
    skipped: bool = False
    note: str = ""
    # speed-relevant choices: layout, fusion, TF32, compile mode...
    settings: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # The spread of the timed windows' per-step times: first and third quartiles (step_s: median).
    step_s_q1: float | None = None
    step_s_q3: float | None = None
    # Work per training step (XLA's cost analysis; PyTorch and NumPy: the JAX program's count) and
    # what the step achieved against the device's peak (peak_flops_per_s: all devices used).
    flops_per_step: float | None = None
    bytes_accessed_per_step: float | None = None
    flops_per_s: float | None = None
    peak_flops_per_s: float | None = None
    utilisation: float | None = None
    # XLA's memory analysis of the compiled program (cost.memory_of), bytes
    memory: dict | None = None


def skipped(suite: str, framework: str, mode: str, note: str, **kw) -> Record:
    return Record(suite, framework, mode, skipped=True, note=note, **kw)


def run_name(r: Record) -> str:
    """``cnn-cifar-fused-bf16-b256`` (``-d4`` after the mode on several devices): the --dump-hlo and
    --profile name."""
    devices = f"-d{r.devices}" if r.devices > 1 else ""
    return f"{r.suite}-{r.mode}{devices}-{r.precision}-b{r.batch_size}"


def error_text(e: BaseException) -> str:
    """``TypeName: first line of the message``, at most 300 characters (for a skipped record)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def line(r: Record) -> str:
    """One record as one console line."""
    head = f"{r.suite:9s} {r.framework:5s} {r.mode:20s} {r.precision:4s} d{r.devices}"
    if r.skipped:
        return f"{head}  skipped: {r.note}"
    comp = f"compile {r.compile_s:.3f} s" if r.compile_s is not None else ""
    tot = f"  total {r.total_s:.3f} s" if r.total_s is not None else ""
    return f"{head}  {fmt_time(r.step_s)}/step  {r.examples_per_s:,.0f} ex/s  {comp}{tot}"
