"""The training loop shared by every experiment: periods, metrics, checkpoints, Ctrl-C, divergence.

``train_loop`` drives a backend through a schedule of periods (one fused
compiled call each), appends each evaluation to ``metrics.jsonl``, saves a
checkpoint every few periods, and:

* with ``resume=True`` continues from the newest intact checkpoint and ends
  with exactly the metrics of an uninterrupted run (the data order is a pure
  function of seed and period, and the RNG key is part of the state);
* on Ctrl-C finishes the current period, saves a checkpoint and raises
  :class:`Interrupted` with the command that resumes the run;
* on a NaN or infinite loss raises :class:`Diverged` naming the step, the last
  good checkpoint and the likely cause; the metrics so far stay on disk.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from train.results import MetricsLog, UsageError, is_writer


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(RuntimeError):
    """The user pressed Ctrl-C; a checkpoint was saved."""


def check_resumable(run_dir: Path, config: dict) -> None:
    """Before anything is written: --resume needs a checkpoint, and the same config as the run it continues."""
    import json

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
    """The summary of a finished run in ``run_dir`` made with exactly ``config``, else None (rerun it)."""
    import json

    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())["config"]
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    return summary if saved == json.loads(json.dumps(config)) else None


def resume_hint() -> str:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    return "python -m train " + " ".join(args) + " --resume"


@contextmanager
def stop_on_sigint():
    """First Ctrl-C sets a flag the loop checks after each period; a second one interrupts at once."""
    state = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if state["stop"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        state["stop"] = True
        print("\nCtrl-C: finishing this period, then saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    installed = False
    try:
        signal.signal(signal.SIGINT, handler)
        installed = True
    except ValueError:  # not the main thread: no handler, plain KeyboardInterrupt semantics
        pass
    try:
        yield state
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


def _first_bad_step(step_metrics, first_step: int) -> int | None:
    losses = np.asarray(step_metrics.get("loss", []), np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(losses))
    return first_step + int(bad[0]) + 1 if bad.size else None


def train_loop(backend, schedule: Sequence[np.ndarray], run_dir: Path, *, resume: bool = False,
               checkpoint_every: int = 1, epochs: bool = False, desc: str = "", progress: bool | None = None,
               checkpoints: bool = True) -> tuple[MetricsLog, dict]:
    """Train ``backend`` over ``schedule``; returns (the metrics log, timing).

    timing: {"wall_time_s", "train_examples", "steps", "compile_time_s" (all across resumes), "resumed_from"}.
    ``checkpoints=False`` (or a backend without ``host_state``) disables checkpointing.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    use_ckpt = checkpoints and checkpoint_every > 0 and hasattr(backend, "host_state") and is_writer()
    import jax
    if jax.process_count() > 1:
        use_ckpt = False  # every process holds a full replica; see README (checkpoints are single-process)
    ckpt = None
    if use_ckpt:
        from train.checkpoint import Checkpointer
        ckpt = Checkpointer(run_dir / "checkpoints")
    start, elapsed0, rows, resumed_from, prior_compile = 0, 0.0, [], None, 0.0
    if resume:
        restored = ckpt.restore_latest(backend.host_state()) if ckpt and ckpt.steps() else None
        if restored is None:
            raise UsageError(f"--resume: no checkpoint to resume from in {run_dir / 'checkpoints'}")
        start, state, meta = restored
        backend.load_state(state)
        rows, elapsed0, resumed_from = meta["rows"], float(meta["elapsed_s"]), start
        prior_compile = float(meta.get("compile_s", 0.0))
        print(f"resuming from checkpoint {start} of {len(schedule)} in {ckpt.directory}")
    elif ckpt and ckpt.steps():
        ckpt.clear()  # a fresh run must not mix with an earlier run's checkpoints
    log = MetricsLog(run_dir / "metrics.jsonl", rows)
    log.add([])  # rewrite: drops rows a crash left beyond the checkpoint
    step = sum(len(p) for p in schedule[:start])
    examples = sum(p.size for p in schedule[:start])
    t0 = time.perf_counter()
    bar = tqdm(total=sum(len(p) for p in schedule), initial=step, desc=desc, unit="step", leave=False,
               disable=(None if progress is None else not progress))
    try:
        with stop_on_sigint() as sig:
            for pi in range(start, len(schedule)):
                idx = schedule[pi]
                ev, step_metrics = backend.period(idx)
                bad = _first_bad_step(step_metrics, step)
                if bad is not None or not all(np.isfinite(m["loss"]) for m in ev.values()):
                    last = ckpt.steps()[-1] if ckpt and ckpt.steps() else None
                    where = f"{ckpt.directory}/{last}" if last is not None else "none (no checkpoint was saved)"
                    raise Diverged(
                        f"loss became {'NaN/inf'} at step {bad or step + len(idx)} "
                        f"({'epoch' if epochs else 'period'} {pi + 1}); last good checkpoint: {where}; "
                        f"likely cause: learning rate too high (try a smaller --lr); metrics so far are in {log.path}")
                step += len(idx)
                examples += idx.size
                now = elapsed0 + time.perf_counter() - t0
                log.add([{"step": int(step), **({"epoch": pi + 1} if epochs else {}), "split": s,
                          "loss": m["loss"], "accuracy": m["accuracy"], "time_s": round(now, 4)}
                         for s, m in ev.items()])
                done = pi + 1
                if ckpt and (done % checkpoint_every == 0 or done == len(schedule) or sig["stop"]):
                    ckpt.save(done, backend.host_state(), {"rows": log.rows, "elapsed_s": now,
                                                           "compile_s": prior_compile + backend.compile_time_s})
                bar.update(len(idx))
                bar.set_postfix({f"{s}_acc": f"{m['accuracy']:.3f}" for s, m in ev.items()})
                if sig["stop"] and done < len(schedule):
                    where = f"; checkpoint saved in {ckpt.directory}/{done}" if ckpt else ""
                    raise Interrupted(f"interrupted after {'epoch' if epochs else 'period'} {done} of "
                                      f"{len(schedule)}{where}; resume with: {resume_hint()}")
    finally:
        bar.close()
        if ckpt:
            ckpt.close()
    return log, {"wall_time_s": elapsed0 + time.perf_counter() - t0, "train_examples": int(examples),
                 "steps": step, "resumed_from": resumed_from,
                 "compile_time_s": prior_compile + backend.compile_time_s}
