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
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ._boxes import first_bad_box

__all__ = ["COCO_KEYPOINT_VALUES", "COCO_SIGMAS", "IMAGE_EXTENSIONS", "STAT_NAMES", "check_annotations", "check_results",
           "detection_boxes", "evaluate", "find_images", "format_stats", "gt_person_boxes", "oks_iou", "oks_nms", "read_image",
           "read_json", "to_coco", "video_boxes"]

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


def _number(v) -> float:
    """``float(v)`` for a JSON number (bools and strings are refused: ``float("12")`` would hide a broken file)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def _box_row(box, score, box_format: str, what: str) -> List[float]:
    """One box as ``[x, y, w, h, score]`` (xywh), checked by :func:`hrnet_fast._boxes.first_bad_box`; ``ValueError``
    starting with ``what`` ("detection 7 (image_id 42)", "frame 3, box 1")."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise ValueError(f"{what}: bbox must be [x, y, w, h]{' (x1, y1, x2, y2 with --box-format xyxy)' if box_format == 'xyxy' else ''}, "
                         f"got {box!r}")
    try:
        row = [_number(v) for v in box] + [_number(score)]
    except ValueError as exc:
        raise ValueError(f"{what}: bbox {box!r} / score {score!r}: {exc}") from None
    bad = first_bad_box(np.asarray([row]), box_format)
    if bad is not None:  # its text starts with the row (box and score): name the two apart
        raise ValueError(f"{what}: bbox {[row[k] for k in range(4)]} (score {row[4]:g}) {bad[1].split('] ', 1)[1]}")
    if box_format == "xyxy":
        row[2], row[3] = row[2] - row[0], row[3] - row[1]
    return row


def detection_boxes(dets, min_score: float, where: str, box_format: str = "xywh") -> Dict[Any, np.ndarray]:
    """Person detections (COCO results format) per ``image_id``: (M, 5) x, y, w, h, score (float64).

    ``box_format``: how the file gives a box, ``"xywh"`` (COCO) or ``"xyxy"`` (converted to xywh here).
    ``ValueError`` starting with ``where`` (e.g. ``"--boxes dets.json"``) and naming the detection's position in
    the list and its image id, for an entry that is not a detection, a bbox that is not 4 numbers, or a box
    that is NaN/inf, negative in size, empty or beyond float32 (:mod:`hrnet_fast._boxes`). Detections of other
    categories are skipped unchecked; those scoring below ``min_score`` are dropped."""
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
        row = _box_row(d["bbox"], d.get("score", 1.0), box_format, f"{where}: detection {i} (image_id {d['image_id']!r})")
        if row[4] < min_score:
            continue
        out.setdefault(d["image_id"], []).append(row)
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def video_boxes(doc, box_format: str, where: str) -> Dict[int, np.ndarray]:
    """Boxes per frame index: ``{"0": [[x, y, w, h(, score)], ...], ...}`` (a missing score is 1.0; a frame may
    mix both forms) or COCO results with image_id = frame. (M, 5) xywh + score per frame, checked as
    :func:`detection_boxes` checks them (``ValueError`` naming the frame and the box)."""
    if isinstance(doc, list):
        out: Dict[int, np.ndarray] = {}
        for k, v in detection_boxes(doc, -np.inf, where, box_format).items():
            try:
                out[int(k)] = v
            except (TypeError, ValueError):
                raise ValueError(f"{where}: image_id {k!r} is not a frame index") from None
        return out
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected {{frame index: [[x, y, w, h(, score)], ...]}} or a list of detections")
    frames: Dict[int, np.ndarray] = {}
    for key, boxes in doc.items():
        try:
            frame = int(key)
        except ValueError:
            raise ValueError(f"{where}: keys must be frame indices, got {key!r}") from None
        if not isinstance(boxes, list):
            raise ValueError(f"{where}: frame {key}: expected a list of boxes [[x, y, w, h(, score)], ...], got {boxes!r}")
        rows = []
        for j, b in enumerate(boxes):
            if not isinstance(b, list) or len(b) not in (4, 5):
                raise ValueError(f"{where}: frame {key}, box {j}: expected [x, y, w, h] or [x, y, w, h, score], got {b!r}")
            rows.append(_box_row(b[:4], b[4] if len(b) == 5 else 1.0, box_format, f"{where}: frame {key}, box {j}"))
        frames[frame] = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return frames


