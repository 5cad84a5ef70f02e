"""Person crops for top-down pose estimation: affine warp + bilinear + BGR->RGB + normalise, in one pass.

    center, scale = hrnet_fast.ops.boxes_to_center_scale(boxes, image_size=(192, 256))  # model (W, H)
    crops = hrnet_fast.ops.crop_boxes(images, image_index, center, scale, out_size=(256, 192))  # (H, W)

``crop_boxes`` does what the official HRNet test pipeline does for every detected person, for a whole
batch of boxes at once and on the images' device:

    trans = get_affine_transform(center, scale, rotation, (W, H))           # lib/utils/transforms.py
    crop = cv2.warpAffine(image_bgr, trans, (W, H), flags=cv2.INTER_LINEAR)  # border constant 0
    crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)                             # color="bgr"
    tensor = Normalize(mean, std)(ToTensor()(crop))                          # (3, H, W) float

Rules (every backend follows them; the torch backend, :func:`crop_boxes_reference`, is the spec):

* Geometry. Output pixel ``(x, y)`` (integer indices, no half-pixel offset, as ``cv2.warpAffine``)
  samples the source point ``A @ (x, y, 1)``, where ``A`` is the inverse of the official crop transform,
  computed in closed form in float64 with torch ops on the device (:func:`crop_affine`):
  ``A = (200 * scale[0] / W) * R(rotation)``, ``A @ (W/2, H/2, 1) = center``, ``R(t) = [[cos t, -sin t],
  [sin t, cos t]]``. Only ``scale[0]`` sets the size (as in ``get_affine_transform``).
  With ``udp=True`` it is the inverse of mmpose's unbiased transform (``get_warp_matrix`` /
  ``get_udp_warp_matrix``, ``TopDownAffine(use_udp=True)``): the box's ``200 * scale`` pixels map onto
  ``W - 1`` by ``H - 1`` output pixel steps, ``src = center + R(rotation)^T @ (x * 200 s0 / (W-1) - 100 s0,
  y * 200 s1 / (H-1) - 100 s1)``. Note that mmpose's UDP matrix rotates the other way than
  ``get_affine_transform`` for the same angle; both are reproduced as they are.
  ``flip[m]`` (training augmentation) gives the crop of the mirrored image ``img[:, ::-1]`` with the same
  transform at the given (already mirrored) center: the source point's x becomes ``W_img - 1 - sx``.
* Sampling: bilinear at the source point ``(sx, sy)``, ``x0 = floor(sx)``, ``fx = sx - x0`` (same in y;
  coordinates in float64, weights and blend in float32 as ``top = p00 + fx * (p01 - p00)``,
  ``bot = p10 + fx * (p11 - p10)``, ``v = top + fy * (bot - top)``). A neighbour outside the image counts
  as 0 (``cv2.BORDER_CONSTANT`` with value 0, edge pixels half outside included); a point outside
  ``(-1, w) x (-1, h)`` gives 0.
* Colour and normalisation: output channel c is RGB channel c (the image's channel ``2 - c`` for
  ``color="bgr"``); ``out = v * (1 / (255 * std[c])) + (-mean[c] / std[c])`` with both constants computed
  in float64 and rounded to float32, the product and sum in float32 (= ``(v / 255 - mean) / std`` up to
  float32 rounding), then rounded to ``dtype``.
* A box whose source points are NaN (NaN center/scale/rotation) gives NaN pixels. An ``image_index``
  outside ``[0, N)`` gives an all-NaN crop in every backend (memory-safe); it is an error when
  ``image_index`` is on the CPU (checked there; on a GPU the check would need a host sync). The same goes
  for non-finite or non-positive ``scale`` and non-finite ``center``/``rotation``: checked when on the CPU.

Differences from OpenCV: ``cv2.warpAffine`` on 8-bit images rounds the source position to 1/32 pixel
(``INTER_BITS = 5``; newer releases use float weights on float positions) and rounds the result to uint8;
this op interpolates exactly and never rounds to 8 bits. ``tests/test_crop_boxes.py`` measures the
difference on photographs and bounds it.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence, Tuple

import torch

from .. import _backends
from . import _crop_checks as _checks
from ._device_cache import DeviceCache

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SUPPORT",
    "boxes_to_center_scale",
    "crop_affine",
    "crop_boxes",
    "crop_boxes_reference",
    "resolve_backend",
]

_OP = "crop_boxes"
#: torchvision's ImageNet normalisation (RGB, on the 0..1 scale of ``ToTensor``), the official default.
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_COLORS = ("bgr", "rgb")
_PIXEL_STD = 200.0  # the official scale unit


# --------------------------------------------------------------------------------------------------
# Boxes -> center/scale, and the crop transform
# --------------------------------------------------------------------------------------------------
def _pair(name: str, v, op: str, integer: bool) -> Tuple[float, float]:
    try:
        if isinstance(v, torch.Tensor):
            v = v.tolist()
        a, b = v
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a pair of numbers, got {v!r}") from None
    for x in (a, b):
        ok = isinstance(x, numbers.Integral) if integer else isinstance(x, numbers.Real)
        if not ok or isinstance(x, bool):
            kind = "ints" if integer else "numbers"
            raise TypeError(f"{op}: {name} must be a pair of {kind}, got {v!r}")
        if not (math.isfinite(float(x)) and x > 0):
            raise ValueError(f"{op}: {name} must be positive, got {v!r}")
    return (int(a), int(b)) if integer else (float(a), float(b))


def _as_float64(name: str, v, op: str, device: Optional[torch.device] = None) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        if not (v.is_floating_point() or v.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
            raise TypeError(f"{op}: {name} must be a real tensor, got {v.dtype}")
        t = v.detach()
    else:
        try:
            t = torch.as_tensor(v)
        except Exception as exc:  # noqa: BLE001 - quote what the conversion said
            raise TypeError(f"{op}: {name} must be a tensor or array, got {type(v).__name__} ({exc})") from None
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
            raise TypeError(f"{op}: {name} must hold real numbers, got {t.dtype}")
    # non_blocking: a CPU tensor for CUDA images is copied without a host sync
    return t.to(device=device if device is not None else t.device, dtype=torch.float64, non_blocking=True)


def boxes_to_center_scale(boxes, image_size, box_format: str = "xywh", padding: float = 1.25
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official ``_box2cs`` (``_xywh2cs``) for a batch of boxes.

    Args:
        boxes: (M, 4) tensor or array, ``(x, y, w, h)`` (``box_format="xywh"``, COCO's) or
            ``(x1, y1, x2, y2)`` (``"xyxy"``: ``w = x2 - x1``, ``h = y2 - y1``, as the official demo's
            ``box_to_center_scale`` and mmpose 1.x; no ``+ 1``).
        image_size: the model's input size as ``(W, H)`` (the official ``IMAGE_SIZE`` order; note that
            :func:`crop_boxes` takes ``out_size=(H, W)``).
        padding: the official 1.25 margin.

    Returns:
        ``(center, scale)``, each (M, 2) float32 on the boxes' device (CPU for arrays): the box center
        ``(x + w/2, y + h/2)``, and ``(w, h) / 200`` after growing the shorter side to the aspect ratio
        ``W / H``, times ``padding``. Computed in float64 and rounded to float32 where the official code
        rounds (center; scale before the padding, which is then applied in float32), so float64 boxes
        give the official values bit for bit. The official code skips the padding when the center's x is
        exactly -1 (a sentinel of its data loader); this function always pads.

    Raises ``ValueError`` naming ``boxes[i]``, as ``PoseEstimator`` does, for a NaN, negative-size (swapped
    xyxy corners), empty or beyond-float32 box (boxes on the CPU: on a GPU the check would need a host sync).
    """
    op = "boxes_to_center_scale"
    b = _as_float64("boxes", boxes, op)
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(f"{op}: boxes must have shape (M, 4), got {tuple(b.shape)}")
    img_w, img_h = _pair("image_size", image_size, op, integer=False)
    if box_format not in ("xywh", "xyxy"):
        raise ValueError(f"{op}: box_format must be 'xywh' or 'xyxy', got {box_format!r}")
    if isinstance(padding, bool) or not isinstance(padding, numbers.Real) or not (math.isfinite(padding) and padding > 0):
        raise ValueError(f"{op}: padding must be a positive number, got {padding!r}")
    _checks.check_boxes(op, b, box_format)  # NaN, negative or zero size, beyond float32: named boxes[i] (CPU boxes)
    x, y = b[:, 0], b[:, 1]
    if box_format == "xywh":
        w, h = b[:, 2], b[:, 3]
    else:
        w, h = b[:, 2] - x, b[:, 3] - y
    center = torch.stack([x + w * 0.5, y + h * 0.5], dim=1).float()
    aspect = img_w * 1.0 / img_h
    wider = w > aspect * h
    taller = w < aspect * h
    h2 = torch.where(wider, w * 1.0 / aspect, h)
    w2 = torch.where(taller, h * aspect, w)
    scale = torch.stack([w2 * 1.0 / _PIXEL_STD, h2 * 1.0 / _PIXEL_STD], dim=1).float()
    scale = scale * torch.tensor(padding, dtype=torch.float32)  # np.float32 array * 1.25 stays float32
    return center, scale


