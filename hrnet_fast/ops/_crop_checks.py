"""Input checks of :func:`~hrnet_fast.ops.crop_boxes.crop_boxes` and
:func:`~hrnet_fast.ops.crop_boxes.boxes_to_center_scale` that would otherwise surface as an internal error: a
box that is not one (NaN, negative or zero size, beyond float32), inputs on a device the op does not run on
(``meta``), an output too large for the device's memory, the normalisation constants and the mirror arguments
(``flip``, ``image_width``). Kept beside the op so that its module stays about dispatch and math."""
from __future__ import annotations

import math
import os
from typing import List, Optional, Tuple

import torch

from .._boxes import first_bad_box

__all__ = ["check_boxes", "check_devices", "check_flip", "check_hw3", "check_image_width", "check_norm", "check_output_size",
           "check_values"]

_DEVICES = ("cpu", "cuda")


def check_boxes(op: str, boxes: torch.Tensor, box_format: str) -> None:
    """``ValueError`` naming ``boxes[i]`` for the first invalid box of (M, 4) float64 ``boxes``
    (:func:`hrnet_fast._boxes.first_bad_box`). Only CPU boxes are checked: on a GPU the check would need a host
    synchronisation (``PoseEstimator`` masks invalid device boxes itself)."""
    if boxes.device.type != "cpu" or boxes.numel() == 0:
        return
    bad = first_bad_box(boxes.numpy(), box_format)
    if bad is not None:
        raise ValueError(f"{op}: boxes[{bad[0]}] = {bad[1]}")


def check_values(op: str, image_index: torch.Tensor, center: torch.Tensor, scale: torch.Tensor,
                 rotation: Optional[torch.Tensor], n: int) -> None:
    """Value checks that cost nothing on the CPU (on a GPU they would need a host sync: skipped there)."""
    if image_index.device.type == "cpu" and image_index.numel():
        lo, hi = int(image_index.min()), int(image_index.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{op}: image_index holds {bad}, out of range for {n} image(s)")
    if center.device.type == "cpu" and center.numel() and not bool(torch.isfinite(center).all()):
        raise ValueError(f"{op}: center must be finite, got {center[~torch.isfinite(center).all(1)][0].tolist()}")
    if scale.device.type == "cpu" and scale.numel():
        bad = ~(torch.isfinite(scale) & (scale > 0)).all(1)
        if bool(bad.any()):
            raise ValueError(f"{op}: scale must be finite and positive, got {scale[bad][0].tolist()} "
                             f"(box {int(bad.nonzero()[0])})")
    if rotation is not None and rotation.device.type == "cpu" and rotation.numel() and not bool(torch.isfinite(rotation).all()):
        raise ValueError(f"{op}: rotation must be finite")


def check_devices(op: str, **tensors) -> None:
    """Every tensor argument (a list of images included) on a device the op runs on (CPU, CUDA): a ``meta`` tensor
    holds no values, and copying one fails deep inside with an error that names no argument."""
    for name, value in tensors.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for i, t in enumerate(items):
            if isinstance(t, torch.Tensor) and t.device.type not in _DEVICES:
                where = f"{name}[{i}]" if isinstance(value, (list, tuple)) else name
                raise ValueError(f"{op}: {where} is on the {t.device.type} device; {op} runs on CPU and CUDA tensors"
                                 + (" (a meta tensor holds no values)" if t.device.type == "meta" else ""))


def _memory_bytes(device: torch.device) -> Optional[int]:
    """The device's total memory (CPU: physical memory), None where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_output_size(op: str, m: int, out_h: int, out_w: int, dtype: torch.dtype, device: torch.device) -> None:
    """``ValueError`` before allocating when the (M, 3, H, W) output alone cannot fit the device's memory (an absurd
    ``out_size`` otherwise ends in the allocator's error, or in an int64 overflow of the element count)."""
    if m == 0:
        return
    numel = m * 3 * out_h * out_w  # Python ints: no overflow here
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    memory = _memory_bytes(device)
    if numel >= 2 ** 63 or (memory is not None and nbytes > memory):
        have = f"the {device.type} memory ({memory / 2**30:.3g} GiB)" if memory is not None else "what torch can index"
        raise ValueError(f"{op}: out_size {(out_h, out_w)} for {m} box(es) needs {nbytes / 2**30:.3g} GiB of output, "
                         f"more than {have}; out_size is (H, W) of each crop, e.g. (256, 192)")


def check_norm(op: str, name: str, v) -> List[float]:
    """``mean`` or ``std``: 3 finite numbers (RGB, 0..1 scale; ``std`` non-zero) as Python floats."""
    try:
        vals = [float(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be 3 numbers (RGB, on the 0..1 scale), got {v!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{op}: {name} must have 3 values (R, G, B), got {len(vals)}")
    if not all(math.isfinite(x) for x in vals) or (name == "std" and any(x == 0 for x in vals)):
        raise ValueError(f"{op}: {name} must be finite{' and non-zero' if name == 'std' else ''}, got {vals}")
    return vals


def check_flip(op: str, flip, m: int) -> torch.Tensor:
    """``flip``: a bool tensor (or array) of shape (M,); returned as a detached bool tensor on its device."""
    if isinstance(flip, torch.Tensor):
        t = flip.detach()
    else:
        try:
            t = torch.as_tensor(flip)
        except Exception as exc:  # noqa: BLE001 - quote what the conversion said
            raise TypeError(f"{op}: flip must be a bool tensor of shape (M,), got {type(flip).__name__} ({exc})") from None
    if t.dtype != torch.bool:
        raise TypeError(f"{op}: flip must be a bool tensor (True: mirror the image), got {t.dtype}")
    if t.shape != (m,):
        raise ValueError(f"{op}: flip must have shape (M,) = ({m},), got {tuple(t.shape)}")
    return t


def check_image_width(op: str, width: torch.Tensor, m: int) -> None:
    """``image_width``: (M,) float64 (converted by the caller), finite and positive (checked on the CPU only: on a
    GPU the check would need a host sync)."""
    if width.shape != (m,):
        raise ValueError(f"{op}: image_width must have shape (M,) = ({m},), got {tuple(width.shape)}")
    if width.device.type == "cpu" and width.numel() and not bool((torch.isfinite(width) & (width > 0)).all()):
        bad = ~(torch.isfinite(width) & (width > 0))
        raise ValueError(f"{op}: image_width must be finite and positive, got {float(width[bad][0])} "
                         f"(box {int(bad.nonzero()[0])})")


def check_hw3(op: str, name: str, shape: Tuple[int, ...], dtype: torch.dtype) -> None:
    """``shape`` is one image's (H, W, C) (or what was passed in its place)."""
    if len(shape) != 3 or shape[-1] != 3:
        if len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1):
            hint = "a grayscale image: repeat it to 3 channels (img.reshape(h, w, 1).expand(h, w, 3))"
        elif len(shape) == 3 and shape[-1] == 4:
            hint = "4 channels (BGRA/RGBA): drop the alpha channel (img[..., :3])"
        elif len(shape) == 3 and shape[0] == 3:
            hint = "channels first (3, H, W): pass img.permute(1, 2, 0) (images are (H, W, 3), as cv2 reads them)"
        else:
            hint = "images are (H, W, 3), as cv2.imread returns them"
        raise ValueError(f"{op}: {name} must have shape (H, W, 3), got {tuple(shape)}: {hint}")
    if dtype != torch.uint8:
        raise TypeError(f"{op}: {name} must be uint8 (0..255, as cv2.imread returns), got {dtype}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{op}: {name} must have at least one pixel, got shape {tuple(shape)}")
