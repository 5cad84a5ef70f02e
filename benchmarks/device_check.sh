#!/usr/bin/env bash
# One script for a GPU machine (torch and triton preinstalled, no package index):
#   bash benchmarks/device_check.sh OUTDIR      run every step, write OUTDIR/<gpu>-<date>-<commit>.json
#   bash benchmarks/device_check.sh --budget    print the steps' time limits and check that they fit the deadline
# builds the extension in place, runs the GPU tests (the never-run ones first), `hrnet-fast bench` in fp16 at
# batch 1 and 64, the reduced op tables the pass/fail targets need, the pipeline benchmark, and
# compute-sanitizer (memcheck over every kernel; racecheck and synccheck over the DARK/UDP decode kernel, the
# only one with shared memory and barriers) where it is installed. Writes OUTDIR/<gpu>-<date>-<commit>.json
# (every result, with the device, driver, torch, triton and CUDA versions and the commit),
# OUTDIR/device_check.log, OUTDIR/gpu_tests_new.xml and OUTDIR/gpu_tests_rest.xml, and prints a summary last.
#
# Budget: a GPU window is short and rare (about 15 minutes, start-up included), so the whole check fits
# 7 minutes and leaves room for one rerun. Every step runs under `timeout` (coreutils) with the limit of the
# LIMITS table below; the limits add up to at most DEADLINE_S (`--budget` checks it, and so does
# tests/test_benchmarks_smoke.py), and the deadline, counted from the start, clamps every limit whatever the
# steps took. A step that runs out is recorded as TIMEOUT and the script goes on; the table scripts rewrite
# their JSON as they go, so a timed-out table keeps the rows it measured. The H200 run of 2026-11-28 took
# 27 s to build 13 translation units with 16 jobs; 90 s leaves room for a slower machine.
# The full grids run from their own scripts, outside this budget:
#   python benchmarks/exchange_table.py --device cuda    (W32 and W48, 3 batches, 2 dtypes, 2 modes, torch.compile)
#   python benchmarks/decode_table.py --device cuda      (2 heatmap sizes, batches 1/64/1024, 4 methods)
#   python -m hrnet_fast bench --device cuda --dtype fp16 --batch 1,64 --compile-batches 64   (+ bf16, fp32)
#   python -m hrnet_fast check --device cuda             (every backend against float64; the GPU tests cover it)
# LIMIT_<step>=S (a dash in the step name becomes "_") overrides one step's limit, DEVICE_CHECK_BUDGET the
# deadline, DEVICE_CHECK_COMMIT the commit recorded (default: git rev-parse, else "unknown").
set -uo pipefail

DEADLINE_S=${DEVICE_CHECK_BUDGET:-420}
# step          limit (s)   what
LIMITS="
build           90          setup.py build_ext --inplace (13 translation units)
info            10          hrnet-fast info (backends and why)
tests-new       80          GPU tests of what never ran on a GPU: CUDA graphs, streams, cuDNN epilogues, crop, estimator
tests-rest      90          the other GPU tests (every backend of every op against its reference)
bench-fp16      40          hrnet-fast bench fp16, batch 1 and 64, no torch.compile
exchange-table  20          W32 exchange units, batch 64, fp16, forward: cuda and triton vs unfused and a copy
decode-table    15          (64,17,64,48) fp16 decode, quarter and DARK, batch 64
pipeline        35          host image to host keypoints: 1 and 64 persons per call
memcheck        15          compute-sanitizer memcheck over every kernel
racecheck       8           compute-sanitizer racecheck over the DARK/UDP decode kernel
synccheck       7           compute-sanitizer synccheck over the DARK/UDP decode kernel
"

limit_of() { awk -v s="$1" '$1 == s {print $2}' <<<"$LIMITS"; }
limits_sum() { awk 'NF >= 2 {t += $2} END {print t}' <<<"$LIMITS"; }