def _inverse_affine(center: torch.Tensor, scale: torch.Tensor, rotation: Optional[torch.Tensor],
                    out_h: int, out_w: int, udp: bool) -> torch.Tensor:
    """(M, 2, 3) float64: output pixel (x, y, 1) -> source point, on the inputs' device, batched."""
    c, s = center.double(), scale.double()
    m = c.shape[0]
    if rotation is None:
        cs = torch.ones(m, dtype=torch.float64, device=c.device)
        sn = torch.zeros(m, dtype=torch.float64, device=c.device)
    else:
        rad = rotation.double() * math.pi / 180.0  # np.pi * rot / 180, as the official code
        cs, sn = torch.cos(rad), torch.sin(rad)
    cx, cy, s0, s1 = c[:, 0], c[:, 1], s[:, 0], s[:, 1]
    if not udp:
        k = s0 * (_PIXEL_STD / out_w)
        a00, a01, a10, a11 = k * cs, -k * sn, k * sn, k * cs
        hw, hh = out_w * 0.5, out_h * 0.5
        b0 = cx - (a00 * hw + a01 * hh)
        b1 = cy - (a10 * hw + a11 * hh)
    else:
        # forward (mmpose): dst = D (R (src - c) + h), D = diag(sx, sy), h = 100 * scale; inverse:
        # src = c + R^T (D^-1 dst - h)
        ix = s0 * (_PIXEL_STD / (out_w - 1))  # 1 / sx
        iy = s1 * (_PIXEL_STD / (out_h - 1))
        hx, hy = s0 * (_PIXEL_STD * 0.5), s1 * (_PIXEL_STD * 0.5)
        a00, a01, a10, a11 = cs * ix, sn * iy, -sn * ix, cs * iy
        b0 = cx - (cs * hx + sn * hy)
        b1 = cy - (-sn * hx + cs * hy)
    return torch.stack([a00, a01, b0, a10, a11, b1], dim=1).view(m, 2, 3)


