"""One backend per framework (JAX, NumPy, PyTorch) behind the interface in ``base``.

Importing the package plugs JAX's tools into the engine (``train.engine.tools``): the compile log
counts the XLA programs this process builds (a NumPy or PyTorch run's initial weights come from
JAX), ``--profile`` and ``--dump-hlo`` write JAX's profiles and HLO, and checkpoints are orbax's.
"""

from train.backends.jax_compile_log import CompileLog
from train.backends.jax_profiling import RunArtifacts
from train.backends import base
from train.engine import results, tools


def _checkpointer(directory):
    from train.backends.checkpoint import Checkpointer  # orbax is slow to import: only runs that save load it
    return Checkpointer(directory)


tools.plug_in(compile_log=CompileLog, artifacts=RunArtifacts, checkpointer=_checkpointer)
for _framework in base.FRAMEWORKS:
    results.add_packages(*getattr(base.module(_framework), "PACKAGES", ()))
