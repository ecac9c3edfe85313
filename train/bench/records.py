"""What the benchmark measures and names: frameworks, modes; one :class:`Record` a cell (the suites:
:mod:`train.bench.suites`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from train.precision import NAMES as PRECISIONS

FRAMEWORKS = ("numpy", "jax", "torch")
JAX_MODES = ("step-loop", "fused", "pmap")
TORCH_MODES = ("eager", "compiled")
# The fused period compiled with GPU options (train.bench.jax_variants): asked for by name only.
JAX_VARIANT_MODES = ("fused-cb-off", "fused-cb-loop", "fused-cb-unroll")
DEFAULT_MODES = ("step", *JAX_MODES, *TORCH_MODES, "whole-run")  # "step": NumPy's plain loop
MODES = (*DEFAULT_MODES, *JAX_VARIANT_MODES)


@dataclass
class Record:
    """One measurement: a (suite, framework, mode, precision, devices) cell of the table."""

    suite: str
    framework: str                   # numpy | jax | torch
    # step | step-loop | fused | pmap | eager | compiled | whole-run[-cold|-warm]
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
    head = f"{r.suite:9s} {r.framework:5s} {r.mode:14s} {r.precision:4s} d{r.devices}"
    if r.skipped:
        return f"{head}  skipped: {r.note}"
    comp = f"compile {r.compile_s:.3f} s" if r.compile_s is not None else ""
    tot = f"  total {r.total_s:.3f} s" if r.total_s is not None else ""
    return f"{head}  {fmt_time(r.step_s)}/step  {r.examples_per_s:,.0f} ex/s  {comp}{tot}"