def _flip_inverse(inv: torch.Tensor, flip: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``inv`` (M, 2, 3) followed by ``x -> width - 1 - x`` where ``flip`` (M,) bool: the sampler reads the
    unmirrored image at the point the mirrored image's crop would read (no kernel change)."""
    f = flip.view(-1, 1)
    row0 = torch.cat([-inv[:, 0, :2], (width.view(-1, 1) - 1.0) - inv[:, 0, 2:]], dim=1)
    return torch.stack([torch.where(f, row0, inv[:, 0]), inv[:, 1]], dim=1)


def crop_affine(center, scale, out_size, rotation=None, udp: bool = False, inverse: bool = False, flip=None,
                image_width=None) -> torch.Tensor:
    """The crop transforms of :func:`crop_boxes`, as (M, 2, 3) float64 matrices on the boxes' device.

    ``inverse=False``: image -> crop, the matrix ``cv2.warpAffine`` is given by the official code
    (``get_affine_transform(center, scale, rotation, (W, H))``, or mmpose's UDP ``get_warp_matrix``);
    use it to move keypoints into the crop. ``inverse=True``: crop pixel -> image point, what the kernels
    sample (and what maps predicted keypoints back, rotation included). ``out_size`` is ``(H, W)``.
    ``flip`` (M,) bool with ``image_width`` (M,): the official transform composed with the mirror
    ``x -> image_width - 1 - x`` (``center`` is the mirrored one), so an unmirrored image point maps where the
    official code maps it after ``fliplr_joints`` (the left/right relabelling is the caller's).
    """
    op = "crop_affine"
    out_h, out_w = _pair("out_size", out_size, op, integer=True)
    c = _as_float64("center", center, op)
    s = _as_float64("scale", scale, op, c.device)
    if c.dim() != 2 or c.shape[1] != 2 or s.shape != c.shape:
        raise ValueError(f"{op}: center and scale must both have shape (M, 2), got {tuple(c.shape)} and {tuple(s.shape)}")
    r = None
    if rotation is not None:
        r = _as_float64("rotation", rotation, op, c.device)
        if r.shape != (c.shape[0],):
            raise ValueError(f"{op}: rotation must have shape (M,) = ({c.shape[0]},), got {tuple(r.shape)}")
    if udp and min(out_h, out_w) < 2:
        raise ValueError(f"{op}: udp needs out_size >= (2, 2) (it scales by W - 1 and H - 1), got {(out_h, out_w)}")
    inv = _inverse_affine(c, s, r, out_h, out_w, udp)
    if flip is not None:
        f = _checks.check_flip(op, flip, c.shape[0]).to(c.device, non_blocking=True)
        if image_width is None:
            raise ValueError(f"{op}: flip needs image_width (M,): the mirror is x -> image_width - 1 - x")
        width = _as_float64("image_width", image_width, op, c.device)
        _checks.check_image_width(op, width, c.shape[0])
        inv = _flip_inverse(inv, f, width)
    if inverse:
        return inv
    a = inv[:, :, :2]
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    f = torch.stack([a[:, 1, 1], -a[:, 0, 1], -a[:, 1, 0], a[:, 0, 0]], dim=1).view(-1, 2, 2) / det.view(-1, 1, 1)
    t = -(f @ inv[:, :, 2:])
    return torch.cat([f, t], dim=2)


# --------------------------------------------------------------------------------------------------
# Images: one flat uint8 buffer plus (offset, height, width) per image
# --------------------------------------------------------------------------------------------------
# (see ops/_device_cache.py: built without a host sync in stream order, never inside a CUDA graph capture,
# least recently used evicted one at a time and never while a kernel on another stream may read it)
_META_CACHE = DeviceCache("crop_boxes: image table", limit=64)


def _image_meta(shapes: Tuple[Tuple[int, int], ...], device: torch.device) -> torch.Tensor:
    """(N, 3) int64 (element offset, height, width), built from host shapes, cached per device."""

    def build() -> torch.Tensor:
        rows, off = [], 0
        for h, w in shapes:
            rows.append((off, h, w))
            off += h * w * 3
        return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 3)

    return _META_CACHE.get(shapes, device, build)


