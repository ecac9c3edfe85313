"""A step of `device_run.sh --dry-run` whose command, at dry size, an earlier step already ran
(scripts/device_plan.py): the dry run does each distinct thing once.

    python scripts/dry_same.py EARLIER DONE [COPY_TO] -- COMMAND...

If DONE (the earlier step's output) exists, print one line naming EARLIER and copy DONE, a folder,
to COPY_TO if given; else (the step run on its own, `--steps=N`) run COMMAND as the step would.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if "--" not in argv or not 2 <= argv.index("--") <= 3 or argv.index("--") == len(argv) - 1:
        print("error: usage: dry_same.py EARLIER DONE [COPY_TO] -- COMMAND...", file=sys.stderr)
        return 2
    sep = argv.index("--")
    earlier, done, copy_to, command = argv[0], Path(argv[1]), argv[2:sep], argv[sep + 1:]
    if not done.exists():
        print(f"dry: {done} is not there ({earlier} did not run): running the command", flush=True)
        os.execvp(command[0], command)
    if copy_to:
        shutil.copytree(done, copy_to[0], dirs_exist_ok=True)
    print(f"dry: at dry size the same command as {earlier}, whose output is there already ({done})"
          + (f"; copied to {copy_to[0]}" if copy_to else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
