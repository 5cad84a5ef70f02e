"""COCO person keypoints on disk, shared by ``hrnet-fast predict``/``eval`` and (later) the training dataset:
images and annotation files in, person boxes out, keypoint results out in the COCO results format, their
evaluation by pycocotools, and the official OKS-NMS.

    images = find_images(["val2017/"])                   # image files of files and directories
    ann = read_json("person_keypoints_val2017.json", "COCO annotation file")
    boxes = gt_person_boxes(ann)                         # {image_id: (M, 5) x, y, w, h, score}, official cleaning
    dets = detection_boxes(read_json(path, "detection file"), 0.0, path)   # COCO detection results per image_id
    rows = to_coco(image_id, result.numpy())             # one image's PoseResult -> COCO keypoint results
    stats = evaluate("person_keypoints_val2017.json", rows)   # {"AP": ..., "AP .5": ..., ...}
    print(format_stats(stats))

numpy only (no torch); OpenCV for :func:`read_image`, pycocotools for :func:`evaluate`, imported when called.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Sequence

import numpy as np

__all__ = ["COCO_SIGMAS", "IMAGE_EXTENSIONS", "STAT_NAMES", "detection_boxes", "evaluate", "find_images", "format_stats",
           "gt_person_boxes", "oks_iou", "oks_nms", "read_image", "read_json", "to_coco", "video_boxes"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: pycocotools' keypoint stats, in its order, with the names the official code prints.
STAT_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
#: COCO keypoint sigmas (official ``oks_iou``/pycocotools), in joint order.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


# ---------------------------------------------------------------------------------------------- reading
def find_images(inputs: Sequence[str]) -> List[str]:
    """Image files from files and directories (a directory: its image files, sorted, not recursive)."""
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out.extend(os.path.join(p, f) for f in sorted(os.listdir(p)) if f.lower().endswith(IMAGE_EXTENSIONS))
        else:
            out.append(p)
    return out


def read_json(path: str, what: str):
    """``path`` parsed as JSON. ``ValueError`` naming the file and ``what`` ("COCO annotation file", ...) when
    it cannot be read or is not JSON."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON {what} ({exc})") from None


def read_image(path: str):
    """One image as the official ``COCODataset`` reads it: (H, W, 3) uint8 BGR, EXIF orientation ignored;
    None when OpenCV cannot read the file."""
    import cv2

    return cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


# ---------------------------------------------------------------------------------------------- boxes
def gt_person_boxes(ann: Dict[str, Any]) -> Dict[Any, np.ndarray]:
    """Ground-truth person boxes per image id, as the official ``COCODataset`` cleans them (score 1.0)."""
    size = {im["id"]: (im.get("width"), im.get("height")) for im in ann.get("images", [])}
    boxes: Dict[Any, List[List[float]]] = {}
    for obj in ann.get("annotations", []):
        if obj.get("iscrowd", 0) or obj.get("category_id", 1) != 1 or "bbox" not in obj:
            continue
        if not obj.get("keypoints") or max(obj["keypoints"]) == 0:  # official: ignore persons without keypoints
            continue
        width, height = size.get(obj["image_id"], (None, None))
        x, y, w, h = (float(v) for v in obj["bbox"])
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = x1 + max(0.0, w - 1), y1 + max(0.0, h - 1)
        if width is not None and height is not None:
            x2, y2 = min(width - 1.0, x2), min(height - 1.0, y2)
        if obj.get("area", 1) > 0 and x2 >= x1 and y2 >= y1 and (x2 > x1 or y2 > y1):
            boxes.setdefault(obj["image_id"], []).append([x1, y1, x2 - x1, y2 - y1, 1.0])
    return {k: np.asarray(v, dtype=np.float64) for k, v in boxes.items()}


