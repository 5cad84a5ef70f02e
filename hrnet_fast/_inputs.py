"""The input checks of :class:`hrnet_fast.PoseEstimator`: one image (numpy or tensor, grayscale, alpha) to a
uint8 (H, W, 3) tensor, one image's boxes to an (M, 5) array, and the host boxes' validity, each with an
error that names the argument (``images[2]``, ``boxes[0][3]``). Moved out of ``estimator.py`` whole; the
messages start with ``PoseEstimator:`` as before."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ._boxes import first_bad_box

__all__ = ["as_image", "box_array", "check_host_boxes", "fix_channels", "is_array"]

_E = "PoseEstimator"


def is_array(x) -> bool:
    """A numpy array or a torch tensor (an image or a batch), not a list of them."""
    return isinstance(x, (np.ndarray, torch.Tensor))


def fix_channels(t: torch.Tensor, where: str) -> torch.Tensor:
    """(H, W) / (H, W, 1) grayscale -> 3 equal channels; (H, W, 4) -> the first 3 (alpha dropped);
    also for a batch (N, H, W, C)."""
    c = t.shape[-1]
    if c == 3:
        return t
    if c == 1:
        return t.expand(*t.shape[:-1], 3).contiguous()
    if c == 4:
        return t[..., :3].contiguous()
    raise ValueError(f"{_E}: {where} must have 3 channels (HxWx3, BGR as OpenCV reads it), or 1 (grayscale) or 4 "
                     f"(alpha, dropped); got shape {tuple(t.shape)}" + (" (channels first? use .permute(1, 2, 0))"
                                                                      if t.dim() == 3 and t.shape[0] in (1, 3, 4) else ""))


def as_image(x, where: str) -> torch.Tensor:
    """One image as a uint8 tensor (H, W, 3) (not moved yet)."""
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8:
            raise TypeError(f"{_E}: {where} must be uint8 (0-255, as OpenCV reads images), got dtype {x.dtype}; "
                            f"convert e.g. with np.clip(img * 255, 0, 255).round().astype(np.uint8) for a [0, 1] float image")
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if x.dtype != torch.uint8:
            raise TypeError(f"{_E}: {where} must be a uint8 tensor (0-255), got dtype {x.dtype}")
    else:
        raise TypeError(f"{_E}: {where} must be a numpy array or a torch tensor (H, W, 3) uint8, got {type(x).__name__}")
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    if x.dim() != 3:
        raise ValueError(f"{_E}: {where} must be an image (H, W, 3), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{_E}: {where} is empty: shape {tuple(x.shape)}")
    return fix_channels(x, where)


def box_array(b, where: str, image_hw: Tuple[int, int], device: torch.device):
    """Boxes of one image -> (M, 5) float64 numpy (host) or float32 tensor on ``device`` (device boxes,
    not checked: see PoseEstimator). None -> the whole image."""
    if b is None:
        h, w = image_hw
        return np.array([[0.0, 0.0, float(w), float(h), 1.0]])
    if isinstance(b, torch.Tensor) and b.device.type != "cpu":
        if not (b.is_floating_point() or b.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{_E}: {where} must be a real tensor, got {b.dtype}")
        if b.dim() != 2 or b.shape[1] not in (4, 5):
            raise ValueError(f"{_E}: {where} must have shape (M, 4) or (M, 5) (x, y, w, h[, score]), got {tuple(b.shape)}")
        b = b.to(device=device, dtype=torch.float32)
        if b.shape[1] == 4:
            b = torch.cat([b, b.new_ones(b.shape[0], 1)], 1)
        return b
    if isinstance(b, torch.Tensor):
        b = b.detach().numpy()
    try:
        a = np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{_E}: {where} must be an array of shape (M, 4) or (M, 5), got {type(b).__name__} ({exc})") from None
    if a.size == 0:
        return np.zeros((0, 5))
    if a.ndim != 2 or a.shape[1] not in (4, 5):
        hint = " (one box: [[x, y, w, h]])" if a.ndim == 1 else ""
        raise ValueError(f"{_E}: {where} must have shape (M, 4) or (M, 5) (box[, score]), got {a.shape}{hint}")
    if a.shape[1] == 4:
        a = np.concatenate([a, np.ones((a.shape[0], 1))], 1)
    return a


def check_host_boxes(a: np.ndarray, where: str, box_format: str) -> None:
    """``ValueError`` naming the first box of ``a`` (M, 5) that is not finite, does not fit float32, has a
    negative width or height in ``box_format``, or zero width and height (:func:`hrnet_fast._boxes.first_bad_box`)."""
    bad = first_bad_box(a, box_format)
    if bad is not None:
        raise ValueError(f"{_E}: {where}[{bad[0]}] = {bad[1]}")
