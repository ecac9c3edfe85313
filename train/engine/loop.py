"""The training loop shared by every experiment: periods, metrics, checkpoints, Ctrl-C, divergence.

A resumed run ends with exactly an uninterrupted run's metrics, as the data order is a pure
function of seed and period and the RNG key is part of the state (docs/resilience.md).
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from train.engine import tools
from train.engine.results import MetricsLog, is_writer, process_count, run_identity
from train.engine.schedule import side_by_side
from train.errors import UsageError


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped the run after a period; a checkpoint was saved."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them


# What resumes the run in progress, named when it is interrupted (a shell command or a Python call).
_RESUME_HINT: ContextVar[str | None] = ContextVar("resume_hint", default=None)


@contextmanager
def resumable_as(hint: str | None):
    """Within: an interrupted run says ``resume with: <hint>``."""
    token = _RESUME_HINT.set(hint)
    try:
        yield
    finally:
        _RESUME_HINT.reset(token)


def resume_hint() -> str | None:
    """What resumes the run in progress (see ``resumable_as``); None for a caller that named nothing."""
    return _RESUME_HINT.get()


def command_hint(argv: Sequence[str]) -> str:
    """Shell-quoted command that continues ``python -m train *argv`` (``report`` needs no ``--resume``)."""
    args = [a for a in argv if a != "--resume"]
    if not (args and args[0] == "report"):
        args.append("--resume")
    return shlex.join(["python", "-m", "train", *args])


STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@contextmanager
def stop_on_signals():
    """Ctrl-C or SIGTERM (what schedulers send before killing) sets a flag the loop checks after each
    period, so the run saves a checkpoint and stops; the same signal again interrupts at once."""
    state = {"stop": None}
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum, frame):
        if state["stop"] is not None:
            for s, h in previous.items():
                signal.signal(s, h)
            raise KeyboardInterrupt
        state["stop"] = signum
        print(f"\n{STOP_SIGNALS[signum]}: finishing this period, then saving a checkpoint "
              f"(again to abort at once)", file=sys.stderr)

    installed = False
    try:
        for s in STOP_SIGNALS:
            signal.signal(s, handler)
        installed = True
    except ValueError:  # not the main thread: no handler, the default semantics
        pass
    try:
        yield state
    finally:
        if installed:
            for s, h in previous.items():
                signal.signal(s, h)


def _first_bad_step(step_metrics, first_step: int) -> int | None:
    losses = np.asarray(step_metrics.get("loss", []), np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(losses))
    return first_step + int(bad[0]) + 1 if bad.size else None


def train_metrics_from_steps(step_metrics, count: int) -> dict:
    """An epoch's train loss/accuracy as the original measured it: the mean over its training steps (train mode)."""
    return {"loss": float(np.mean(np.asarray(step_metrics["loss"], np.float64))),
            "accuracy": float(np.mean(np.asarray(step_metrics["accuracy"], np.float64))), "count": int(count)}


class _Timer:
    """Seconds spent training, evaluating and blocked on checkpoints, compilation excluded (see train_loop)."""

    def __init__(self, backend, prior: dict | None = None) -> None:
        prior = prior or {}
        self.backend = backend
        self.t = {k: float(prior.get(k, 0.0)) for k in ("train_s", "eval_s", "ckpt_s")}

    def run(self, key: str, fn, *args):
        c0, t0 = self.backend.compile_time_s, time.perf_counter()
        out = fn(*args)  # returns host values, so the device has finished
        self.t[key] += time.perf_counter() - t0 - (self.backend.compile_time_s - c0)
        return out


def _restore_common(ckpts, templates, sharded: bool = False):
    """Restore every run at the newest period intact in all of them -> (period, states, metas) or None."""
    limit = None
    while True:
        got = [c.restore_latest(t, max_period=limit, sharded=sharded) for c, t in zip(ckpts, templates)]
        if any(g is None for g in got):
            return None
        periods = {g[0] for g in got}
        if len(periods) == 1:
            return got[0][0], [g[1] for g in got], [g[2] for g in got]
        limit = min(periods)


class OneRun:
    """A one-run backend seen as S = 1 runs (lists of one), so the loop speaks only lists."""

    runs = 1

    def __init__(self, backend) -> None:
        self.inner = backend

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def train(self, idx: np.ndarray) -> list[dict]:
        return [self.inner.train(idx[0])]

    def evaluate(self) -> list[dict]:
        return [self.inner.evaluate()]

    def host_state(self) -> list:
        return [self.inner.host_state()]

    def restore_template(self) -> list:
        return [restore_template(self.inner)]

    def load_state(self, states: Sequence) -> None:
        self.inner.load_state(states[0])


def restore_template(backend):
    """The structure a checkpoint is restored into: the backend's own template (None: as saved, for a
    state that grows as it trains), else a fresh state."""
    return getattr(backend, "restore_template", backend.host_state)()


def as_runs(backend):
    """``backend`` as the loop drives it: S runs side by side (see ``OneRun``)."""
    return backend if hasattr(backend, "runs") else OneRun(backend)


