"""Equivalence checks behind ``hrnet-fast check``: every available backend of every op against a reference,
on fresh seeded random inputs, in fp32 and the device's other dtypes.

``fused_exchange``: the inputs, rounded to the tested dtype, are cast to float64 and run through the
torch backend: that float64 result is the reference. The torch backend in the tested dtype is compared
with it in the same run, which measures what rounding to that dtype costs on this device; a backend
passes when its own error is at most ``REF_FACTOR`` times that, or the dtype's floor (``FLOOR``),
whichever is larger. Both errors are reported (``max_rel_err``: max|out - ref| / max|ref|).

Precision of fp32: fp32 inputs mean IEEE fp32 in hrnet_fast's kernels, unless the user enables TF32 for
matrix products (``torch.backends.cuda.matmul.allow_tf32 = True`` or
``torch.set_float32_matmul_precision("high")``). PyTorch's own convolutions use TF32 by default on
Ampere and later (``torch.backends.cudnn.allow_tf32``), so the fp32 torch reference runs here with
cuDNN's TF32 switched to match the matmul setting (off by default), and the flags are restored afterwards.

``decode_heatmaps``: the torch backend computes in fp32/fp64 whatever the heatmaps' dtype (and takes no
float64 heatmaps), so backends are compared with it directly, at fixed tolerances (``DECODE_TOL``).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterator, List, Optional, Tuple

import torch

from ._numerics import max_rel_err
from .ops.decode_heatmaps import COCO_FLIP_PAIRS, decode_heatmaps
from .ops.fused_exchange import fused_exchange

KERNEL_BACKENDS = ("cpp", "cuda", "triton")
#: a backend may be this many times further from the float64 reference than the torch reference in its dtype
REF_FACTOR = 4.0
#: ... or this far (max relative error), whichever is larger: rounding noise where the reference is exact
FLOOR = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
#: decode: relative to max|coordinate|; the coordinates and maxima are computed in fp32 in every backend
DECODE_TOL = {torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5}


@dataclasses.dataclass
class CheckSummary:
    """What ``run_checks`` compared: ``compared`` (backend/op/dtype triples), ``skipped``, ``failures``."""

    compared: int = 0
    skipped: int = 0
    failures: List[str] = dataclasses.field(default_factory=list)


def _dtypes(op: str, device: torch.device):
    if device.type == "cuda":
        return [torch.float32, torch.float16, torch.bfloat16]
    # the CPU exchange kernels compute in fp32/fp64; the CPU decoder reads fp16/bf16 heatmaps too
    return [torch.float32, torch.float64] if op == "fused_exchange" else [torch.float32, torch.float16, torch.bfloat16]


def tf32_enabled_by_user() -> bool:
    """True when the user allowed TF32 for fp32 matrix products (then kernels may use it too)."""
    return bool(torch.backends.cuda.matmul.allow_tf32) or torch.get_float32_matmul_precision() != "highest"


@contextlib.contextmanager
def reference_precision() -> Iterator[bool]:
    """Run the torch reference at the project's fp32 precision: cuDNN's TF32 follows the matmul setting
    (off unless the user enabled it). Yields whether TF32 is allowed; restores the flags on exit."""
    saved = torch.backends.cudnn.allow_tf32
    tf32 = tf32_enabled_by_user()
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield tf32
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def _unsupported(exc: Exception) -> bool:
    return isinstance(exc, RuntimeError) and "cannot run these inputs" in str(exc)


def _exchange_inputs(device, dtype):
    """base (2, 48, 16, 12); lows (2, 96, 8, 6) with a 96->48 1x1 conv and (2, 48, 4, 3) without one."""
    gen = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=gen).to(device=device, dtype=dtype)  # noqa: E731
    base = mk(2, 48, 16, 12)
    lows = [mk(2, 96, 8, 6), mk(2, 48, 4, 3)]
    weights = [mk(48, 96) * 0.1, None]
    biases = [mk(48), mk(48)]
    return base, lows, weights, biases


def _double(ts):
    return [None if t is None else t.double() for t in ts]


def check_exchange(device, dtype, backend) -> Tuple[float, Optional[float]]:
    """(backend's max rel err, torch reference's max rel err), both against the float64 reference."""
    base, lows, weights, biases = _exchange_inputs(device, dtype)
    with reference_precision():
        exact = fused_exchange(base.double(), _double(lows), _double(weights), _double(biases), relu=True, backend="torch")
        ref = fused_exchange(base, lows, weights, biases, relu=True, backend="torch")
    out = fused_exchange(base, lows, weights, biases, relu=True, backend=backend)
    return max_rel_err(out, exact), max_rel_err(ref, exact)


def check_decode(device, dtype, backend) -> Tuple[float, Optional[float]]:
    """(backend's max rel err against the torch backend, None), over quarter and DARK with the flip test."""
    gen = torch.Generator().manual_seed(1)
    n, k, h, w = 4, 17, 64, 48
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    centre = torch.rand(n, k, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    heat = torch.exp(-((xs - centre[..., :1, None]) ** 2 + (ys - centre[..., 1:, None]) ** 2) / 8.0)
    heat = (heat + 0.01 * torch.rand(n, k, h, w, generator=gen)).to(device=device, dtype=dtype)
    flipped = heat.flip(-1)
    center = (torch.rand(n, 2, generator=gen) * 200).to(device)
    scale = (torch.rand(n, 2, generator=gen) + 0.5).to(device)
    worst = 0.0
    for method in ("quarter", "dark"):
        kw = dict(method=method, flipped=flipped, flip_pairs=COCO_FLIP_PAIRS)
        with reference_precision():
            rc, rm = decode_heatmaps(heat, center, scale, backend="torch", **kw)
        c, m = decode_heatmaps(heat, center, scale, backend=backend, **kw)
        worst = max(worst, max_rel_err(c, rc), max_rel_err(m, rm))
    return worst, None


CHECKS: List[tuple] = [("fused_exchange", check_exchange), ("decode_heatmaps", check_decode)]


def tolerance(op: str, dtype: torch.dtype, ref_err: Optional[float]) -> float:
    if ref_err is None:
        return DECODE_TOL[dtype]
    return max(FLOOR[dtype], REF_FACTOR * ref_err)


def run_checks(device: torch.device, report: Callable[[str], None] = print) -> CheckSummary:
    """Run every check of every backend on ``device``, reporting one line each; returns what was compared
    and the failures (a mismatch or an error). A backend that cannot run on this machine or these inputs
    is skipped, with its reason."""
    from ._backends import backends

    status = backends()
    summary = CheckSummary()
    report(f"fp32 reference: {'TF32 allowed (enabled by the user)' if tf32_enabled_by_user() else 'IEEE fp32, TF32 off'}; "
           f"fused_exchange errors against a float64 reference, tol = max(floor, {REF_FACTOR:g} x the torch reference's error)")
    for op, check in CHECKS:
        for dtype in _dtypes(op, device):
            for backend in KERNEL_BACKENDS:
                tag = f"{op:16s} {backend:7s} {str(dtype).replace('torch.', ''):9s}"
                if not status.get(backend, {}).get("available", False):
                    summary.skipped += 1
                    report(f"  {tag} skipped: {str(status.get(backend, {}).get('reason', 'unknown backend'))[:110]}")
                    continue
                try:
                    err, ref_err = check(device, dtype, backend)
                except Exception as exc:  # noqa: BLE001 - every error is reported, the other checks still run
                    if _unsupported(exc):
                        summary.skipped += 1
                        report(f"  {tag} skipped: {str(exc).split(': ', 2)[-1][:110]}")
                        continue
                    summary.failures.append(f"{op}/{backend}/{dtype}: {type(exc).__name__}: {exc}")
                    report(f"  {tag} ERROR {type(exc).__name__}: {exc}")
                    continue
                summary.compared += 1
                tol = tolerance(op, dtype, ref_err)
                ok = err <= tol  # False for NaN
                against = "vs float64" if ref_err is not None else "vs torch backend"
                ref_s = f", torch reference {ref_err:.2e}" if ref_err is not None else ""
                report(f"  {tag} {'ok   ' if ok else 'FAIL '} max rel err {err:.2e} {against}{ref_s} (tol {tol:.1e})")
                if not ok:
                    summary.failures.append(f"{op}/{backend}/{dtype}: max rel err {err:.2e} > {tol:.1e}")
    return summary
