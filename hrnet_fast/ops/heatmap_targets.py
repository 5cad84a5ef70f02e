"""Training targets: Gaussian heatmaps and joint weights from keypoints, batched, on the keypoints' device.

    targets, weights = hrnet_fast.ops.heatmap_targets(keypoints, visible, (256, 192), (64, 48), sigma=2.0)

``keypoints`` (N, K, 2) are (x, y) in crop pixels, ``visible`` (N, K) the visibility (``w = vis`` as the
official code: the dataset has applied ``min(v, 1)``); ``image_size`` and ``heatmap_size`` are (H, W) like
``crop_boxes``' ``out_size`` (the official config writes [W, H]: convert at the config boundary). Returns
``targets`` (N, K, Hh, Wh) float32 and ``weights`` (N, K, 1) float32.

Rules of ``method="msra"`` (official ``JointsDataset.generate_target``, ``lib/dataset/JointsDataset.py:233-289``;
ported as written in ``hrnet_fast/baselines/official_targets.py``), per sample n and joint k:

* ``w = float32(visible)``; ``stride = image_size / heatmap_size`` per axis in float64 (the official divides
  two integer arrays); ``mu = int(x / stride + 0.5)`` in float64, where ``int`` truncates toward zero (not
  floor: ``x = -3`` at stride 4 gives ``mu = 0``).
* ``ul = int(mu - 3σ)``, ``br = int(mu + 3σ + 1)``; ``w = 0`` iff ``ul_x >= Wh`` or ``ul_y >= Hh`` or
  ``br_x < 0`` or ``br_y < 0`` (so ``br = 0`` keeps ``w`` with an empty map).
* Where ``w > 0.5``: the float32 table ``g[j, i] = exp(-((i - c)² + (j - c)²) / (2σ²))``, ``i, j`` in
  ``arange(0, 6σ + 1)`` (``ceil(6σ + 1)`` values), ``c = (6σ + 1) // 2``, is pasted:
  ``targets[y, x] = g[y - ul_y, x - ul_x]`` for ``max(0, ul) <= (x, y) < min(br, (Wh, Hh))``; zero elsewhere.
  The table is built on the host by numpy in float32, the official expression itself (numpy's SIMD float32
  ``exp`` is not correctly rounded: 104 of the 169 entries at σ = 2 are an ulp away from a correctly
  rounded exp, and torch's ``exp`` differs too), and copied to the device once (cached per device); every
  backend pastes that table, so msra targets are bit-exact to the official ones.
* ``weights = w * joint_weights[k]`` (float32) when ``joint_weights`` is given (the official
  ``USE_DIFFERENT_JOINTS_WEIGHT``).

Rules of ``method="udp"`` (mmpose ``UDPHeatmap`` gaussian, ``mmpose/codecs/udp_heatmap.py:77-78,116-120`` and
``generate_udp_gaussian_heatmaps``, ``mmpose/codecs/utils/gaussian_heatmap.py:263-339``):

* ``s = float32((image_size - 1) / (heatmap_size - 1))``; the keypoint is rounded to float32 (mmpose's
  pipeline keeps keypoints in float32) and ``u = x / s`` in float32; ``mu = int(u + 0.5)`` (float32 add).
* ``w = float32(visible)``; ``w < 0.5``: ``w`` kept, empty map. Else ``left = int(mu - 3σ)``,
  ``right = int(mu + 3σ + 1)`` (likewise top, bottom): outside as above gives ``w = 0``; otherwise the
  window pixels get ``float32(exp(-((i - x0)² + (j - y0)²) / (2σ²)))`` computed in float64, with
  ``x0 = c + (u - mu)`` (the Gaussian moved by the sub-pixel offset), ``i = x - left``, ``j = y - top``.
* ``joint_weights`` multiply the weights as for msra.

Non-finite keypoints (a rule of this op; the official ``int(nan)`` raises): a NaN or infinite coordinate
counts as outside the map (msra: ``w = 0``; udp: ``w = 0`` unless ``w < 0.5``), with an empty map. No host
synchronisation is spent checking values.

Not differentiable: the targets are piecewise constant in the keypoints (msra) or a training label (udp);
inputs are detached and no backend registers a backward.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import _backends
from ._device_cache import DeviceCache

__all__ = ["METHODS", "MAX_SIGMA", "gaussian_table", "heatmap_targets", "heatmap_targets_reference", "window_size"]

#: Method names and the integer codes the kernels take.
METHODS: Dict[str, int] = {"msra": 0, "udp": 1}
#: Largest sigma accepted: the (6σ+1)² table stays small (601² floats, 1.4 MB).
MAX_SIGMA = 100.0
_OP = "heatmap_targets"
_KEYPOINT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def window_size(sigma: float) -> int:
    """Side of the Gaussian window: ``len(np.arange(0, 6σ + 1, 1))`` = ``ceil(6σ + 1)``."""
    return int(math.ceil(2 * (sigma * 3) + 1))


def gaussian_table(sigma: float) -> np.ndarray:
    """The official (6σ+1) x (6σ+1) float32 Gaussian (``JointsDataset.py:267-273``), numpy as written."""
    tmp_size = sigma * 3
    size = 2 * tmp_size + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    return np.exp(- ((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))


# Device constants, built once per device (ops/_device_cache.py: stream order, never inside a CUDA graph
# capture, entries kept alive while kernels may read them).
_table_cache = DeviceCache("heatmap_targets: gaussian table")


def _table(sigma: float, device: torch.device) -> torch.Tensor:
    """(L, L) float32 :func:`gaussian_table` on ``device``."""
    return _table_cache.get(float(sigma), device, lambda: torch.from_numpy(np.ascontiguousarray(gaussian_table(sigma))))


# --------------------------------------------------------------------------------------------------
# Validation: clear Python errors naming the argument.
# --------------------------------------------------------------------------------------------------
def _check_size(name: str, v) -> Tuple[int, int]:
    try:
        vals = tuple(v)
    except TypeError:
        raise TypeError(f"{_OP}: {name} must be a pair of ints (H, W), got {v!r}") from None
    if len(vals) != 2:
        raise ValueError(f"{_OP}: {name} must be a pair of ints (H, W), got {v!r}")
    try:
        if any(isinstance(s, bool) for s in vals):
            raise TypeError
        h, w = (operator.index(s) for s in vals)  # ints, numpy ints, 0-d integer tensors
    except TypeError:
        raise TypeError(f"{_OP}: {name} must be a pair of ints (H, W), got {v!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{_OP}: {name} must be positive, got (H, W) = ({h}, {w})")
    return int(h), int(w)


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"{_OP}: sigma must be a real number, got {type(sigma).__name__}")
    s = float(sigma)
    if not (0.0 < s <= MAX_SIGMA):  # NaN fails too
        raise ValueError(f"{_OP}: sigma must be in (0, {MAX_SIGMA:g}], got {sigma!r}")
    return s


def _on_device(name: str, v, shape: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``v`` (a tensor or array-like of real numbers, bool included) as a contiguous float32 tensor of
    ``shape`` on ``device`` (non_blocking: a CPU tensor for CUDA keypoints is copied without a host sync)."""
    if isinstance(v, torch.Tensor):
        if v.is_complex():
            raise TypeError(f"{_OP}: {name} must be a real tensor, got {v.dtype}")
        t = v.detach().to(device=device, dtype=torch.float32, non_blocking=True)
    else:
        try:
            t = torch.as_tensor(np.asarray(v, dtype=np.float32)).to(device, non_blocking=True)
        except Exception as exc:  # noqa: BLE001 - quote what the conversion said
            raise TypeError(f"{_OP}: {name} must be a tensor or array of shape {shape}, got {type(v).__name__} ({exc})") from None
    if tuple(t.shape) != shape:
        raise ValueError(f"{_OP}: {name} must have shape {shape}, got {tuple(t.shape)}")
    return t.contiguous()


