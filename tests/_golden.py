"""Helpers to read the reference fixtures in tests/data (copied from the official code's outputs)."""
import os

import numpy as np
import torch

from hrnet_fast._numerics import max_rel_err

from _support import DATA
TINY_YAML = os.path.join(DATA, "tiny_hrnet.yaml")


def tiny_golden():
    return np.load(os.path.join(DATA, "tiny_hrnet_golden.npz"))


def tiny_state_dict(g):
    return {k[len("weight/"):]: torch.from_numpy(g[k]) for k in g.files if k.startswith("weight/")}


def assert_close_rel(actual, expected, tol: float, what: str) -> None:
    """max_rel_err(actual, expected) <= tol, else an error naming the worst element and the first
    mismatching indices (NaN, e.g. an element a kernel left poisoned, fails too)."""
    a = actual.detach().double().cpu()
    e = torch.as_tensor(expected).detach().double().cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    err = max_rel_err(a, e)
    if not err <= tol:
        bad = ((a - e).abs() > tol * e.abs().max()) | a.isnan()
        idx = (a - e).abs().nan_to_num(float("inf")).flatten().argmax().item()
        raise AssertionError(
            f"{what}: max relative error {err:.3e} > {tol:.1e} (worst flat index {idx}: got "
            f"{a.flatten()[idx].item():.6g}, expected {e.flatten()[idx].item():.6g}; first mismatches at "
            f"{bad.nonzero()[:5].tolist()})"
        )


def randomize_bn(model, seed=0):
    """Seeded, non-trivial BatchNorm statistics and affine parameters (so folding them is tested), in place."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    return model
