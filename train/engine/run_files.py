"""What a finished run's summary.json vouches for: the files beside it, as they were when it was written.

summary.json records a digest of every result file of its run (metrics.jsonl, figures, JSON
extras). A file deleted, emptied, cut short or rewritten since then makes the run *damaged*: the
report reruns (or resumes) it instead of reading it back, and ``compare`` refuses it by name.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

# The records of the attempt itself, not its results; hidden files are the lock and temporaries.
_NOT_RESULTS = ("config.json", "summary.json")


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def result_digests(run_dir: Path) -> dict[str, str]:
    """{file name: digest} of the result files at the top of ``run_dir``."""
    return {p.name: file_digest(p) for p in sorted(Path(run_dir).iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_RESULTS}


def _metrics_problem(path: Path) -> str | None:
    """What is wrong with a metrics.jsonl read without a digest to check it against, or None."""
    try:
        text = path.read_text()
    except OSError as e:
        return f"{path.name}: cannot be read ({e.strerror or e})"
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return f"{path.name}: empty"
    for n, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except ValueError:
            return f"{path.name}: line {n} is not a JSON row (cut short?)"
    return None


def _file_problem(path: Path, digest: str) -> str | None:
    if not path.is_file():
        return f"{path.name}: missing (deleted after the run finished)"
    try:
        same = file_digest(path) == digest
    except OSError as e:
        return f"{path.name}: cannot be read ({e.strerror or e})"
    return None if same else f"{path.name}: changed after the run finished (cut short, emptied or rewritten)"


def damage(run_dir: Path, summary: dict, names: tuple[str, ...] | None = None) -> str | None:
    """Every damaged result file of a finished run, as 'name: what; ...'; None if all are intact.

    ``names`` limits the check to those files. A summary written before digests were recorded is
    checked as far as it can be: its metrics.jsonl must hold rows that parse.
    """
    run_dir = Path(run_dir)
    recorded = summary.get("files")
    if not isinstance(recorded, dict):
        recorded = {"metrics.jsonl": None}
    problems = [_metrics_problem(run_dir / name) if digest is None else _file_problem(run_dir / name, digest)
                for name, digest in recorded.items() if names is None or name in names]
    return "; ".join(p for p in problems if p) or None


def finished_run_damage(run_dir: Path) -> str | None:
    """For a folder with a summary.json: what is damaged (summary.json itself included); else None."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None  # not finished (or never started): nothing to be damaged
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return f"summary.json: cannot be read ({getattr(e, 'strerror', None) or 'not JSON: cut short?'})"
    if not isinstance(summary, dict):
        return "summary.json: not a run summary"
    return damage(run_dir, summary)


def damage_note(*run_dirs: Path) -> str:
    """For runs about to be redone: ' (damaged: <what>)' per finished run whose results were damaged
    since, each also said on stderr; '' if none was."""
    found = [(d, why) for d in run_dirs if (why := finished_run_damage(d))]
    for d, why in found:
        print(f"note: {d} finished, but its results were damaged since ({why}); redoing it", file=sys.stderr)
    return "".join(f" (damaged: {why})" for _, why in found)
