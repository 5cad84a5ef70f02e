"""Triton kernels of ``decode_heatmaps`` (rules and reference: ``hrnet_fast/ops/decode_heatmaps.py``).

One program per (n, k) heatmap in both kernels; the flip merge is computed where a value is loaded and
never stored. Every loop over the heatmap, and over the blur taps, is a runtime loop over fixed-size
tiles, so the code size (and the compile time) grows with neither the heatmap size nor the blur kernel.

Argmax (both kernels): the heatmap is streamed in flat chunks; each lane keeps its own running maximum
and the index where it first met it (elementwise updates, no reduction inside the loop), and one
reduction at the end gives the first-index maximum.

``_argmax_quarter_kernel``: the argmax, then the quarter step from four neighbours.

``_dark_udp_kernel``: mmpose rescales the blurred map by the maximum of the WHOLE zero-padded blurred map
(it can lie away from the argmax), but needs blurred values only around the peak. So, as the CUDA kernel,
argmax first, then only when the point is refined (DARK: peak 2 pixels inside; both: maxval > 0):

1. row pass of the separable blur, ``rb[y, x] = sum_t w[t] * X[y, x + t - R]``, over (TR, BW) register
   tiles (column strips of at most ``MAX_STRIP``), written to a per-heatmap fp32 scratch buffer in
   global memory (the CUDA kernel keeps it in shared memory, which Triton does not expose; the reads
   back mostly hit L1), with R zero rows above and below; a CTA barrier;
2. column pass over the same tiles, ``sum_t w[t] * rb[y + t - R, x]``, from the scratch without masks,
   reduced to the blurred maximum in registers without being stored;
3. the blurred 5 x 5 neighbourhood of the peak from the scratch, the rescale / clamp / log, and the
   Taylor step as in mmpose (fp32, the 2x2 solve in fp64).

With the flip test the argmax walk also stores the merged heatmap in the scratch, so the row pass reads
one fp32 value per tap instead of merging two. The launcher bounds a launch's scratch (``SCRATCH_BUDGET``)
and decodes larger batches in several launches.

Heatmap offsets are 64-bit (the program id and row indices are cast to int64 before they multiply a
stride); pixel and scratch indices are int32, bounded by ``unsupported_reason``.
"""
from __future__ import annotations

import functools
from typing import Dict, NamedTuple, Optional, Tuple

import torch
import triton
import triton.language as tl

from ._utils import launch_device, poison

_METHOD_QUARTER = 1
_METHOD_DARK = 2
_METHOD_UDP = 3

#: Widest column strip of the DARK/UDP kernel's tiles; wider heatmaps are walked in several strips.
MAX_STRIP = 128
#: Elements of one DARK/UDP (rows x strip columns) register tile (8 per thread with 4 warps).
MAX_TILE = 1024
#: Largest chunk of the flat argmax walk (elements per loop iteration).
MAX_FLAT_BLOCK = 4096
#: Both kernels index a heatmap's pixels with int32, and every index computed (the padding lanes of
#: the last chunk or tile included) must stay below 2^31: H*W must be at most this.
MAX_PIXELS = 2**31 - 2**16
#: DARK/UDP index one heatmap's scratch (see ``scratch_elems``) with int32 too: at most this many.
MAX_SCRATCH_PER_HEATMAP = 2**31 - 1
#: Scratch budget of one DARK/UDP launch, in fp32 elements (64 MiB): larger batches are decoded in
#: several launches of whole samples, so the scratch stays bounded whatever N is.
SCRATCH_BUDGET = 2**24
#: CUDA's limit on the grid's first dimension: one program per heatmap, so N*K must be at most this.
MAX_HEATMAPS = 2**31 - 1


