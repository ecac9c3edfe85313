"""Do the cross-framework tests catch real changes? Each row is one small change to the code under test.

    PYTHONPATH=. python scripts/perturbation_table.py [-k NAME] [pytest files...]

For each perturbation, the working tree's files are copied to a scratch folder, one source line is
patched there, and the cross-framework tests run against that copy; the output is a markdown table
perturbation | tests failed. A row with no failed test is a change the tolerances let through, and
the exit code is then 1. The first row runs the copy unpatched: no test may fail there. Not part of
``make test``: it runs the test files once per row (minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_cross_framework.py", "tests/test_numpy_vs_jax.py"]

# (name, file, text, replacement): each text occurs exactly once in its file.
PERTURBATIONS = [
    ("torch AdamW weight decay x2", "train/backends/torch_backend.py",
     "weight_decay=weight_decay), None)", "weight_decay=2 * weight_decay), None)"),
    ("NumPy AdamW weight decay x2", "numpy_mlp/optim.py",
     "+ t(self.weight_decay) * p[k]", "+ t(2 * self.weight_decay) * p[k]"),
    ("torch AdamW eps x10", "train/backends/torch_backend.py", "betas=(0.9, 0.999), eps=1e-8", "betas=(0.9, 0.999), eps=1e-7"),
    ("torch AdamW b1 0.9 -> 0.91", "train/backends/torch_backend.py", "betas=(0.9, 0.999)", "betas=(0.91, 0.999)"),
    ("torch AdamW b2 0.999 -> 0.998", "train/backends/torch_backend.py", "betas=(0.9, 0.999)", "betas=(0.9, 0.998)"),
    ("NumPy AdamW bias correction removed", "numpy_mlp/optim.py",
     "bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t", "bc1, bc2 = 1.0, 1.0"),
    ("torch SGD lr x (1 + 1e-6)", "train/backends/torch_backend.py",
     "torch.optim.SGD(params, lr=lr)", "torch.optim.SGD(params, lr=lr * (1 + 1e-6))"),
    ("NumPy SGD lr x (1 + 1e-6)", "numpy_mlp/optim.py",
     "p[k] -= p[k].dtype.type(self.lr) * g[k]", "p[k] -= p[k].dtype.type(self.lr * (1 + 1e-6)) * g[k]"),
    ("init x (1 + 1e-9) (torch's copy of the JAX weights)", "train/backends/torch_weights.py",
     'torch.from_numpy(np.array(a, order="C"))', 'torch.from_numpy(np.array(a, order="C") * (1 + 1e-9))'),
    ("RMSprop alpha 0.99 -> 0.98", "train/backends/torch_backend.py", "alpha=0.99, eps=1e-8", "alpha=0.98, eps=1e-8"),
    ("StepLR one epoch late", "train/backends/torch_backend.py", "StepLR(opt, step_size=step_epochs,",
     "StepLR(opt, step_size=step_epochs + 1,"),
    ("one weight not converted (the last)", "train/backends/torch_weights.py",
     "for name, t, a in pairs(torch_model, jax_model):\n            if", "for name, t, a in pairs(torch_model, jax_model)[:-1]:\n            if"),
    ("unbiased BN running variance", "train/backends/torch_models.py",
     "torch.var_mean(xf, dim=dims, correction=0)", "torch.var_mean(xf, dim=dims, correction=1)"),
    ("BN momentum 0.1 -> 0.11 (CNN)", "train/backends/torch_models.py",
     "nn.Conv2d(c, c_out, 3, padding=1), bn(c_out)", "nn.Conv2d(c, c_out, 3, padding=1), bn(c_out, momentum=0.11)"),
]


def copy_tree(dst: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the working tree (not results/: large, unused)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if f.startswith("results/") or not (ROOT / f).is_file():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)


def patch(tree: Path, file: str, text: str, new: str) -> None:
    path = tree / file
    src = path.read_text()
    if src.count(text) != 1:
        raise SystemExit(f"error: {file}: the text to perturb occurs {src.count(text)} times: {text!r}")
    path.write_text(src.replace(text, new))


def failed_tests(tree: Path, tests: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rf", *tests],
                       cwd=tree, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", r.stdout, re.M)
    if r.returncode not in (0, 1) or (r.returncode == 1 and not failed):
        raise SystemExit(f"error: pytest exited {r.returncode} without a test result:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return [f.split("::", 1)[1] if "::" in f else f for f in failed]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="only the perturbations whose name contains this")
    ap.add_argument("tests", nargs="*", default=TESTS)
    args = ap.parse_args(argv)
    rows = [("none (unpatched)", None, None, None)] + [p for p in PERTURBATIONS if args.k in p[0]]
    print("| perturbation | tests failed |\n|---|---|", flush=True)
    missed = 0
    for name, file, text, new in rows:
        with tempfile.TemporaryDirectory(prefix="perturb-") as tmp:
            tree = Path(tmp)
            copy_tree(tree)
            if file is not None:
                patch(tree, file, text, new)
            failed = failed_tests(tree, args.tests)
        missed += (file is None) == bool(failed)
        print(f"| {name} | {', '.join(failed) or 'NONE'} |", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
