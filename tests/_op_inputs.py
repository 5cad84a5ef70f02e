"""Seeded inputs that the op test files and the op-contract tests (test_op_contract.py) share: the exchange
unit's tensors, heatmaps and boxes for decoding, images and boxes for cropping."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

import hrnet_fast

# ----------------------------------------------------------------------------------------------------
# fused_exchange

# A low input: (channels C_j or None for "C, no weight", scale s, has_bias)
Spec = Tuple[Optional[int], int, bool]


def make_inputs(n: int, c: int, h: int, w: int, specs: Sequence[Spec], dtype=torch.float32, device="cpu",
                channels_last=False, seed=0):
    """Fresh random base (n, c, h, w), lows, weights (scaled like a trained 1x1 conv) and biases."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    base = rnd(n, c, h, w).contiguous(memory_format=fmt)
    lows, weights, biases = [], [], []
    for cj, s, has_b in specs:
        lows.append(rnd(n, cj or c, h // s, w // s).contiguous(memory_format=fmt))
        weights.append(None if cj is None else rnd(c, cj, scale=1 / math.sqrt(cj)))
        biases.append(rnd(c) if has_b else None)
    return base, lows, weights, biases


def with_fp32_params(inputs):
    """The same inputs with the weights and biases widened to float32 (exactly: they were rounded to the
    inputs' dtype), as the inference plan may prepare them beside 16-bit activations."""
    base, lows, weights, biases = inputs
    return [base, lows, [None if t is None else t.float() for t in weights],
            [None if t is None else t.float() for t in biases]]


# ----------------------------------------------------------------------------------------------------
# decode_heatmaps

def random_heatmaps(n, k, h, w, seed, dtype=torch.float32, device="cpu"):
    """Noisy Gaussians (sigma 2) with random sub-pixel centres, some near or past the border, random
    amplitudes; a few all-negative maps. Returns (heatmaps, centres (n,k,2) in heatmap pixels)."""
    g = torch.Generator().manual_seed(seed)
    cx = torch.rand(n, k, generator=g) * (w + 3) - 2
    cy = torch.rand(n, k, generator=g) * (h + 3) - 2
    amp = 0.3 + 0.7 * torch.rand(n, k, generator=g)
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    d2 = (xs - cx[..., None, None]) ** 2 + (ys - cy[..., None, None]) ** 2
    hm = amp[..., None, None] * torch.exp(-d2 / 8.0) + 0.02 * torch.randn(n, k, h, w, generator=g)
    neg = torch.rand(n, k, generator=g) < 0.05
    hm = torch.where(neg[..., None, None], -hm.abs() - 0.01, hm)
    return hm.to(dtype=dtype, device=device), torch.stack([cx, cy], -1)


def random_box(n, seed, device="cpu"):
    """(center, scale) of n boxes, (n, 2) float32 each; scale[1] = 4/3 scale[0]."""
    g = torch.Generator().manual_seed(seed + 1)
    center = torch.rand(n, 2, generator=g) * 400 + 50
    s0 = torch.rand(n, generator=g) * 2 + 0.5
    return center.to(device), torch.stack([s0, s0 * 4 / 3], -1).to(device)


def compare_decoded(ours, ref, method, exact_coords):
    """Decoded ``(coords, maxvals)`` against a reference decode: maxima exact (NaN where NaN), coordinates
    finite and exact (argmax/quarter with ``exact_coords``) or within 1e-4 px (argmax/quarter) / 1e-3 px."""
    (c, m), (rc, rm) = ours, ref
    assert torch.isfinite(c).all()
    torch.testing.assert_close(m, rm, rtol=0, atol=0, equal_nan=True)
    if exact_coords and method in ("argmax", "quarter"):
        torch.testing.assert_close(c, rc, rtol=0, atol=0)
    else:
        tol = 1e-4 if method in ("argmax", "quarter") else 1e-3
        diff = (c - rc).abs()
        bad = torch.nonzero(diff > tol)
        assert bad.numel() == 0, f"{method}: {bad.shape[0]} mismatches, first at {bad[:5].tolist()}: {c[tuple(bad[0][:2])]} vs {rc[tuple(bad[0][:2])]}"


# ----------------------------------------------------------------------------------------------------
# crop_boxes

def random_images(seed, shapes=((50, 70), (33, 20), (64, 64))):
    """Smooth structure plus noise, so the interpolation weights matter (neighbours differ)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in shapes:
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        base = 127 + 100 * torch.sin(xx[..., None] * 0.3 + yy[..., None] * 0.2 + torch.arange(3) * 2.0)
        out.append((base + torch.randint(-20, 21, (h, w, 3), generator=g)).clamp(0, 255).to(torch.uint8))
    return out


def random_boxes(seed, m, shapes, out_hw):
    """Boxes inside, across the border, fully outside, tiny; random rotations and images."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(shapes), (m,), generator=g)
    hw = torch.tensor(shapes, dtype=torch.float64)[idx]
    x = torch.rand(m, generator=g, dtype=torch.float64) * (hw[:, 1] + 40) - 30
    y = torch.rand(m, generator=g, dtype=torch.float64) * (hw[:, 0] + 40) - 30
    bw = torch.rand(m, generator=g, dtype=torch.float64) * hw[:, 1] + 0.5
    bh = torch.rand(m, generator=g, dtype=torch.float64) * hw[:, 0] + 0.5
    boxes = torch.stack([x, y, bw, bh], 1)
    boxes[0] = torch.tensor([2.0, 3.0, 1.5, 2.0])  # tiny: upsampled ~10x
    boxes[1] = torch.tensor([-500.0, -500.0, 40.0, 40.0])  # entirely outside
    center, scale = hrnet_fast.ops.boxes_to_center_scale(boxes, (out_hw[1], out_hw[0]))
    rot = (torch.rand(m, generator=g, dtype=torch.float64) * 120 - 60) * (torch.rand(m, generator=g) < 0.5)
    return idx, center, scale, rot
