"""Helpers to read the reference fixtures in tests/data (copied from the official code's outputs)."""
import os

import numpy as np
import torch

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY_YAML = os.path.join(DATA, "tiny_hrnet.yaml")


def tiny_golden():
    return np.load(os.path.join(DATA, "tiny_hrnet_golden.npz"))


def tiny_state_dict(g):
    return {k[len("weight/"):]: torch.from_numpy(g[k]) for k in g.files if k.startswith("weight/")}


def max_rel_err(actual: torch.Tensor, expected) -> float:
    """max|actual - expected| / max|expected| in float64: the measure the reference README quotes."""
    e = torch.as_tensor(expected).double()
    return ((actual.detach().double() - e).abs().max() / e.abs().max().clamp_min(1e-30)).item()


def assert_close_rel(actual, expected, tol: float, what: str) -> None:
    err = max_rel_err(actual, expected)
    if not err <= tol:  # also catches NaN
        a = actual.detach().double()
        e = torch.as_tensor(expected).double()
        idx = (a - e).abs().flatten().argmax().item()
        raise AssertionError(
            f"{what}: max relative error {err:.3e} > {tol:.1e} (worst flat index {idx}: "
            f"got {a.flatten()[idx].item():.6g}, expected {e.flatten()[idx].item():.6g})"
        )
