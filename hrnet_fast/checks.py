"""Equivalence checks behind ``hrnet-fast check``: every available backend of every op against the
torch reference, on fresh random inputs, in fp32 and the device's half types."""
from __future__ import annotations

from typing import Callable, List

import torch

from .ops.decode_heatmaps import COCO_FLIP_PAIRS, decode_heatmaps
from .ops.fused_exchange import fused_exchange

KERNEL_BACKENDS = ("cpp", "cuda", "triton")
# (rtol relative to max|reference|) per dtype: fp32 near 1e-5, half types near 1e-2
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def _dtypes(op: str, device: torch.device):
    if device.type == "cuda":
        return [torch.float32, torch.float16, torch.bfloat16]
    # the CPU exchange kernels compute in fp32/fp64; the CPU decoder reads fp16/bf16 heatmaps too
    return [torch.float32, torch.float64] if op == "fused_exchange" else [torch.float32, torch.float16, torch.bfloat16]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _unsupported(exc: Exception) -> bool:
    return isinstance(exc, RuntimeError) and "cannot run these inputs" in str(exc)


def _check_exchange(device, dtype, backend) -> float:
    gen = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=gen).to(device=device, dtype=dtype)  # noqa: E731
    base = mk(2, 48, 16, 12)
    lows = [mk(2, 96, 8, 6), mk(2, 48, 4, 3)]
    weights = [mk(48, 96) * 0.1, None]
    biases = [mk(48), mk(48)]
    ref = fused_exchange(base, lows, weights, biases, relu=True, backend="torch")
    out = fused_exchange(base, lows, weights, biases, relu=True, backend=backend)
    return _rel(out, ref)


def _check_decode(device, dtype, backend) -> float:
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
        rc, rm = decode_heatmaps(heat, center, scale, backend="torch", **kw)
        c, m = decode_heatmaps(heat, center, scale, backend=backend, **kw)
        worst = max(worst, _rel(c, rc), _rel(m, rm))
    return worst


CHECKS: List[tuple] = [("fused_exchange", _check_exchange), ("decode_heatmaps", _check_decode)]


def run_checks(device: torch.device, report: Callable[[str], None] = print) -> List[str]:
    """Run every check; returns the list of failures (empty when all match)."""
    failures: List[str] = []
    for op, check in CHECKS:
        for dtype in _dtypes(op, device):
            tol = TOLERANCE[dtype]
            for backend in KERNEL_BACKENDS:
                tag = f"{op:16s} {backend:7s} {str(dtype).replace('torch.', ''):9s}"
                try:
                    err = check(device, dtype, backend)
                except Exception as exc:  # noqa: BLE001
                    if _unsupported(exc):
                        report(f"  {tag} skipped: {str(exc).split(': ', 2)[-1][:110]}")
                        continue
                    failures.append(f"{op}/{backend}/{dtype}: {type(exc).__name__}: {exc}")
                    report(f"  {tag} ERROR {type(exc).__name__}: {exc}")
                    continue
                ok = err <= tol
                report(f"  {tag} {'ok   ' if ok else 'FAIL '} max rel err {err:.2e} (tol {tol:.0e})")
                if not ok:
                    failures.append(f"{op}/{backend}/{dtype}: max rel err {err:.2e} > {tol:.0e}")
    return failures
