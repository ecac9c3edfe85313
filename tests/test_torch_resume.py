"""PyTorch and NumPy runs keep the results contract: exact resume, the run's own platform.

The SIGKILL and SIGTERM tests of ``rnn-palindrome --framework torch`` are in test_resilience.py and
test_run_integrity.py, beside the JAX ones. Here: runs that die mid-way (in this process) and resume,
one per framework and optimizer, and summary.json's platform.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import killed_in_period
from test_resilience import rows_without_time, strip
from train.backends.numpy_backend import NumpyBackend
from train.engine.driver import Run, drive
from train.backends.torch_backend import TorchBackend

TOY = ["mlp-toy", "--steps", "150", "--samples", "400", "--checkpoint-every", "1"]
CIFAR = ["mlp-cifar", "--data", "synthetic:512", "--epochs", "4", "--batch-size", "64", "--hidden", "32,16",
         "--checkpoint-every", "1"]
# (arguments, run folder, the backend class whose training dies in the third period)
CASES = {
    "toy-numpy": ([*TOY, "--framework", "numpy"], "mlp-toy/moons-numpy-s0", NumpyBackend),      # SGD
    "toy-torch": ([*TOY, "--framework", "torch"], "mlp-toy/moons-torch-s0", TorchBackend),      # torch.optim.SGD
    "cifar-numpy": ([*CIFAR, "--framework", "numpy"], "mlp-cifar/plain-fp32-numpy-s0", NumpyBackend),  # AdamW
    # AdamW, batch norm's running statistics, and dropout masks drawn from torch's generator
    "cifar-torch": ([*CIFAR, "--variant", "improved", "--framework", "torch"], "mlp-cifar/improved-fp32-torch-s0",
                    TorchBackend),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_that_dies_resumes_to_the_uninterrupted_metrics(cli_fast, tmp_path, name):
    args, run, backend_cls = CASES[name]
    ref = cli_fast(*args, "--out", tmp_path / "ref", "--no-progress")
    assert ref.returncode == 0, ref.stderr
    with killed_in_period(backend_cls, 3):
        cli_fast(*args, "--out", tmp_path / "cut", "--no-progress")
    cut = tmp_path / "cut" / run
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["1", "2"]
    assert not (cut / "summary.json").exists()
    res = cli_fast(*args, "--resume", "--out", tmp_path / "cut", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "resuming from checkpoint 2 of" in res.stdout
    a = json.loads((tmp_path / "ref" / run / "summary.json").read_text())
    b = json.loads((cut / "summary.json").read_text())
    assert b["resumed_from_period"] == 2 and a["framework"] == b["framework"] == name.split("-")[1]
    assert strip(a) == strip(b)  # bit-identical losses and accuracies, the same identity digest
    assert rows_without_time(tmp_path / "ref" / run / "metrics.jsonl") == rows_without_time(cut / "metrics.jsonl")


def _same(a, b) -> None:
    """Equal state_dict values, tensors bit for bit and of the same dtype."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), (a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert type(a) is type(b) and a == b, (a, b)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.AdamW(p, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    lambda p: torch.optim.RMSprop(p, lr=1e-3, alpha=0.99, eps=1e-8),
    lambda p: torch.optim.SGD(p, lr=0.1),
])
def test_optimizer_and_scheduler_state_round_trip_through_numpy_exactly(make):
    from train.backends.torch_state import from_tree, optimizer_from_tree, optimizer_to_tree, to_tree

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    opt = make(net.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    for _ in range(2):
        net(torch.randn(4, 3, dtype=torch.float64)).square().sum().backward()
        opt.step()
        sched.step()
    tree = {"optimizer": optimizer_to_tree(opt), "scheduler": to_tree(sched.state_dict())}
    assert all(isinstance(leaf, np.ndarray) for leaf in _leaves(tree))
    fresh = make(net.parameters())  # no per-parameter state yet: it appears at the first step
    fresh_sched = torch.optim.lr_scheduler.StepLR(fresh, step_size=1, gamma=0.1)
    fresh.load_state_dict(optimizer_from_tree(fresh, tree["optimizer"]))
    fresh_sched.load_state_dict(from_tree(fresh_sched.state_dict(), tree["scheduler"]))
    _same(opt.state_dict(), fresh.state_dict())
    _same(sched.state_dict(), fresh_sched.state_dict())
    assert fresh.param_groups[0]["lr"] == fresh.param_groups[0]["initial_lr"] * 0.1 * 0.1  # decayed twice


def _leaves(tree):
    return [x for v in tree.values() for x in (_leaves(v) if isinstance(v, dict) else [v])]


# -- the platform a run records is its backend's ----------------------------------------------------

@dataclasses.dataclass
class _Settings:
    seed: int = 0


class _TorchOnCuda(TorchBackend):
    """A PyTorch backend whose device is CUDA, as on a GPU machine; its steps are stand-ins (no GPU here)."""

    param_count = 1

    def __init__(self) -> None:
        self.torch, self.device = torch, torch.device("cuda")

    def device_kind(self) -> str:
        return "a GPU"

    def train(self, idx):
        return {"loss": np.ones(len(idx)), "accuracy": np.zeros(len(idx))}

    def evaluate(self):
        return {"test": {"loss": 1.0, "accuracy": 0.0, "count": 1}}


def test_a_torch_run_on_cuda_records_platform_cuda(tmp_path, capsys):
    run = Run("fake", _Settings(), tmp_path / "fake", "r", framework="torch")
    summary = drive([run], _TorchOnCuda, [np.zeros((2, 4), np.int32)], checkpoint_every=0, progress=False)[0]
    assert summary["platform"] == "cuda"
    devices = json.loads((tmp_path / "fake" / "r" / "config.json").read_text())["devices"]
    assert devices["platform"] == "cuda" and devices["device_kind"] == "a GPU"
    assert "on 1 cuda device(s)" in capsys.readouterr().out
    assert summary["compilations"]["compiler"] == "torch-eager" and summary["compilations"]["count"] == 0
