"""Poses drawn on an image with OpenCV (``hrnet-fast predict --draw``/``--draw-video``): :func:`draw_pose`.

    img = draw_pose(image_bgr, result.keypoints, boxes_xywh)   # a copy; (M, K, 3) keypoints in image pixels
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["COCO_SKELETON", "DRAW_SCORE", "draw_pose"]

#: COCO person skeleton, 0-based joint indices (the annotation file's ``skeleton`` minus one).
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
                 (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
DRAW_SCORE = 0.2  # keypoints drawn above this score (the official IN_VIS_THRE)


def draw_pose(image: np.ndarray, keypoints: np.ndarray, boxes_xywh: Optional[np.ndarray] = None,
              min_score: float = DRAW_SCORE, skeleton=COCO_SKELETON) -> np.ndarray:
    """A copy of the BGR image with each person's box, keypoints above ``min_score`` and skeleton drawn.

    ``image`` (H, W, 3) uint8 BGR, or (H, W) grayscale (drawn in colour); ``keypoints`` (M, K, 3) x, y, score
    in image pixels (the skeleton is drawn for K = 17); ``boxes_xywh`` (M, 4+) or None; non-finite values
    are not drawn. Returns (H, W, 3) uint8."""
    import cv2

    img = np.ascontiguousarray(image).copy()
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    thick = max(1, round(max(img.shape[:2]) / 400))
    palette = [(255, 128, 0), (0, 200, 255), (60, 220, 60), (255, 64, 200), (0, 96, 255), (200, 200, 0)]

    def pt(p):
        return int(np.clip(p[0], -1e5, 1e5)), int(np.clip(p[1], -1e5, 1e5))

    for i, kp in enumerate(np.asarray(keypoints, dtype=np.float64)):
        color = palette[i % len(palette)]
        if boxes_xywh is not None and np.isfinite(boxes_xywh[i]).all():
            x, y, w, h = boxes_xywh[i][:4]
            cv2.rectangle(img, pt((x, y)), pt((x + w, y + h)), color, thick)
        ok = np.isfinite(kp).all(1) & (kp[:, 2] > min_score)
        if kp.shape[0] == 17:
            for a, b in skeleton:
                if ok[a] and ok[b]:
                    cv2.line(img, pt(kp[a]), pt(kp[b]), color, thick + 1, cv2.LINE_AA)
        for j in np.nonzero(ok)[0]:
            cv2.circle(img, pt(kp[j]), thick + 2, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(img, pt(kp[j]), thick + 2, color, 1, cv2.LINE_AA)
    return img
