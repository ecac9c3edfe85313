"""Moved to :mod:`train.compile_log` (the training loop counts compilations too); kept for imports."""

from train.compile_log import CompileLog

__all__ = ["CompileLog"]