# --------------------------------------------------------------------------------------------------
# The torch reference (the spec): vectorised over samples, joints and pixels.
# --------------------------------------------------------------------------------------------------
def _windows(keypoints: torch.Tensor, stride_x: float, stride_y: float, sigma: float, method: int):
    """Per joint: (mu, ul, br) as float64 integers (N, K, 2) and the sub-pixel position u (float64)."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    if method == METHODS["msra"]:
        ux, uy = x / stride_x, y / stride_y
        mx, my = torch.trunc(ux + 0.5), torch.trunc(uy + 0.5)
    else:
        # float32 arithmetic, done in float64 and rounded: exact for one division or addition of floats
        ux = (x.float().double() / stride_x).float().double()
        uy = (y.float().double() / stride_y).float().double()
        mx = torch.trunc((ux + 0.5).float().double())
        my = torch.trunc((uy + 0.5).float().double())
    tmp = sigma * 3
    mu = torch.stack([mx, my], -1)
    ul = torch.trunc(mu - tmp)
    br = torch.trunc(mu + tmp + 1)
    return mu, ul, br, torch.stack([ux, uy], -1)


def heatmap_targets_reference(
    keypoints: torch.Tensor,
    visible: torch.Tensor,
    joint_weights: Optional[torch.Tensor],
    table: Optional[torch.Tensor],
    heatmap_h: int,
    heatmap_w: int,
    stride_x: float,
    stride_y: float,
    sigma: float,
    method: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The torch backend, on checked inputs (every backend's ``run`` has this signature).

    keypoints (N, K, 2) float64, visible (N, K) float32, joint_weights (K,) float32 or None, table the
    (L, L) float32 :func:`gaussian_table` (msra; None for udp), the heatmap size, the per-axis stride
    (msra: ``image / heatmap`` in float64; udp: the float32 ``(image - 1) / (heatmap - 1)``), sigma and the
    method code. Returns targets (N, K, heatmap_h, heatmap_w) and weights (N, K, 1), float32.
    """
    n, k = keypoints.shape[0], keypoints.shape[1]
    h, w = heatmap_h, heatmap_w
    dev = keypoints.device
    L = window_size(sigma)
    mu, ul, br, u = _windows(keypoints, stride_x, stride_y, sigma, method)
    # NaN compares False: a non-finite keypoint is outside
    inside = (ul[..., 0] < w) & (ul[..., 1] < h) & (br[..., 0] >= 0) & (br[..., 1] >= 0)
    wt = visible
    if method == METHODS["msra"]:
        paste = inside & (wt > 0.5)
        wt = torch.where(inside, wt, torch.zeros_like(wt))
    else:
        low = wt < 0.5
        paste = inside & ~low
        wt = torch.where(low | inside, wt, torch.zeros_like(wt))
    if joint_weights is not None:
        wt = wt * joint_weights
    # window offsets of every pixel; only where `inside` are they bounded (cast there only)
    ul_i = torch.where(inside.unsqueeze(-1), ul, torch.zeros_like(ul)).long()
    br_i = torch.where(inside.unsqueeze(-1), br, torch.zeros_like(br)).long()
    ix = torch.arange(w, device=dev) - ul_i[..., :1]  # (N, K, W)
    jy = torch.arange(h, device=dev) - ul_i[..., 1:]  # (N, K, H)
    vx = (ix >= 0) & (ix < L) & (torch.arange(w, device=dev) < br_i[..., :1])
    vy = (jy >= 0) & (jy < L) & (torch.arange(h, device=dev) < br_i[..., 1:])
    mask = paste[..., None, None] & vy.unsqueeze(-1) & vx.unsqueeze(-2)  # (N, K, H, W)
    if method == METHODS["msra"]:
        idx = jy.clamp(0, L - 1).unsqueeze(-1) * L + ix.clamp(0, L - 1).unsqueeze(-2)
        vals = table.reshape(-1)[idx.reshape(-1)].reshape(n, k, h, w)
    else:
        c = math.floor((2 * (sigma * 3) + 1) / 2)
        x0 = c + (u - mu)  # (N, K, 2) float64
        dx = ix.double() - x0[..., :1]
        dy = jy.double() - x0[..., 1:]
        arg = -(dx.unsqueeze(-2) * dx.unsqueeze(-2) + dy.unsqueeze(-1) * dy.unsqueeze(-1)) / (2 * sigma ** 2)
        vals = torch.exp(arg).float()
    targets = torch.where(mask, vals, torch.zeros((), dtype=torch.float32, device=dev))
    return targets, wt.unsqueeze(-1).float()


