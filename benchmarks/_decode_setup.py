"""Shared setup of the decoding benchmarks (bench_decode.py, decode_table.py): inputs and providers."""
from __future__ import annotations

import os
import sys
from typing import NamedTuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_decode_numpy import official_decode, official_flip_merge  # noqa: E402

import hrnet_fast  # noqa: E402
from hrnet_fast._timing import cpu_name  # noqa: E402

SHAPES = [(64, 48), (96, 72)]
BATCHES = [1, 64, 1024]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
K = 17


class Inputs(NamedTuple):
    heatmaps: torch.Tensor  # (N, 17, H, W) on the device
    flipped: torch.Tensor  # (N, 17, H, W): heatmaps of the flipped crops
    center_np: np.ndarray  # (N, 2) float32, what the official code takes
    scale_np: np.ndarray
    center: torch.Tensor  # (N, 2) on the device
    scale: torch.Tensor


def make_inputs(n, h, w, dtype, device, seed=0):
    """Noisy Gaussian heatmaps (as a model outputs) and official-convention boxes."""
    g = torch.Generator().manual_seed(seed)
    cx = torch.rand(n, K, 1, 1, generator=g) * w
    cy = torch.rand(n, K, 1, 1, generator=g) * h
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    hm = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0) + 0.01 * torch.randn(n, K, h, w, generator=g)
    # The "flipped-crop" heatmaps of the flip test: another batch of the same kind (the batch reversed).
    flipped = hm.flip(0).contiguous()
    center = (torch.rand(n, 2, generator=g) * 400 + 50).numpy()
    s0 = torch.rand(n, generator=g).numpy() * 2 + 0.5
    scale = np.stack([s0, s0 * h / w], -1).astype(np.float32)
    return Inputs(hm.to(device=device, dtype=dtype), flipped.to(device=device, dtype=dtype), center.astype(np.float32),
                  scale, torch.from_numpy(center).to(device), torch.from_numpy(scale).to(device))


def _official(m, x):
    if m == "flip_quarter":  # validate(): merge (host round trip of the flipped maps), then decode
        merged = official_flip_merge(x.heatmaps, x.flipped, hrnet_fast.COCO_FLIP_PAIRS)
        return official_decode(merged, x.center_np, x.scale_np)
    return official_decode(x.heatmaps, x.center_np, x.scale_np, post_process=(m == "quarter"))


def _ours(backend):
    def run(m, x):
        if m == "flip_quarter":  # the merge fused into the decode
            return hrnet_fast.decode_heatmaps(x.heatmaps, x.center, x.scale, flipped=x.flipped,
                                              flip_pairs=hrnet_fast.COCO_FLIP_PAIRS, backend=backend)
        return hrnet_fast.decode_heatmaps(x.heatmaps, x.center, x.scale, method=m, backend=backend)

    return run


def providers(device):
    """name -> callable(method, inputs: Inputs) -> (coords, maxvals).

    ``method`` is argmax/quarter/dark/udp, or ``flip_quarter`` (flip merge + quarter decode). The numpy
    baseline implements the official methods only (argmax, quarter, flip_quarter)."""
    out = {"numpy_official": _official, "torch": _ours("torch")}
    status = hrnet_fast.backends()
    for b in (["cpp"] if device == "cpu" else ["cuda", "triton"]):
        if status[b]["available"]:
            out[b] = _ours(b)
    return out


def device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"


