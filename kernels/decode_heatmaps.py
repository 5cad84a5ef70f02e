"""Triton kernels of ``decode_heatmaps`` (rules and reference: ``hrnet_fast/ops/decode_heatmaps.py``).

One program per (n, k) heatmap. ``_argmax_quarter_kernel`` streams the heatmap in chunks (the flip merge
is computed where each element is loaded, never stored) and keeps a running first-index maximum.
``_dark_udp_kernel`` holds a whole heatmap, padded to powers of two, in one program: mmpose rescales the
blurred map by its global maximum, so the whole map must be blurred. The separable zero-padded Gaussian
blur is two matrix products with banded Toeplitz matrices (``X @ Gw^T`` then ``Gh @ .``), in IEEE fp32.

All offsets are 64-bit: the program id is cast to int64 before it multiplies a stride.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_METHOD_QUARTER = 1
_METHOD_DARK = 2
_METHOD_UDP = 3


@triton.jit
def _merged(hbase, fbase, y, x, hs_h, fs_h, mask, other, W: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr):
    """Value of the (merged) heatmap at (y, x) in fp32: ``(h + f[W-x or W-1-x]) * 0.5`` with FLIP."""
    v = tl.load(hbase + y * hs_h + x, mask=mask, other=other).to(tl.float32)
    if FLIP:
        if SHIFT:
            xf = tl.where(x == 0, W - 1, W - x)
        else:
            xf = W - 1 - x
        fv = tl.load(fbase + y * fs_h + xf, mask=mask, other=other).to(tl.float32)
        v = (v + fv) * 0.5
    return v


@triton.jit
def _back_transform(px, py, n, center_ptr, scale_ptr, H: tl.constexpr, W: tl.constexpr, UDP: tl.constexpr):
    """Official inverse affine (rotation 0), or the UDP one; fp64 as the reference.

    (H - 1 and W - 1 are at least 1 for UDP: the launcher sends H, W >= 2 there, see _udp_dims.)"""
    cx = tl.load(center_ptr + 2 * n).to(tl.float64)
    cy = tl.load(center_ptr + 2 * n + 1).to(tl.float64)
    s0 = tl.load(scale_ptr + 2 * n).to(tl.float64)
    s1 = tl.load(scale_ptr + 2 * n + 1).to(tl.float64)
    if UDP:
        px = px / (W - 1) * 200.0 * s0 + cx - 100.0 * s0
        py = py / (H - 1) * 200.0 * s1 + cy - 100.0 * s1
    else:
        fct = 200.0 * s0 / W
        px = cx + (px - W * 0.5) * fct
        py = cy + (py - H * 0.5) * fct
    return px, py


@triton.jit
def _argmax_quarter_kernel(
    h_ptr, f_ptr, perm_ptr, center_ptr, scale_ptr, coords_ptr, maxv_ptr,
    K, hs_n, hs_k, hs_h, fs_n, fs_k, fs_h,
    H: tl.constexpr, W: tl.constexpr, HW: tl.constexpr, BLOCK: tl.constexpr,
    QUARTER: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr, HAS_BOX: tl.constexpr, FLAT: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    n = pid // K
    k = pid % K
    hbase = h_ptr + n * hs_n + k * hs_k
    fbase = f_ptr
    if FLIP:
        fbase = f_ptr + n * fs_n + tl.load(perm_ptr + k) * fs_k
    offs = tl.arange(0, BLOCK)
    best = -float("inf")
    best_idx = 0
    nan_count = 0
    for start in range(0, HW, BLOCK):
        idx = start + offs
        inb = idx < HW
        if FLAT:  # rows contiguous, no flip: plain offsets, so loads vectorise
            v = tl.load(hbase + idx, mask=inb, other=-float("inf")).to(tl.float32)
        else:
            y = idx // W
            x = idx % W
            v = _merged(hbase, fbase, y, x, hs_h, fs_h, inb, -float("inf"), W, FLIP, SHIFT)
        isnan = v != v
        nan_count += tl.sum(isnan.to(tl.int32), axis=0)
        v = tl.where(isnan, -float("inf"), v)
        cm = tl.max(v, axis=0)
        # First index of the chunk maximum (explicit, so ties never depend on tl.argmax's tie rule).
        ci = tl.min(tl.where((v == cm) & inb, idx, HW), axis=0)
        take = cm > best
        best_idx = tl.where(take, ci, best_idx)
        best = tl.where(take, cm, best)
    has_nan = nan_count > 0
    best = tl.where(has_nan, float("nan"), best)
    pos = best > 0  # False for NaN, as in the official code
    best_idx = tl.where(pos & (best_idx < HW), best_idx, 0)
    iy = best_idx // W
    ix = best_idx % W
    px = ix.to(tl.float64)
    py = iy.to(tl.float64)
    if QUARTER:
        inside = (ix > 1) & (ix < W - 1) & (iy > 1) & (iy < H - 1)
        xr = tl.minimum(ix + 1, W - 1)
        xl = tl.maximum(ix - 1, 0)
        yd = tl.minimum(iy + 1, H - 1)
        yu = tl.maximum(iy - 1, 0)
        dx = _merged(hbase, fbase, iy, xr, hs_h, fs_h, inside, 0.0, W, FLIP, SHIFT) - _merged(
            hbase, fbase, iy, xl, hs_h, fs_h, inside, 0.0, W, FLIP, SHIFT)
        dy = _merged(hbase, fbase, yd, ix, hs_h, fs_h, inside, 0.0, W, FLIP, SHIFT) - _merged(
            hbase, fbase, yu, ix, hs_h, fs_h, inside, 0.0, W, FLIP, SHIFT)
        sx = tl.where(dx > 0, 1.0, tl.where(dx < 0, -1.0, 0.0))
        sy = tl.where(dy > 0, 1.0, tl.where(dy < 0, -1.0, 0.0))
        px = px + tl.where(inside, 0.25 * sx, 0.0).to(tl.float64)
        py = py + tl.where(inside, 0.25 * sy, 0.0).to(tl.float64)
    if HAS_BOX:
        px, py = _back_transform(px, py, n, center_ptr, scale_ptr, H, W, False)
    tl.store(coords_ptr + 2 * pid, px.to(tl.float32))
    tl.store(coords_ptr + 2 * pid + 1, py.to(tl.float32))
    tl.store(maxv_ptr + pid, best)


@triton.jit
def _pick(B, rows, cols, y, x):
    """B[y, x] of a register tile (0 outside it), as a scalar."""
    return tl.sum(tl.sum(tl.where((rows == y) & (cols == x), B, 0.0), axis=1), axis=0)


@triton.jit
def _dark_udp_kernel(
    h_ptr, f_ptr, perm_ptr, center_ptr, scale_ptr, w_ptr, coords_ptr, maxv_ptr,
    K, hs_n, hs_k, hs_h, fs_n, fs_k, fs_h,
    H: tl.constexpr, W: tl.constexpr, HD: tl.constexpr, WD: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
    KS: tl.constexpr, R: tl.constexpr,
    UDP: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr, HAS_BOX: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    n = pid // K
    k = pid % K
    hbase = h_ptr + n * hs_n + k * hs_k
    fbase = f_ptr
    if FLIP:
        fbase = f_ptr + n * fs_n + tl.load(perm_ptr + k) * fs_k
    rows = tl.arange(0, BH)[:, None]
    cols = tl.arange(0, BW)[None, :]
    inb = (rows < H) & (cols < W)
    v = _merged(hbase, fbase, rows, cols, hs_h, fs_h, inb, 0.0, W, FLIP, SHIFT)
    isnan = v != v
    has_nan = tl.sum(tl.sum(isnan.to(tl.int32), axis=1), axis=0) > 0
    vm = tl.where(inb & (v == v), v, -float("inf"))
    best = tl.max(tl.max(vm, axis=1), axis=0)
    flat = rows * W + cols
    best_idx = tl.min(tl.min(tl.where((vm == best) & inb, flat, H * W), axis=1), axis=0)
    best = tl.where(has_nan, float("nan"), best)
    pos = best > 0
    best_idx = tl.where(pos & (best_idx < H * W), best_idx, 0)
    iy = best_idx // W
    ix = best_idx % W

    # Zero-padded separable blur: T = X @ Gw^T (rows), B = Gh @ T (columns), as OpenCV filters.
    X = tl.where(inb & (v == v), v, 0.0)
    ci = tl.arange(0, BW)[:, None]
    cj = tl.arange(0, BW)[None, :]
    dw = cj - ci + R
    gwt = tl.load(w_ptr + dw, mask=(dw >= 0) & (dw < KS) & (ci < W) & (cj < W), other=0.0)
    T = tl.dot(X, gwt, input_precision="ieee")
    ri = tl.arange(0, BH)[:, None]
    rj = tl.arange(0, BH)[None, :]
    dh = rj - ri + R
    gh = tl.load(w_ptr + dh, mask=(dh >= 0) & (dh < KS) & (ri < H) & (rj < H), other=0.0)
    B = tl.dot(gh, T, input_precision="ieee")
    bmax = tl.max(tl.max(tl.where(inb, B, -float("inf")), axis=1), axis=0)
    # Rescale ratio maxval / max(blurred); refine only where it is finite and positive (pos and bmax > 0).
    ratio = best / tl.where(bmax > 0, bmax, 1.0)
    ok = pos & (bmax > 0) & (ratio < float("inf"))
    px = ix.to(tl.float64)
    py = iy.to(tl.float64)
    if UDP:
        # Edge padding: clamp the neighbour coordinates.
        xr = tl.minimum(ix + 1, W - 1)
        xl = tl.maximum(ix - 1, 0)
        yd = tl.minimum(iy + 1, H - 1)
        yu = tl.maximum(iy - 1, 0)
        i_ = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, iy, ix) * ratio, 1e-3), 50.0))
        ix1 = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, iy, xr) * ratio, 1e-3), 50.0))
        ix1_ = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, iy, xl) * ratio, 1e-3), 50.0))
        iy1 = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, yd, ix) * ratio, 1e-3), 50.0))
        iy1_ = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, yu, ix) * ratio, 1e-3), 50.0))
        ix1y1 = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, yd, xr) * ratio, 1e-3), 50.0))
        ix1_y1_ = tl.log(tl.minimum(tl.maximum(_pick(B, rows, cols, yu, xl) * ratio, 1e-3), 50.0))
        dx = 0.5 * (ix1 - ix1_)
        dy = 0.5 * (iy1 - iy1_)
        dxx = ix1 - 2 * i_ + ix1_
        dyy = iy1 - 2 * i_ + iy1_
        dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
        a = dxx.to(tl.float64) + 1.1920928955078125e-07  # mmpose adds eps*I in float64
        d = dyy.to(tl.float64) + 1.1920928955078125e-07
        b = dxy.to(tl.float64)
        det = a * d - b * b
        use = ok & (det != 0)
        det = tl.where(use, det, 1.0)
        gx = dx.to(tl.float64)
        gy = dy.to(tl.float64)
        px = px - tl.where(use, (d * gx - b * gy) / det, 0.0)
        py = py - tl.where(use, (-b * gx + a * gy) / det, 0.0)
    else:
        c = tl.log(tl.maximum(_pick(B, rows, cols, iy, ix) * ratio, 1e-10))
        xp1 = tl.log(tl.maximum(_pick(B, rows, cols, iy, ix + 1) * ratio, 1e-10))
        xm1 = tl.log(tl.maximum(_pick(B, rows, cols, iy, ix - 1) * ratio, 1e-10))
        xp2 = tl.log(tl.maximum(_pick(B, rows, cols, iy, ix + 2) * ratio, 1e-10))
        xm2 = tl.log(tl.maximum(_pick(B, rows, cols, iy, ix - 2) * ratio, 1e-10))
        yp1 = tl.log(tl.maximum(_pick(B, rows, cols, iy + 1, ix) * ratio, 1e-10))
        ym1 = tl.log(tl.maximum(_pick(B, rows, cols, iy - 1, ix) * ratio, 1e-10))
        yp2 = tl.log(tl.maximum(_pick(B, rows, cols, iy + 2, ix) * ratio, 1e-10))
        ym2 = tl.log(tl.maximum(_pick(B, rows, cols, iy - 2, ix) * ratio, 1e-10))
        pp = tl.log(tl.maximum(_pick(B, rows, cols, iy + 1, ix + 1) * ratio, 1e-10))
        mp = tl.log(tl.maximum(_pick(B, rows, cols, iy - 1, ix + 1) * ratio, 1e-10))
        pm = tl.log(tl.maximum(_pick(B, rows, cols, iy + 1, ix - 1) * ratio, 1e-10))
        mm = tl.log(tl.maximum(_pick(B, rows, cols, iy - 1, ix - 1) * ratio, 1e-10))
        dx = 0.5 * (xp1 - xm1)
        dy = 0.5 * (yp1 - ym1)
        dxx = 0.25 * (xp2 - 2 * c + xm2)
        dxy = 0.25 * (pp - mp - pm + mm)
        dyy = 0.25 * (yp2 - 2 * c + ym2)
        det32 = dxx * dyy - dxy * dxy  # mmpose's fp32 det == 0 test
        inside = (ix > 1) & (ix < W - 2) & (iy > 1) & (iy < H - 2) & ok & (det32 != 0)
        a = dxx.to(tl.float64)
        b = dxy.to(tl.float64)
        d = dyy.to(tl.float64)
        det = a * d - b * b
        use = inside & (det != 0)
        det = tl.where(use, det, 1.0)
        gx = dx.to(tl.float64)
        gy = dy.to(tl.float64)
        px = px - tl.where(use, (d * gx - b * gy) / det, 0.0)
        py = py - tl.where(use, (-b * gx + a * gy) / det, 0.0)
    if HAS_BOX:
        # HD, WD: the sizes the transform divides by (for UDP at least 2, so H-1, W-1 >= 1: see launcher)
        px, py = _back_transform(px, py, n, center_ptr, scale_ptr, HD, WD, UDP)
    tl.store(coords_ptr + 2 * pid, px.to(tl.float32))
    tl.store(coords_ptr + 2 * pid + 1, py.to(tl.float32))
    tl.store(maxv_ptr + pid, best)


def _pow2_at_least(v: int, lo: int) -> int:
    return max(lo, triton.next_power_of_2(v))


def decode_heatmaps(heatmaps, flipped, flip_perm, center, scale, method, shift, blur_weights):
    """Launcher. Inputs validated by ``hrnet_fast.ops.decode_heatmaps`` (unit stride along W; any
    other strides). Returns ``(coords (N,K,2) fp32, maxvals (N,K,1) fp32)`` on the heatmaps' device."""
    n, k, h, w = heatmaps.shape
    coords = torch.empty((n, k, 2), dtype=torch.float32, device=heatmaps.device)
    maxvals = torch.empty((n, k, 1), dtype=torch.float32, device=heatmaps.device)
    if os.environ.get("HRNET_FAST_DEBUG_POISON") == "1":  # tests: unwritten elements show as NaN
        coords.fill_(float("nan"))
        maxvals.fill_(float("nan"))
    if n * k == 0:
        return coords, maxvals
    if h * w >= 2**31:
        raise ValueError(f"decode_heatmaps (triton): one heatmap must have fewer than 2^31 pixels, got {h}x{w}")
    flip = flipped is not None
    f = flipped if flip else heatmaps
    fs = f.stride()
    hs = heatmaps.stride()
    box = center is not None
    # Unused pointers get a valid tensor; the constexpr flags keep the kernel from reading them.
    perm = flip_perm if flip else heatmaps
    cptr = center if box else coords
    sptr = scale if box else coords
    grid = (n * k,)
    with torch.device(heatmaps.device) if heatmaps.is_cuda else _nullcontext():
        if method >= _METHOD_DARK:
            _dark_udp_kernel[grid](
                heatmaps, f, perm, cptr, sptr, blur_weights, coords, maxvals,
                k, hs[0], hs[1], hs[2], fs[0], fs[1], fs[2],
                H=h, W=w, HD=max(h, 2) if method == _METHOD_UDP else h, WD=max(w, 2) if method == _METHOD_UDP else w,
                BH=_pow2_at_least(h, 16), BW=_pow2_at_least(w, 16), KS=blur_weights.shape[0], R=blur_weights.shape[0] // 2,
                UDP=method == _METHOD_UDP, FLIP=flip, SHIFT=bool(shift), HAS_BOX=box,
                num_warps=8 if max(h, w) > 64 else 4,
            )
        else:
            block = min(_pow2_at_least(h * w, 128), 8192)
            _argmax_quarter_kernel[grid](
                heatmaps, f, perm, cptr, sptr, coords, maxvals,
                k, hs[0], hs[1], hs[2], fs[0], fs[1], fs[2],
                H=h, W=w, HW=h * w, BLOCK=block,
                QUARTER=method == _METHOD_QUARTER, FLIP=flip, SHIFT=bool(shift), HAS_BOX=box,
                FLAT=(not flip) and (h == 1 or hs[2] == w),
                num_warps=8 if block >= 4096 else 4,
            )
    return coords, maxvals


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
