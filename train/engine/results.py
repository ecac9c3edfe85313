"""The results contract: run folders, atomic files, config and environment records.

Files are written beside their target and renamed over it, so a crash never leaves one
half-written. The layout is in docs/results.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from data import files as atomic_files
from train.engine.run_files import result_digests
from train.errors import UsageError

# The packages whose versions config.json records; each framework's backend adds its own (add_packages).
PACKAGES = ["numpy", "scikit-learn", "matplotlib", "tensorflow-datasets", "pillow"]


def add_packages(*names: str) -> None:
    PACKAGES.extend(n for n in names if n not in PACKAGES)


# In a multi-process job every process runs the same program; only process 0 writes results.
_WRITER = True
_PROCESSES = 1


def set_writer(is_writer: bool, processes: int = 1) -> None:
    """Whether this process writes results, and how many processes the job has (the process setup says)."""
    global _WRITER, _PROCESSES
    _WRITER, _PROCESSES = bool(is_writer), int(processes)


def is_writer() -> bool:
    return _WRITER


def process_count() -> int:
    return _PROCESSES


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data.files.atomic_write_bytes``, in the writing process only (see ``set_writer``)."""
    if _WRITER:
        atomic_files.atomic_write_bytes(path, data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"


def atomic_write_json(path, obj: Any) -> None:
    atomic_write_text(path, to_json(obj))


def atomic_write_jsonl(path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in rows))


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_figure(fig, path) -> None:
    """Write a Matplotlib figure atomically as a 256-colour PNG: a palette keeps committed results small."""
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=110, bbox_inches="tight", pil_kwargs={"compress_level": 0})
    with Image.open(raw) as im:
        palette = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
    palette.putpalette(_white_snapped(palette.getpalette()))
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _white_snapped(rgb: list[int]) -> list[int]:
    """Near-white palette entries as pure white, so antialiased pixels do not tint the background."""
    out = list(rgb)
    for i in range(0, len(out), 3):
        if min(out[i:i + 3]) >= 248:
            out[i:i + 3] = [255, 255, 255]
    return out


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def own_device_info(platform_name: str, device_kind: str | None = None) -> dict[str, Any]:
    """config.json's ``devices`` for a backend on one device of its own (PyTorch's, or NumPy's CPU)."""
    return {"platform": platform_name, "device_kind": device_kind or platform.processor() or "cpu",
            "device_count": 1, "host": platform.node()}


def prepare_run_dir(out: str | os.PathLike, experiment: str, run_name: str) -> Path:
    """Create (or reuse) the run folder and lock it for this process (see ``claim_dir``)."""
    return claim_dir(Path(out) / experiment / run_name)


def claim_dir(folder: str | os.PathLike, *, user: str = "run") -> Path:
    """Create or reuse ``folder`` and lock it for this ``user``; unwritable or held is a UsageError."""
    folder = Path(folder)
    if not _WRITER:
        return folder
    require_writable(folder, "results")
    lock_run_dir(folder, user=user)
    return folder


def require_writable(folder: Path, what: str) -> None:
    """Create ``folder`` (if need be) and write a file in it, or raise a UsageError saying why not
    (a read-only file system, a file where a folder should be, a name too long)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe", delete=True)
        probe.close()
    except (FileExistsError, NotADirectoryError) as e:
        blocker = next((p for p in (folder, *folder.parents) if p.is_symlink() or p.exists()), None)
        reason = f"{blocker} is not a folder" if blocker is not None and not blocker.is_dir() else e.strerror
        raise UsageError(f"cannot write {what} to {folder}: {reason}") from None
    except OSError as e:
        raise UsageError(f"cannot write {what} to {folder}: {e.strerror or e}") from None


# -- one writer per run folder ----------------------------------------------------------------
_LOCKS: dict[Path, int] = {}  # run folder -> the open lock file this process holds


def lock_run_dir(run_dir: Path, *, user: str = "run") -> None:
    """Take ``run_dir/.lock``, an OS lock so even a SIGKILLed process releases it; a second user fails at once."""
    run_dir = Path(run_dir).absolute()
    if run_dir in _LOCKS:
        return
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise UsageError(f"{run_dir} is in use by another {user} ({holder}); wait for it to finish, "
                         f"or write to another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}, since "
                  f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S}".encode(), 0)
    _LOCKS[run_dir] = fd


def _holder(fd: int) -> str:
    return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"


def lock_holder(run_dir: Path) -> str | None:
    """Who holds ``run_dir/.lock`` now ("pid N on HOST, since ..."): a run still going; else None."""
    try:
        fd = os.open(Path(run_dir) / ".lock", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # closing the file releases a lock taken here


def release_run_dir(run_dir: Path) -> None:
    fd = _LOCKS.pop(Path(run_dir).absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the file releases the lock


# -- run identity -----------------------------------------------------------------------------
def run_config(cfg) -> dict:
    """A config dataclass as config.json holds it and resume and reuse compare it. ``framework``
    is left out where it is ``jax`` (and ``parallel`` where it is ``pmap``), so existing JAX runs keep
    their digest and still resume."""
    config = dataclasses.asdict(cfg)
    if config.get("framework") == "jax":
        del config["framework"]
    if config.get("parallel") == "pmap":  # the default path: runs from before --parallel keep their digest
        del config["parallel"]
    return config


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=_jsonable).encode()).hexdigest()[:16]


def start_attempt(run_dir: Path, record: dict, *, resume: bool) -> dict:
    """Write ``config.json`` with this attempt's identity (id, config digest) and return it.

    A summary counts only beside its own attempt's config, so a stale summary.json is removed first.
    """
    run_dir = Path(run_dir)
    digest = config_digest(record["config"])
    attempt = None
    if resume:
        try:
            old = json.loads((run_dir / "config.json").read_text())
            attempt = old["attempt"] if old.get("config_digest") == digest else None
        except (OSError, ValueError, KeyError):
            pass
    identity = {"attempt": attempt or uuid.uuid4().hex[:12], "config_digest": digest}
    if _WRITER:
        (run_dir / "summary.json").unlink(missing_ok=True)
    atomic_write_json(run_dir / "config.json", {**record, **identity})
    return identity


def run_identity(run_dir: Path) -> dict:
    """The identity recorded in ``run_dir/config.json`` ({} if there is none)."""
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: cfg[k] for k in ("attempt", "config_digest") if k in cfg}


def finish_run(run_dir: Path, summary: dict) -> dict:
    """Write summary.json with the attempt's identity and result-file digests, then release the folder."""
    files = result_digests(run_dir) if _WRITER else {}
    summary = {**summary, **run_identity(run_dir), "files": files}
    atomic_write_json(Path(run_dir) / "summary.json", summary)
    release_run_dir(run_dir)
    return summary


