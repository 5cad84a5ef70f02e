"""BatchNorm folding: the one implementation, used by :func:`hrnet_fast.optimize` (whole network:
:func:`fold_batchnorm`), by the ONNX export and by :class:`~hrnet_fast.ExchangeUnit` (the fuse layers' 1x1
conv + BN feeding the fused op). A leaf: it imports nothing of hrnet_fast."""
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


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``bn(conv(x))`` in eval mode (running statistics), with a bias.

    The fold is computed in float64 so the folded fp32 weights match the unfolded graph to rounding.
    """
    w, b = fold_conv_norm(conv, bn, torch.float64)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(w.to(conv.weight.dtype))
    fused.bias.copy_(b.to(conv.weight.dtype))
    return fused


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, every BatchNorm2d that directly follows a Conv2d among a module's children.

    In HRNet every BN follows its conv in registration order (stem ``conv1, bn1, conv2, bn2``, blocks,
    transitions, fuse layers), which is also forward order. The BN becomes ``nn.Identity``. Returns the
    number of folds. The model must be in eval mode (batch statistics cannot be folded).
    """
    if model.training:
        raise RuntimeError("fold_batchnorm: call model.eval() first; BatchNorm in training mode cannot be folded")
    count = 0
    for parent in list(model.modules()):
        names = [n for n, m in parent.named_children() if m is not None]
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and conv.out_channels == bn.num_features
            ):
                parent._modules[a] = fold_conv_bn(conv, bn)
                parent._modules[b] = nn.Identity()
                count += 1
    return count
