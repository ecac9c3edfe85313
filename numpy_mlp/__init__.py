"""A multilayer perceptron in plain NumPy with hand-derived gradients (no autodiff)."""

from numpy_mlp.layers import CrossEntropy, Linear, ReLU, SoftMax
from numpy_mlp.model import MLP, parse_hidden

__all__ = ["MLP", "Linear", "ReLU", "SoftMax", "CrossEntropy", "parse_hidden"]
