"""``python -m train bench``: training-step speed of every model in NumPy, JAX and PyTorch.

The suites are the experiments' names (``mlp-toy``, ``mlp-cifar``, ``cnn-cifar``,
``rnn-palindrome``), each built by its experiment's own hooks (:mod:`train.bench.suites`). For each
suite and framework the benchmark measures, separately, the **compile** (or
first-call) time and the **steady state**: the median over repeated timed windows, after warm-up,
of (window time / steps in the window), with the device synchronised inside each window. All
runners of a suite are prepared (and compiled) first, then timed interleaved, round by round, and
ratios are medians over rounds of paired window ratios (:mod:`train.bench.timing`).

What is timed is what training runs: the JAX rows are the project's ``Trainer`` (``step-loop``:
one compiled step per call; ``fused``: K steps in one ``lax.scan``; ``pmap``: the data-parallel
path on 1..N devices) with each experiment's model, optimizer and initial state
(:mod:`train.bench.jax_runner`); NumPy is the hand-written MLP under ``NumpyBackend``; PyTorch (an
optional extra) is the experiments' ``TorchBackend`` and its own ``train`` step, eagerly and with
its forward pass under ``torch.compile`` (:mod:`train.bench.torch_runner`). The toy suite also times the *whole* 1,500-step run in fresh
processes (:mod:`train.bench.whole_run`).

Precisions (``--precision``, :mod:`train.precision`'s table): ``fp32`` is full fp32 (JAX compiles
under matmul precision "highest"; PyTorch with TF32 off), ``tf32`` is fp32 storage with TF32
matmuls and convolutions (XLA's GPU default; PyTorch with TF32 on), ``bf16`` is bf16 compute (bf16
JAX models; PyTorch bf16 autocast); ``auto`` means what it means for the experiments (bf16 on a
GPU, fp32 on CPU). On a CPU, tf32 computes what fp32 does.

``--profile DIR`` traces one extra window of each timed JAX runner (``--profile-only`` picks
which); ``--dump-hlo DIR`` writes each compiled JAX program's optimised HLO; both are named
``<suite>-<mode>-<precision>-b<batch>``. ``--batch-sizes`` runs suites at several batch sizes, and
``batches`` in ``bench.json`` gives each configuration's throughput at the recipe batch and at its
best batch.

Each record also explains itself (:mod:`train.bench.cost`, :mod:`train.bench.explain`): FLOPs and
bytes per step from XLA's cost analysis, achieved FLOP/s and utilisation against the device's
peak (a data-sheet table, or a matmul measured in the run on CPU), XLA's memory analysis, the
trace / lower / compile breakdown, and the interquartile range of its windows; ratios carry the
range of their per-round ratios. Several batch sizes or device counts also give curves
(:mod:`train.bench.curves`; pmap scaling, strong and weak, :mod:`train.bench.scaling`).

Output under ``<out>/bench/``: ``bench.json`` (``machine``, ``versions``, ``settings``,
``records``, ``ratios``, ``batches``, ``checks``, ``curves``), ``bench.md`` (the tables, also
printed), ``bench.png`` (speed relative to NumPy on CPU, to PyTorch eager on GPU), and
``batch_curve.png`` / ``scaling_curve.png`` when measured. Simulated devices on CPU: ``--devices``
beyond the local count runs the pmap records in a child process that has them.
"""

from train.bench.cli import add_parser, cmd

__all__ = ["add_parser", "cmd"]
