"""The batches of a run: index arrays that are pure functions of (seed, period), the same for every framework."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def batch_stream(n: int, batch: int, steps: int, seed: int) -> np.ndarray:
    """[steps, batch] indices: consecutive slices of a stream of shuffled permutations of 0..n-1.

    Every example is seen once before any is seen twice; the stream is a pure function
    of (n, batch, steps, seed), so every framework gets the same batches in the same order.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA7C4]))
    need = steps * batch
    perms = [rng.permutation(n) for _ in range(-(-need // n))]
    return np.concatenate(perms)[:need].astype(np.int32).reshape(steps, batch)


def epoch_batches(n: int, batch: int, epoch: int, seed: int) -> np.ndarray:
    """One epoch's [n // batch, batch] shuffled indices (the remainder is dropped), a function of (seed, epoch)."""
    if n < batch:
        raise ValueError(f"batch size {batch} is larger than the {n} training examples")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE90C, epoch]))
    steps = n // batch
    return rng.permutation(n)[: steps * batch].astype(np.int32).reshape(steps, batch)


class LazyPeriods(Sequence):
    """A schedule whose period ``p`` is ``make(p)``, built when the loop gets to it.

    Memory stays constant however many epochs are asked for; every period is still a pure
    function of its number, so a resumed run sees the batches an uninterrupted one saw.
    """

    def __init__(self, make: Callable[[int], np.ndarray], count: int, steps: int) -> None:
        self.make, self.count, self.steps = make, int(count), int(steps)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, p):
        if isinstance(p, slice):
            return [self[i] for i in range(*p.indices(self.count))]
        if not -self.count <= p < self.count:
            raise IndexError(p)
        return self.make(p % self.count)

    @property
    def total_steps(self) -> int:
        return self.count * self.steps


class SideBySide(Sequence):
    """S runs' schedules as one: period ``p`` is their batch indices stacked, [S, K, B]."""

    def __init__(self, schedules: Sequence[Sequence[np.ndarray]]) -> None:
        if not schedules or len({len(s) for s in schedules}) != 1:
            raise ValueError(f"runs trained side by side need schedules of one length, got "
                             f"{[len(s) for s in schedules]}")
        self.schedules = list(schedules)

    def __len__(self) -> int:
        return len(self.schedules[0])

    def __getitem__(self, p):
        if isinstance(p, slice):
            return [self[i] for i in range(*p.indices(len(self)))]
        return np.stack([s[p] for s in self.schedules])

    @property
    def total_steps(self) -> int:
        """Training steps of one run (every run takes as many)."""
        first = self.schedules[0]
        return getattr(first, "total_steps", None) or sum(np.shape(p)[0] for p in first)


def side_by_side(schedules: Sequence[Sequence[np.ndarray]]) -> SideBySide:
    return schedules if isinstance(schedules, SideBySide) else SideBySide(schedules)