def _as_tensor_image(name: str, t, what: str) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    if hasattr(t, "__array__") and hasattr(t, "dtype"):  # numpy: zero copy
        try:
            return torch.from_numpy(t)
        except ValueError:  # a negative-stride view (img[..., ::-1]) torch cannot wrap: copy it, as PoseEstimator does
            return torch.from_numpy(t.copy())
        except TypeError as exc:
            raise TypeError(f"{_OP}: {name} could not be converted to a tensor ({exc})") from None
    raise TypeError(f"{_OP}: {name} must be {what}, got {type(t).__name__}")


def _pack_images(images) -> Tuple[torch.Tensor, torch.Tensor]:
    """(flat uint8 buffer, meta (N, 3) int64) on the images' device."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"{_OP}: images is an empty list")
        ims = []
        for i, im in enumerate(images):
            im = _as_tensor_image(f"images[{i}]", im, "a uint8 tensor (or numpy array) of shape (H, W, 3)")
            _checks.check_hw3(_OP, f"images[{i}]", tuple(im.shape), im.dtype)
            if ims and im.device != ims[0].device:
                raise ValueError(f"{_OP}: images[{i}] is on {im.device}, images[0] on {ims[0].device}: all must be on one device")
            ims.append(im)
        shapes = tuple((int(im.shape[0]), int(im.shape[1])) for im in ims)
        flat = ims[0].reshape(-1) if len(ims) == 1 else torch.cat([im.reshape(-1) for im in ims])
        return flat.contiguous(), _image_meta(shapes, ims[0].device)
    images = _as_tensor_image("images", images, "a uint8 tensor (N, H, W, 3) or a list of (H_i, W_i, 3) tensors")
    if images.dim() == 3 and images.shape[-1] in (1, 3, 4):
        raise ValueError(f"{_OP}: images must be (N, H, W, 3) or a list of (H, W, 3) images, got one image of shape "
                         f"{tuple(images.shape)}: pass images[None] or [image]")
    if images.dim() != 4:
        raise ValueError(f"{_OP}: images must be (N, H, W, 3) or a list of (H, W, 3) images, got shape {tuple(images.shape)}")
    _checks.check_hw3(_OP, "images (N, H, W, 3)", tuple(images.shape[1:]), images.dtype)
    n, h, w = (int(v) for v in images.shape[:3])
    return images.contiguous().view(-1), _image_meta(((h, w),) * n, images.device)


# --------------------------------------------------------------------------------------------------
# The torch reference (the spec): output grid -> source points -> 4 gathered neighbours
# --------------------------------------------------------------------------------------------------
def _norm_constants(mean: Sequence[float], std: Sequence[float]) -> Tuple[List[float], List[float]]:
    """Per output channel: ``1 / (255 std)`` and ``-mean / std``, float64 (every backend rounds them to fp32)."""
    return [1.0 / (255.0 * s) for s in std], [-m / s for m, s in zip(mean, std)]


def crop_boxes_reference(flat: torch.Tensor, meta: torch.Tensor, image_index: torch.Tensor, inv_affine: torch.Tensor,
                         out_h: int, out_w: int, mean: Sequence[float], std: Sequence[float], swap_rb: bool,
                         dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    """The torch backend on packed inputs (see ``crop_boxes`` and the module docstring for the rules).

    ``flat``: every image's (H_i, W_i, 3) uint8 pixels, one after the other; ``meta``: (N, 3) int64
    (offset into ``flat``, H_i, W_i); ``image_index``: (M,) int64; ``inv_affine``: (M, 2, 3) float64.
    """
    dev = flat.device
    m, n = int(image_index.shape[0]), int(meta.shape[0])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if m == 0 or n == 0:
        out = torch.empty((m, 3, out_h, out_w), dtype=dtype, device=dev, memory_format=fmt)
        return out.fill_(math.nan) if m else out
    valid = (image_index >= 0) & (image_index < n)
    info = meta[image_index.clamp(0, n - 1)]
    off, h, w = (info[:, i].view(m, 1, 1) for i in range(3))
    a = inv_affine.double()
    xs = torch.arange(out_w, dtype=torch.float64, device=dev).view(1, 1, out_w)
    ys = torch.arange(out_h, dtype=torch.float64, device=dev).view(1, out_h, 1)
    el = lambda i, j: a[:, i, j].view(m, 1, 1)  # noqa: E731
    sx = el(0, 0) * xs + el(0, 1) * ys + el(0, 2)
    sy = el(1, 0) * xs + el(1, 1) * ys + el(1, 2)
    nan = torch.isnan(sx) | torch.isnan(sy) | ~valid.view(m, 1, 1)
    inside = (sx > -1) & (sx < w) & (sy > -1) & (sy < h)  # False for NaN
    sx = torch.where(inside, sx, torch.zeros_like(sx))  # keeps floor() and the int cast in range
    sy = torch.where(inside, sy, torch.zeros_like(sy))
    fx0, fy0 = torch.floor(sx), torch.floor(sy)
    fx, fy = (sx - fx0).float().unsqueeze(-1), (sy - fy0).float().unsqueeze(-1)
    x0, y0 = fx0.long(), fy0.long()
    # built on the device (no host-to-device copy): the source channel of each output channel
    chan = torch.arange(2, -1, -1, device=dev) if swap_rb else torch.arange(3, device=dev)

    def tap(dy: int, dx: int) -> torch.Tensor:  # (M, H, W, 3) float32, 0 outside the image
        xi, yi = x0 + dx, y0 + dy
        ok = inside & (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        pos = off + (torch.minimum(torch.maximum(yi, torch.zeros_like(yi)), h - 1) * w
                     + torch.minimum(torch.maximum(xi, torch.zeros_like(xi)), w - 1)) * 3
        px = torch.take(flat, pos.unsqueeze(-1) + chan).float()
        return torch.where(ok.unsqueeze(-1), px, torch.zeros_like(px))

    p00, p01 = tap(0, 0), tap(0, 1)
    top = p00 + fx * (p01 - p00)
    p10, p11 = tap(1, 0), tap(1, 1)
    bot = p10 + fx * (p11 - p10)
    v = top + fy * (bot - top)
    sc, bi = _norm_constants(mean, std)
    # a Python scalar meets a float32 tensor as a float32 value: the kernels' float32 constants, no upload
    v = torch.stack([v[..., c] * sc[c] + bi[c] for c in range(3)], dim=-1)
    v = torch.where(nan.unsqueeze(-1), torch.full_like(v, math.nan), v)
    return v.permute(0, 3, 1, 2).to(dtype).contiguous(memory_format=fmt)


# --------------------------------------------------------------------------------------------------
# Custom-op registration (fake kernels for opcheck / torch.compile)
# --------------------------------------------------------------------------------------------------
def _fake_output(images, image_index, out_h, out_w, dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty((image_index.shape[0], 3, out_h, out_w), dtype=dtype, device=images.device, memory_format=fmt)


_CPP_OP = None  # the C++ op (CPU and CUDA kernels), bound once: a torch.ops lookup costs ~0.3 us a call
if _backends.extension() is not None and hasattr(torch.ops.hrnet_fast, "crop_boxes"):
    _CPP_OP = torch.ops.hrnet_fast.crop_boxes.default

    @torch.library.register_fake("hrnet_fast::crop_boxes")
    def _crop_fake(images, image_meta, image_index, inv_affine, out_h, out_w, mean, std, swap_rb, dtype, channels_last):
        return _fake_output(images, image_index, out_h, out_w, dtype, channels_last)


@torch.library.custom_op("hrnet_fast::crop_boxes_triton", mutates_args=())
def _crop_triton_op(
    images: torch.Tensor,
    image_meta: torch.Tensor,
    image_index: torch.Tensor,
    inv_affine: torch.Tensor,
    out_h: int,
    out_w: int,
    mean: List[float],
    std: List[float],
    swap_rb: bool,
    dtype: torch.dtype,
    channels_last: bool,
) -> torch.Tensor:
    kern = _backends.triton_kernels("crop_boxes")
    scale, bias = _norm_constants(mean, std)  # the kernel module is a leaf: the op derives its constants
    return kern.crop_boxes(images, image_meta, image_index, inv_affine, out_h, out_w, scale, bias, swap_rb, dtype,
                           channels_last)


@_crop_triton_op.register_fake
def _crop_triton_fake(images, image_meta, image_index, inv_affine, out_h, out_w, mean, std, swap_rb, dtype, channels_last):
    return _fake_output(images, image_index, out_h, out_w, dtype, channels_last)


# --------------------------------------------------------------------------------------------------
# Backend selection (one table; hrnet_fast._backends.resolve decides from it). The dtype in the key is
# the output dtype (the images are always uint8).
# --------------------------------------------------------------------------------------------------
# What runs each backend: ``run(flat, meta, image_index, inv_affine, out_h, out_w, mean, std, swap_rb, dtype,
# channels_last)`` on packed, checked inputs: the signature of the reference and of both compiled ops.
def _run_compiled(flat, meta, index, inv, out_h, out_w, mean, std, swap_rb, dtype, channels_last):  # cpp and cuda
    return _CPP_OP(flat, meta, index, inv, out_h, out_w, mean, std, swap_rb, dtype, channels_last)


SUPPORT = _backends.OpSupport(
    op=_OP,
    backends={
        "torch": _backends.BackendSupport(run=crop_boxes_reference),
        "cpp": _backends.BackendSupport(devices=("cpu",), dtypes=_OUT_DTYPES, compiled_op="crop_boxes", run=_run_compiled),
        "cuda": _backends.BackendSupport(devices=("cuda",), dtypes=_OUT_DTYPES, compiled_op="crop_boxes", run=_run_compiled),
        "triton": _backends.BackendSupport(devices=("cuda", "cpu"), dtypes=_OUT_DTYPES, run=_crop_triton_op),
    },
    # GPU order not settled by a measurement yet: the CUDA kernel first, as for decoding.
    order={"cpu": ("cpp", "torch"), "cuda": ("cuda", "triton", "torch")},
)


def _resolve(device: torch.device, dtype: torch.dtype, backend: str) -> _backends.BackendSupport:
    """The one place that builds the resolver's key (the output dtype; no extra key)."""
    return _backends.resolve(SUPPORT, backend, device, dtype, ())


