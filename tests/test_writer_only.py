"""In a multi-process job only process 0 writes: the others must neither write nor read results back."""

import pytest

from train.engine import results
from train.experiments import rnn
from train.experiments.rnn_sweep import sweep


@pytest.fixture
def not_the_writer():
    results.set_writer(False)
    yield
    results.set_writer(True)


def test_sweep_on_a_non_writer_process_reads_and_writes_nothing(tmp_path, not_the_writer):
    cfg = rnn.RNNConfig(data_size=300, epochs=1, batch_size=32, hidden=8, grad_probe=16, devices=1)
    doc = sweep(cfg, [3], 2, ["vanilla"], tmp_path, progress=False)
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    assert all(len(r["grad_norms"]["init"]) == 3 for r in doc["runs"])  # from memory, not grad_norms.json
    assert not any(tmp_path.iterdir())