# --------------------------------------------------------------------------------------------------
# Custom-op registration (fake kernels for opcheck / torch.compile; no autograd: not differentiable).
# --------------------------------------------------------------------------------------------------
def _fake_outputs(keypoints: torch.Tensor, heatmap_h: int, heatmap_w: int) -> Tuple[torch.Tensor, torch.Tensor]:
    n, k = keypoints.shape[0], keypoints.shape[1]
    return (keypoints.new_empty((n, k, heatmap_h, heatmap_w), dtype=torch.float32),
            keypoints.new_empty((n, k, 1), dtype=torch.float32))


_CPP_OP = None  # the C++ op (CPU and CUDA kernels), bound once: a torch.ops lookup costs ~0.3 us a call
if _backends.extension() is not None and hasattr(torch.ops.hrnet_fast, "heatmap_targets"):
    _CPP_OP = torch.ops.hrnet_fast.heatmap_targets.default

    @torch.library.register_fake("hrnet_fast::heatmap_targets")
    def _targets_fake(keypoints, visible, joint_weights, table, heatmap_h, heatmap_w, stride_x, stride_y, sigma, method):
        return _fake_outputs(keypoints, heatmap_h, heatmap_w)


@torch.library.custom_op("hrnet_fast::heatmap_targets_triton", mutates_args=())
def _targets_triton_op(
    keypoints: torch.Tensor,
    visible: torch.Tensor,
    joint_weights: Optional[torch.Tensor],
    table: Optional[torch.Tensor],
    heatmap_h: int,
    heatmap_w: int,
    stride_x: float,
    stride_y: float,
    sigma: float,
    method: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    kern = _backends.triton_kernels("heatmap_targets")
    return kern.heatmap_targets(keypoints, visible, joint_weights, table, heatmap_h, heatmap_w, stride_x, stride_y,
                                sigma, method)


@_targets_triton_op.register_fake
def _targets_triton_fake(keypoints, visible, joint_weights, table, heatmap_h, heatmap_w, stride_x, stride_y, sigma, method):
    return _fake_outputs(keypoints, heatmap_h, heatmap_w)


# --------------------------------------------------------------------------------------------------
# Backend selection: what each backend runs (one table; hrnet_fast._backends.resolve decides from it).
# --------------------------------------------------------------------------------------------------
def _triton_reasons(device: torch.device, dtype: torch.dtype, method: int, h: int, w: int) -> List[str]:
    why = _backends.triton_kernels("heatmap_targets").unsupported_reason(h, w)
    return [why] if why else []


def _run_compiled(*args):  # cpp and cuda: one op
    return _CPP_OP(*args)


SUPPORT = _backends.OpSupport(
    op=_OP,
    backends={
        "torch": _backends.BackendSupport(run=heatmap_targets_reference),
        "cpp": _backends.BackendSupport(devices=("cpu",), compiled_op="heatmap_targets", run=_run_compiled),
        "cuda": _backends.BackendSupport(devices=("cuda",), compiled_op="heatmap_targets", run=_run_compiled),
        "triton": _backends.BackendSupport(devices=("cuda", "cpu"), reasons=_triton_reasons, run=_targets_triton_op),
    },
    order={"cpu": ("cpp", "torch"), "cuda": ("cuda", "triton", "torch")},
)


def _resolve(keypoints: torch.Tensor, code: int, h: int, w: int, backend: str) -> _backends.BackendSupport:
    """The one place that builds the resolver's key: (method code, Hh, Wh); the dtype is the float64 the
    kernels receive."""
    return _backends.resolve(SUPPORT, backend, keypoints.device, torch.float64, (code, h, w))


def resolve_backend(keypoints: torch.Tensor, heatmap_size, method: str = "msra", backend: str = "auto") -> _backends.BackendSupport:
    """The backend entry :func:`heatmap_targets` uses for these keypoints, heatmap size and method (cached)."""
    h, w = _check_size("heatmap_size", heatmap_size)
    return _resolve(keypoints, METHODS[method], h, w, backend)


def heatmap_targets(
    keypoints: torch.Tensor,
    visible,
    image_size,
    heatmap_size,
    sigma: float = 2.0,
    method: str = "msra",
    joint_weights=None,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gaussian heatmap targets and joint weights for a batch (module docstring: every rule).

    Args:
        keypoints: (N, K, 2) (x, y) in crop pixels; float16/bfloat16/float32/float64 (computed in float64;
            udp rounds them to float32 as mmpose does); any device: the outputs are made there.
        visible: (N, K) visibilities (tensor or array; bool, int or float), moved to the keypoints' device.
        image_size: (H, W) of the network input (the crop), ints.
        heatmap_size: (H, W) of the heatmaps, ints (udp: both at least 2, and image_size too).
        sigma: the Gaussian's sigma in heatmap pixels, in (0, 100] (2 for 256x192, 3 for 384x288).
        method: ``"msra"`` (the official HRNet target) or ``"udp"`` (mmpose's UDP target).
        joint_weights: None, or (K,) weights multiplied into the weights (official USE_DIFFERENT_JOINTS_WEIGHT).
        backend: ``"auto"``, ``"torch"``, ``"cpp"``, ``"cuda"`` or ``"triton"``.

    Returns:
        ``targets`` (N, K, Hh, Wh) float32 and ``weights`` (N, K, 1) float32 on the keypoints' device, without
        a host synchronisation. Not differentiable (inputs are detached).
    """
    if not isinstance(keypoints, torch.Tensor):
        raise TypeError(f"{_OP}: keypoints must be a torch.Tensor, got {type(keypoints).__name__}")
    if keypoints.dim() != 3 or keypoints.shape[2] != 2:
        raise ValueError(f"{_OP}: keypoints must have shape (N, K, 2), got {tuple(keypoints.shape)}")
    if keypoints.dtype not in _KEYPOINT_DTYPES:
        raise TypeError(f"{_OP}: keypoints must be float16, bfloat16, float32 or float64, got {keypoints.dtype}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"{_OP}: method must be one of {list(METHODS)}, got {method!r}")
    code = METHODS[method]
    ih, iw = _check_size("image_size", image_size)
    hh, hw = _check_size("heatmap_size", heatmap_size)
    s = _check_sigma(sigma)
    n, k = int(keypoints.shape[0]), int(keypoints.shape[1])
    device = keypoints.device
    vis = _on_device("visible", visible, (n, k), device)
    jw = None if joint_weights is None else _on_device("joint_weights", joint_weights, (k,), device)
    if code == METHODS["msra"]:
        stride_x, stride_y = iw / hw, ih / hh  # float64, as numpy divides the official integer arrays
        table = _table(s, device)
    else:
        if min(ih, iw, hh, hw) < 2:
            raise ValueError(f"{_OP}: udp needs image_size and heatmap_size of at least 2 per axis (it divides by "
                             f"size - 1), got image_size ({ih}, {iw}), heatmap_size ({hh}, {hw})")
        stride_x = float(np.float32((iw - 1) / (hw - 1)))  # mmpose's float32 scale_factor
        stride_y = float(np.float32((ih - 1) / (hh - 1)))
        table = None
    kp = keypoints.detach().to(torch.float64).contiguous()
    return _resolve(kp, code, hh, hw, backend).run(kp, vis, jw, table, hh, hw, stride_x, stride_y, s, code)
