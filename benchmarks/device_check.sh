#!/usr/bin/env bash
# One script for a GPU machine (torch and triton preinstalled, no package index):
#   bash benchmarks/device_check.sh OUTDIR
# builds the extension in place, runs the GPU tests, `hrnet-fast check`, `hrnet-fast bench` in fp16 at
# batch 1 and 64, reduced op benchmark tables, and compute-sanitizer on the CUDA kernels where it is
# installed. Writes OUTDIR/<gpu>-<date>.json (all results), OUTDIR/device_check.log and
# OUTDIR/gpu_tests.xml, and prints a summary table last.
#
# Budget: under 7 minutes in all. Every step runs under `timeout` (coreutils; pytest-timeout may be
# absent on the GPU machine) with its own limit, so one slow step cannot eat the others' time; a step
# that runs out is recorded as TIMEOUT in the summary and the script goes on. The table scripts rewrite
# their JSON as they go, so a timed-out table keeps the rows it measured. Limits, in seconds (the H200 run
# of 2026-11-28 in brackets):
#   build 45 [27]   info 15 [11]   gpu-tests 180   check 35 [29]   bench-fp16 55 (no torch.compile)
#   exchange-table 30   decode-table 25   sanitizer 20 [10]          sum 405, plus the summary
# and a deadline 410 s after the start clamps every limit, whatever the steps took.
# Full grids run from their own scripts, outside this budget:
#   python benchmarks/exchange_table.py --device cuda    (W32 and W48, 3 batches, 2 dtypes, 2 modes, torch.compile)
#   python benchmarks/decode_table.py --device cuda      (2 heatmap sizes, batches 1/64/1024, 4 methods)
#   python -m hrnet_fast bench --device cuda --dtype fp16 --batch 1,64 --compile-batches 64   (+ bf16, fp32)
# LIMIT_<step>=S (a dash in the step name becomes "_") overrides one step's limit.
set -uo pipefail
OUT=${1:?usage: bash benchmarks/device_check.sh OUTDIR}
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
DEADLINE=$(( START + ${DEVICE_CHECK_BUDGET:-410} ))

step() {  # step NAME LIMIT_S COMMAND...: run under a time limit, record ok / FAIL(rc) / TIMEOUT; never abort
  local name=$1 limit=$2; shift 2
  local var="LIMIT_${name//-/_}"
  limit=${!var:-$limit}
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

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the GPU's name for the file name, without importing torch (that costs seconds of the budget)
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
[ -n "$GPU" ] || GPU=nogpu
GPU=$(printf '%s' "$GPU" | tr -c 'A-Za-z0-9' '-' | sed 's/--*/-/g; s/^-//; s/-$//' | tr 'A-Z' 'a-z')
[ -n "$GPU" ] || GPU=unknown-device
DATE=$(date -u +%Y-%m-%d)

step build 45 $PY setup.py build_ext --inplace
step info 15 $PY -m hrnet_fast info
# -v: when the limit stops pytest (no junit XML then), the log still has each test's result
step gpu-tests 180 $PY -m pytest -v -m gpu tests --junitxml="$OUT/gpu_tests.xml" -p no:cacheprovider
step check 35 $PY -m hrnet_fast check --device cuda
# torch.compile of the reference takes about a minute: not in this budget (see the full runs above)
step bench-fp16 55 $PY -m hrnet_fast bench --device cuda --dtype fp16 --batch 1,64 --no-compile --json "$TMP/bench_fp16.json"
# Reduced sets: W32, batch 1 and 64, fp16, forward, the fused providers against the unfused reference.
step exchange-table 30 $PY benchmarks/exchange_table.py --device cuda --models w32_256x192 --batches 1 64 \
  --dtypes float16 --modes fwd --providers torch cuda triton --rounds 2 --min-time 0.05 --out "$TMP/exchange.json"
step decode-table 25 $PY benchmarks/decode_table.py --device cuda --shapes 64x48 --batches 1,64 --dtypes fp16 \
  --methods quarter,flip_quarter,dark --rounds 3 --budget 0.1 --json "$TMP/decode.json"
# The whole pipeline: host image to host keypoints, 1 and 64 persons per call (targets < 2 ms and >= 4000 persons/s),
# and the official recipe beside it where OpenCV is installed.
step pipeline 40 $PY benchmarks/bench_pipeline.py --device cuda --no-demo --rounds 2 --min-time 2 --out "$TMP/pipeline.json"
if command -v compute-sanitizer >/dev/null 2>&1; then
  step sanitizer 20 compute-sanitizer --tool memcheck --error-exitcode 7 $PY benchmarks/sanitize_cuda.py
else
  echo "compute-sanitizer not installed: skipped"; printf 'sanitizer\tskipped (not installed)\t0s\n' >> "$STATUS"
fi

$PY - "$TMP" "$STATUS" "$OUT/$GPU-$DATE.json" "$(( $(date +%s) - START ))" <<'PYEOF'
import glob, json, os, sys
tmp, status, dest, total = sys.argv[1:]
merged = {"steps": [dict(zip(("step", "status", "time"), l.rstrip("\n").split("\t"))) for l in open(status) if l.strip()],
          "total_s": int(total), "runs": {}}
for f in sorted(glob.glob(os.path.join(tmp, "*.json"))):
    try:
        merged["runs"][os.path.basename(f)[:-5]] = json.load(open(f))
    except Exception as exc:
        merged["runs"][os.path.basename(f)[:-5]] = {"error": str(exc)}
json.dump(merged, open(dest, "w"), indent=2)
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
