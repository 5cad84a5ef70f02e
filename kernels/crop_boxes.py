"""Triton kernel of ``crop_boxes`` (rules and reference: ``hrnet_fast/ops/crop_boxes.py``).

One program per (box, BH x BW tile of output pixels): the box's image index, image size and inverse
matrix are scalars of the program; each output pixel computes its source point in float64, its floor and
float32 weights, gathers the four neighbours of each channel from the flat uint8 buffer (masked loads: 0
outside the image) and stores the normalised value in the output dtype, at any output strides
(contiguous or channels_last). All offsets are 64-bit.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._utils import launch_device, poison

_MAX_GRID_Z = 65535  # CUDA's limit on the third grid dimension: larger M is launched in chunks


@triton.jit
def _channel(img_ptr, base, row, S: tl.constexpr, m00, m01, m10, m11, fx, fy, k, b):
    """Blend of source channel S at the four neighbours (masked: 0 outside), normalised, in float32."""
    v00 = tl.load(img_ptr + base + S, mask=m00, other=0).to(tl.float32)
    v01 = tl.load(img_ptr + base + 3 + S, mask=m01, other=0).to(tl.float32)
    v10 = tl.load(img_ptr + base + row + S, mask=m10, other=0).to(tl.float32)
    v11 = tl.load(img_ptr + base + row + 3 + S, mask=m11, other=0).to(tl.float32)
    top = v00 + fx * (v01 - v00)
    bot = v10 + fx * (v11 - v10)
    v = top + fy * (bot - top)
    return v * k + b


@triton.jit
def _crop_kernel(
    img_ptr, meta_ptr, index_ptr, aff_ptr, out_ptr,
    m0, N, H, W, os_m, os_c, os_h, os_w,
    k0, k1, k2, b0, b1, b2,
    S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    m = tl.program_id(2).to(tl.int64) + m0
    idx = tl.load(index_ptr + m)
    invalid = (idx < 0) | (idx >= N)  # the box's crop is NaN, nothing is read
    valid = (idx >= 0) & (idx < N)
    idx = tl.where(valid, idx, 0)
    off = tl.load(meta_ptr + 3 * idx, mask=valid, other=0)
    ih = tl.load(meta_ptr + 3 * idx + 1, mask=valid, other=0)
    iw = tl.load(meta_ptr + 3 * idx + 2, mask=valid, other=0)
    a0 = tl.load(aff_ptr + 6 * m)
    a1 = tl.load(aff_ptr + 6 * m + 1)
    a2 = tl.load(aff_ptr + 6 * m + 2)
    a3 = tl.load(aff_ptr + 6 * m + 3)
    a4 = tl.load(aff_ptr + 6 * m + 4)
    a5 = tl.load(aff_ptr + 6 * m + 5)
    ys = tl.program_id(1).to(tl.int64) * BH + tl.arange(0, BH)[:, None]
    xs = tl.program_id(0).to(tl.int64) * BW + tl.arange(0, BW)[None, :]
    mask = (ys < H) & (xs < W)
    dx = xs.to(tl.float64)
    dy = ys.to(tl.float64)
    sx = a0 * dx + a1 * dy + a2
    sy = a3 * dx + a4 * dy + a5
    nan = (sx != sx) | (sy != sy) | invalid
    inside = (sx > -1.0) & (sx < iw.to(tl.float64)) & (sy > -1.0) & (sy < ih.to(tl.float64))
    sx = tl.where(inside, sx, 0.0)  # keeps the int cast in range
    sy = tl.where(inside, sy, 0.0)
    x0 = sx.to(tl.int64)  # truncation, then floor for (-1, 0)
    y0 = sy.to(tl.int64)
    x0 = tl.where(x0.to(tl.float64) > sx, x0 - 1, x0)
    y0 = tl.where(y0.to(tl.float64) > sy, y0 - 1, y0)
    fx = (sx - x0.to(tl.float64)).to(tl.float32)
    fy = (sy - y0.to(tl.float64)).to(tl.float32)
    ok = mask & inside  # an invalid box has ih = iw = 0: no neighbour is inside
    xin0 = x0 >= 0
    xin1 = x0 + 1 < iw
    yin0 = y0 >= 0
    yin1 = y0 + 1 < ih
    m00 = ok & yin0 & xin0
    m01 = ok & yin0 & xin1
    m10 = ok & yin1 & xin0
    m11 = ok & yin1 & xin1
    row = iw * 3
    base = off + y0 * row + x0 * 3
    o = out_ptr + m * os_m + ys * os_h + xs * os_w
    ty = out_ptr.dtype.element_ty
    v = _channel(img_ptr, base, row, S0, m00, m01, m10, m11, fx, fy, k0, b0)
    tl.store(o, tl.where(nan, float("nan"), v).to(ty), mask=mask)
    v = _channel(img_ptr, base, row, S1, m00, m01, m10, m11, fx, fy, k1, b1)
    tl.store(o + os_c, tl.where(nan, float("nan"), v).to(ty), mask=mask)
    v = _channel(img_ptr, base, row, S2, m00, m01, m10, m11, fx, fy, k2, b2)
    tl.store(o + 2 * os_c, tl.where(nan, float("nan"), v).to(ty), mask=mask)


def _fp32(v: float) -> float:
    """``v`` rounded to float32 (the kernel's constants, as every backend rounds them)."""
    return float(torch.tensor(v, dtype=torch.float32))


def crop_boxes(images, image_meta, image_index, inv_affine, out_h, out_w, scale, bias, swap_rb, dtype, channels_last):
    """Launcher. Inputs validated by ``hrnet_fast.ops.crop_boxes``, which also derives the normalisation:
    output channel ``c`` is ``pixel * scale[c] + bias[c]`` (3 floats each, float64 values, rounded to float32
    here as every backend rounds them). Returns (M, 3, out_h, out_w) of ``dtype`` on the images' device,
    contiguous or channels_last."""
    m = int(image_index.shape[0])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((m, 3, out_h, out_w), dtype=dtype, device=images.device, memory_format=fmt)
    poison(out)
    if out.numel() == 0:
        return out
    sc, bi = [_fp32(v) for v in scale], [_fp32(v) for v in bias]
    src = (2, 1, 0) if swap_rb else (0, 1, 2)
    bh, bw = 8, 64 if out_w > 32 else 32
    st = out.stride()
    with launch_device(images):
        for m0 in range(0, m, _MAX_GRID_Z):
            grid = (triton.cdiv(out_w, bw), triton.cdiv(out_h, bh), min(m - m0, _MAX_GRID_Z))
            _crop_kernel[grid](
                images, image_meta, image_index, inv_affine, out,
                m0, int(image_meta.shape[0]), out_h, out_w, st[0], st[1], st[2], st[3],
                sc[0], sc[1], sc[2], bi[0], bi[1], bi[2],
                S0=src[0], S1=src[1], S2=src[2], BH=bh, BW=bw,
                num_warps=4,
            )
    return out