def saves_state(backend) -> bool:
    return hasattr(backend.inner if isinstance(backend, OneRun) else backend, "host_state")


def train_loop(backend, schedules: Sequence[Sequence[np.ndarray]], run_dirs: Sequence, *, resume: bool = False,
               checkpoint_every: int | None = None, epochs: bool = False, desc: str = "", progress: bool | None = None,
               checkpoints: bool = True) -> list[tuple[MetricsLog, dict]]:
    """Train run ``s`` of ``backend`` over ``schedules[s]`` into ``run_dirs[s]`` -> (metrics log, timing) per run.

    A split the backend does not evaluate gets the mean of the period's per-step metrics. timing's
    keys are in docs/results.md; ``checkpoint_time_s`` counts only waiting, as writes run in the background.
    """
    loop = _Loop(as_runs(backend), side_by_side(schedules), run_dirs, checkpoint_every=checkpoint_every,
                 epochs=epochs, checkpoints=checkpoints)
    loop.start(resume)
    loop.run(desc, progress)
    timing = loop.timing()
    return [(log, {**timing, "runs": len(loop.logs)}) for log in loop.logs]


class _Loop:
    """train_loop's state: the runs' folders, logs and checkpointers, the position and the clocks."""

    def __init__(self, backend, schedule, run_dirs, *, checkpoint_every: int | None, epochs: bool,
                 checkpoints: bool) -> None:

        self.backend, self.schedule = backend, schedule
        self.run_dirs = [Path(d) for d in run_dirs]
        if len(self.run_dirs) != backend.runs:
            raise ValueError(f"{backend.runs} run(s) to train, {len(self.run_dirs)} run folder(s)")
        self.auto = checkpoint_every is None  # skip a save while the previous one is still being written
        self.every = 1 if self.auto else checkpoint_every
        # Several processes checkpoint a state of global arrays (shard_map, jit) together, each writing and
        # reading its own shards in the shared --out; a per-process replica (pmap) is not checkpointed.
        self.sharded = process_count() > 1 and getattr(backend, "global_state", False)
        use = checkpoints and self.every > 0 and saves_state(backend) and tools.can_checkpoint()
        use = use and (is_writer() and process_count() == 1 or self.sharded)
        self.ckpts = [tools.checkpointer(d / "checkpoints") for d in self.run_dirs] if use else None
        self.unit = "epoch" if epochs else "period"
        self.epochs = epochs
        self.start_period, self.elapsed0, self.resumed_from, self.prior = 0, 0.0, None, {}

    def start(self, resume: bool) -> None:
        """Restore the newest checkpoint common to every run (``resume``), or clear an earlier run's."""
        rows = [[] for _ in self.run_dirs]
        if resume:
            rows = self._restore()
        elif self.ckpts:
            for c in self.ckpts:
                if c.steps():
                    c.clear()  # a fresh run must not mix with an earlier run's checkpoints
        if self.start_period == len(self.schedule) and hasattr(self.backend, "evaluate"):
            self.backend.evaluate()  # resumed after the last period: nothing to train, but the predictions are wanted
        self.identities = [run_identity(d) for d in self.run_dirs]
        self.prior_compile = float(self.prior.get("compile_s", 0.0))
        self.skipped = int(self.prior.get("ckpt_skipped", 0))
        self.timer = _Timer(self.backend, self.prior)
        self.logs = [MetricsLog(d / "metrics.jsonl", r) for d, r in zip(self.run_dirs, rows)]
        done_before = [self.schedule[p][0] for p in range(self.start_period)]
        self.step, self.examples = sum(p.shape[0] for p in done_before), sum(p.size for p in done_before)

    def _restore(self) -> list[list[dict]]:
        template = [self.backend.device_state()] if self.sharded else restore_template(self.backend)
        restored = _restore_common(self.ckpts, template, self.sharded) if self.ckpts else None
        if restored is None:
            raise UsageError(f"--resume: no checkpoint to resume from in {self.run_dirs[0] / 'checkpoints'}")
        start, states, metas = restored
        for d, meta in zip(self.run_dirs, metas):
            if meta.get("config_digest") not in (None, run_identity(d).get("config_digest")):
                raise UsageError(f"--resume: the checkpoints in {d / 'checkpoints'} were written by a run with "
                                 f"other settings; drop --resume to start over")
        if self.sharded:
            self.backend.load_device_state(states[0])
        else:
            self.backend.load_state(states)
        self.start_period = self.resumed_from = start
        self.prior = metas[0]
        self.elapsed0 = float(self.prior["elapsed_s"])
        print(f"resuming from checkpoint {start} of {len(self.schedule)} in {self.ckpts[0].directory}")
        return [m["rows"] for m in metas]

    def now(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def run(self, desc: str, progress: bool | None) -> None:

        self.t0 = time.perf_counter()
        total = self.schedule.total_steps
        bar = tqdm(total=total, initial=self.step, desc=desc, unit="step", leave=False,
                   disable=(None if progress is None else not progress))
        # Every program built from here on (the recompilation guard: after the first period, none).
        self.compiles, self.after_first = tools.compile_log(), None
        self.artifacts = tools.artifacts(self.run_dirs[0], self.start_period, len(self.schedule))
        try:
            with stop_on_signals() as sig, self.compiles:
                # Rewritten here, inside the signal handling: drops rows a crash left beyond the checkpoint,
                # and a Ctrl-C that comes once the file exists finds the handler installed.
                for log in self.logs:
                    log.add([])
                for pi in range(self.start_period, len(self.schedule)):
                    with self.artifacts.period(pi):
                        evs, k = self._period(pi)
                    if pi == self.start_period:
                        self.after_first = self.compiles.compiles
                    self._checkpoint(pi + 1, final=pi + 1 == len(self.schedule) or sig["stop"] is not None)
                    bar.update(k)
                    bar.set_postfix({f"{s}_acc": f"{m['accuracy']:.3f}" for s, m in evs[0].items()})
                    if sig["stop"] is not None and pi + 1 < len(self.schedule):
                        self._stop(pi + 1, sig["stop"])
        finally:
            bar.close()
            if self.ckpts:
                t = time.perf_counter()
                for c in self.ckpts:
                    c.close()  # the last write finishes before the run counts as done
                self.timer.t["ckpt_s"] += time.perf_counter() - t

    def _period(self, pi: int):
        """Train and evaluate period ``pi``, stop on a non-finite loss, log the rows; -> (evaluations, steps)."""
        idx = self.schedule[pi]
        k = idx.shape[1]
        steps_out = self.timer.run("train_s", self.backend.train, idx)
        evs = self.timer.run("eval_s", self.backend.evaluate)
        for r, (sm, ev) in enumerate(zip(steps_out, evs)):
            bad = _first_bad_step(sm, self.step)
            if bad is not None or not all(np.isfinite(m["loss"]) for m in ev.values()):
                raise Diverged(
                    f"loss became NaN/inf at step {bad or self.step + k} ({self.unit} {pi + 1})"
                    f"{' of ' + str(self.run_dirs[r]) if len(self.run_dirs) > 1 else ''}; last good checkpoint: "
                    f"{self._last_good(r)}; likely cause: learning rate too high (try a smaller --lr); metrics "
                    f"so far are in {self.logs[r].path}")
        self.step += k
        self.examples += idx[0].size
        for log, sm, ev in zip(self.logs, steps_out, evs):
            if "train" not in ev:
                ev = {"train": train_metrics_from_steps(sm, idx[0].size), **ev}
            log.add([{"step": int(self.step), **({"epoch": pi + 1} if self.epochs else {}), "split": s,
                      "loss": m["loss"], "accuracy": m["accuracy"], "time_s": round(self.now(), 4)}
                     for s, m in ev.items()])
        return evs, k

    def _last_good(self, r: int) -> str:
        steps = self.ckpts[r].steps() if self.ckpts else []
        return f"{self.ckpts[r].directory}/{steps[-1]}" if steps else "none (no checkpoint was saved)"

    def _checkpoint(self, done: int, *, final: bool) -> None:
        """Save after ``done`` periods when due; with the automatic policy, skip while a write is running."""
        if not self.ckpts:
            return
        due = done % self.every == 0
        if due and self.auto and any(c.busy for c in self.ckpts) and not final:
            self.skipped += 1
        elif due or final:
            def save():
                meta = {"elapsed_s": self.now(), "compile_s": self.prior_compile + self.backend.compile_time_s,
                        "ckpt_skipped": self.skipped, **self.timer.t}
                states = [self.backend.device_state()] if self.sharded else self.backend.host_state()
                for c, log, st, ident in zip(self.ckpts, self.logs, states, self.identities):
                    (c.save_sharded if self.sharded else c.save)(done, st, {**meta, **ident, "rows": list(log.rows)})
            self.timer.run("ckpt_s", save)

    def _stop(self, done: int, signum: int) -> None:
        where = f"; checkpoint saved in {self.ckpts[0].directory}/{done}" if self.ckpts else ""
        for c in self.ckpts or []:
            c.wait()
        hint = resume_hint()
        raise Interrupted(f"{STOP_SIGNALS[signum]}: stopped after {self.unit} {done} of "
                          f"{len(self.schedule)}{where}" + (f"; resume with: {hint}" if hint else ""), signum)

    def timing(self) -> dict:
        t = self.timer.t
        return {"wall_time_s": self.now(), "train_time_s": t["train_s"], "eval_time_s": t["eval_s"],
                "checkpoint_time_s": t["ckpt_s"], "checkpoints_skipped": self.skipped,
                "train_examples": int(self.examples), "steps": self.step, "resumed_from": self.resumed_from,
                "compile_time_s": self.prior_compile + self.backend.compile_time_s,
                "compilations": {**self.compiles.summary(),
                                 "after_first_period": self.compiles.compiles - (self.after_first or 0)},
                **self.artifacts.finish(self.backend)}
