"""Training, the report and the benchmark; ``train.run(name, **settings)`` is the Python API."""


def run(name: str, out="results", **settings):
    """Train one experiment, as ``python -m train NAME --setting value ...`` would; return its summary.

    See :func:`train.experiments.registry.run`.
    """
    from train.experiments.registry import run as run_experiment

    return run_experiment(name, out, **settings)
