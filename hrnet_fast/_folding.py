"""BatchNorm folding: the one implementation, used by :func:`hrnet_fast.optimize` (whole network) and by
:class:`~hrnet_fast.ExchangeUnit` (the fuse layers' 1x1 conv + BN feeding the fused op)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn


def fold_conv_norm(conv: nn.Conv2d, norm: nn.Module, dtype: torch.dtype) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(weight, bias)`` of one convolution equal to ``norm(conv(x))`` with running statistics.

    ``norm`` is a BatchNorm (eval statistics) or ``nn.Identity``. ``weight`` has the conv's weight shape;
    ``bias`` is (C_out,), or None when neither the conv nor the norm has one. Computed in ``dtype``:
    float64 for stored folds (then cast: the folded fp32 weights match the unfolded graph to rounding),
    the parameters' dtype when the fold must stay differentiable (it is built from torch ops).
    """
    w = conv.weight.to(dtype)
    b = None if conv.bias is None else conv.bias.to(dtype)
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        if norm.running_var is None:
            raise ValueError("fold_conv_norm: the BatchNorm tracks no running statistics, so it cannot be folded")
        scale = torch.rsqrt(norm.running_var.to(dtype) + norm.eps)
        if norm.weight is not None:
            scale = norm.weight.to(dtype) * scale
        shift = -norm.running_mean.to(dtype) if b is None else b - norm.running_mean.to(dtype)
        b = shift * scale
        if norm.bias is not None:
            b = b + norm.bias.to(dtype)
        w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    elif not isinstance(norm, nn.Identity):
        raise TypeError(f"fold_conv_norm: expected a BatchNorm or Identity after the conv, got {type(norm).__name__}")
    return w, b