@functools.lru_cache(maxsize=1024)
def unsupported_reason(height: int, width: int, method: int) -> Optional[str]:
    """Why these kernels cannot decode ``height`` x ``width`` heatmaps with ``method`` (0 argmax,
    1 quarter, 2 dark, 3 udp), or None when they can (sizes are at least 1: the op checks that).

    * every method: ``height * width <= MAX_PIXELS`` (2^31 - 2^16, int32 pixel indices);
    * dark/udp: one heatmap's scratch, for the widest blur kernel the op accepts
      (``2 * max(H, W) + 1``) and with the flip test, must be at most ``MAX_SCRATCH_PER_HEATMAP``
      elements (int32 scratch indices), about 2*H*W + 2*max(H, W)*W (a square map: up to about
      23000 x 23000);
    * an unknown method code is a reason too.

    Nothing else limits them: the heatmap is walked in fixed-size tiles and column strips, the blur
    taps in runtime loops, and the scratch of a batch is bounded by ``SCRATCH_BUDGET`` (larger batches
    take several launches). ``N*K <= MAX_HEATMAPS`` is the launcher's to check (it raises).
    """
    if method not in (0, 1, 2, 3):
        return f"unknown decode method code {method} (0 argmax, 1 quarter, 2 dark, 3 udp)"
    if height * width > MAX_PIXELS:
        return f"triton decode indexes pixels with int32: H*W must be <= {MAX_PIXELS}, got {height}x{width}"
    if method >= _METHOD_DARK and scratch_elems(height, width, 2 * max(height, width) + 1, True) > MAX_SCRATCH_PER_HEATMAP:
        return (f"triton dark/udp indexes its per-heatmap scratch with int32: {height}x{width} needs more than "
                f"{MAX_SCRATCH_PER_HEATMAP} elements for the widest blur kernel")
    return None


# ----------------------------------------------------------------------------------------------------
# Shared device helpers
# ----------------------------------------------------------------------------------------------------
@triton.jit
def _merged(hbase, fbase, y, x, hs_h, fs_h, mask, other, W: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr):
    """Value of the (merged) heatmap at (y, x) in fp32, ``(h + f[W-x or W-1-x]) * 0.5`` with FLIP.

    ``y``, ``x``: int32 scalars or tensors of one broadcast shape; ``mask`` false gives ``other``."""
    yo = tl.cast(y, tl.int64)  # row offsets in int64: the row stride times the row may pass 2^31
    v = tl.load(hbase + yo * hs_h + x, mask=mask, other=other).to(tl.float32)
    if FLIP:
        if SHIFT:
            xf = tl.where(x == 0, W - 1, W - x)
        else:
            xf = W - 1 - x
        fv = tl.load(fbase + yo * fs_h + xf, mask=mask, other=other).to(tl.float32)
        v = (v + fv) * 0.5
    return v


@triton.jit
def _first_max(hbase, fbase, hs_h, fs_h, mbase, H: tl.constexpr, W: tl.constexpr, BLOCK: tl.constexpr,
               FLIP: tl.constexpr, SHIFT: tl.constexpr, FLAT: tl.constexpr, STORE: tl.constexpr):
    """Official argmax of one (merged) heatmap: ``(maxval, flat index)``, maxval NaN if the map holds a
    NaN, the index that of the first maximum in row-major order, 0 where ``maxval > 0`` fails.

    With STORE, the merged heatmap is also written, fp32 (H, W) contiguous, at ``mbase``."""
    HW = H * W  # constexpr arithmetic stays constexpr
    offs = tl.arange(0, BLOCK)
    # Per lane: running maximum, the index where the lane first met it, and whether it saw a NaN.
    lane_best = tl.full([BLOCK], -float("inf"), tl.float32)
    lane_idx = tl.zeros([BLOCK], dtype=tl.int32)
    lane_nan = tl.zeros([BLOCK], dtype=tl.int32)
    for start in range(0, HW, BLOCK):
        idx = start + offs
        inb = idx < HW
        if FLAT:  # rows contiguous, no flip: plain offsets, so loads vectorise
            v = tl.load(hbase + idx, mask=inb, other=-float("inf")).to(tl.float32)
        else:
            y = idx // W
            v = _merged(hbase, fbase, y, idx - y * W, hs_h, fs_h, inb, -float("inf"), W, FLIP, SHIFT)
        if STORE:
            tl.store(mbase + idx, v, mask=inb)
        lane_nan = tl.maximum(lane_nan, (v != v).to(tl.int32))
        take = v > lane_best  # strict (and False for NaN): a lane's indices increase, its first max stays
        lane_idx = tl.where(take, idx, lane_idx)
        lane_best = tl.where(take, v, lane_best)
    best = tl.max(lane_best, axis=0)
    # First index of the maximum over lanes (explicit, so ties never depend on tl.argmax's tie rule).
    # All -inf: every lane holds index 0 or its own first index, so the minimum is pixel 0.
    best_idx = tl.min(tl.where(lane_best == best, lane_idx, HW), axis=0)
    best = tl.where(tl.max(lane_nan, axis=0) > 0, float("nan"), best)
    best_idx = tl.where(best > 0, best_idx, 0)  # False for NaN too, as in the official code
    return best, best_idx


