"""Error measures shared by ``hrnet-fast check``, the benchmarks and the tests (one copy of each)."""
from __future__ import annotations

import torch

__all__ = ["max_rel_err"]


def max_rel_err(actual: torch.Tensor, expected) -> float:
    """``max|actual - expected| / max|expected|``, computed in float64.

    ``expected`` may be a tensor or an array. Returns ``inf`` when the shapes differ and NaN when either
    side holds a NaN where the other does not (so a ``<= tol`` test fails on it).
    """
    e = torch.as_tensor(expected).detach().double().cpu()
    a = actual.detach().double().cpu()
    if a.shape != e.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    return ((a - e).abs().max() / e.abs().max().clamp_min(1e-30)).item()