def resolve_backend(device, dtype: torch.dtype = torch.float32, backend: str = "auto") -> _backends.BackendSupport:
    """The backend entry :func:`crop_boxes` uses for images on ``device`` and output ``dtype`` (cached):
    ``.name`` names it, ``.run(...)`` runs it (arguments as :func:`crop_boxes_reference`'s, checked)."""
    return _resolve(torch.device(device), dtype, backend)


# --------------------------------------------------------------------------------------------------
# The public function
# --------------------------------------------------------------------------------------------------
def _check_box(name: str, v, m: int) -> torch.Tensor:
    t = _as_float64(name, v, _OP)
    if t.shape != (m, 2):
        raise ValueError(f"{_OP}: {name} must have shape (M, 2) = ({m}, 2), got {tuple(t.shape)}")
    return t


def crop_boxes(
    images,
    image_index,
    center,
    scale,
    out_size,
    rotation=None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    color: str = "bgr",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    udp: bool = False,
    backend: str = "auto",
    flip=None,
) -> torch.Tensor:
    """Normalised RGB crops of M boxes (the official test-time crop, batched, on the images' device).

    Args:
        images: (N, H, W, 3) uint8 tensor, or a list of (H_i, W_i, 3) uint8 tensors of any sizes (numpy
            arrays are taken without a copy), BGR as ``cv2.imread`` returns (``color="bgr"``) or RGB
            (``color="rgb"``). All on one device (CPU or CUDA). A list is packed into one buffer (one
            copy of the images); a 4-D tensor is used in place when contiguous.
        image_index: (M,) integer tensor/array: the image of each box (``None``: all from the only image).
        center, scale: (M, 2) each, the official convention (``scale`` in units of 200 pixels; see
            :func:`boxes_to_center_scale`); moved to the images' device.
        out_size: ``(H, W)`` of the crops (the official ``IMAGE_SIZE`` is ``(W, H)``).
        rotation: (M,) degrees (training augmentation, as the official code), or None.
        mean, std: 3 values each, RGB, on the 0..1 scale (torchvision ``ToTensor`` + ``Normalize``).
        color: ``"bgr"`` (swap to RGB) or ``"rgb"``.
        dtype: float32, float16 or bfloat16 output.
        channels_last: return the crops in channels_last memory format (the shape is (M, 3, H, W) either way).
        udp: the unbiased (UDP) crop geometry, to pair with ``decode_heatmaps(method="udp")``.
        flip: (M,) bool tensor or None: ``flip[m]`` crops the mirrored image ``img[:, ::-1]`` (training
            augmentation; ``center`` is the mirrored center ``W_img - 1 - cx``, as the official code sets it).
        backend: ``"auto"``, ``"torch"``, ``"cpp"``, ``"cuda"`` or ``"triton"``.

    Returns:
        (M, 3, H, W) tensor of ``dtype`` on the images' device; no host sync when every input is already
        there (the transforms are computed with torch ops in float64 on the device). Not differentiable.
        See the module docstring for the exact rules.
    """
    _checks.check_devices(_OP, images=images, image_index=image_index, center=center, scale=scale, rotation=rotation,
                          flip=flip)
    flat, meta = _pack_images(images)
    device, n = flat.device, int(meta.shape[0])
    out_h, out_w = _pair("out_size", out_size, _OP, integer=True)
    if color not in _COLORS:
        raise ValueError(f"{_OP}: color must be 'bgr' or 'rgb', got {color!r}")
    if dtype not in _OUT_DTYPES:
        raise TypeError(f"{_OP}: dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
    for name, flag in (("channels_last", channels_last), ("udp", udp)):
        if not isinstance(flag, bool):
            raise TypeError(f"{_OP}: {name} must be a bool, got {type(flag).__name__}")
    if udp and min(out_h, out_w) < 2:
        raise ValueError(f"{_OP}: udp needs out_size >= (2, 2) (it scales by W - 1 and H - 1), got {(out_h, out_w)}")
    mean_l, std_l = _checks.check_norm(_OP, "mean", mean), _checks.check_norm(_OP, "std", std)

    if image_index is None:
        if n != 1:
            raise ValueError(f"{_OP}: image_index may be None only with one image, got {n}")
        c0 = _as_float64("center", center, _OP)
        index = torch.zeros(c0.shape[0] if c0.dim() == 2 else 0, dtype=torch.int64)
    else:
        if isinstance(image_index, torch.Tensor):
            index = image_index.detach()
        else:
            try:
                index = torch.as_tensor(image_index)
            except Exception as exc:  # noqa: BLE001
                raise TypeError(f"{_OP}: image_index must be an integer tensor or array of shape (M,) ({exc})") from None
        if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8) or index.dtype == torch.bool:
            raise TypeError(f"{_OP}: image_index must be an integer tensor (int64), got {index.dtype}")
        if index.dim() != 1:
            raise ValueError(f"{_OP}: image_index must have shape (M,), got {tuple(index.shape)}")
    m = int(index.shape[0])
    c = _check_box("center", center, m)
    s = _check_box("scale", scale, m)
    r = None
    if rotation is not None:
        r = _as_float64("rotation", rotation, _OP)
        if r.shape != (m,):
            raise ValueError(f"{_OP}: rotation must have shape (M,) = ({m},), got {tuple(r.shape)}")
    f = None if flip is None else _checks.check_flip(_OP, flip, m)
    _checks.check_values(_OP, index, c, s, r, n)
    _checks.check_output_size(_OP, m, out_h, out_w, dtype, device)

    run = _resolve(device, dtype, backend).run
    index = index.to(device=device, dtype=torch.int64, non_blocking=True)
    c = c.to(device, non_blocking=True)
    s = s.to(device, non_blocking=True)
    if r is not None:
        r = r.to(device, non_blocking=True)
    inv = _inverse_affine(c, s, r, out_h, out_w, udp)
    if f is not None and n > 0:  # each box's image width, read on the device from the image table (no sync)
        width = meta[index.clamp(0, n - 1), 2].double()
        inv = _flip_inverse(inv, f.to(device, non_blocking=True), width)
    inv = inv.contiguous()
    return run(flat, meta, index, inv, out_h, out_w, mean_l, std_l, color == "bgr", dtype, channels_last)
