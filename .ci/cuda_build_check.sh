#!/usr/bin/env bash
# The complete CUDA build of hrnet_fast._C, linked and imported, on a machine without a GPU.
#
# A CPU build never compiles or links the CUDA bindings (csrc/cuda/*.cpp), so an undefined symbol there
# stays invisible until a GPU machine tries to import the extension (it happened: every compiled backend,
# cpp too, then reported "could not be imported"). This builds the whole extension against torch 2.11.0
# (the CUDA 13.0 build the GPU machines run) in its own venv, checks that no hrnet_fast:: symbol is left
# undefined, and imports it: loading _C needs no GPU.
#
#   bash .ci/cuda_build_check.sh          (make cuda-build-check; CI=true makes it mandatory)
#
# First run: pip downloads ~3 GB (torch and its nvidia-* wheels; pip caches them) into
# $HRNET_FAST_CUDA_VENV (default ~/.cache/hrnet_fast/venv-torch-2.11.0), reused afterwards. The build
# itself takes 3-7 minutes on 2 cores (27 s on a 16-core GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=${HRNET_FAST_CUDA_TORCH:-torch==2.11.0}
VENV=${HRNET_FAST_CUDA_VENV:-$HOME/.cache/hrnet_fast/venv-torch-2.11.0}
NVCC=${NVCC:-$(command -v nvcc || true)}
say() { echo "[cuda-build-check] $*"; }
if [ -z "$NVCC" ]; then
  if [ "${CI:-}" = "true" ]; then say "nvcc not found, and CI=true requires this check" >&2; exit 1; fi
  say "nvcc not found: skipping"; exit 0
fi
start=$SECONDS
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
  say "creating $VENV with $SPEC (a CUDA build of torch; ~3 GB on the first download, cached by pip)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --progress-bar off -q "$SPEC" numpy pyyaml packaging "setuptools>=64" wheel ninja
fi
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# The local toolkit lacks some headers torch's CUDA headers include (cusparse.h): the wheels ship them.
export CPATH="$site/nvidia/cu13/include${CPATH:+:$CPATH}"
if [ -z "${CUDA_HOME:-}" ]; then  # the toolkit folder (nvcc on the PATH may be a wrapper outside it)
  for d in /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$NVCC")")")"; do
    if [ -x "$d/bin/nvcc" ] && [ -f "$d/include/cuda_runtime.h" ]; then CUDA_HOME=$d; break; fi
  done
fi
export CUDA_HOME=${CUDA_HOME:?cannot find the CUDA toolkit folder: set CUDA_HOME}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The working tree's files (tracked, plus untracked ones git does not ignore), not the build outputs.
git ls-files -z -c -o --exclude-standard | xargs -0 cp --parents -t "$work"
say "building with $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), CUDA_HOME=$CUDA_HOME, arch $TORCH_CUDA_ARCH_LIST"
(cd "$work" && "$VENV/bin/python" setup.py -q build_ext --inplace >"$work/build.log" 2>&1) || {
  tail -n 60 "$work/build.log"; say "FAILED: the CUDA build did not compile"; exit 1; }
so=$(ls "$work"/hrnet_fast/_C*.so)
undefined=$(nm -C --undefined-only "$so" | grep 'hrnet_fast::' || true)
if [ -n "$undefined" ]; then
  say "FAILED: undefined hrnet_fast symbols in $so:"; echo "$undefined"; exit 1
fi
(cd "$work" && "$VENV/bin/python" - <<'PY'
import torch  # first: _C links against torch's libraries

import hrnet_fast._C  # noqa: F401  (must load without a GPU)
from hrnet_fast import _backends
status = _backends.backends()
assert status["cpp"]["available"], status["cpp"]["reason"]
assert _backends.extension_has_cuda(), "the extension was built without its CUDA kernels"
for op in ("fused_exchange", "fused_exchange_backward", "decode_heatmaps", "crop_boxes", "heatmap_targets"):
    assert hasattr(torch.ops.hrnet_fast, op), f"hrnet_fast::{op} is not registered"
print("[cuda-build-check] import ok:", status["cpp"]["reason"], "| cuda:", status["cuda"]["reason"])
PY
)
say "passed in $((SECONDS - start)) s"
