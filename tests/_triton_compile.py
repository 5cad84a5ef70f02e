"""Compile Triton kernels for sm_90 (through ptxas) without a GPU, in a subprocess.

The interpreter does not type-check like the compiler, so a GPU-only compile error would otherwise first
show on a GPU machine. A subprocess, because the test process runs the kernels under the interpreter.

Two levels: ``compile_script_or_skip`` runs a script in that subprocess (with an empty Triton cache, so
every kernel really compiles and compile times are honest); inside such a script ``compile_all`` compiles
a list of ``Case`` specialisations on every core, timing each one.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def compile_script_or_skip(script: str, timeout: int = 300) -> str:
    """Run ``script`` without TRITON_INTERPRET and with a fresh, temporary TRITON_CACHE_DIR; returns its
    stdout. Skips where this triton cannot target sm_90 at all; fails on any other error (a kernel that
    does not compile). The script can import this module (``tests/`` is on its path)."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS, env.get("PYTHONPATH", "")])
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    cache = tempfile.mkdtemp(prefix="triton-cache-")
    env["TRITON_CACHE_DIR"] = cache  # a cached kernel would "compile" in milliseconds
    try:
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0 and ("GPUTarget" in proc.stderr or "ptxas" in proc.stderr.lower()) and "ImportError" in proc.stderr:
        pytest.skip("this triton cannot compile for sm_90 here: " + proc.stderr[-300:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class Case(NamedTuple):
    """One specialisation of a kernel of ``hrnet_fast.kernels.<module>``, as its launcher would make it.

    ``signature``: the type of every non-constexpr argument (``"*fp16"``, ``"i32"``, ...);
    ``constexprs``: the constexpr arguments; ``aligned``: the arguments Triton would specialise as
    divisible by 16 (16-byte aligned pointers, strides that are multiples of 16)."""

    label: str
    module: str
    kernel: str
    signature: Dict[str, str]
    constexprs: Dict[str, object]
    aligned: Tuple[str, ...]
    num_warps: int


def compile_case(case: Case) -> Tuple[str, float]:
    """Compile one case for sm_90 (ptxas included); returns ``(label, seconds)``. Runs in a worker of
    ``compile_all``, in the subprocess of ``compile_script_or_skip`` (never under the interpreter)."""
    import triton
    from triton.backends.compiler import BaseBackend, GPUTarget
    from triton.compiler import ASTSource

    import hrnet_fast

    fn = getattr(hrnet_fast._backends.triton_kernels(case.module), case.kernel)
    sig = {n: "constexpr" if n in case.constexprs else case.signature[n] for n in fn.arg_names}
    # The launcher's divisibility specialisation, in the attrs format of triton >= 3.3 (BaseBackend.parse_attr).
    div16 = BaseBackend.parse_attr("D") if hasattr(BaseBackend, "parse_attr") else None
    attrs = {(i,): div16 for i, n in enumerate(fn.arg_names) if n in case.aligned} if div16 else None
    t0 = time.perf_counter()
    compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=case.constexprs, attrs=attrs),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": case.num_warps})
    seconds = time.perf_counter() - t0
    if not compiled.asm.get("cubin"):
        raise RuntimeError(f"{case.label}: no cubin")
    return case.label, seconds


def compile_all(cases: Sequence[Case], workers: Optional[int] = None) -> List[Tuple[str, float]]:
    """Compile every case, ``workers`` at a time (default: one per core), printing
    ``compiled <label> <seconds>s`` as each finishes; returns ``[(label, seconds)]`` in case order.

    Each worker is a fresh (spawned) process, so a case's time is that of a compile on one core (the
    first case of each worker also pays for loading the compiler's libraries)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = max(1, min(len(cases), workers or os.cpu_count() or 1))
    results: Dict[str, float] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(compile_case, c) for c in cases]
        for fut in as_completed(futures):
            label, seconds = fut.result()
            results[label] = seconds
            print(f"compiled {label} {seconds:.2f}s", flush=True)
    return [(c.label, results[c.label]) for c in cases]


def parse_compiled(stdout: str) -> Dict[str, float]:
    """``{label: seconds}`` from the ``compiled <label> <seconds>s`` lines of ``compile_all``."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("compiled "):
            label, seconds = line[len("compiled "):].rsplit(" ", 1)
            out[label] = float(seconds.rstrip("s"))
    return out
