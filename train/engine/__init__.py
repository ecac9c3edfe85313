"""A run's lifecycle, the same for every framework: driver, loop, checkpoints, the results contract."""