if [ "${1:-}" = "--budget" ]; then
  awk 'NF >= 2 {printf "  %-15s %4d s\n", $1, $2}' <<<"$LIMITS"
  sum=$(limits_sum)
  echo "  sum             $sum s, deadline $DEADLINE_S s"
  [ "$sum" -le "$DEADLINE_S" ] || { echo "the step limits add up to more than the deadline" >&2; exit 1; }
  exit 0
fi

OUT=${1:?usage: bash benchmarks/device_check.sh OUTDIR   (or --budget)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"9.0"}
exec > >(tee "$OUT/device_check.log") 2>&1
TMP=$(mktemp -d)
STATUS="$TMP/status.tsv"
: > "$STATUS"
START=$(date +%s)
DEADLINE=$(( START + DEADLINE_S ))
COMMIT=${DEVICE_CHECK_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}

step() {  # step NAME COMMAND...: run under the step's limit, record ok / FAIL(rc) / TIMEOUT; never abort
  local name=$1; shift
  local var="LIMIT_${name//-/_}" limit
  limit=${!var:-$(limit_of "$name")}
  local left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt 5 ]; then
    echo; echo "=== $name: skipped, the script's deadline has passed"
    printf '%s\t%s\t%s\n' "$name" "skipped (deadline)" "0s" >> "$STATUS"
    return 0
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo; echo "=== $name (limit ${limit}s): $*"
  local t0 rc dt state
  t0=$(date +%s)
  # --kill-after: a step ignoring SIGTERM (a compiler in a child process) is killed 5 s later
  timeout --kill-after=5 "$limit" "$@"; rc=$?
  dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then state=ok
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then state="TIMEOUT(${limit}s)"; echo "=== $name: stopped after ${limit}s"
  else state="FAIL($rc)"
  fi
  printf '%s\t%s\t%s\n' "$name" "$state" "${dt}s" >> "$STATUS"
  return 0
}
skip() { echo "$1: skipped ($2)"; printf '%s\tskipped (%s)\t0s\n' "$1" "$2" >> "$STATUS"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the GPU's name for the file name, without importing torch (that costs seconds of the budget)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)
[ -n "$GPU" ] || GPU=nogpu
GPU_SLUG=$(printf '%s' "$GPU" | tr -c 'A-Za-z0-9' '-' | sed 's/--*/-/g; s/^-//; s/-$//' | tr 'A-Z' 'a-z')
[ -n "$GPU_SLUG" ] || GPU_SLUG=unknown-device
DATE=$(date -u +%Y-%m-%d)

# A per-test limit where pytest-timeout is installed (it is on the H200 image): one hung test cannot eat
# the step; the step's own limit still bounds the whole.
PYTEST=($PY -m pytest -v -m gpu -p no:cacheprovider)
if $PY -c "import pytest_timeout" 2>/dev/null; then PYTEST+=(--timeout=45); fi
# The GPU code that never ran on a GPU goes first, so a short window sees it even if a later step is cut.
NEW_TESTS=(tests/test_inference.py tests/test_estimator.py tests/test_crop_boxes.py)
for f in tests/test_cuda_graphs*.py tests/test_streams*.py tests/test_launch*.py; do [ -e "$f" ] && NEW_TESTS+=("$f"); done
IGNORE=(); for f in "${NEW_TESTS[@]}"; do IGNORE+=(--ignore="$f"); done

step build $PY setup.py build_ext --inplace
step info $PY -m hrnet_fast info
# -v: when the limit stops pytest (no junit XML then), the log still has each test's result
step tests-new "${PYTEST[@]}" "${NEW_TESTS[@]}" --junitxml="$OUT/gpu_tests_new.xml"
step tests-rest "${PYTEST[@]}" tests "${IGNORE[@]}" --junitxml="$OUT/gpu_tests_rest.xml"
# torch.compile of the reference takes about a minute: not in this budget (see the full runs above)
step bench-fp16 $PY -m hrnet_fast bench --device cuda --dtype fp16 --batch 1,64 --no-compile --json "$TMP/bench_fp16.json"
# What the pass/fail targets need: the exchange kernels against a copy of the same bytes, under graph replays.
step exchange-table $PY benchmarks/exchange_table.py --device cuda --models w32_256x192 --batches 64 \
  --dtypes float16 --modes fwd --providers torch cuda triton --rounds 2 --min-time 0.05 --out "$TMP/exchange.json"
step decode-table $PY benchmarks/decode_table.py --device cuda --shapes 64x48 --batches 64 --dtypes fp16 \
  --methods quarter,dark --rounds 3 --budget 0.1 --json "$TMP/decode.json"
# The whole pipeline: host image to host keypoints, 1 and 64 persons per call (targets < 2 ms and >= 4000 persons/s),
# and the official recipe beside it where OpenCV is installed.
step pipeline $PY benchmarks/bench_pipeline.py --device cuda --no-demo --rounds 2 --min-time 2 --out "$TMP/pipeline.json"
if command -v compute-sanitizer >/dev/null 2>&1; then
  step memcheck compute-sanitizer --tool memcheck --error-exitcode 7 $PY benchmarks/sanitize_cuda.py
  step racecheck compute-sanitizer --tool racecheck --error-exitcode 7 $PY benchmarks/sanitize_cuda.py --only dark_udp
  step synccheck compute-sanitizer --tool synccheck --error-exitcode 7 $PY benchmarks/sanitize_cuda.py --only dark_udp
else
  for s in memcheck racecheck synccheck; do skip $s "compute-sanitizer not installed"; done
fi

# Versions for the record (after the deadline-bound steps: importing torch costs a few seconds).
VERSIONS=$(timeout 30 $PY -c "import json, torch; import importlib.util as u
t = __import__('triton').__version__ if u.find_spec('triton') else None
print(json.dumps({'torch': torch.__version__, 'torch_cuda': torch.version.cuda, 'triton': t}))" 2>/dev/null || echo '{}')

$PY - "$TMP" "$STATUS" "$OUT/$GPU_SLUG-$DATE-$COMMIT.json" "$(( $(date +%s) - START ))" "$GPU" "$DRIVER" "$COMMIT" \
  "$DEADLINE_S" "$VERSIONS" <<'PYEOF'
import glob, json, os, sys
tmp, status, dest, total, gpu, driver, commit, deadline, versions = sys.argv[1:]
meta = {"device": gpu, "driver": driver, "commit": commit, "deadline_s": int(deadline)}
try:
    meta.update(json.loads(versions))
except ValueError:
    pass
merged = {"meta": meta,
          "steps": [dict(zip(("step", "status", "time"), l.rstrip("\n").split("\t"))) for l in open(status) if l.strip()],
          "total_s": int(total), "runs": {}}
for f in sorted(glob.glob(os.path.join(tmp, "*.json"))):
    try:
        merged["runs"][os.path.basename(f)[:-5]] = json.load(open(f))
    except Exception as exc:
        merged["runs"][os.path.basename(f)[:-5]] = {"error": str(exc)}
# atomically: a killed summary leaves no truncated JSON behind
with open(dest + ".tmp", "w") as fh:
    json.dump(merged, fh, indent=2)
os.replace(dest + ".tmp", dest)
print("\n=== summary (" + os.path.basename(dest) + f", {total} s)")
for s in merged["steps"]:
    print(f"  {s['step']:15s} {s['status']:22s} {s['time']}")
for name, run in merged["runs"].items():
    for r in run.get("results", []):
        if "error" in r:
            print(f"  {name:12s} {r.get('section', ''):9s} b{r.get('batch', 0):<4d} {r.get('variant', ''):38s} FAILED: {r['error'][:80]}")
        elif "speedup" in r:
            err = r.get("max_rel_err", r.get("max_abs_err_px"))
            print(f"  {name:12s} {r['section']:9s} b{r['batch']:<4d} {r['variant']:38s} {r['ms']:9.3f} ms  x{r['speedup']:.2f}  err {err if err is None else format(err, '.1e')}")
PYEOF
rm -rf "$TMP"
