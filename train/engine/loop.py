"""The training loop shared by every experiment: periods, metrics, checkpoints, Ctrl-C, divergence.

``train_loop`` drives a backend through a schedule of periods (one fused
compiled call each), appends each evaluation to ``metrics.jsonl``, saves a
checkpoint every few periods, and:

* with ``resume=True`` continues from the newest intact checkpoint and ends
  with exactly the metrics of an uninterrupted run (the data order is a pure
  function of seed and period, and the RNG key is part of the state);
* on Ctrl-C or SIGTERM finishes the current period, saves a checkpoint and raises
  :class:`Interrupted` with the command that resumes the run;
* on a NaN or infinite loss raises :class:`Diverged` naming the step, the last
  good checkpoint and the likely cause; the metrics so far stay on disk.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from train.backends.jax_compile_log import CompileLog
from train.backends.jax_profiling import RunArtifacts
from train.engine.results import MetricsLog, config_digest, is_writer, run_identity
from train.errors import UsageError
from train.engine.run_files import damage


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped the run after a period; a checkpoint was saved."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them


def check_resumable(run_dir: Path, config: dict) -> None:
    """Before anything is written: --resume needs a checkpoint, and the same config as the run it continues."""

    config = json.loads(json.dumps(config))  # as config.json holds it (tuples become lists)
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir() or not any(p.name.isdigit() for p in ckpt_dir.iterdir()):
        raise UsageError(f"--resume: no checkpoint to resume from in {ckpt_dir}")
    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return  # the checkpoint itself is authoritative; nothing to compare against
    changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if changed:
        raise UsageError(f"--resume: the settings differ from the checkpointed run in {run_dir} "
                         f"({', '.join(changed)}); pass the same flags, or drop --resume to start over")


def completed_summary(run_dir: Path, config: dict) -> dict | None:
    """The summary of a finished run in ``run_dir`` made with exactly ``config``, else None (rerun it).

    Proof of a finished run: summary.json carries the attempt id and config digest of the
    config.json beside it, that digest is ``config``'s, and its result files are as summary.json
    recorded them (``train.engine.run_files.damage``).
    """

    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    identity = run_identity(run_dir)
    mine = {k: summary.get(k) for k in ("attempt", "config_digest")}
    if not identity or mine != identity or identity["config_digest"] != config_digest(config):
        return None
    return None if damage(run_dir, summary) else summary


# What resumes the run in progress, named when it is interrupted: the command line sets the shell
# command (train.cli.main), train.run the Python call (train.experiments.registry.run).
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
    """The command that continues ``python -m train *argv``, shell-quoted: ``report`` resumes by
    itself, the others take ``--resume``."""
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


def _restore_common(ckpts, templates):
    """Restore every run at the newest period intact in all of them -> (period, states, metas) or None."""
    limit = None
    while True:
        got = [c.restore_latest(t, max_period=limit) for c, t in zip(ckpts, templates)]
        if any(g is None for g in got):
            return None
        periods = {g[0] for g in got}
        if len(periods) == 1:
            return got[0][0], [g[1] for g in got], [g[2] for g in got]
        limit = min(periods)


def train_loop(backend, schedule: Sequence[np.ndarray], run_dir, *, resume: bool = False,
               checkpoint_every: int | None = None, epochs: bool = False, desc: str = "", progress: bool | None = None,
               checkpoints: bool = True):
    """Train ``backend`` over ``schedule``; returns (the metrics log, timing).

    Each period is a training call (per-step metrics) and an evaluation call, timed apart.
    A split the backend does not evaluate (by default ``train`` for the CIFAR and RNN
    experiments) gets the mean of the period's per-step metrics instead.

    timing: {"wall_time_s", "train_time_s", "eval_time_s", "checkpoint_time_s", "compile_time_s"
    (all across resumes), "train_examples", "steps", "resumed_from"}. ``checkpoint_time_s`` is the
    time training waited for checkpoints (copying the state to the host, or a previous write still
    running); the writing itself runs in the background.

    A backend with ``runs = S > 1`` trains S runs side by side: then ``schedule`` holds [S, K, B]
    index arrays, ``run_dir`` is a list of S folders, the backend's train/evaluate/host_state
    return (and load_state takes) lists of S, each run gets its own metrics log and checkpoints
    in the single-run format, and the result is a list of S (log, timing) pairs.
    ``checkpoints=False`` (or a backend without ``host_state``) disables checkpointing.
    """
    loop = _Loop(backend, schedule, run_dir, checkpoint_every=checkpoint_every, epochs=epochs,
                 checkpoints=checkpoints)
    loop.start(resume)
    loop.run(desc, progress)
    timing = loop.timing()
    if loop.multi:
        return [(log, {**timing, "runs": len(loop.logs)}) for log in loop.logs]
    return loop.logs[0], timing


class _Loop:
    """train_loop's state: the runs' folders, logs and checkpointers, the position and the clocks."""

    def __init__(self, backend, schedule, run_dir, *, checkpoint_every: int | None, epochs: bool,
                 checkpoints: bool) -> None:

        self.backend, self.schedule = backend, schedule
        self.multi = getattr(backend, "runs", 1) > 1
        self.run_dirs = [Path(d) for d in run_dir] if self.multi else [Path(run_dir)]
        self.auto = checkpoint_every is None  # skip a save while the previous one is still being written
        self.every = 1 if self.auto else checkpoint_every
        use = checkpoints and self.every > 0 and hasattr(backend, "host_state") and is_writer()
        # Every process of a multi-process job holds a full replica; see README (checkpoints are single-process).
        use = use and jax.process_count() == 1
        self.ckpts = None
        if use:
            from train.engine.checkpoint import Checkpointer  # orbax is slow to import: only runs that save load it
            self.ckpts = [Checkpointer(d / "checkpoints") for d in self.run_dirs]
        self.unit = "epoch" if epochs else "period"
        self.epochs = epochs
        self.start_period, self.elapsed0, self.resumed_from, self.prior = 0, 0.0, None, {}

    def as_list(self, x):
        return x if self.multi else [x]

    def per_run(self, idx):
        return idx[0] if self.multi else idx

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
        done_before = [self.per_run(self.schedule[p]) for p in range(self.start_period)]
        self.step, self.examples = sum(p.shape[0] for p in done_before), sum(p.size for p in done_before)

    def _restore(self) -> list[list[dict]]:
        # The structure to restore into: a fresh state, or None (as saved) where the backend's grows as it trains.
        template = getattr(self.backend, "restore_template", self.backend.host_state)()
        restored = _restore_common(self.ckpts, self.as_list(template)) if self.ckpts else None
        if restored is None:
            raise UsageError(f"--resume: no checkpoint to resume from in {self.run_dirs[0] / 'checkpoints'}")
        start, states, metas = restored
        for d, meta in zip(self.run_dirs, metas):
            if meta.get("config_digest") not in (None, run_identity(d).get("config_digest")):
                raise UsageError(f"--resume: the checkpoints in {d / 'checkpoints'} were written by a run with "
                                 f"other settings; drop --resume to start over")
        self.backend.load_state(states if self.multi else states[0])
        self.start_period = self.resumed_from = start
        self.prior = metas[0]
        self.elapsed0 = float(self.prior["elapsed_s"])
        print(f"resuming from checkpoint {start} of {len(self.schedule)} in {self.ckpts[0].directory}")
        return [m["rows"] for m in metas]

    def now(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t0

    def run(self, desc: str, progress: bool | None) -> None:

        self.t0 = time.perf_counter()
        total = getattr(self.schedule, "total_steps", None) or sum(self.per_run(p).shape[0] for p in self.schedule)
        bar = tqdm(total=total, initial=self.step, desc=desc, unit="step", leave=False,
                   disable=(None if progress is None else not progress))
        # Every program built from here on (the recompilation guard: after the first period, none).
        self.compiles, self.after_first = CompileLog(), None
        self.artifacts = RunArtifacts(self.run_dirs[0], self.start_period, len(self.schedule))
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
        k = self.per_run(idx).shape[0]
        steps_out = self.as_list(self.timer.run("train_s", self.backend.train, idx))
        evs = self.as_list(self.timer.run("eval_s", self.backend.evaluate))
        for r, (sm, ev) in enumerate(zip(steps_out, evs)):
            bad = _first_bad_step(sm, self.step)
            if bad is not None or not all(np.isfinite(m["loss"]) for m in ev.values()):
                raise Diverged(
                    f"loss became NaN/inf at step {bad or self.step + k} ({self.unit} {pi + 1})"
                    f"{' of ' + str(self.run_dirs[r]) if self.multi else ''}; last good checkpoint: "
                    f"{self._last_good(r)}; likely cause: learning rate too high (try a smaller --lr); metrics "
                    f"so far are in {self.logs[r].path}")
        self.step += k
        self.examples += self.per_run(idx).size
        for log, sm, ev in zip(self.logs, steps_out, evs):
            if "train" not in ev:
                ev = {"train": train_metrics_from_steps(sm, self.per_run(idx).size), **ev}
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
                for c, log, st, ident in zip(self.ckpts, self.logs, self.as_list(self.backend.host_state()),
                                             self.identities):
                    c.save(done, st, {**meta, **ident, "rows": list(log.rows)})
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
