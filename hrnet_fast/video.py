"""Pose estimation of a video, frame by frame (``hrnet-fast predict --video``): :func:`predict_video` reads the
frames with OpenCV, runs a :class:`hrnet_fast.PoseEstimator` on a few frames per call, and writes the COCO
results and, optionally, the video with the poses drawn.

    results, summary = predict_video(estimator, "in.mp4", boxes_per_frame, "out.mp4")
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._console import ProgressBar
from .coco import to_coco
from .draw import draw_pose

__all__ = ["predict_video"]


def predict_video(estimator, video: str, boxes: Optional[Dict[int, np.ndarray]], out_video: Optional[str],
                  progress: bool = True, frames_per_call: int = 8) -> Tuple[List[Dict[str, Any]], str]:
    """Poses of every frame of ``video`` (OpenCV); ``boxes`` per frame index (a frame without an entry has no
    person), None = the whole frame. Writes ``out_video`` (mp4v) with the poses drawn. Returns the COCO
    results (image_id = frame index) and a summary line."""
    import cv2

    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise ValueError(f"{video}: OpenCV cannot open this video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    writer = None
    bar = ProgressBar(total, progress, "video")
    results: List[Dict[str, Any]] = []
    frame_no = 0
    try:
        done = False
        while not done:
            frames, frame_boxes, persons = [], [], 0
            while len(frames) < frames_per_call and persons < estimator.max_batch:
                ok, frame = cap.read()
                if not ok:
                    done = True
                    break
                b = None if boxes is None else boxes.get(frame_no + len(frames), np.zeros((0, 5)))
                frames.append(frame)
                frame_boxes.append(b)
                persons += 1 if b is None else len(b)
            if not frames:
                break
            for frame, res in zip(frames, estimator(frames, frame_boxes)):
                res = res.numpy()
                results.extend(to_coco(frame_no, res))
                if out_video:
                    if writer is None:
                        h, w = frame.shape[:2]
                        writer = cv2.VideoWriter(out_video, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                        if not writer.isOpened():
                            raise ValueError(f"{out_video}: OpenCV cannot write an mp4v video there")
                    writer.write(draw_pose(frame, res.keypoints, np.asarray(res.boxes, dtype=np.float64)))
                frame_no += 1
            bar.update(len(frames), persons)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        bar.close()
    if frame_no == 0:
        raise ValueError(f"{video}: no frame could be read")
    return results, bar.summary()
