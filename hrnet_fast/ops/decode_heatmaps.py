"""Heatmap decoding: argmax, quarter offset, DARK, DARK-UDP, flip-test merge and back-transform.

    coords, maxvals = hrnet_fast.decode_heatmaps(heatmaps, center, scale)            # official default
    coords, maxvals = hrnet_fast.decode_heatmaps(heatmaps, center, scale, method="dark",
                                                 flipped=heatmaps_of_flipped_crops,
                                                 flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)

Rules (each one checked against ``tests/data/decode_golden.npz``, built from the official HRNet code and
mmpose's decoders):

* argmax: the first maximum in row-major order wins ties; ``x = idx % W``, ``y = idx // W``; coordinates
  are zeroed where ``maxval <= 0`` (official ``get_max_preds``). ``maxvals`` is the raw maximum.
* quarter (official ``get_final_preds`` with POST_PROCESS, the default): only when ``1 < x < W-1`` and
  ``1 < y < H-1`` (strict, both at once) the point moves by ``0.25 * sign(right - left)`` in x and
  ``0.25 * sign(below - above)`` in y, with ``sign(0) = 0``.
* dark (mmpose ``refine_keypoints_dark``): zero-padded Gaussian blur with OpenCV's ``blur_kernel`` x
  ``blur_kernel`` kernel (sigma from the size, as ``cv2.GaussianBlur(..., 0)``), rescaled to the
  heatmap's original maximum, clamped below at 1e-10, log; where ``1 < x < W-2`` and ``1 < y < H-2``
  the point moves by ``-inv(Hessian) @ gradient``, skipped when the determinant is 0.
* udp (mmpose ``refine_keypoints_dark_udp``): the same blur and rescale, clipped to [1e-3, 50], log,
  edge padding, no border check, ``-inv(Hessian + eps*I) @ gradient``; back-transform with (W-1, H-1).
* back-transform (official ``transform_preds``, rotation 0) for argmax/quarter/dark:
  ``x_img = cx + (x - W/2) * 200*s0/W``, ``y_img = cy + (y - H/2) * 200*s0/W``; for udp
  ``x_img = x/(W-1)*200*s0 + cx - 100*s0``, ``y_img = y/(H-1)*200*s1 + cy - 100*s1``.
* flip test (official ``validate()``): reverse the width of ``flipped``, swap the channels of every
  pair (in order, as ``flip_back`` does), shift right by one pixel when ``shift`` (column 0 keeps its
  value), average with ``heatmaps`` as ``(h + f) * 0.5``. The decode kernels compute the merged value
  where they read it; the merged tensor is never written.

Non-finite input (documented rule, tested): a heatmap containing a NaN has ``maxval = NaN``, and, as in
the official code (numpy's argmax/amax propagate NaN and ``NaN > 0`` is False), its point is pixel
(0, 0), unrefined, back-transformed. DARK and UDP refine only where ``maxval > 0`` and the blur rescale
ratio ``maxval / max(blurred)`` is finite and positive; elsewhere they return the unrefined argmax
point (this gives a finite point for mmpose's NaN case, an all-zero heatmap, and matches it everywhere
else).

Precision: heatmaps in fp16/bf16 are converted to fp32 on load and every backend computes in fp32 (the
back-transform in fp64), so the result equals the fp32 decode of ``heatmaps.float()``. ``coords`` and
``maxvals`` are always fp32.
"""
from __future__ import annotations

import math
import operator
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .. import _backends
from ._device_cache import DeviceCache

__all__ = [
    "COCO_FLIP_PAIRS",
    "MPII_FLIP_PAIRS",
    "METHODS",
    "decode_heatmaps",
    "decode_heatmaps_reference",
    "flip_merge",
    "gaussian_kernel1d",
]

#: Official COCO flip pairs (17 joints): left/right eyes, ears, shoulders, elbows, wrists, hips, knees, ankles.
COCO_FLIP_PAIRS: Tuple[Tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)
#: Official MPII flip pairs (16 joints): ankles, knees, hips, wrists, elbows, shoulders.
MPII_FLIP_PAIRS: Tuple[Tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))

