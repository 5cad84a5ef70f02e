"""The one rule for a valid person box, shared by :class:`hrnet_fast.PoseEstimator` (host boxes),
:func:`hrnet_fast.boxes_to_center_scale` (CPU boxes) and the ``--boxes`` files of ``hrnet-fast predict``: each
caller names the box its own way (``boxes[3]``, ``--boxes dets.json: detection 7 (image_id 42)``).

A box is invalid when a value is NaN or infinite, when a coordinate or its width or height does not fit
float32 (the crops and keypoints are computed in float32: an overflow would surface as an infinite center deep
inside ``crop_boxes``), when its width or height is negative in its format, or when both are zero (no scale
can be derived from it; a zero width *or* height is widened by the official aspect-ratio rule). numpy only.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["FLOAT32_MAX", "first_bad_box"]

FLOAT32_MAX = float(np.finfo(np.float32).max)


def first_bad_box(a: np.ndarray, box_format: str = "xywh") -> Optional[Tuple[int, str]]:
    """``(index, why)`` of the first invalid row of ``a`` ((M, 4) boxes, or (M, 5) with a score column, whose
    finiteness is checked too) in ``box_format`` ("xywh" or "xyxy"); None when every box is valid.

    ``why`` starts with the row: ``"[10.0, 10.0, -5.0, 20.0] has a negative width (-5) in xywh (...)"``."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return None
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        return i, f"{a[i].tolist()} is not finite (NaN or inf)"
    x, y = a[:, 0], a[:, 1]
    if box_format == "xywh":
        w, h = a[:, 2], a[:, 3]
        ends = np.stack([x, y, x + w, y + h], 1)
    else:
        w, h = a[:, 2] - x, a[:, 3] - y
        ends = a[:, :4]
    big = (np.abs(ends) > FLOAT32_MAX).any(1) | (np.abs(w) > FLOAT32_MAX) | (np.abs(h) > FLOAT32_MAX)
    if big.any():
        i = int(np.nonzero(big)[0][0])
        return i, f"{a[i, :4].tolist()} does not fit float32 (coordinates and sizes up to {FLOAT32_MAX:.3g})"
    for name, v in (("width", w), ("height", h)):
        neg = v < 0
        if neg.any():
            i = int(np.nonzero(neg)[0][0])
            hint = " (corners swapped?)" if box_format == "xyxy" else " (xyxy boxes given as xywh?)"
            return i, f"{a[i, :4].tolist()} has a negative {name} ({v[i]:g}) in {box_format}{hint}"
    empty = (w == 0) & (h == 0)
    if empty.any():
        i = int(np.nonzero(empty)[0][0])
        return i, f"{a[i, :4].tolist()} has zero width and height"
    return None