@triton.jit
def _back_transform(px, py, n, center_ptr, scale_ptr, H: tl.constexpr, W: tl.constexpr, UDP: tl.constexpr):
    """Official inverse affine (rotation 0), or the UDP one; fp64 as the reference.

    (H - 1 and W - 1 are at least 1 for UDP: the launcher sends H, W >= 2 there.)"""
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


# ----------------------------------------------------------------------------------------------------
# argmax / quarter
# ----------------------------------------------------------------------------------------------------
@triton.jit
def _argmax_quarter_kernel(
    h_ptr, f_ptr, perm_ptr, center_ptr, scale_ptr, coords_ptr, maxv_ptr,
    K, hs_n, hs_k, hs_h, fs_n, fs_k, fs_h,
    H: tl.constexpr, W: tl.constexpr, BLOCK: tl.constexpr,
    QUARTER: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr, HAS_BOX: tl.constexpr, FLAT: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    n = pid // K
    k = pid % K
    hbase = h_ptr + n * hs_n + k * hs_k
    fbase = f_ptr
    if FLIP:
        fbase = f_ptr + n * fs_n + tl.load(perm_ptr + k) * fs_k
    best, best_idx = _first_max(hbase, fbase, hs_h, fs_h, coords_ptr, H, W, BLOCK, FLIP, SHIFT, FLAT, False)
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


# ----------------------------------------------------------------------------------------------------
# DARK / UDP
# ----------------------------------------------------------------------------------------------------
@triton.jit
def _log_clamped(v, UDP: tl.constexpr):
    """mmpose's clamp then natural log, fp32 in and out (the log is taken in fp64 and rounded, so it is
    as exact as the reference's fp32 log whatever the target's fast-math defaults)."""
    if UDP:
        v = tl.minimum(tl.maximum(v, 1e-3), 50.0)
    else:
        v = tl.maximum(v, 1e-10)
    return tl.log(v.to(tl.float64)).to(tl.float32)


@triton.jit
def _at(L, p, oy: tl.constexpr, ox: tl.constexpr):
    """The value at offset (oy, ox) of the 5 x 5 neighbourhood ``L`` (32,), row-major with the centre
    at lane 12 (``p`` = arange(32)), as a scalar."""
    return tl.sum(tl.where(p == (oy + 2) * 5 + (ox + 2), L, 0.0), axis=0)


@triton.jit
def _dark_udp_kernel(
    h_ptr, f_ptr, perm_ptr, center_ptr, scale_ptr, w_ptr, scratch_ptr, coords_ptr, maxv_ptr,
    K, hs_n, hs_k, hs_h, fs_n, fs_k, fs_h,
    H: tl.constexpr, W: tl.constexpr, HD: tl.constexpr, WD: tl.constexpr, BLOCK: tl.constexpr,
    KS: tl.constexpr, TR: tl.constexpr, BW: tl.constexpr, TC: tl.constexpr,
    UDP: tl.constexpr, FLIP: tl.constexpr, SHIFT: tl.constexpr, HAS_BOX: tl.constexpr, FLAT: tl.constexpr,
):
    R = KS // 2
    HP = (H + TR - 1) // TR * TR  # rows and columns padded to whole tiles (constexprs)
    WP = (W + BW - 1) // BW * BW
    pid = tl.program_id(0).to(tl.int64)
    n = pid // K
    k = pid % K
    hbase = h_ptr + n * hs_n + k * hs_k
    fbase = f_ptr
    if FLIP:
        fbase = f_ptr + n * fs_n + tl.load(perm_ptr + k) * fs_k
    # This heatmap's scratch (layout: scratch_elems()): with FLIP the merged heatmap (H, W), stored by
    # the argmax walk so the row pass reads one fp32 value per tap instead of merging two; then the
    # row-blurred map, (HP + 2R, WP), rows shifted down by R with R zero rows above and below, so the
    # column pass reads it without masks.
    mbase = scratch_ptr + pid * ((H * W if FLIP else 0) + (HP + 2 * R) * WP)
    rbase = mbase + (H * W if FLIP else 0)
    best, best_idx = _first_max(hbase, fbase, hs_h, fs_h, mbase, H, W, BLOCK, FLIP, SHIFT, FLAT, FLIP)
    iy = best_idx // W
    ix = best_idx % W
    px = ix.to(tl.float64)
    py = iy.to(tl.float64)
    if UDP:
        refine = best > 0
    else:
        refine = (best > 0) & (ix > 1) & (ix < W - 2) & (iy > 1) & (iy < H - 2)
    if refine:  # uniform over the program: the blur is skipped where nothing would use it
        if FLIP:
            src = mbase
            src_rs = W
            tl.debug_barrier()  # the merged map was written by other threads (see below)
        else:
            src = hbase
            src_rs = hs_h
        r = tl.arange(0, TR)[:, None]
        lane = tl.arange(0, BW)[None, :]
        # 1. Row pass (zero padding) over (TR, BW) tiles, stored whole (rows past H as zeros, columns
        # past W as they come: the column pass never reads them into the maximum).
        for y0 in range(0, H, TR):
            y = y0 + r
            # Rows past H read row H - 1 (any valid row would do: those results are replaced by zeros).
            src_row = src + tl.cast(tl.minimum(y, H - 1), tl.int64) * src_rs  # int64: strides may be large
            dst_row = rbase + (y + R) * WP
            for x0 in range(0, W, BW):
                xs = x0 - R + lane  # source column of tap 0
                row = src_row + xs
                acc = tl.zeros([TR, BW], dtype=tl.float32)
                for t in range(0, KS):
                    # (no integer tensor arithmetic inside the tap loops: the interpreter checks each
                    # integer op for overflow, and the compiler folds these the same either way)
                    v = tl.load(row + t, mask=(xs >= -t) & (xs < W - t), other=0.0)
                    acc += tl.load(w_ptr + t) * v.to(tl.float32)
                tl.store(dst_row + lane + x0, tl.where(y < H, acc, 0.0))
        # The R zero rows above and below: two contiguous runs of R * WP elements.
        zoffs = tl.arange(0, BLOCK)
        for z0 in range(0, R * WP, BLOCK):
            zero = tl.zeros([BLOCK], dtype=tl.float32)
            tl.store(rbase + z0 + zoffs, zero, mask=zoffs < R * WP - z0)
            tl.store(rbase + (HP + R) * WP + z0 + zoffs, zero, mask=zoffs < R * WP - z0)
        # The column pass reads rows other threads wrote: a CTA barrier (bar.sync also orders the
        # global-memory writes before it for the CTA's threads).
        tl.debug_barrier()
        # 2. Column pass, reduced to the blurred map's maximum without being stored: output row y
        # takes rows y - R .. y + R of the row-blurred map, i.e. scratch rows y .. y + 2R.
        tile_max = tl.full([TR, BW], -float("inf"), tl.float32)
        for y0 in range(0, H, TR):
            y = y0 + r
            for x0 in range(0, W, BW):
                x = x0 + lane
                col = rbase + y * WP + x
                acc = tl.zeros([TR, BW], dtype=tl.float32)
                for t in range(0, KS):
                    acc += tl.load(w_ptr + t) * tl.load(col)
                    col += WP
                tile_max = tl.where((y < H) & (x < W), tl.maximum(tile_max, acc), tile_max)
        bmax = tl.max(tl.max(tile_max, axis=1), axis=0)
        # Rescale ratio maxval / max(blurred) in IEEE fp32 (the fp64 quotient of two fp32 values rounds
        # to the correctly rounded fp32 one); refine only where it is finite and positive.
        ratio = (best.to(tl.float64) / bmax.to(tl.float64)).to(tl.float32)
        ok = (ratio > 0) & (ratio < float("inf"))

        # 3. The blurred 5 x 5 neighbourhood of the peak, coordinates clamped into the map (UDP's edge
        # padding; DARK reads it only 2 pixels inside): (taps, 32) tiles of the row-blurred scratch.
        p = tl.arange(0, 32)
        ny = tl.minimum(tl.maximum(iy + p // 5 - 2, 0), H - 1)[None, :]
        nx = tl.minimum(tl.maximum(ix + p % 5 - 2, 0), W - 1)[None, :]
        nb = tl.zeros([32], dtype=tl.float32)
        tt = tl.arange(0, TC)[:, None]
        for c0 in range(0, KS, TC):
            tap_ok = c0 + tt < KS
            wt = tl.load(w_ptr + c0 + tt, mask=tap_ok, other=0.0)
            v = tl.load(rbase + (ny + c0 + tt) * WP + nx, mask=tap_ok, other=0.0)  # < scratch_elems: int32
            nb += tl.sum(wt * v, axis=0)
        L = _log_clamped(nb * ratio, UDP)
        if UDP:
            i_ = _at(L, p, 0, 0)
            ix1 = _at(L, p, 0, 1)
            ix1_ = _at(L, p, 0, -1)
            iy1 = _at(L, p, 1, 0)
            iy1_ = _at(L, p, -1, 0)
            ix1y1 = _at(L, p, 1, 1)
            ix1_y1_ = _at(L, p, -1, -1)
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
        else:
            c = _at(L, p, 0, 0)
            dx = 0.5 * (_at(L, p, 0, 1) - _at(L, p, 0, -1))
            dy = 0.5 * (_at(L, p, 1, 0) - _at(L, p, -1, 0))
            dxx = 0.25 * (_at(L, p, 0, 2) - 2 * c + _at(L, p, 0, -2))
            dxy = 0.25 * (_at(L, p, 1, 1) - _at(L, p, -1, 1) - _at(L, p, 1, -1) + _at(L, p, -1, -1))
            dyy = 0.25 * (_at(L, p, 2, 0) - 2 * c + _at(L, p, -2, 0))
            # mmpose's fp32 determinant test, each product rounded to fp32 on its own (an exact fp64
            # product rounded once), so FMA contraction cannot change which points it skips.
            det32 = (dxx.to(tl.float64) * dyy.to(tl.float64)).to(tl.float32) - (
                dxy.to(tl.float64) * dxy.to(tl.float64)).to(tl.float32)
            a = dxx.to(tl.float64)
            b = dxy.to(tl.float64)
            d = dyy.to(tl.float64)
            det = a * d - b * b
            use = ok & (det32 != 0) & (det != 0)
        det = tl.where(use, det, 1.0)
        gx = dx.to(tl.float64)
        gy = dy.to(tl.float64)
        px = px - tl.where(use, (d * gx - b * gy) / det, 0.0)
        py = py - tl.where(use, (-b * gx + a * gy) / det, 0.0)
    if HAS_BOX:
        # HD, WD: the sizes the transform divides by (for UDP at least 2, so H-1, W-1 >= 1)
        px, py = _back_transform(px, py, n, center_ptr, scale_ptr, HD, WD, UDP)
    tl.store(coords_ptr + 2 * pid, px.to(tl.float32))
    tl.store(coords_ptr + 2 * pid + 1, py.to(tl.float32))
    tl.store(maxv_ptr + pid, best)


# ----------------------------------------------------------------------------------------------------
# Launch configuration (pure functions of the sizes: the sm_90 compile test compiles exactly these)
# ----------------------------------------------------------------------------------------------------
class FlatConfig(NamedTuple):
    """``_argmax_quarter_kernel``: BLOCK elements per iteration of the argmax walk; its warps."""

    BLOCK: int
    num_warps: int


class DarkConfig(NamedTuple):
    """``_dark_udp_kernel``: BLOCK elements per iteration of the argmax walk, (TR, BW) blur tiles,
    TC taps per chunk of the neighbourhood's column pass; its warps."""

    BLOCK: int
    TR: int
    BW: int
    TC: int
    num_warps: int


@functools.lru_cache(maxsize=1024)
def flat_config(height: int, width: int) -> FlatConfig:
    """The whole heatmap (rounded up to a power of two) in one iteration, up to MAX_FLAT_BLOCK elements
    (64x48 and 64x64 take one iteration, 96x72 two), 16 elements a thread (about 40-50 registers)."""
    block = min(triton.next_power_of_2(max(height * width, 128)), MAX_FLAT_BLOCK)
    return FlatConfig(BLOCK=block, num_warps=max(4, min(8, block // 512)))


def _padded(size: int, tile: int) -> int:
    return -(-size // tile) * tile


@functools.lru_cache(maxsize=1024)
def dark_config(height: int, width: int, ksize: int) -> DarkConfig:
    """DARK/UDP tiles for ``height`` x ``width`` heatmaps and a ``ksize``-tap blur.

    Four warps and at most MAX_TILE elements a tile (8 a thread: 56-72 registers, so 7 or more
    programs fit an SM). Among the power-of-two shapes (BW 16 to MAX_STRIP columns) the one that pads
    the heatmap least (64x48: one 64x16 tile per strip, no padding; 96x72: 32x16, 11%), then the widest
    (coalescing). The argmax walk takes MAX_TILE elements an iteration too."""
    tr_max = triton.next_power_of_2(height)
    best = None
    for bw in (MAX_STRIP, 64, 32, 16):
        tr = max(1, min(tr_max, MAX_TILE // bw))
        while tr > 1 and _padded(height, tr // 2) < _padded(height, tr):
            tr //= 2  # a shorter tile that pads less (96 rows: 32, not 64)
        key = (_padded(height, tr) * _padded(width, bw), -bw)
        if best is None or key < best[0]:
            best = (key, tr, bw)
    _, tr, bw = best
    block = min(triton.next_power_of_2(max(height * width, 128)), MAX_TILE)
    return DarkConfig(BLOCK=block, TR=tr, BW=bw, TC=min(16, triton.next_power_of_2(ksize)), num_warps=4)


@functools.lru_cache(maxsize=1024)
def scratch_elems(height: int, width: int, ksize: int, flip: bool) -> int:
    """fp32 scratch elements ``_dark_udp_kernel`` uses per heatmap: the merged heatmap with flip (H*W),
    then the row-blurred map padded to whole tiles with R = ksize // 2 zero rows above and below.
    (64x48, 11 taps: 3552 elements, 1.16 H*W; 6624 with flip.)"""
    cfg = dark_config(height, width, ksize)
    r = ksize // 2
    hp = _padded(height, cfg.TR)
    wp = _padded(width, cfg.BW)
    return (height * width if flip else 0) + (hp + 2 * r) * wp


@functools.lru_cache(maxsize=1024)
def launch_config(method: int, height: int, width: int, ksize: int, flip: bool, shift: bool, has_box: bool,
                  flat: bool) -> Tuple[str, Dict[str, object], int]:
    """``(kernel name, constexpr arguments, num_warps)`` of the launch for these inputs: everything that
    selects a compiled specialisation besides the argument dtypes and Triton's own divisibility
    specialisation of pointers and strides. ``ksize`` is the blur width (dark/udp; ignored otherwise),
    ``flat`` whether the rows are contiguous without flip. The sm_90 compile test compiles the result
    for every input class ``auto`` can launch. (Do not mutate the returned dict: it is cached.)"""
    common = dict(H=height, W=width, FLIP=flip, SHIFT=shift, HAS_BOX=has_box, FLAT=flat)
    if method < _METHOD_DARK:
        cfg = flat_config(height, width)
        return "_argmax_quarter_kernel", dict(common, BLOCK=cfg.BLOCK, QUARTER=method == _METHOD_QUARTER), cfg.num_warps
    cfg = dark_config(height, width, ksize)
    udp = method == _METHOD_UDP
    consts = dict(common, HD=max(height, 2) if udp else height, WD=max(width, 2) if udp else width, KS=ksize,
                  BLOCK=cfg.BLOCK, TR=cfg.TR, BW=cfg.BW, TC=cfg.TC, UDP=udp)
    return "_dark_udp_kernel", consts, cfg.num_warps


def decode_heatmaps(heatmaps, flipped, flip_perm, center, scale, method, shift, blur_weights):
    """Launcher, called by the ``hrnet_fast::decode_heatmaps_triton`` custom op with validated inputs.

    Args:
        heatmaps: (N, K, H, W) float32/float16/bfloat16 on a CUDA device (or CPU under the Triton
            interpreter), unit stride along W, any other strides.
        flipped: None, or heatmaps of the flipped crops: same shape, dtype and device, unit W stride.
        flip_perm: (K,) int64, the flipped channel that lands in each channel (with ``flipped``).
        center, scale: (N, 2) float32 contiguous, or both None (heatmap coordinates).
        method: 0 argmax, 1 quarter, 2 dark, 3 udp. ``shift``: the official one-pixel flip shift.
        blur_weights: (KS,) float32 contiguous, odd KS: the 1-D Gaussian (dark/udp only).

    Returns ``(coords (N, K, 2) fp32, maxvals (N, K, 1) fp32)`` on the heatmaps' device.
    """
    n, k, h, w = heatmaps.shape
    coords = torch.empty((n, k, 2), dtype=torch.float32, device=heatmaps.device)
    maxvals = torch.empty((n, k, 1), dtype=torch.float32, device=heatmaps.device)
    poison(coords, maxvals)
    if n * k == 0:
        return coords, maxvals
    why = unsupported_reason(h, w, method)
    if why is not None:
        raise ValueError(f"decode_heatmaps (triton): {why}")
    if n * k > MAX_HEATMAPS:
        raise ValueError(f"decode_heatmaps (triton): N*K must be <= 2^31 - 1 (one program per heatmap), got {n * k}")
    flip = flipped is not None
    f = flipped if flip else heatmaps
    fs = f.stride()
    hs = heatmaps.stride()
    box = center is not None
    # Unused pointers get a valid tensor; the constexpr flags keep the kernel from reading them.
    perm = flip_perm if flip else heatmaps
    cptr = center if box else coords
    sptr = scale if box else coords
    strides = (k, hs[0], hs[1], hs[2], fs[0], fs[1], fs[2])
    ks = blur_weights.shape[0] if method >= _METHOD_DARK else 0
    name, consts, num_warps = launch_config(method, h, w, ks, flip, bool(shift), box, (not flip) and (h == 1 or hs[2] == w))
    kernel = globals()[name]
    if method < _METHOD_DARK:
        _launch(kernel, n * k, (heatmaps, f, perm, cptr, sptr, coords, maxvals), strides, consts, num_warps)
        return coords, maxvals
    per_heatmap = scratch_elems(h, w, ks, flip)
    if per_heatmap > MAX_SCRATCH_PER_HEATMAP:
        raise ValueError(f"decode_heatmaps (triton): the dark/udp scratch of one {h}x{w} heatmap with a {ks}-tap blur "
                         f"would have {per_heatmap} elements, more than int32 indexing allows")
    # Written and read only by each heatmap's own program, so never initialised; at most
    # SCRATCH_BUDGET elements (or one sample), reused by the launches of a large batch (stream order).
    chunk = max(1, min(n, SCRATCH_BUDGET // (k * per_heatmap)))
    scratch = torch.empty((chunk * k * per_heatmap,), dtype=torch.float32, device=heatmaps.device)
    for n0 in range(0, n, chunk):
        part = slice(n0, min(n, n0 + chunk))
        args = (heatmaps[part], f[part], perm, cptr[part], sptr[part], blur_weights, scratch, coords[part], maxvals[part])
        _launch(kernel, (part.stop - n0) * k, args, strides, consts, num_warps)
    return coords, maxvals


def _launch(kernel, programs: int, args, strides, consts, num_warps: int) -> None:
    with launch_device(args[0]):  # Triton launches on the current GPU: the heatmaps' one (kernels/_utils.py)
        kernel[(programs,)](*args, *strides, **consts, num_warps=num_warps)
