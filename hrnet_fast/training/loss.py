"""The official heatmap losses, batched: ``JointsMSELoss`` and ``JointsOHKMMSELoss``.

Same signatures and values as the official ``lib/core/loss.py`` (:mod:`hrnet_fast.baselines.official_loss`, the
test oracle), without its Python loops over joints and samples: one fused ``mse_loss`` for the MSE loss, one
``topk`` over the (B, K) per-joint losses for OHKM.

Precision: the loss is computed in the output's dtype (float32 or float64), and in float32 for a 16-bit
output (float16 or bfloat16, e.g. the heatmaps of an autocast forward), with autocast switched off inside, so
that a float64 model gets a float64 loss even in an autocast region. The returned scalar has that dtype;
autograd casts the gradient back to the output's dtype.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["JointsMSELoss", "JointsOHKMMSELoss"]

_HALF = (torch.float16, torch.bfloat16)


def _weighted_pair(who: str, output: torch.Tensor, target: torch.Tensor, target_weight: Optional[torch.Tensor],
                   use_target_weight: bool):
    """Checked ``(pred, gt)`` as (B, K, H*W) in the compute dtype, both multiplied by the weights (B, K, 1)
    when ``use_target_weight`` (the official ``pred.mul(w)``, ``gt.mul(w)``)."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point():
        got = output.dtype if isinstance(output, torch.Tensor) else type(output).__name__
        raise TypeError(f"{who}: output must be a floating-point tensor (B, K, H, W), got {got}")
    if output.dim() < 2 or output.shape[0] == 0 or output.shape[1] == 0:
        raise ValueError(f"{who}: output must have shape (B, K, H, W) with B, K > 0, got {tuple(output.shape)}")
    if not isinstance(target, torch.Tensor) or target.shape != output.shape:
        got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"{who}: target must have the output's shape {tuple(output.shape)}, got {got}")
    if target.device != output.device:
        raise ValueError(f"{who}: target is on {target.device} but output is on {output.device}")
    b, k = output.shape[0], output.shape[1]
    dt = torch.float32 if output.dtype in _HALF else output.dtype
    pred = output.reshape(b, k, -1).to(dt)
    gt = target.reshape(b, k, -1).to(dt)
    if use_target_weight:
        if not isinstance(target_weight, torch.Tensor) or target_weight.numel() != b * k or (
                target_weight.dim() == 3 and target_weight.shape[2] != 1) or target_weight.dim() not in (2, 3):
            got = tuple(target_weight.shape) if isinstance(target_weight, torch.Tensor) else type(target_weight).__name__
            raise ValueError(f"{who}: target_weight must have shape (B, K, 1) = ({b}, {k}, 1) with use_target_weight=True, "
                             f"got {got}")
        if target_weight.device != output.device:
            raise ValueError(f"{who}: target_weight is on {target_weight.device} but output is on {output.device}")
        w = target_weight.reshape(b, k, 1).to(dt)
        pred, gt = pred * w, gt * w
    return pred, gt


class JointsMSELoss(nn.Module):
    """``0.5 * mean((w * (output - target))^2)`` over every element: the official per-joint
    ``0.5 * MSELoss(pred * w, gt * w)`` summed over the K joints and divided by K (``lib/core/loss.py:15-39``).

    ``forward(output (B, K, H, W), target (B, K, H, W), target_weight (B, K, 1))`` -> a scalar tensor in the
    output's dtype (float32 for a float16/bfloat16 output). ``target_weight`` is read only when
    ``use_target_weight`` (it may then be None).
    """

    def __init__(self, use_target_weight: bool):
        super().__init__()
        self.use_target_weight = bool(use_target_weight)

    def forward(self, output: torch.Tensor, target: torch.Tensor, target_weight: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.autocast(output.device.type, enabled=False):
            pred, gt = _weighted_pair("JointsMSELoss", output, target, target_weight, self.use_target_weight)
            return 0.5 * F.mse_loss(pred, gt, reduction="mean")


class JointsOHKMMSELoss(nn.Module):
    """Online hard keypoint mining (``lib/core/loss.py:42-84``): per (sample, joint) the loss
    ``l[b, k] = 0.5 * mean_hw((w * (output - target))^2)``; per sample the sum of its ``topk`` largest
    ``l[b, :]`` divided by ``topk``; averaged over the batch.

    ``forward(output (B, K, H, W), target (B, K, H, W), target_weight (B, K, 1))`` -> a scalar tensor in the
    output's dtype (float32 for a float16/bfloat16 output); needs K >= ``topk``. Unlike the official code it
    also takes a batch of one without target weights (the official ``.squeeze()`` fails there).
    """

    def __init__(self, use_target_weight: bool, topk: int = 8):
        super().__init__()
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"JointsOHKMMSELoss: topk must be a positive int, got {topk!r}")
        self.use_target_weight = bool(use_target_weight)
        self.topk = topk

    def forward(self, output: torch.Tensor, target: torch.Tensor, target_weight: Optional[torch.Tensor]) -> torch.Tensor:
        with torch.autocast(output.device.type, enabled=False):
            pred, gt = _weighted_pair("JointsOHKMMSELoss", output, target, target_weight, self.use_target_weight)
            if pred.shape[1] < self.topk:
                raise ValueError(f"JointsOHKMMSELoss: topk={self.topk} needs at least that many joints, "
                                 f"the output has K={pred.shape[1]}")
            per_joint = 0.5 * F.mse_loss(pred, gt, reduction="none").mean(dim=2)  # (B, K)
            hardest = per_joint.topk(self.topk, dim=1, sorted=False).values
            return (hardest.sum(dim=1) / self.topk).mean()