#: Method names and the integer codes the kernels take.
METHODS: Dict[str, int] = {"argmax": 0, "quarter": 1, "dark": 2, "udp": 3}
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_OP = "decode_heatmaps"
# numpy.finfo(numpy.float32).eps, which mmpose adds to the UDP Hessian's diagonal.
_UDP_EPS = 1.1920928955078125e-07


# --------------------------------------------------------------------------------------------------
# Small cached helpers (built once per device so a decode call uploads nothing).
# --------------------------------------------------------------------------------------------------
_OPENCV_SMALL_KERNELS = {
    # cv2.getGaussianKernel uses fixed tables for sigma <= 0 and ksize <= 7 (its small_gaussian_tab).
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def gaussian_kernel1d(ksize: int) -> List[float]:
    """OpenCV's ``getGaussianKernel(ksize, 0)`` as a list of floats (computed in float64).

    ``cv2.GaussianBlur(img, (k, k), 0)`` filters rows then columns with this kernel, rounded to fp32
    for fp32 images.
    """
    if ksize in _OPENCV_SMALL_KERNELS:
        return list(_OPENCV_SMALL_KERNELS[ksize])
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    half = (ksize - 1) / 2.0
    w = [math.exp(-((i - half) ** 2) / (2.0 * sigma * sigma)) for i in range(ksize)]
    s = sum(w)
    return [v / s for v in w]


# Device constants, built once per device (see ops/_device_cache.py: stream order, never inside a CUDA graph
# capture, entries kept alive while kernels may read them); PoseEstimator builds its own at construction.
_weights_cache = DeviceCache("decode_heatmaps: blur weights")
_perm_cache = DeviceCache("decode_heatmaps: flip permutation")


def _blur_weights(ksize: int, device: torch.device) -> torch.Tensor:
    """(ksize,) float32 Gaussian weights (:func:`gaussian_kernel1d`) on ``device``."""
    return _weights_cache.get(ksize, device, lambda: torch.tensor(gaussian_kernel1d(ksize), dtype=torch.float32))


def _flip_perm(pairs: Tuple[Tuple[int, int], ...], num_joints: int, device: torch.device) -> torch.Tensor:
    """``perm[k]`` = the channel of the flipped heatmaps that lands in channel k after ``flip_back``:
    (num_joints,) int64 on ``device``."""

    def build() -> torch.Tensor:
        src = list(range(num_joints))
        for a, b in pairs:  # the official swaps, applied in order
            src[a], src[b] = src[b], src[a]
        return torch.tensor(src, dtype=torch.int64)

    return _perm_cache.get((pairs, num_joints), device, build)


# --------------------------------------------------------------------------------------------------
# Validation: clear Python errors naming the argument.
# --------------------------------------------------------------------------------------------------
def _check_heatmaps(name: str, t, ref: Optional[torch.Tensor] = None, op: str = _OP) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4:
        raise ValueError(f"{op}: {name} must be a 4-D tensor (N, K, H, W), got shape {tuple(t.shape)}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    if t.shape[2] < 1 or t.shape[3] < 1:
        raise ValueError(f"{op}: {name} must have H >= 1 and W >= 1, got shape {tuple(t.shape)}")
    if ref is not None:
        if t.shape != ref.shape:
            raise ValueError(f"{op}: {name} must have the shape of heatmaps {tuple(ref.shape)}, got {tuple(t.shape)}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{op}: {name} must have the dtype of heatmaps ({ref.dtype}), got {t.dtype}")
        if t.device != ref.device:
            raise ValueError(f"{op}: {name} must be on the device of heatmaps ({ref.device}), got {t.device}")


def _normalize_pairs(flip_pairs, num_joints: int, op: str = _OP) -> Tuple[Tuple[int, int], ...]:
    if isinstance(flip_pairs, torch.Tensor):
        flip_pairs = flip_pairs.tolist()
    elif hasattr(flip_pairs, "tolist"):  # numpy array
        flip_pairs = flip_pairs.tolist()
    try:
        pairs = [tuple(p) for p in flip_pairs]
    except TypeError:
        raise TypeError(f"{op}: flip_pairs must be a sequence of (left, right) joint index pairs, got {flip_pairs!r}") from None
    seen = set()
    out = []
    for p in pairs:
        try:
            if len(p) != 2 or any(isinstance(v, bool) for v in p):
                raise TypeError
            p = tuple(operator.index(v) for v in p)  # ints, numpy ints
        except TypeError:
            raise TypeError(f"{op}: every flip pair must be two ints, got {p!r}") from None
        for v in p:
            if not 0 <= v < num_joints:
                raise ValueError(
                    f"{op}: flip_pairs index {v} (in pair {p}) is out of range for K={num_joints} joints: "
                    f"flip_pairs does not fit the heatmaps"
                )
        if p[0] != p[1]:
            for v in p:
                if v in seen:
                    raise ValueError(f"{op}: joint {v} appears in more than one flip pair")
                seen.add(v)
        out.append((int(p[0]), int(p[1])))
    return tuple(out)


def _check_box(name: str, v, n: int, device: torch.device) -> torch.Tensor:
    # detached: decoding is not differentiable in any backend (the compiled ones have no autograd)
    if isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device == device and v.shape == (n, 2):
        return v.detach().contiguous()
    if isinstance(v, torch.Tensor):
        v = v.detach()
        if not (v.is_floating_point() or v.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{_OP}: {name} must be a real tensor, got {v.dtype}")
        # non_blocking: a CPU box for CUDA heatmaps is copied without a host sync.
        t = v.to(device=device, dtype=torch.float32, non_blocking=True)
    else:
        try:
            t = torch.as_tensor(v, dtype=torch.float32).to(device, non_blocking=True)
        except Exception as exc:  # noqa: BLE001 - quote what the conversion said
            raise TypeError(f"{_OP}: {name} must be a tensor or array of shape (N, 2), got {type(v).__name__} ({exc})") from None
    if t.shape != (n, 2):
        raise ValueError(f"{_OP}: {name} must have shape (N, 2) = ({n}, 2), got {tuple(t.shape)}")
    return t.contiguous()


def _check_blur_kernel(blur_kernel, height: int, width: int) -> int:
    if isinstance(blur_kernel, bool) or not isinstance(blur_kernel, int):
        raise TypeError(f"{_OP}: blur_kernel must be an int, got {type(blur_kernel).__name__}")
    if blur_kernel <= 0 or blur_kernel % 2 == 0:
        raise ValueError(f"{_OP}: blur_kernel must be a positive odd int, got {blur_kernel}")
    # A wider kernel reaches no further pixel of a zero-padded H x W map (only its sigma grows), and an
    # unbounded one costs unbounded time: cap it at twice the larger side plus one.
    limit = 2 * max(height, width) + 1
    if blur_kernel > limit:
        raise ValueError(f"{_OP}: blur_kernel must be <= 2 * max(H, W) + 1 = {limit} for {height}x{width} heatmaps, "
                         f"got {blur_kernel}")
    return blur_kernel


def _rows_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Kernels take any N, K and H strides (64-bit) but need unit stride along W."""
    return t if (t.shape[3] == 1 or t.stride(3) == 1) else t.contiguous()


# --------------------------------------------------------------------------------------------------
# The torch reference (the spec): vectorised, no Python loop over points.
# --------------------------------------------------------------------------------------------------
def _flip_merge_torch(heatmaps: torch.Tensor, flipped: torch.Tensor, perm: torch.Tensor, shift: bool) -> torch.Tensor:
    f = flipped.float().flip(3).index_select(1, perm)
    if shift and f.shape[3] > 1:
        f = torch.cat([f[..., :1], f[..., :-1]], dim=3)
    return (heatmaps.float() + f) * 0.5


def _gather(flat: torch.Tensor, y: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    idx = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).unsqueeze(-1)
    return flat.gather(2, idx).squeeze(-1)


def _blur_log(hm: torch.Tensor, maxvals: torch.Tensor, ksize: int, lo: float, hi: Optional[float]):
    """mmpose's gaussian_blur (zero padding, rescale to the original max) then clamp and log.

    Returns the log-heatmaps flattened to (N, K, H*W) and a mask of heatmaps whose rescale is usable.
    """
    n, k, h, w = hm.shape
    wt = torch.tensor(gaussian_kernel1d(ksize), dtype=torch.float32, device=hm.device)
    r = ksize // 2
    x = hm.reshape(n * k, 1, h, w)
    x = F.conv2d(x, wt.view(1, 1, 1, ksize), padding=(0, r))  # rows first, as OpenCV does
    x = F.conv2d(x, wt.view(1, 1, ksize, 1), padding=(r, 0))
    x = x.reshape(n, k, h * w)
    bmax = x.amax(dim=2) if h * w > 0 else maxvals
    ratio = maxvals / bmax
    ok = torch.isfinite(ratio) & (ratio > 0) & (maxvals > 0)
    x = x * torch.where(ok, ratio, torch.ones_like(ratio)).unsqueeze(-1)
    x = x.clamp(min=lo, max=hi) if hi is not None else x.clamp(min=lo)
    return torch.log(x), ok


def decode_heatmaps_reference(
    heatmaps: torch.Tensor,
    flipped: Optional[torch.Tensor],
    flip_perm: Optional[torch.Tensor],
    center: Optional[torch.Tensor],
    scale: Optional[torch.Tensor],
    method: int,
    shift: bool,
    blur_kernel: int,
    coord_dtype: torch.dtype = torch.float64,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The torch backend: validated inputs (see ``decode_heatmaps``), method as its integer code.

    ``coord_dtype`` is the dtype of the argmax/quarter coordinate arithmetic and the back-transform
    (float64, as the official numpy code, by default). :func:`hrnet_fast.export_onnx` passes float32, since
    TensorRT has no float64: pixel positions and quarter offsets are exact in float32, so only the
    back-transform's two roundings differ (a few float32 ulps of the image coordinates). DARK/UDP
    refinements stay in float64 either way.
    """
    n, k, h, w = heatmaps.shape
    hm = _flip_merge_torch(heatmaps, flipped, flip_perm, shift) if flipped is not None else heatmaps.float()
    flat = hm.reshape(n, k, h * w)
    nan = torch.isnan(flat).any(dim=2)
    clean = torch.where(torch.isnan(flat), torch.full_like(flat, -math.inf), flat)
    idx = torch.argmax(clean, dim=2) if flat.numel() else torch.zeros((n, k), dtype=torch.int64, device=hm.device)
    maxvals = clean.gather(2, idx.unsqueeze(-1)).squeeze(-1) if flat.numel() else torch.zeros((n, k), device=hm.device)
    maxvals = torch.where(nan, torch.full_like(maxvals, math.nan), maxvals)
    pos = maxvals > 0  # False for NaN, as in the official code
    ix = torch.where(pos, idx % w, torch.zeros_like(idx))
    iy = torch.where(pos, torch.div(idx, w, rounding_mode="floor"), torch.zeros_like(idx))
    px, py = ix.to(coord_dtype), iy.to(coord_dtype)
    if method == METHODS["quarter"] and flat.numel():
        inside = (ix > 1) & (ix < w - 1) & (iy > 1) & (iy < h - 1)
        dx = _gather(flat, iy, ix + 1, h, w) - _gather(flat, iy, ix - 1, h, w)
        dy = _gather(flat, iy + 1, ix, h, w) - _gather(flat, iy - 1, ix, h, w)
        px = px + torch.where(inside, torch.sign(dx).to(coord_dtype) * 0.25, torch.zeros_like(px))
        py = py + torch.where(inside, torch.sign(dy).to(coord_dtype) * 0.25, torch.zeros_like(py))
    elif method == METHODS["dark"] and flat.numel():
        lg, ok = _blur_log(hm, maxvals, blur_kernel, 1e-10, None)
        g = lambda oy, ox: _gather(lg, iy + oy, ix + ox, h, w)  # noqa: E731
        c = g(0, 0)
        dx = 0.5 * (g(0, 1) - g(0, -1))
        dy = 0.5 * (g(1, 0) - g(-1, 0))
        dxx = 0.25 * (g(0, 2) - 2 * c + g(0, -2))
        dxy = 0.25 * (g(1, 1) - g(-1, 1) - g(1, -1) + g(-1, -1))
        dyy = 0.25 * (g(2, 0) - 2 * c + g(-2, 0))
        det = dxx * dyy - dxy * dxy  # fp32, as mmpose tests it
        inside = (ix > 1) & (ix < w - 2) & (iy > 1) & (iy < h - 2) & ok & (det != 0)
        dxx, dxy, dyy, dx, dy = (v.double() for v in (dxx, dxy, dyy, dx, dy))
        detd = torch.where(inside, dxx * dyy - dxy * dxy, torch.ones_like(dxx))
        ox = -(dyy * dx - dxy * dy) / detd
        oy = -(-dxy * dx + dxx * dy) / detd
        px = px + torch.where(inside, ox, torch.zeros_like(ox))
        py = py + torch.where(inside, oy, torch.zeros_like(oy))
    elif method == METHODS["udp"] and flat.numel():
        lg, ok = _blur_log(hm, maxvals, blur_kernel, 1e-3, 50.0)
        g = lambda oy, ox: _gather(lg, iy + oy, ix + ox, h, w)  # noqa: E731 - clamped = edge padding
        i_ = g(0, 0)
        ix1, ix1_ = g(0, 1), g(0, -1)
        iy1, iy1_ = g(1, 0), g(-1, 0)
        ix1y1, ix1_y1_ = g(1, 1), g(-1, -1)
        dx = 0.5 * (ix1 - ix1_)
        dy = 0.5 * (iy1 - iy1_)
        dxx = ix1 - 2 * i_ + ix1_
        dyy = iy1 - 2 * i_ + iy1_
        dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
        # mmpose adds eps*I in float64 (np.eye is float64) and inverts there.
        dxx, dxy, dyy, dx, dy = (v.double() for v in (dxx, dxy, dyy, dx, dy))
        a, d = dxx + _UDP_EPS, dyy + _UDP_EPS
        det = a * d - dxy * dxy
        use = ok & (det != 0)
        detd = torch.where(use, det, torch.ones_like(det))
        ox = (d * dx - dxy * dy) / detd
        oy = (-dxy * dx + a * dy) / detd
        px = px - torch.where(use, ox, torch.zeros_like(ox))
        py = py - torch.where(use, oy, torch.zeros_like(oy))
    if center is not None:
        c = center.to(torch.promote_types(coord_dtype, px.dtype))
        s = scale.to(c.dtype)
        if method == METHODS["udp"]:
            px = px / max(w - 1, 1) * 200.0 * s[:, :1] + c[:, :1] - 100.0 * s[:, :1]
            py = py / max(h - 1, 1) * 200.0 * s[:, 1:] + c[:, 1:] - 100.0 * s[:, 1:]
        else:
            f = 200.0 * s[:, :1] / w
            px = c[:, :1] + (px - w * 0.5) * f
            py = c[:, 1:] + (py - h * 0.5) * f
    coords = torch.stack([px, py], dim=-1).float()
    return coords, maxvals.unsqueeze(-1).float()


# --------------------------------------------------------------------------------------------------
# Custom-op registration (fake kernels for opcheck / torch.compile).
# --------------------------------------------------------------------------------------------------
def _fake_outputs(heatmaps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    n, k = heatmaps.shape[0], heatmaps.shape[1]
    return (
        heatmaps.new_empty((n, k, 2), dtype=torch.float32),
        heatmaps.new_empty((n, k, 1), dtype=torch.float32),
    )


_CPP_OP = None  # the C++ op (CPU and CUDA kernels), bound once: a torch.ops lookup costs ~0.3 us a call
if _backends.extension() is not None and hasattr(torch.ops.hrnet_fast, "decode_heatmaps"):
    _CPP_OP = torch.ops.hrnet_fast.decode_heatmaps.default

    @torch.library.register_fake("hrnet_fast::decode_heatmaps")
    def _decode_fake(heatmaps, flipped, flip_perm, center, scale, method, shift, blur_weights):
        return _fake_outputs(heatmaps)


@torch.library.custom_op("hrnet_fast::decode_heatmaps_triton", mutates_args=())
def _decode_triton_op(
    heatmaps: torch.Tensor,
    flipped: Optional[torch.Tensor],
    flip_perm: Optional[torch.Tensor],
    center: Optional[torch.Tensor],
    scale: Optional[torch.Tensor],
    method: int,
    shift: bool,
    blur_weights: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor]:
    kern = _backends.triton_kernels("decode_heatmaps")
    return kern.decode_heatmaps(heatmaps, flipped, flip_perm, center, scale, method, shift, blur_weights)


@_decode_triton_op.register_fake
def _decode_triton_fake(heatmaps, flipped, flip_perm, center, scale, method, shift, blur_weights):
    return _fake_outputs(heatmaps)


# --------------------------------------------------------------------------------------------------
# Backend selection: what each backend runs (one table; hrnet_fast._backends.resolve decides from it).
# --------------------------------------------------------------------------------------------------
def _cuda_reasons(device: torch.device, dtype: torch.dtype, method: int, h: int, w: int) -> List[str]:
    if method < METHODS["dark"]:
        return []
    # The DARK/UDP kernel keeps the row-blurred heatmap in shared memory (H*W floats in one block) beside
    # its own static shared memory; both count against the per-block opt-in limit. The static figure
    # comes from the extension (decode::kDarkUdpStaticSharedBytes, which the launcher checks against the
    # compiled kernel), so this table and the launcher agree on the boundary.
    static = getattr(_backends.extension(), "dark_udp_static_shared_bytes", None)
    if static is None:
        return ["the compiled extension does not report the dark/udp kernel's shared memory (an old build: rebuild it)"]
    static = int(static())
    props = torch.cuda.get_device_properties(device)
    limit = int(getattr(props, "shared_memory_per_block_optin", 48 * 1024))
    if h * w * 4 + static > limit:
        return [f"cuda dark/udp keeps an H*W float heatmap in shared memory: {h}x{w} needs {h * w * 4} bytes plus "
                f"the kernel's {static} static bytes, this GPU allows {limit} per block"]
    return []


def _triton_reasons(device: torch.device, dtype: torch.dtype, method: int, h: int, w: int) -> List[str]:
    why = _backends.triton_kernels("decode_heatmaps").unsupported_reason(h, w, method)
    return [why] if why else []


# What runs each backend: ``run(heatmaps, flipped, flip_perm, center, scale, method_code, shift, blur_kernel)``
# on checked inputs (the reference's signature); the kernels take the blur weights, built once per device.
def _run_compiled(heatmaps, flipped, perm, center, scale, code, shift, ksize):  # cpp and cuda: one op
    weights = _blur_weights(ksize, heatmaps.device) if code >= METHODS["dark"] else None
    return _CPP_OP(heatmaps, flipped, perm, center, scale, code, shift, weights)


def _run_triton(heatmaps, flipped, perm, center, scale, code, shift, ksize):
    weights = _blur_weights(ksize, heatmaps.device) if code >= METHODS["dark"] else None
    return _decode_triton_op(heatmaps, flipped, perm, center, scale, code, shift, weights)


SUPPORT = _backends.OpSupport(
    op=_OP,
    backends={
        "torch": _backends.BackendSupport(run=decode_heatmaps_reference),
        "cpp": _backends.BackendSupport(devices=("cpu",), dtypes=_FLOAT_DTYPES, compiled_op="decode_heatmaps",
                                        run=_run_compiled),
        "cuda": _backends.BackendSupport(devices=("cuda",), dtypes=_FLOAT_DTYPES, compiled_op="decode_heatmaps",
                                         reasons=_cuda_reasons, run=_run_compiled),
        "triton": _backends.BackendSupport(devices=("cuda", "cpu"), dtypes=_FLOAT_DTYPES, reasons=_triton_reasons,
                                           run=_run_triton),
    },
    order={"cpu": ("cpp", "torch"), "cuda": ("cuda", "triton", "torch")},
)


def _resolve(heatmaps: torch.Tensor, code: int, backend: str) -> _backends.BackendSupport:
    """The one place that builds the resolver's key: (method code, H, W)."""
    return _backends.resolve(SUPPORT, backend, heatmaps.device, heatmaps.dtype,
                             (code, int(heatmaps.shape[2]), int(heatmaps.shape[3])))


def resolve_backend(heatmaps: torch.Tensor, method: str = "quarter", backend: str = "auto") -> _backends.BackendSupport:
    """The backend entry :func:`decode_heatmaps` uses for these heatmaps and method (cached): ``.name``
    names it, ``.run(...)`` runs it (arguments as :func:`decode_heatmaps_reference`'s, checked)."""
    return _resolve(heatmaps, METHODS[method], backend)


def decode_heatmaps(
    heatmaps: torch.Tensor,
    center=None,
    scale=None,
    method: str = "quarter",
    flipped: Optional[torch.Tensor] = None,
    flip_pairs=None,
    shift: bool = True,
    blur_kernel: int = 11,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode pose heatmaps to keypoints, with the optional flip-test merge fused in.

    Args:
        heatmaps: (N, K, H, W) float32/float16/bfloat16, any device (CPU or CUDA), any strides.
        center, scale: (N, 2) each, official convention (``scale`` in units of 200 pixels), or both None
            to get heatmap coordinates. Tensors or arrays; moved to the heatmaps' device as float32.
        method: ``"argmax"``, ``"quarter"`` (official default), ``"dark"`` or ``"udp"``.
        flipped: (N, K, H, W) heatmaps of the horizontally flipped crops (same dtype/device), or None.
        flip_pairs: (left, right) joint pairs, required with ``flipped`` (``COCO_FLIP_PAIRS``,
            ``MPII_FLIP_PAIRS``, or ``()`` for none).
        shift: shift the flipped heatmaps right by one pixel before averaging (official SHIFT_HEATMAP).
        blur_kernel: odd, positive Gaussian kernel size for ``dark`` and ``udp``.
        backend: ``"auto"``, ``"torch"``, ``"cpp"``, ``"cuda"`` or ``"triton"``.

    Returns:
        ``coords`` (N, K, 2) float32 (x, y) in image coordinates (heatmap coordinates without
        center/scale) and ``maxvals`` (N, K, 1) float32, on the heatmaps' device, without a host sync
        (pass ``center``/``scale`` as tensors on that device: a CPU box is copied there first). Not
        differentiable (the inputs are detached). See the module docstring for every rule.
    """
    _check_heatmaps("heatmaps", heatmaps)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"{_OP}: method must be one of {list(METHODS)}, got {method!r}")
    code = METHODS[method]
    ksize = _check_blur_kernel(blur_kernel, heatmaps.shape[2], heatmaps.shape[3])
    if not isinstance(shift, bool):
        raise TypeError(f"{_OP}: shift must be a bool, got {type(shift).__name__}")
    n, k = heatmaps.shape[0], heatmaps.shape[1]
    device = heatmaps.device
    if (center is None) != (scale is None):
        raise ValueError(f"{_OP}: center and scale must be given together (or both None for heatmap coordinates)")
    if center is not None:
        center = _check_box("center", center, n, device)
        scale = _check_box("scale", scale, n, device)
    perm = None
    if flipped is not None:
        _check_heatmaps("flipped", flipped, heatmaps)
        if flip_pairs is None:
            raise ValueError(f"{_OP}: flip_pairs is required with flipped (COCO_FLIP_PAIRS, MPII_FLIP_PAIRS, or () for none)")
        perm = _flip_perm(_normalize_pairs(flip_pairs, k), k, device)
        flipped = _rows_contiguous(flipped)
    elif flip_pairs is not None:
        raise ValueError(f"{_OP}: flip_pairs was given without flipped heatmaps")
    # Decoding has no gradient: detach so the custom ops never see inputs that require grad.
    heatmaps = _rows_contiguous(heatmaps).detach()
    if flipped is not None:
        flipped = flipped.detach()

    return _resolve(heatmaps, code, backend).run(heatmaps, flipped, perm, center, scale, code, shift, ksize)


def flip_merge(heatmaps: torch.Tensor, flipped: torch.Tensor, flip_pairs, shift: bool = True) -> torch.Tensor:
    """The official flip-test merge alone: ``(heatmaps + shift(swap(flip_w(flipped)))) * 0.5``.

    Args: ``heatmaps`` and ``flipped`` (N, K, H, W) float32/float16/bfloat16 on one device;
    ``flip_pairs`` as in ``decode_heatmaps``; ``shift`` as the official SHIFT_HEATMAP.
    Returns the merged (N, K, H, W) tensor in the heatmaps' dtype (computed in fp32: bit-exact to the
    official merge for fp32 input). Vectorised torch ops on the heatmaps' device.
    """
    op = "flip_merge"
    _check_heatmaps("heatmaps", heatmaps, op=op)
    _check_heatmaps("flipped", flipped, heatmaps, op=op)
    if not isinstance(shift, bool):
        raise TypeError(f"{op}: shift must be a bool, got {type(shift).__name__}")
    perm = _flip_perm(_normalize_pairs(flip_pairs, heatmaps.shape[1], op), heatmaps.shape[1], heatmaps.device)
    return _flip_merge_torch(heatmaps, flipped, perm, shift).to(heatmaps.dtype)
