#!/usr/bin/env bash
# One prepared run on a GPU machine, in two stages that each fit a short device window.
#
#   scripts/device_run.sh check  [--dry-run] [OUTDIR]   devices, versions, bench (JAX vs PyTorch,
#                                                        fp32, tf32 and bf16, FLOPs and MFU), the test
#                                                        suite with GPU settings
#   scripts/device_run.sh report [--dry-run] [OUTDIR]   the full-recipe report (REPORT.md, figures)
#   scripts/device_run.sh --dry-run [OUTDIR]             both stages on this machine at tiny sizes
#
# Each stage writes one tar (<stage>.tar.gz, no checkpoints) into OUTDIR (default: $OUT, else
# results/device-run) and exits non-zero if a step failed; the tar is written either way.
# The machine needs a Python with jax, flax, optax, orbax-checkpoint, scikit-learn, matplotlib,
# Pillow and tqdm (torch for the PyTorch rows); no network, no pip, no tensorflow-datasets: the
# project runs from this checkout with PYTHONPATH=. CIFAR-10 is read from data/cifar10-jpg/, or
# unpacked from data/cifar10-jpg.tar.gz (both git-ignored; the archive is 20 MB where the folder's
# 60,000 small files are 53 MiB:  tar czf data/cifar10-jpg.tar.gz -C ../shared/datasets cifar10-jpg),
# else synthetic data is used and the report says so loudly.
#
# Time budgets (seconds) can be changed from the environment: CHECK_BUDGET (default 300) and
# REPORT_BUDGET (default 390). Steps run in order of value; a step that would overrun is
# interrupted (SIGINT: a training run checkpoints and stops), and what is done is still packed.
set -uo pipefail
cd "$(dirname "$0")/.."

stage="" dry=0 outdir="${OUT:-}"
for a in "$@"; do
  case "$a" in
    check|report) stage="$a" ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $a (see $0 --help)" >&2; exit 2 ;;
    *) outdir="$a" ;;
  esac
done
if [[ -z "$stage" && $dry -eq 0 ]]; then
  echo "error: give a stage (check or report), or --dry-run for both (see $0 --help)" >&2; exit 2
fi
outdir="${outdir:-results/device-run}"
mkdir -p "$outdir" || { echo "error: cannot create $outdir" >&2; exit 2; }
outdir="$(cd "$outdir" && pwd)"

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then [[ -x .venv/bin/python ]] && PY=.venv/bin/python || PY=python3; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_CURRICULUM_CACHE="${JAX_CURRICULUM_CACHE:-${TMPDIR:-/tmp}/jax_curriculum_device}"
CIFAR=data/cifar10-jpg
if [[ ! -d "$CIFAR/train" && -f data/cifar10-jpg.tar.gz && $dry -eq 0 ]]; then
  unpacked="${TMPDIR:-/tmp}/jax_curriculum_cifar"
  [[ -d "$unpacked/cifar10-jpg/test" ]] || { mkdir -p "$unpacked" && tar xzf data/cifar10-jpg.tar.gz -C "$unpacked"; } \
    || echo "warning: could not unpack data/cifar10-jpg.tar.gz" >&2
  CIFAR="$unpacked/cifar10-jpg"
fi
if [[ -d "$CIFAR/train" && -d "$CIFAR/test" && $dry -eq 0 ]]; then DATA="folder:$(cd "$CIFAR" && pwd)"; else DATA="synthetic:512"; fi

t_start=$SECONDS
left() { echo $(( $1 - (SECONDS - t_start) )); }
# run BUDGET_LEFT_RESERVE NAME CMD...: run CMD with what is left of the stage's budget minus a reserve.
failed=()
step() {
  local reserve=$1 name=$2; shift 2
  local t=$(( $(left "$budget") - reserve ))
  if (( t < 10 )); then echo "== $name: skipped, only $t s left"; failed+=("$name (no time)"); return; fi
  echo "== $name (up to $t s): $*"
  local t0=$SECONDS
  timeout -s INT -k 20 "$t" "$@"
  local rc=$?
  echo "== $name: exit $rc after $(( SECONDS - t0 )) s"
  (( rc == 0 )) || failed+=("$name (exit $rc)")
}

pack() {  # pack WORKDIR NAME: one tar of the stage's results, without checkpoints
  local work=$1 name=$2
  printf '%s\n' "${failed[@]:-}" > "$work/failed.txt"
  tar czf "$outdir/$name.tar.gz" --exclude=checkpoints --exclude='*.npz' -C "$work" .
  echo "== wrote $outdir/$name.tar.gz ($(du -k "$outdir/$name.tar.gz" | cut -f1) KiB) in $(( SECONDS - t_start )) s;" \
       "failed: ${failed[*]:-none}"
}

