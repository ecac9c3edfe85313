"""``python -m train bench``: training-step speed of every model in NumPy, JAX and PyTorch.

Suites are the experiments, built by their own hooks (:mod:`train.bench.suites`), and what is
timed is what training runs. Compile time and the steady state are measured apart, runners timed
interleaved (:mod:`train.bench.timing`). Methods, precisions and outputs: docs/benchmarks.md.
"""

from train.bench.cli import add_parser, cmd

__all__ = ["add_parser", "cmd"]
