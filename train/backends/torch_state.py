"""A PyTorch run's training state as a pytree of NumPy arrays (what the orbax checkpoints hold), and back.

``state_dict()``s mix tensors, Python numbers, tuples, ``None`` and strings under int and str keys.
:func:`to_tree` keeps the numbers (a tensor as an array of its dtype, a Python float as float64, an
int as int64, a bool as bool: every one exact) under string keys; ``None`` and strings are settings
that the freshly built object already has. :func:`from_tree` puts the numbers back into a fresh
object's ``state_dict()``, each as the type it had there, so a round trip is bit for bit.

A torch optimizer creates its per-parameter state at its first step, so a fresh optimizer's
``state`` is empty: :func:`optimizer_from_tree` takes that part from the checkpoint alone (every
value there is a tensor), and a torch run restores without a template (see ``Checkpointer``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _kept(v) -> bool:
    return v is not None and not isinstance(v, str) and not (isinstance(v, (Mapping, list, tuple)) and not to_tree(v))


def to_tree(obj):
    """Numbers, tensors, and dicts/lists/tuples of them -> nested string-keyed dicts of NumPy arrays."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy().copy()  # a copy: training goes on updating the tensor in place
    if isinstance(obj, (bool, np.bool_)):
        return np.asarray(obj, np.bool_)
    if isinstance(obj, (int, np.integer)):
        return np.asarray(obj, np.int64)
    if isinstance(obj, (float, np.floating)):
        return np.asarray(obj, np.float64)
    items = obj.items() if isinstance(obj, Mapping) else enumerate(obj)
    return {str(k): to_tree(v) for k, v in items if _kept(v)}


def from_tree(like, tree):
    """``like`` (a fresh ``state_dict()``) with every value :func:`to_tree` keeps replaced by ``tree``'s."""
    import torch

    if isinstance(like, torch.Tensor):
        return torch.from_numpy(np.array(tree)).to(like.device)
    if isinstance(like, bool):
        return bool(tree)
    if isinstance(like, int):
        return int(tree)
    if isinstance(like, float):
        return float(tree)
    if isinstance(like, Mapping):
        return {k: from_tree(v, tree[str(k)]) if _kept(v) else v for k, v in like.items()}
    return type(like)(from_tree(v, tree[str(i)]) if _kept(v) else v for i, v in enumerate(like))


def optimizer_to_tree(opt) -> dict:
    import torch

    sd = opt.state_dict()
    for per_param in sd["state"].values():
        for name, v in per_param.items():
            if not isinstance(v, torch.Tensor):  # from_tree could not tell its type back
                raise TypeError(f"{type(opt).__name__} state {name!r} is a {type(v).__name__}, not a tensor")
    state = to_tree(sd["state"])  # empty for an optimizer without per-parameter state (plain SGD)
    return {**({"state": state} if state else {}), "param_groups": to_tree(sd["param_groups"])}


def optimizer_from_tree(opt, tree: Mapping) -> dict:
    """The state_dict to load into ``opt``: its per-parameter state from ``tree`` alone (see the module)."""
    import torch

    fresh = opt.state_dict()
    state = {int(k): {name: torch.from_numpy(np.array(v)) for name, v in per_param.items()}
             for k, per_param in tree.get("state", {}).items()}
    return {"state": state, "param_groups": from_tree(fresh["param_groups"], tree["param_groups"])}