run_check() {
  local work; work="$(mktemp -d)/check"; mkdir -p "$work"
  budget=${CHECK_BUDGET:-300}; t_start=$SECONDS; failed=()
  {
    step 0 env "$PY" - <<'EOF'
import json, subprocess
import jax
from train.backends.jax_backend import jax_device_info as device_info
from train.engine.results import package_versions
print(json.dumps({"devices": [str(d) for d in jax.devices()], "device": device_info(),
                  "versions": package_versions()}, indent=1))
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout)
except Exception as e:  # no GPU tools here: fine on a CPU dry run
    print(f"nvidia-smi: {e}")
EOF
    if (( dry )); then
      step 0 bench "$PY" -m train bench --suite cnn-cifar,rnn-palindrome,mlp-cifar --frameworks jax,torch \
           --precision fp32,rnn-palindrome:tf32 --modes fused,eager,compiled \
           --batch-sizes cnn-cifar:8,rnn-palindrome:512,rnn-palindrome:128,mlp-cifar:64 --sweep-precision fp32 \
           --torch-compile recipe-bf16 --profile "$work/profile" \
           --profile-only 'cnn-cifar-fused-*-b8,rnn-palindrome-fused-*-b128' \
           --dump-hlo "$work/hlo" --time-budget 120 --quick --steps 1 --windows 1 --warmup 0 --out "$work"
      step 0 tests "$PY" scripts/parallel_pytest.py 2 "$work/tests" tests/test_numpy_layers.py tests/test_toy_data.py
    else
      # The headline figures first (CNN at the recipe batch 256 in fp32, tf32 and bf16, JAX and PyTorch, each
      # with its FLOPs and MFU against the H100/H200 data-sheet peak, and at 1024 in bf16; RNN at 8192 in bf16
      # and at 128 in fp32, tf32 and bf16); --time-budget stops starting new runners after 115 s (the MLP,
      # last), recording them as skipped. Profiles: one window each, ~1-3 MB.
      step 150 bench "$PY" -m train bench --suite cnn-cifar,rnn-palindrome,mlp-cifar --frameworks jax,torch \
           --precision tf32,bf16,cnn-cifar:fp32,rnn-palindrome:fp32 --modes fused,eager,compiled \
           --batch-sizes cnn-cifar:256,cnn-cifar:1024,rnn-palindrome:8192,rnn-palindrome:128 --sweep-precision bf16 \
           --torch-compile recipe-bf16 --profile "$work/profile" \
           --profile-only 'cnn-cifar-fused-bf16-b256,rnn-palindrome-fused-*-b128' --dump-hlo "$work/hlo" \
           --time-budget 115 --out "$work"
      step 5 tests "$PY" scripts/parallel_pytest.py 14 "$work/tests"
    fi
  } 2>&1 | tee "$work/check.log"
  # the pipe ran the steps in a subshell: read their failures back from the log
  mapfile -t failed < <(grep -E '^== .*: (exit [1-9]|skipped)' "$work/check.log" | sed 's/^== //')
  pack "$work" check
}

run_report() {
  local work; work="$(mktemp -d)/report"; mkdir -p "$work"
  budget=${REPORT_BUDGET:-390}; t_start=$SECONDS; failed=()
  local quick=() first=toy,mlp,cnn second=toy,mlp,cnn,t19,sweep last=()
  # (the PyTorch twins, part torch, are tested with a tiny plan by tests/test_report.py)
  if (( dry )); then quick=(--quick); first=toy,mlp; second=toy,mlp,t19; last=(--skip cnn,sweep,lstm,schedule,torch); fi
  {
    # Headline parts first; each later call reuses the finished runs and adds parts, so an
    # interrupted last call still leaves the previous REPORT.md complete for what it covers.
    step 15 "report $first" "$PY" -m train report "${quick[@]}" --data "$DATA" --parts "$first" \
         --out "$work/results" --no-progress
    step 15 "report $second" "$PY" -m train report "${quick[@]}" --data "$DATA" --parts "$second" \
         --out "$work/results" --no-progress
    step 15 "report all" "$PY" -m train report "${quick[@]}" --data "$DATA" "${last[@]}" \
         --out "$work/results" --no-progress
  } 2>&1 | tee "$work/report.log"
  mapfile -t failed < <(grep -E '^== .*: (exit [1-9]|skipped)' "$work/report.log" | sed 's/^== //')
  pack "$work" report
}

status=0
if [[ "$stage" == check || -z "$stage" ]]; then run_check; (( ${#failed[@]} == 0 )) || status=1; fi
if [[ "$stage" == report || -z "$stage" ]]; then run_report; (( ${#failed[@]} == 0 )) || status=1; fi
exit $status
