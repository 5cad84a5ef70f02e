"""Compile Triton kernels for sm_90 (through ptxas) without a GPU, in a subprocess.

The interpreter does not type-check like the compiler, so a GPU-only compile error would otherwise first
show on a GPU machine. A subprocess, because the test process runs the kernels under the interpreter.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_script_or_skip(script: str, timeout: int = 300) -> str:
    """Run ``script`` without TRITON_INTERPRET; returns its stdout. Skips where this triton cannot target
    sm_90 at all; fails on any other error (a kernel that does not compile)."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 and ("GPUTarget" in proc.stderr or "ptxas" in proc.stderr.lower()) and "ImportError" in proc.stderr:
        pytest.skip("this triton cannot compile for sm_90 here: " + proc.stderr[-300:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
