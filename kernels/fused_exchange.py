"""Triton kernels of the fused exchange unit, and their launchers.

Forward: ``out = [relu](base + sum_j nearest_upsample(W_j @ low_j + b_j, s_j))`` in one pass. A program
owns a tile of ``BLOCK_P`` output pixels (flattened over N, H, W) by ``BLOCK_C`` output channels. For
each low input it gathers, for every pixel of the tile, the low-resolution pixel it comes from
(``(y >> log2 s, x >> log2 s)``) as a ``(BLOCK_P, BLOCK_K)`` tile and multiplies it by the matching
``(BLOCK_K, BLOCK_C)`` tile of ``W_j^T`` with ``tl.dot`` (tensor cores on a GPU), accumulating in fp32.
The product is recomputed for each of the s*s pixels a low pixel covers: the FLOPs are cheap on tensor
cores, and the full-resolution product is never written to memory. Channel counts need not be powers of
two (W48: 48/96/192/384): blocks are padded and masked.

Backward: ``grad_base = where(out <= 0, 0, grad)`` (the ReLU mask comes from the output; a NaN output
passes the gradient, as torch's ReLU backward does), then per low input
the s x s block sums of ``grad_base`` (the adjoint of nearest upsampling). The low-resolution GEMMs of
the backward (``W^T G``, ``G low^T``) are left to torch (see ``hrnet_fast/ops/fused_exchange.py``).

All kernels take element strides, so NCHW-contiguous, channels_last and other strided inputs are read
in place; offsets are computed in int64 (tensors may exceed 2**31 elements).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from hrnet_fast import _backends

# Low inputs handled by one forward launch; HRNet needs at most 3 (branch 0 of stage 4). More are
# handled by chaining launches (the ReLU only on the last).
MAX_LOWS = 3


@triton.jit
def _split_pixel_index(p, H, W):
    """(n, y, x) of flat pixel indices p = (n * H + y) * W + x (p is int64, so offsets cannot overflow)."""
    n = p // (H * W)
    rem = p - n * (H * W)
    y = rem // W
    return n, y, rem - y * W


@triton.jit
def _add_low(acc, low_ptr, w_ptr, b_ptr, n, y, x, oc, mask_p, mask_c, Cj, sn, sc, sh, sw,
             LOG2S: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr, BLOCK_K: tl.constexpr,
             PRECISION: tl.constexpr):
    """acc (BLOCK_P, BLOCK_C) += (W @ low + b)[n, oc, y >> LOG2S, x >> LOG2S]."""
    row = n * sn + (y >> LOG2S) * sh + (x >> LOG2S) * sw  # (BLOCK_P,) int64 offset of the low pixel
    if HAS_W:
        for k0 in range(0, Cj, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < Cj
            ok = offs_k.to(tl.int64)
            a = tl.load(low_ptr + row[:, None] + ok[None, :] * sc,
                        mask=mask_p[:, None] & mask_k[None, :], other=0.0)
            # W is (C, Cj) contiguous: this tile is W[oc, k]^T, shape (BLOCK_K, BLOCK_C)
            wt = tl.load(w_ptr + oc[None, :] * Cj + ok[:, None],
                         mask=mask_k[:, None] & mask_c[None, :], other=0.0)
            acc += tl.dot(a, wt, input_precision=PRECISION)
    else:
        acc += tl.load(low_ptr + row[:, None] + oc[None, :] * sc,
                       mask=mask_p[:, None] & mask_c[None, :], other=0.0).to(tl.float32)
    if HAS_B:
        acc += tl.load(b_ptr + oc, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _exchange_fwd_kernel(
    base_ptr, out_ptr, total_p, C, H, W,
    b_sn, b_sc, b_sh, b_sw, o_sn, o_sc, o_sh, o_sw,
    l0_ptr, w0_ptr, bias0_ptr, C0, l0_sn, l0_sc, l0_sh, l0_sw,
    l1_ptr, w1_ptr, bias1_ptr, C1, l1_sn, l1_sc, l1_sh, l1_sw,
    l2_ptr, w2_ptr, bias2_ptr, C2, l2_sn, l2_sc, l2_sh, l2_sw,
    NUM_LOWS: tl.constexpr,
    LOG2S0: tl.constexpr, HAS_W0: tl.constexpr, HAS_B0: tl.constexpr,
    LOG2S1: tl.constexpr, HAS_W1: tl.constexpr, HAS_B1: tl.constexpr,
    LOG2S2: tl.constexpr, HAS_W2: tl.constexpr, HAS_B2: tl.constexpr,
    RELU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    p = pid_p.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = p < total_p
    n, y, x = _split_pixel_index(p, H, W)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    oc = offs_c.to(tl.int64)
    mask = mask_p[:, None] & mask_c[None, :]

    acc = tl.load(base_ptr + (n * b_sn + y * b_sh + x * b_sw)[:, None] + oc[None, :] * b_sc,
                  mask=mask, other=0.0).to(tl.float32)
    if NUM_LOWS >= 1:
        acc = _add_low(acc, l0_ptr, w0_ptr, bias0_ptr, n, y, x, oc, mask_p, mask_c, C0,
                       l0_sn, l0_sc, l0_sh, l0_sw, LOG2S0, HAS_W0, HAS_B0, BLOCK_K, PRECISION)
    if NUM_LOWS >= 2:
        acc = _add_low(acc, l1_ptr, w1_ptr, bias1_ptr, n, y, x, oc, mask_p, mask_c, C1,
                       l1_sn, l1_sc, l1_sh, l1_sw, LOG2S1, HAS_W1, HAS_B1, BLOCK_K, PRECISION)
    if NUM_LOWS >= 3:
        acc = _add_low(acc, l2_ptr, w2_ptr, bias2_ptr, n, y, x, oc, mask_p, mask_c, C2,
                       l2_sn, l2_sc, l2_sh, l2_sw, LOG2S2, HAS_W2, HAS_B2, BLOCK_K, PRECISION)
    if RELU:
        acc = tl.where(acc < 0.0, 0.0, acc)  # keeps NaN, as torch.relu does
    tl.store(out_ptr + (n * o_sn + y * o_sh + x * o_sw)[:, None] + oc[None, :] * o_sc,
             acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _relu_mask_kernel(
    grad_ptr, out_ptr, gb_ptr, total_p, C, H, W,
    g_sn, g_sc, g_sh, g_sw, o_sn, o_sc, o_sh, o_sw, d_sn, d_sc, d_sh, d_sw,
    RELU: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """grad_base = where(out <= 0, 0, grad), or a copy of grad without ReLU, in grad_base's layout."""
    p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = p < total_p
    n, y, x = _split_pixel_index(p, H, W)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    oc = offs_c.to(tl.int64)
    mask = mask_p[:, None] & (offs_c < C)[None, :]
    g = tl.load(grad_ptr + (n * g_sn + y * g_sh + x * g_sw)[:, None] + oc[None, :] * g_sc, mask=mask, other=0.0)
    if RELU:
        o = tl.load(out_ptr + (n * o_sn + y * o_sh + x * o_sw)[:, None] + oc[None, :] * o_sc, mask=mask, other=0.0)
        g = tl.where(o <= 0.0, 0.0, g)
    tl.store(gb_ptr + (n * d_sn + y * d_sh + x * d_sw)[:, None] + oc[None, :] * d_sc,
             g.to(gb_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _block_sum_kernel(
    g_ptr, p_ptr, total_q, C, h, w,
    g_sn, g_sc, g_sh, g_sw, p_sn, p_sc, p_sh, p_sw,
    S: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """pooled[n, c, yl, xl] = sum of g over the S x S block (yl*S.., xl*S..): nearest upsampling's adjoint."""
    q = tl.program_id(0).to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    mask_q = q < total_q
    n, yl, xl = _split_pixel_index(q, h, w)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    oc = offs_c.to(tl.int64)
    mask = mask_q[:, None] & (offs_c < C)[None, :]
    acc = tl.zeros((BLOCK_Q, BLOCK_C), dtype=tl.float32)
    # loops, not static_range: s can be up to H (an unrolled 32x32 block would bloat compile time)
    for dy in range(S):
        for dx in range(S):
            off = n * g_sn + (yl * S + dy) * g_sh + (xl * S + dx) * g_sw
            acc += tl.load(g_ptr + off[:, None] + oc[None, :] * g_sc, mask=mask, other=0.0).to(tl.float32)
    tl.store(p_ptr + (n * p_sn + yl * p_sh + xl * p_sw)[:, None] + oc[None, :] * p_sc,
             acc.to(p_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------
# Launchers. Arguments are validated by hrnet_fast.ops.fused_exchange before they get here.


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels_last when ``t`` is strictly channels_last dense, else contiguous (the op's output rule)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _dot_precision(dtype: torch.dtype) -> str:
    """tl.dot's input precision. float32 inputs: IEEE unless the user allowed TF32 for matrix products
    through torch's own setting (``torch.backends.cuda.matmul.allow_tf32``, which
    ``torch.set_float32_matmul_precision("high")`` turns on), as torch's matmul does. 16-bit inputs
    multiply exactly on the tensor cores either way."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


def _pow2(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(v), 1))))


def _log2(s: int) -> int:
    return int(s).bit_length() - 1


def forward(
    base: torch.Tensor,
    lows: Sequence[torch.Tensor],
    weights: Sequence[Optional[torch.Tensor]],
    biases: Sequence[Optional[torch.Tensor]],
    relu: bool,
) -> torch.Tensor:
    """Launch the forward kernel(s). base (N, C, H, W); lows[j] (N, C_j, H/s_j, W/s_j); weights[j]
    (C, C_j) or None; biases[j] (C,) or None; fp32/fp16/bf16. Returns (N, C, H, W) in base's layout."""
    N, C, H, W = base.shape
    out = torch.empty_like(base, memory_format=memory_format(base))
    total_p = N * H * W
    if out.numel() == 0:
        return out
    _backends.poison(out)
    weights = [None if w is None else w.reshape(C, -1).contiguous() for w in weights]
    biases = [None if b is None else b.contiguous() for b in biases]
    BLOCK_P = 64
    BLOCK_C = _pow2(C, 16, 64)
    max_cj = max([low.shape[1] for low in lows] + [16])
    BLOCK_K = _pow2(max_cj, 16, 32)
    precision = _dot_precision(base.dtype)
    grid = (triton.cdiv(total_p, BLOCK_P), triton.cdiv(C, BLOCK_C))
    chunks = [list(range(i, min(i + MAX_LOWS, len(lows)))) for i in range(0, max(len(lows), 1), MAX_LOWS)]
    # More lows than one launch takes: the partial sums go through a float32 buffer, so a 16-bit output is
    # rounded once, at the end, as with a single launch (rounding between launches flips signs near zero,
    # and the backward's ReLU mask with them).
    partial = out
    if len(chunks) > 1 and base.dtype != torch.float32:
        partial = torch.empty_like(out, dtype=torch.float32, memory_format=memory_format(base))
    src = base
    for ci, chunk in enumerate(chunks):
        dst = out if ci == len(chunks) - 1 else partial
        args, flags = [], {}
        for slot in range(MAX_LOWS):
            if slot < len(chunk):
                j = chunk[slot]
                low, w, b = lows[j], weights[j], biases[j]
                args += [low, w if w is not None else low, b if b is not None else low, low.shape[1], *low.stride()]
                flags.update({f"LOG2S{slot}": _log2(H // low.shape[2]), f"HAS_W{slot}": w is not None,
                              f"HAS_B{slot}": b is not None})
            else:  # unused slot: any valid pointer, never read
                args += [base, base, base, 1, 0, 0, 0, 0]
                flags.update({f"LOG2S{slot}": 1, f"HAS_W{slot}": False, f"HAS_B{slot}": False})
        _exchange_fwd_kernel[grid](
            src, dst, total_p, C, H, W, *src.stride(), *dst.stride(), *args,
            NUM_LOWS=len(chunk), RELU=bool(relu) and ci == len(chunks) - 1,
            BLOCK_P=BLOCK_P, BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K, PRECISION=precision, **flags,
        )
        src = dst  # later chunks accumulate in place: each element is read and written by one program
    return out


def backward(grad: torch.Tensor, out: torch.Tensor, low_shapes: Sequence[Sequence[int]], relu: bool):
    """grad, out (N, C, H, W). Returns grad_base (N, C, H, W) and, per low shape (N, C_j, h, w), the
    s x s block sums (N, C, h, w) of grad_base, all in out's layout."""
    N, C, H, W = out.shape
    fmt = memory_format(out)
    gb = torch.empty_like(out, memory_format=fmt)
    pooled = [torch.empty((N, C, s[2], s[3]), dtype=out.dtype, device=out.device, memory_format=fmt)
              for s in low_shapes]
    if out.numel() == 0:
        for t in pooled:
            t.zero_()
        return gb, pooled
    _backends.poison(gb, *pooled)
    BLOCK_P, BLOCK_C = 64, _pow2(C, 16, 64)
    total_p = N * H * W
    _relu_mask_kernel[(triton.cdiv(total_p, BLOCK_P), triton.cdiv(C, BLOCK_C))](
        grad, out, gb, total_p, C, H, W, *grad.stride(), *out.stride(), *gb.stride(),
        RELU=bool(relu), BLOCK_P=BLOCK_P, BLOCK_C=BLOCK_C,
    )
    for t in pooled:
        h, w = t.shape[2], t.shape[3]
        total_q = N * h * w
        _block_sum_kernel[(triton.cdiv(total_q, BLOCK_P), triton.cdiv(C, BLOCK_C))](
            gb, t, total_q, C, h, w, *gb.stride(), *t.stride(),
            S=H // h, BLOCK_Q=BLOCK_P, BLOCK_C=BLOCK_C,
        )
    return gb, pooled
