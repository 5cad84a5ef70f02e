"""Triton kernels of the fused exchange unit, and their launchers.

Forward: ``out = [relu](base + sum_j nearest_upsample(W_j @ low_j + b_j, s_j))`` in two steps, as the
CUDA backend does it:

1. per low input with a weight, the 1x1 convolution at LOW resolution (``_conv1x1_kernel``): a ``tl.dot``
   GEMM (tensor cores on a GPU) over tiles of ``BLOCK_Q`` low pixels of one sample by ``BLOCK_C`` output
   channels, accumulated in fp32, plus the bias, written to an fp32 buffer ``z_j`` (N, C, h_j, w_j) in
   base's layout. Doing the product per full-resolution pixel instead would repeat it s_j**2 times (16x
   the FLOPs for W32's branch 0 of stage 4);
2. ONE fused pass at full resolution (``_upsample_sum_kernel``) over tiles of ``BLOCK_X`` pixels of one
   row by ``BLOCK_C`` channels: base + the nearest-upsampled ``z_j`` (read in fp32; a low without a weight
   is read as it is, plus its bias) + ReLU, rounded once to the output dtype.

More lows than one fused pass takes (``MAX_LOWS``) chain passes through an fp32 partial sum, so a 16-bit
output is rounded once, at the end (rounding between launches flips signs near zero, and the backward's
ReLU mask with them). Weights may be float32 beside 16-bit activations (prepared once in fp32): the
kernel casts each weight tile to the activation dtype for ``tl.dot``, as a 16-bit weight would be.

Backward: ``grad_base = where(out <= 0, 0, grad)`` (the ReLU mask comes from the output; a NaN output
passes the gradient, as torch's ReLU backward does), then per low input
the s x s block sums of ``grad_base`` (the adjoint of nearest upsampling). The low-resolution GEMMs of
the backward (``W^T G``, ``G low^T``) are left to torch (see ``hrnet_fast/ops/fused_exchange.py``).

All kernels take element strides, so NCHW-contiguous, channels_last and other strided inputs are read
in place; memory offsets are computed in int64 (tensors may exceed 2**31 elements); indices within one
sample's row or one low image are int32 (checked by the launchers).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import triton
import triton.language as tl

from ._utils import launch_device, memory_format, poison

# Low inputs added by one fused pass; HRNet needs at most 3 (branch 0 of stage 4). More are handled by
# chaining passes (the ReLU only on the last).
MAX_LOWS = 3

_INT32_MAX = 2**31 - 1


@triton.jit
def _split_pixel_index(p, H, W):
    """(n, y, x) of flat pixel indices p = (n * H + y) * W + x (p is int64, so offsets cannot overflow)."""
    n = p // (H * W)
    rem = p - n * (H * W)
    y = rem // W
    return n, y, rem - y * W


@triton.jit
def _conv1x1_kernel(
    low_ptr, w_ptr, b_ptr, z_ptr, C, Cj, HW, w_low, n_qblocks,
    l_sn, l_sc, l_sh, l_sw, z_sn, z_sc, z_sw,
    HAS_B: tl.constexpr, DENSE: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):
    """z[n, oc, q] = sum_k W[oc, k] * low[n, k, q] (+ b[oc]) in fp32, over the q < HW = h*w low pixels of
    sample n. Program (n * n_qblocks + q block, oc block). W is (C, Cj) contiguous, of the low's dtype or
    float32; z is dense over (h, w) (q at stride z_sw). DENSE: low is dense over (h, w) too (NCHW or
    channels_last), so q's offset is q * l_sw, which lets the compiler see the contiguous axis."""
    pid = tl.program_id(0)
    n = pid // n_qblocks
    q = (pid - n * n_qblocks) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    mask_q = q < HW
    n64 = n.to(tl.int64)
    q64 = q.to(tl.int64)
    if DENSE:
        l_row = n64 * l_sn + q64 * l_sw
    else:
        yl = q // w_low
        l_row = n64 * l_sn + yl.to(tl.int64) * l_sh + (q - yl * w_low).to(tl.int64) * l_sw
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    oc = offs_c.to(tl.int64)
    acc = tl.zeros((BLOCK_Q, BLOCK_C), dtype=tl.float32)
    for k0 in range(0, Cj, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < Cj
        ok = offs_k.to(tl.int64)
        a = tl.load(low_ptr + l_row[:, None] + ok[None, :] * l_sc, mask=mask_q[:, None] & mask_k[None, :], other=0.0)
        # this tile is W[oc, k]^T, shape (BLOCK_K, BLOCK_C); an fp32 weight meets 16-bit activations in
        # their dtype (tl.dot takes one input dtype), exactly as a weight converted beforehand would
        wt = tl.load(w_ptr + oc[None, :] * Cj + ok[:, None], mask=mask_k[:, None] & mask_c[None, :], other=0.0)
        acc += tl.dot(a, wt.to(low_ptr.dtype.element_ty), input_precision=PRECISION)
    if HAS_B:
        acc += tl.load(b_ptr + oc, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    tl.store(z_ptr + (n64 * z_sn + q64 * z_sw)[:, None] + oc[None, :] * z_sc, acc,
             mask=mask_q[:, None] & mask_c[None, :])


@triton.jit
def _add_upsampled(acc, z_ptr, b_ptr, n, y, x, oc, mask, mask_c, sn, sc, sh, sw,
                   LOG2S: tl.constexpr, HAS_B: tl.constexpr):
    """acc (BLOCK_X, BLOCK_C) += z[n, oc, y >> LOG2S, x >> LOG2S] (+ b[oc]), in fp32."""
    row = n * sn + (y >> LOG2S) * sh  # scalar: one full-resolution row reads one low row
    acc += tl.load(z_ptr + row + ((x >> LOG2S) * sw)[:, None] + oc[None, :] * sc, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        acc += tl.load(b_ptr + oc, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    return acc


@triton.jit
def _upsample_sum_kernel(
    base_ptr, out_ptr, C, H, W, n_xblocks,
    b_sn, b_sc, b_sh, b_sw, o_sn, o_sc, o_sh, o_sw,
    z0_ptr, bias0_ptr, z0_sn, z0_sc, z0_sh, z0_sw,
    z1_ptr, bias1_ptr, z1_sn, z1_sc, z1_sh, z1_sw,
    z2_ptr, bias2_ptr, z2_sn, z2_sc, z2_sh, z2_sw,
    NUM_LOWS: tl.constexpr,
    LOG2S0: tl.constexpr, HAS_B0: tl.constexpr,
    LOG2S1: tl.constexpr, HAS_B1: tl.constexpr,
    LOG2S2: tl.constexpr, HAS_B2: tl.constexpr,
    RELU: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """out[n, c, y, x] = [relu](base + sum_j z_j[n, c, y >> s_j, x >> s_j] (+ b_j[c])), summed in fp32 and
    rounded once. Program ((n * H + y) * n_xblocks + x block, c block); z_j fp32 (a 1x1 conv's output) or
    a low of base's dtype (no weight)."""
    pid = tl.program_id(0)
    row = pid // n_xblocks
    x = (pid - row * n_xblocks) * BLOCK_X + tl.arange(0, BLOCK_X)
    n = row // H
    y = (row - n * H).to(tl.int64)
    n = n.to(tl.int64)
    x = x.to(tl.int64)
    mask_x = x < W
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    oc = offs_c.to(tl.int64)
    mask = mask_x[:, None] & mask_c[None, :]

    acc = tl.load(base_ptr + (n * b_sn + y * b_sh) + (x * b_sw)[:, None] + oc[None, :] * b_sc,
                  mask=mask, other=0.0).to(tl.float32)
    if NUM_LOWS >= 1:
        acc = _add_upsampled(acc, z0_ptr, bias0_ptr, n, y, x, oc, mask, mask_c,
                             z0_sn, z0_sc, z0_sh, z0_sw, LOG2S0, HAS_B0)
    if NUM_LOWS >= 2:
        acc = _add_upsampled(acc, z1_ptr, bias1_ptr, n, y, x, oc, mask, mask_c,
                             z1_sn, z1_sc, z1_sh, z1_sw, LOG2S1, HAS_B1)
    if NUM_LOWS >= 3:
        acc = _add_upsampled(acc, z2_ptr, bias2_ptr, n, y, x, oc, mask, mask_c,
                             z2_sn, z2_sc, z2_sh, z2_sw, LOG2S2, HAS_B2)
    if RELU:
        acc = tl.where(acc < 0.0, 0.0, acc)  # keeps NaN, as torch.relu does
    tl.store(out_ptr + (n * o_sn + y * o_sh) + (x * o_sw)[:, None] + oc[None, :] * o_sc,
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


def _row_block(width: int) -> int:
    """The fused pass's tile width: the power of two in 8..64 that pads a row least (the larger on ties),
    e.g. 16 for W = 48 (3 tiles, none padded) rather than 64 (a quarter of it masked off)."""
    return min((8, 16, 32, 64), key=lambda b: (triton.cdiv(width, b) * b, -b))


def _check_grid(programs: int, what: str) -> None:
    # program ids and in-sample indices are int32 in the kernels
    if programs > _INT32_MAX:
        raise ValueError(f"fused_exchange (triton): {what} needs {programs} programs, more than 2^31 - 1")


def conv1x1(low: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
            fmt: torch.memory_format) -> torch.Tensor:
    """``W @ low + b`` at low resolution, in float32. low (N, C_j, h, w) fp32/fp16/bf16, weight (C, C_j)
    of low's dtype or float32, bias (C,) or None (any float dtype). Returns (N, C, h, w) float32 in
    ``fmt``. Launch on low's device (the caller holds :func:`launch_device`)."""
    N, cj, h, w = low.shape
    C = weight.shape[0]
    z = torch.empty((N, C, h, w), dtype=torch.float32, device=low.device, memory_format=fmt)
    poison(z)  # an element the kernel fails to write shows in the output
    if cj == 0:  # no input channels: the product is zero (and an empty weight has no pointer to pass)
        return z.copy_(bias.float().view(1, C, 1, 1).expand_as(z)) if bias is not None else z.zero_()
    hw = h * w
    if hw > _INT32_MAX:
        raise ValueError(f"fused_exchange (triton): a low input of {h}x{w} pixels exceeds 2^31 - 1 per sample")
    weight = weight.reshape(C, cj).contiguous()
    BLOCK_Q = _pow2(hw, 16, 64)
    BLOCK_C = _pow2(C, 16, 64)
    BLOCK_K = _pow2(cj, 16, 32)
    n_qblocks = triton.cdiv(hw, BLOCK_Q)
    _check_grid(N * n_qblocks, "the 1x1 convolution")
    sn, sc, sh, sw = low.stride()
    zs = z.stride()
    _conv1x1_kernel[(N * n_qblocks, triton.cdiv(C, BLOCK_C))](
        low, weight, bias if bias is not None else weight, z, C, cj, hw, w, n_qblocks,
        sn, sc, sh, sw, zs[0], zs[1], zs[3],
        HAS_B=bias is not None, DENSE=h == 1 or sh == w * sw,
        BLOCK_Q=BLOCK_Q, BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K, PRECISION=_dot_precision(low.dtype),
    )
    return z


def forward(
    base: torch.Tensor,
    lows: Sequence[torch.Tensor],
    weights: Sequence[Optional[torch.Tensor]],
    biases: Sequence[Optional[torch.Tensor]],
    relu: bool,
) -> torch.Tensor:
    """Launch the forward kernels. base (N, C, H, W) and lows[j] (N, C_j, H/s_j, W/s_j) fp32/fp16/bf16 of
    one dtype; weights[j] (C, C_j) or (C, C_j, 1, 1) of that dtype or float32, or None; biases[j] (C,) of
    either dtype, or None. Returns (N, C, H, W) in base's dtype and layout."""
    N, C, H, W = base.shape
    fmt = memory_format(base)
    out = torch.empty_like(base, memory_format=fmt)
    if out.numel() == 0:
        return out
    poison(out)
    BLOCK_X = _row_block(W)
    BLOCK_C = _pow2(C, 16, min(128, 4096 // BLOCK_X))
    n_xblocks = triton.cdiv(W, BLOCK_X)
    _check_grid(N * H * n_xblocks, "the upsample-and-sum pass")
    grid = (N * H * n_xblocks, triton.cdiv(C, BLOCK_C))
    with launch_device(base):
        # 1. The 1x1 convolutions at low resolution, into fp32. A low without a weight is read as it is.
        terms: List[Tuple[torch.Tensor, Optional[torch.Tensor]]] = []
        for low, w, b in zip(lows, weights, biases):
            terms.append((low, b) if w is None else (conv1x1(low, w, b, fmt), None))
        # 2. The fused upsample + sum + ReLU pass(es). With more lows than one pass takes, the partial sums
        # go through a float32 buffer, so a 16-bit output is rounded once, at the end.
        chunks = [terms[i:i + MAX_LOWS] for i in range(0, max(len(terms), 1), MAX_LOWS)]
        partial = out
        if len(chunks) > 1 and base.dtype != torch.float32:
            partial = torch.empty_like(out, dtype=torch.float32, memory_format=fmt)
            poison(partial)
        src = base
        for ci, chunk in enumerate(chunks):
            last = ci == len(chunks) - 1
            dst = out if last else partial
            args, flags = [], {}
            for slot in range(MAX_LOWS):
                if slot < len(chunk):
                    z, b = chunk[slot]
                    args += [z, b if b is not None else z, *z.stride()]
                    flags.update({f"LOG2S{slot}": _log2(H // z.shape[2]), f"HAS_B{slot}": b is not None})
                else:  # unused slot: any valid pointer, never read
                    args += [base, base, 0, 0, 0, 0]
                    flags.update({f"LOG2S{slot}": 1, f"HAS_B{slot}": False})
            _upsample_sum_kernel[grid](
                src, dst, C, H, W, n_xblocks, *src.stride(), *dst.stride(), *args,
                NUM_LOWS=len(chunk), RELU=bool(relu) and last, BLOCK_X=BLOCK_X, BLOCK_C=BLOCK_C, **flags,
            )
            src = dst  # later passes accumulate in place: each element is read and written by one program
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
    poison(gb, *pooled)
    BLOCK_P, BLOCK_C = 64, _pow2(C, 16, 64)
    total_p = N * H * W
    with launch_device(out):
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