# ---------------------------------------------------------------------------------------------- results and evaluation
def to_coco(image_id, result, category_id: int = 1) -> List[Dict[str, Any]]:
    """One image's :class:`PoseResult` (numpy) in the COCO keypoint results format.

    A person with a non-finite keypoint or score (NaN heatmaps, an fp16 overflow, an invalid CUDA box) is left
    out: JSON has no NaN, and pycocotools would score a NaN person as a perfect match. ``len(result) -
    len(rows)`` counts them."""
    kp = np.asarray(result.keypoints, dtype=np.float64)
    sc = np.asarray(result.scores, dtype=np.float64)
    finite = np.isfinite(kp).all(axis=tuple(range(1, kp.ndim))) & np.isfinite(sc)
    return [{"image_id": image_id, "category_id": category_id, "keypoints": [float(v) for v in kp[i].reshape(-1)],
             "score": float(sc[i])} for i in range(kp.shape[0]) if finite[i]]


#: pycocotools' keypoint evaluation uses the 17 COCO sigmas: every keypoint list holds 17 x (x, y, v)
COCO_KEYPOINT_VALUES = 3 * len(COCO_SIGMAS)


def _numbers(v, n: Optional[int] = None) -> bool:
    """``v`` is a list of ``n`` (any number when None) finite JSON numbers."""
    return (isinstance(v, list) and (n is None or len(v) == n)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


def _is_id(v) -> bool:
    """An image or category id: a JSON number or string (hashable, unlike a list)."""
    return isinstance(v, (int, float, str)) and not isinstance(v, bool)


def _finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_annotations(ann, where: str, for_eval: bool = False) -> None:
    """``ValueError`` (starting with ``where``, naming the entry) unless ``ann`` is a COCO annotation file
    ``predict`` can read (images with ``id`` and ``file_name``; annotations, when present, with ``image_id`` and
    numeric ``bbox``/``keypoints``) or, with ``for_eval``, one pycocotools can evaluate keypoints against:
    ``images`` (``id``), ``categories`` (``id``) and ``annotations`` with ``id``, an ``image_id`` and a
    ``category_id`` of the file, 51 finite ``keypoints`` (17 x, y, v), ``num_keypoints``, ``area`` and ``bbox``
    (pycocotools would fail with a bare ``KeyError`` or ``AssertionError`` deep inside)."""
    if not isinstance(ann, dict) or not isinstance(ann.get("images"), list):
        raise ValueError(f"{where}: not a COCO annotation file (no 'images' list)")
    ids = set()
    for i, im in enumerate(ann["images"]):
        if not isinstance(im, dict) or not _is_id(im.get("id")):
            raise ValueError(f"{where}: images[{i}] has no 'id' (a number or a string): {str(im)[:120]}")
        if not for_eval and not isinstance(im.get("file_name"), str):
            raise ValueError(f"{where}: images[{i}] (id {im['id']!r}) has no 'file_name'")
        ids.add(im["id"])
    cats = ann.get("categories")
    if for_eval:
        if not isinstance(cats, list) or not all(isinstance(c, dict) and _is_id(c.get("id")) for c in cats):
            raise ValueError(f"{where}: not a COCO annotation file (no 'categories' list of {{'id': ...}})")
        if not isinstance(ann.get("annotations"), list):
            raise ValueError(f"{where}: not a COCO annotation file (no 'annotations' list)")
    cat_ids = {c["id"] for c in cats} if for_eval else set()
    for i, a in enumerate(ann.get("annotations", [])):
        if not isinstance(a, dict) or not _is_id(a.get("image_id")):
            raise ValueError(f"{where}: annotations[{i}] has no 'image_id' (a number or a string): {str(a)[:120]}")
        what = f"{where}: annotations[{i}] (image_id {a['image_id']!r})"
        if "bbox" in a and not _numbers(a["bbox"], 4):
            raise ValueError(f"{what}: bbox must be 4 finite numbers [x, y, w, h], got {str(a['bbox'])[:120]}")
        if "keypoints" in a and not _numbers(a["keypoints"]):
            raise ValueError(f"{what}: keypoints must be a list of finite numbers")
        if not for_eval:
            continue
        for key in ("id", "bbox", "area", "num_keypoints", "keypoints", "category_id"):
            if key not in a:
                raise ValueError(f"{what}: no '{key}' (pycocotools' keypoint evaluation needs it)")
        if a["image_id"] not in ids:
            raise ValueError(f"{what}: its image_id is not among the file's images")
        if not _is_id(a["category_id"]) or a["category_id"] not in cat_ids:
            raise ValueError(f"{what}: category_id {a['category_id']!r} is not among the file's categories")
        if len(a["keypoints"]) != COCO_KEYPOINT_VALUES:
            raise ValueError(f"{what}: keypoints has {len(a['keypoints'])} values, expected {COCO_KEYPOINT_VALUES} "
                             f"(17 COCO keypoints x (x, y, v))")
        if not (_finite_number(a["area"]) and _finite_number(a["num_keypoints"])):
            raise ValueError(f"{what}: area and num_keypoints must be finite numbers")


def check_results(results, ann: Dict[str, Any], where: str) -> None:
    """``ValueError`` (starting with ``where``, naming the entry's index and image id) unless every entry of
    ``results`` is a keypoint result of ``ann`` (checked with :func:`check_annotations` first): an ``image_id``
    of its images, a ``category_id`` of its categories, exactly 51 finite ``keypoints`` and a finite ``score``.
    pycocotools scores NaN keypoints as a perfect match and short keypoint lists without a word."""
    if not isinstance(results, list):
        raise ValueError(f"{where}: expected a list of keypoint results (COCO results format), got {type(results).__name__}")
    if not results:
        raise ValueError(f"{where}: no keypoint results to evaluate (the results list is empty)")
    ids = {im["id"] for im in ann["images"]}
    cat_ids = {c["id"] for c in ann.get("categories", [])}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not _is_id(r.get("image_id")):
            raise ValueError(f"{where}: entry {i} has no image_id (a number or a string): {str(r)[:120]}")
        what = f"{where}: entry {i} (image_id {r['image_id']!r})"
        if r["image_id"] not in ids:
            raise ValueError(f"{what}: the image id is not in the annotation file")
        if not _is_id(r.get("category_id")) or r["category_id"] not in cat_ids:
            raise ValueError(f"{what}: category_id {r.get('category_id')!r} is not a category of the annotation file "
                             f"({sorted(cat_ids)[:5]})")
        kp = r.get("keypoints")
        if not isinstance(kp, list) or len(kp) != COCO_KEYPOINT_VALUES:
            n = len(kp) if isinstance(kp, list) else "no"
            raise ValueError(f"{what}: keypoints has {n} values, expected {COCO_KEYPOINT_VALUES} (17 COCO keypoints x "
                             f"(x, y, score))")
        if not _numbers(kp):
            raise ValueError(f"{what}: keypoints must be finite numbers (no NaN or infinity)")
        if not _finite_number(r.get("score")):
            raise ValueError(f"{what}: score must be a finite number, got {r.get('score')!r}")


def evaluate(ann_file, results, verbose: bool = True) -> Dict[str, float]:
    """pycocotools' keypoint evaluation of ``results`` (a path or a list) against ``ann_file`` (a path or the
    parsed file): ``{"AP": ..., "AP .5": ..., ...}``. With ``verbose`` pycocotools prints its table.

    Both are checked first (:func:`check_annotations`, :func:`check_results`): ``ValueError`` naming the file
    and the entry. The caller's result dicts are not modified."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann_name = ann_file if isinstance(ann_file, str) else "the annotations"
    ann = read_json(ann_file, "COCO annotation file") if isinstance(ann_file, str) else ann_file
    check_annotations(ann, ann_name, for_eval=True)
    res_name = results if isinstance(results, str) else "the results"
    if isinstance(results, str):
        results = read_json(results, "keypoint results")
    check_results(results, ann, res_name)
    quiet = contextlib.redirect_stdout(io.StringIO()) if not verbose else contextlib.nullcontext()
    with quiet:
        coco = COCO()
        coco.dataset = ann
        coco.createIndex()
        dets = coco.loadRes([dict(r) for r in results])  # loadRes adds id, area and bbox to each entry
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