class MetricsLog:
    """metrics.jsonl kept in memory and rewritten atomically after every evaluation."""

    def __init__(self, path: Path, rows: list[dict] | None = None) -> None:
        self.path = Path(path)
        self.rows: list[dict] = list(rows or [])

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        atomic_write_jsonl(self.path, self.rows)


# summary.json fields that measure time: they differ from run to run, everything else must not.
TIMING_FIELDS = ("wall_time_s", "compile_time_s", "train_time_s", "eval_time_s", "checkpoint_time_s",
                 "checkpoints_skipped", "examples_per_s", "time_per_epoch_s", "resumed_from_period",
                 "trained_together",  # how many runs shared this one's program and times
                 "seed_devices",  # how many devices those runs spread over
                 "compilations", "profile", "hlo",  # how this process ran: its compiles, its artifacts
                 "files")  # the result files' digests: metrics.jsonl holds the evaluations' times


def make_summary(experiment: str, framework: str, rows: list[dict], timing: dict, *,
                 param_count: int, devices: int, platform: str, extra: dict | None = None) -> dict:
    """summary.json's contents from the metric rows and the loop's timing."""

    def last(split):
        r = [x for x in rows if x["split"] == split]
        return r[-1] if r else {}

    tr, te = last("train"), last("test")
    test_acc = [x["accuracy"] for x in rows if x["split"] == "test"]
    compile_time_s = timing["compile_time_s"]
    train_time = max(timing["train_time_s"], 1e-9)
    out = {
        "experiment": experiment,
        "framework": framework,
        "final": {"train_loss": tr.get("loss"), "train_accuracy": tr.get("accuracy"),
                  "test_loss": te.get("loss"), "test_accuracy": te.get("accuracy")},
        "best_test_accuracy": max(test_acc) if test_acc else None,
        "steps": timing["steps"],
        "resumed_from_period": timing.get("resumed_from"),
        "wall_time_s": round(timing["wall_time_s"], 4),
        "compile_time_s": round(compile_time_s, 4),
        "train_time_s": round(timing["train_time_s"], 4),
        "eval_time_s": round(timing["eval_time_s"], 4),
        "checkpoint_time_s": round(timing["checkpoint_time_s"], 4),
        "checkpoints_skipped": timing.get("checkpoints_skipped", 0),
        # Training throughput: training steps only (no compilation, evaluation or checkpoint waits).
        "examples_per_s": round(timing["train_examples"] / train_time, 1),
        "param_count": int(param_count),
        "devices": int(devices),
        "platform": platform,  # the backend's: cuda for a PyTorch run on a GPU, cpu for NumPy
    }
    # Programs built by this process (the recompilation guard) and --profile / --dump-hlo output.
    out.update({k: timing[k] for k in ("compilations", "profile", "hlo") if k in timing})
    out.update(extra or {})
    return out


def one_line(summary: dict) -> str:
    f = summary["final"]
    return (f"{summary['experiment']} [{summary['framework']}] test acc {f['test_accuracy']:.4f} "
            f"(best {summary['best_test_accuracy']:.4f}), test loss {f['test_loss']:.4f}, "
            f"{summary['wall_time_s']:.2f} s ({summary['compile_time_s']:.2f} s compile), "
            f"{summary['examples_per_s']:,.0f} ex/s on {summary['devices']} {summary['platform']} device(s)")
