"""Run the test files in N parallel pytest processes, for machines without pytest-xdist.

    python scripts/parallel_pytest.py N LOGDIR [test files...]   (default: tests/test_*.py)

Files are dealt to the N groups largest first (a file's size stands in for its run time); each
group's output goes to LOGDIR/pytest-<i>.log; the exit code is non-zero if any group failed.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    n, logdir, files = int(argv[0]), Path(argv[1]), argv[2:] or [str(p) for p in Path("tests").glob("test_*.py")]
    groups: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for f in sorted(files, key=lambda f: -Path(f).stat().st_size):
        i = loads.index(min(loads))
        groups[i].append(f)
        loads[i] += Path(f).stat().st_size
    logdir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, group in enumerate(g for g in groups if g):
        log = open(logdir / f"pytest-{i}.log", "w")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", *group]
        # Own session per group: an interrupt takes down each group's whole process tree (CLI runs included).
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log, i))
    rc = 0
    try:
        for p, log, i in procs:
            rc |= p.wait() != 0
            log.close()
    finally:
        for p, _, _ in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for _, _, i in procs:
        lines = (logdir / f"pytest-{i}.log").read_text().splitlines()
        print(f"group {i}: " + (lines[-1] if lines else "(no output)"))
        print("\n".join(l for l in lines if l.startswith(("FAILED", "ERROR"))))
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
