"""Triton kernel of ``heatmap_targets`` (rules and reference: ``hrnet_fast/ops/heatmap_targets.py``; the CPU
and CUDA kernels share their per-joint arithmetic in ``csrc/heatmap_targets_common.h``).

One program per (n, k) heatmap: the joint's window and weight as scalars (float64, as the reference), then
the map in row tiles of ``BH x BW`` pixels (a runtime loop over rows, and over column strips when W > BW):
window pixels read the official float32 table (msra) or compute the Gaussian in float64 (udp), every other
pixel is written 0. Float32 steps of udp are done in float64 and rounded (exact for one division or addition
of floats), so no backend depends on how its compiler divides floats. The heatmap offset is 64-bit; pixel
offsets inside a map are int32 (``unsupported_reason`` bounds H*W).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from ._utils import launch_device, poison

_METHOD_MSRA = 0
#: Pixel offsets inside one heatmap are int32, the padding lanes of the last tile included.
MAX_PIXELS = 2**31 - 2**16
#: CUDA's limit on the grid's first dimension: one program per heatmap, so N*K must be at most this.
MAX_HEATMAPS = 2**31 - 1


def unsupported_reason(height: int, width: int) -> Optional[str]:
    """Why the kernel cannot write ``height`` x ``width`` heatmaps, or None (sizes are at least 1)."""
    if height * width > MAX_PIXELS:
        return f"triton heatmap_targets indexes a heatmap's pixels with int32: H*W = {height * width} > {MAX_PIXELS}"
    return None


@triton.jit
def _targets_kernel(
    kp_ptr, vis_ptr, jw_ptr, table_ptr, out_ptr, wout_ptr,
    K, H, W, L, stride_x, stride_y, tmp, center, two_sigma2,
    MSRA: tl.constexpr, HAS_JW: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    nk = tl.program_id(0).to(tl.int64)
    x = tl.load(kp_ptr + 2 * nk)
    y = tl.load(kp_ptr + 2 * nk + 1)
    if MSRA:  # float64, as the official: int(x / stride + 0.5)
        ux = x / stride_x
        uy = y / stride_y
        tx = ux + 0.5
        ty = uy + 0.5
    else:  # float32, as mmpose
        ux = (x.to(tl.float32).to(tl.float64) / stride_x).to(tl.float32).to(tl.float64)
        uy = (y.to(tl.float32).to(tl.float64) / stride_y).to(tl.float32).to(tl.float64)
        tx = (ux + 0.5).to(tl.float32).to(tl.float64)
        ty = (uy + 0.5).to(tl.float32).to(tl.float64)
    # int(t): the cast truncates toward zero, but only within int64's range: beyond it (and for NaN, outside by
    # rule) the joint is far outside the map, which fin records; those lanes cast 0 instead
    fin = (tl.abs(tx) < 4.0e18) & (tl.abs(ty) < 4.0e18)
    mx = tl.where(fin, tx, 0.0).to(tl.int64).to(tl.float64)
    my = tl.where(fin, ty, 0.0).to(tl.int64).to(tl.float64)
    ulx = (mx - tmp).to(tl.int64).to(tl.float64)
    uly = (my - tmp).to(tl.int64).to(tl.float64)
    brx = (mx + tmp + 1.0).to(tl.int64).to(tl.float64)
    bry = (my + tmp + 1.0).to(tl.int64).to(tl.float64)
    inside = fin & (ulx < W) & (uly < H) & (brx >= 0.0) & (bry >= 0.0)
    v = tl.load(vis_ptr + nk)
    if MSRA:
        paste = inside & (v > 0.5)
        wt = tl.where(inside, v, 0.0)
    else:
        low = v < 0.5  # False for NaN (pasted, as numpy's test skips only vis < 0.5)
        paste = inside & ~low
        wt = tl.where(low | inside, v, 0.0)
    if HAS_JW:
        wt = wt * tl.load(jw_ptr + nk % K)
    tl.store(wout_ptr + nk, wt)
    ul_x = tl.where(inside, ulx, 0.0).to(tl.int32)
    ul_y = tl.where(inside, uly, 0.0).to(tl.int32)
    x_end = tl.minimum(tl.minimum(tl.where(inside, brx, 0.0).to(tl.int32), W), ul_x + L)
    y_end = tl.minimum(tl.minimum(tl.where(inside, bry, 0.0).to(tl.int32), H), ul_y + L)
    y_end = tl.where(paste, y_end, 0)  # no row of the map is in the window of a joint not pasted
    x0 = center + (ux - mx)
    y0 = center + (uy - my)
    base = out_ptr + nk * H * W
    rows = tl.arange(0, BH)[:, None]
    cols = tl.arange(0, BW)[None, :]
    for y_start in range(0, H, BH):
        ys = y_start + rows
        j = ys - ul_y
        row_in = (j >= 0) & (ys < y_end)
        for x_start in range(0, W, BW):
            xs = x_start + cols
            i = xs - ul_x
            m = (ys < H) & (xs < W)
            win = row_in & (i >= 0) & (xs < x_end)
            if MSRA:
                val = tl.load(table_ptr + j * L + i, mask=m & win, other=0.0)
            else:
                dx = i.to(tl.float64) - x0
                dy = j.to(tl.float64) - y0
                val = tl.where(m & win, tl.exp(-(dx * dx + dy * dy) / two_sigma2).to(tl.float32), 0.0)
            tl.store(base + ys.to(tl.int64) * W + xs, val, mask=m)


def launch_config(width: int):
    """(BH, BW, num_warps): row tiles of up to 1024 pixels, BW the next power of two of W (at most 128)."""
    bw = min(128, triton.next_power_of_2(max(int(width), 1)))
    return max(1, 1024 // bw), bw, 4


def heatmap_targets(keypoints, visible, joint_weights, table, heatmap_h, heatmap_w, stride_x, stride_y, sigma, method):
    """Launcher. Inputs checked by ``hrnet_fast.ops.heatmap_targets`` (keypoints (N, K, 2) float64, visible
    (N, K) float32, joint_weights (K,) float32 or None, table (L, L) float32 for msra). Returns (targets
    (N, K, H, W), weights (N, K, 1)) float32 on the keypoints' device."""
    n, k = int(keypoints.shape[0]), int(keypoints.shape[1])
    dev = keypoints.device
    targets = torch.empty((n, k, heatmap_h, heatmap_w), dtype=torch.float32, device=dev)
    weights = torch.empty((n, k, 1), dtype=torch.float32, device=dev)
    poison(targets, weights)
    if n * k == 0:
        return targets, weights
    if n * k > MAX_HEATMAPS:
        raise ValueError(f"heatmap_targets (triton): N*K = {n * k} heatmaps exceed the grid limit {MAX_HEATMAPS}")
    tmp = sigma * 3
    L = int(math.ceil(2 * tmp + 1))
    center = float(math.floor((2 * tmp + 1) / 2))
    msra = method == _METHOD_MSRA
    bh, bw, warps = launch_config(heatmap_w)
    dummy = visible  # unused pointers get a valid tensor; the constexpr flags keep the kernel from reading them
    with launch_device(keypoints):
        _targets_kernel[(n * k,)](
            keypoints, visible, joint_weights if joint_weights is not None else dummy,
            table if msra else dummy, targets, weights,
            k, heatmap_h, heatmap_w, L, float(stride_x), float(stride_y), float(tmp), center, float(2 * sigma ** 2),
            MSRA=msra, HAS_JW=joint_weights is not None, BH=bh, BW=bw, num_warps=warps,
        )
    return targets, weights