def detection_boxes(dets, min_score: float, where: str) -> Dict[Any, np.ndarray]:
    """Person detections (COCO results format) per ``image_id``: (M, 5) x, y, w, h, score."""
    if isinstance(dets, dict) and "annotations" in dets:
        dets = dets["annotations"]
    if not isinstance(dets, list):
        raise ValueError(f"{where}: expected a list of detections (COCO results format: image_id, bbox, score, category_id)")
    out: Dict[Any, List[List[float]]] = {}
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
            raise ValueError(f"{where}: detection {i} has no image_id or bbox: {str(d)[:120]}")
        if d.get("category_id", 1) != 1:
            continue
        bbox = d["bbox"]
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"{where}: detection {i}: bbox must be [x, y, w, h], got {bbox!r}")
        score = float(d.get("score", 1.0))
        if score < min_score:
            continue
        out.setdefault(d["image_id"], []).append([float(v) for v in bbox] + [score])
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def video_boxes(doc, box_format: str, where: str) -> Dict[int, np.ndarray]:
    """Boxes per frame index: ``{"0": [[x, y, w, h(, score)], ...], ...}`` or COCO results with image_id = frame."""
    if isinstance(doc, list):
        return {int(k): v for k, v in detection_boxes(doc, -np.inf, where).items()}
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected {{frame index: [[x, y, w, h(, score)], ...]}} or a list of detections")
    out = {}
    for key, boxes in doc.items():
        try:
            frame = int(key)
        except ValueError:
            raise ValueError(f"{where}: keys must be frame indices, got {key!r}") from None
        a = np.asarray(boxes, dtype=np.float64).reshape(-1, np.asarray(boxes).shape[-1] if len(boxes) else 5)
        if a.shape[1] not in (4, 5):
            raise ValueError(f"{where}: frame {key}: boxes must be [x, y, w, h] or [x, y, w, h, score]")
        if a.shape[1] == 4:
            a = np.concatenate([a, np.ones((len(a), 1))], 1)
        if box_format == "xyxy":
            a[:, 2:4] -= a[:, 0:2]
        out[frame] = a
    return out


# ---------------------------------------------------------------------------------------------- results and evaluation
def to_coco(image_id, result, category_id: int = 1) -> List[Dict[str, Any]]:
    """One image's :class:`PoseResult` (numpy) in the COCO keypoint results format."""
    kp = np.asarray(result.keypoints, dtype=np.float64)
    sc = np.asarray(result.scores, dtype=np.float64)
    return [{"image_id": image_id, "category_id": category_id, "keypoints": [float(v) for v in kp[i].reshape(-1)],
             "score": float(sc[i])} for i in range(kp.shape[0])]


def evaluate(ann_file: str, results, verbose: bool = True) -> Dict[str, float]:
    """pycocotools' keypoint evaluation of ``results`` (a path or a list) against ``ann_file``:
    ``{"AP": ..., "AP .5": ..., ...}``. With ``verbose`` pycocotools prints its table."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(results, str):
        results = read_json(results, "keypoint results")
    if not isinstance(results, list) or not results:
        raise ValueError("no keypoint results to evaluate (the results list is empty)")
    quiet = contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext()
    with quiet:
        coco = COCO(ann_file)
        try:
            dets = coco.loadRes(results)
        except AssertionError as exc:
            raise ValueError(f"the results do not fit {ann_file}: {exc or 'their image ids are not in the annotations'}") from None
        ev = COCOeval(coco, dets, "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def format_stats(stats: Dict[str, float]) -> str:
    """The official code's one-row table of the keypoint stats."""
    head = "| " + " | ".join(STAT_NAMES) + " |"
    rule = "|" + "|".join("---" for _ in STAT_NAMES) + "|"
    row = "| " + " | ".join(f"{stats[n]:.3f}" for n in STAT_NAMES) + " |"
    return "\n".join([head, rule, row])


# ---------------------------------------------------------------------------------------------- OKS-NMS
# The official lib/nms/nms.py: oks_iou, oks_nms (PoseEstimator(oks_nms=...) runs them per image).
def oks_iou(g: np.ndarray, d: np.ndarray, a_g: float, a_d: np.ndarray, sigmas=None, in_vis_thre=None) -> np.ndarray:
    """Official ``oks_iou``: OKS of the flat (K*3,) keypoints ``g`` against each row of ``d`` (n, K*3)."""
    if not isinstance(sigmas, np.ndarray):
        sigmas = COCO_SIGMAS
    var = (sigmas * 2) ** 2
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    ious = np.zeros((d.shape[0]))
    for n_d in range(0, d.shape[0]):
        xd, yd, vd = d[n_d, 0::3], d[n_d, 1::3], d[n_d, 2::3]
        dx = xd - xg
        dy = yd - yg
        e = (dx ** 2 + dy ** 2) / var / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
        if in_vis_thre is not None:
            ind = list(vg > in_vis_thre) and list(vd > in_vis_thre)
            e = e[ind]
        ious[n_d] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
    return ious


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thresh: float, sigmas=None,
            in_vis_thre=None) -> List[int]:
    """Official ``oks_nms``: greedily keep the highest score, drop the persons whose OKS with it is above
    ``thresh``. ``keypoints`` (M, K, 3), ``scores`` (M,), ``areas`` (M,) (official: the padded box area
    ``prod(scale * 200)``). Returns the kept indices, score-descending."""
    if len(scores) == 0:
        return []
    kpts = keypoints.reshape(len(scores), -1)
    order = np.asarray(scores).argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        oks_ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        inds = np.where(oks_ovr <= thresh)[0]
        order = order[inds + 1]
    return keep
