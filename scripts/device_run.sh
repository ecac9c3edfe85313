#!/usr/bin/env bash
# The GPU window in one command (the device's limit: 600 s; the plan: at most 540 s):
#
#   scripts/device_run.sh all [--dry-run] [OUTDIR]   every step, most valuable first: env; bench RNN at batch
#                                                    128 and CNN at 256 (fp32, tf32, bf16; JAX and PyTorch);
#                                                    the report in full fp32; the test suite; then the rest
#                                                    (sweeps, larger batches with profiles, the whole report)
#   scripts/device_run.sh check|bench|report|tests [--dry-run] [OUTDIR]   one stage's steps only
#   scripts/device_run.sh all --steps=6,7 [--dry-run] [OUTDIR]   those steps only (numbered as `plan` prints them)
#   scripts/device_run.sh plan                       the plan with each step's estimate, running nothing
#   scripts/device_run.sh pack                       data/cifar10-jpg.tar.gz from ../shared/datasets/cifar10-jpg
#                                                    (or $CIFAR_SRC), the archive to carry
#
# The plan is printed first: each step's time estimate read from results/reference-gpu/ (or "no
# record" and a stated conservative figure). Each step runs under its own limit (SIGINT, then
# SIGKILL), never into the time of the planned steps after it; after each, OUTDIR (default: $OUT,
# else results/device-run) gets device.tar.gz (the work folder: bench.json, REPORT.md, logs; no
# checkpoints; profiles trimmed below 15 MiB) and device.log, so a killed command still returns
# what ran. --dry-run runs every step at tiny sizes on any machine (tests/test_device_run.py).
# The machine needs Python with jax, flax, optax, orbax-checkpoint, scikit-learn, matplotlib, Pillow,
# tqdm and torch; no network, no pip. The exit code is non-zero if a planned step failed or was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help|"") sed -n '2,21p' "$0"; [[ -n "${1:-}" ]]; exit $? ;; esac
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then [[ -x .venv/bin/python ]] && PY=.venv/bin/python || PY=python3; fi
PYTHON="$PY" exec "$PY" scripts/device_run.py "$@"
