"""Pose estimation of a video, frame by frame (``hrnet-fast predict --video``): :func:`predict_video` reads the
frames with OpenCV, runs a :class:`hrnet_fast.PoseEstimator` on a few frames per call, and writes the COCO
results and, optionally, the video with the poses drawn.

    results, summary = predict_video(estimator, "in.mp4", boxes_per_frame, "out.mp4")
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._atomic import atomic_path
from ._console import ProgressBar
from .coco import to_coco
from .draw import draw_pose

__all__ = ["VideoError", "predict_video"]


class VideoError(ValueError):
    """The video cannot be opened, read or written (OpenCV): what the command line reports in one line."""


def predict_video(estimator, video: str, boxes: Optional[Dict[int, np.ndarray]], out_video: Optional[str],
                  progress: bool = True, frames_per_call: int = 8) -> Tuple[List[Dict[str, Any]], str]:
    """Poses of every frame of ``video`` (OpenCV); ``boxes`` per frame index (a frame without an entry has no
    person), None = the whole frame. Writes ``out_video`` (mp4v) with the poses drawn, atomically: to a
    temporary file beside it, renamed when the whole video is written (a failure leaves no partial video and
    keeps a previous file). Returns the COCO results (image_id = frame index; persons with non-finite keypoints
    are left out and counted in the summary) and a summary line. ``ValueError`` when the video cannot be
    opened, read or written
    (:class:`VideoError`, a ``ValueError``)."""
    import cv2

    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise VideoError(f"{video}: OpenCV cannot open this video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    bar = ProgressBar(total, progress, "video")
    results: List[Dict[str, Any]] = []
    frame_no = dropped = 0
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out_video)) if out_video else None  # renamed onto out_video at the end
        writer = None
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
                    rows = to_coco(frame_no, res)
                    dropped += len(res) - len(rows)
                    results.extend(rows)
                    if tmp is not None:
                        if writer is None:
                            h, w = frame.shape[:2]
                            writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                            if not writer.isOpened():
                                raise VideoError(f"{out_video}: OpenCV cannot write an mp4v video there")
                        writer.write(draw_pose(frame, res.keypoints, np.asarray(res.boxes, dtype=np.float64)))
                    frame_no += 1
                bar.update(len(frames), persons)
        finally:
            cap.release()
            if writer is not None:
                writer.release()  # before the rename: the file is complete
            bar.close()
        if frame_no == 0:
            raise VideoError(f"{video}: no frame could be read")
    summary = bar.summary()
    if dropped:
        summary += f"; {dropped} person(s) not written: their keypoints or score are not finite (NaN/inf)"
    return results, summary
