"""Random weights with realistic BatchNorm statistics, for benchmarks and equivalence checks."""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def realistic_random_init(model: nn.Module, image_hw=(256, 192), seed: int = 0, batches: int = 2, batch_size: int = 2) -> nn.Module:
    """Randomise ``model`` in place so that eval-mode activations look like a trained network's.

    Convolutions keep PyTorch's default init; BatchNorm affine parameters are drawn around (1, 0);
    running statistics are then *measured*: a few train-mode forwards on random images with a
    cumulative average (``momentum=None``), so every BN normalises what it actually sees and the
    eval-mode activations neither vanish nor explode (with the official ``running_var = 1`` they do).
    Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        c = bn.num_features
        bn.weight.copy_((torch.rand(c, generator=gen) * 0.5 + 0.75).to(device, dtype))
        bn.bias.copy_((torch.randn(c, generator=gen) * 0.1).to(device, dtype))
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for _ in range(batches):
        x = torch.randn(batch_size, 3, *image_hw, generator=gen).to(device, dtype)
        model(x)
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()
