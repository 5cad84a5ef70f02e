"""COCO keypoint training samples for the CPU workers: the official cleaning, strict image decoding, no
augmentation (that runs batched on the device: :mod:`hrnet_fast.training.augment`).

    ds = CocoKeypoints("annotations/person_keypoints_train2017.json", "train2017", image_size=(256, 192))
    loader = DataLoader(ds, batch_size=32, sampler=DistributedSampler(ds, seed=seed), num_workers=8,
                        collate_fn=collate)

Cleaning (``lib/dataset/coco.py:143-208``, ported in :mod:`hrnet_fast.baselines.official_dataset`): images in the
file's order, their non-crowd annotations in the file's order; the box is clipped to the image as the official
code does (``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))``, same in y) and the annotation dropped when
``area <= 0`` or the clipped box is empty (``x2 < x1``: outside the image; a NaN box too); only the first category
(COCO's person) is kept, and only annotations with ``max(keypoints) > 0``; ``visible = min(v, 1)``; center and
scale by :func:`hrnet_fast.ops.boxes_to_center_scale` (the official ``_xywh2cs``, bit for bit).

Differences from the official code: a clipped box of zero width *and* height (a box of at most 1x1 pixel) is
skipped (the official code keeps it with scale 0, a degenerate crop); a NaN keypoint, an unknown category or a
missing field is a ``ValueError`` naming the annotation (the official code would train on NaN or stop on a
KeyError); an unreadable or truncated image is skipped with a warning naming the file (the official code stops
on an unreadable one and trains on the grey remainder of a truncated JPEG, which OpenCV decodes with only a
warning), and :func:`collate` counts the skipped samples.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..ops.crop_boxes import boxes_to_center_scale

__all__ = ["CocoKeypoints", "collate", "read_image"]


def _check_complete(data: bytes) -> str:
    """Why the encoded image ``data`` is incomplete, or "" (JPEG: no end-of-image marker FFD9 after the last
    start-of-scan FFDA, so an embedded thumbnail's marker does not count; PNG: no IEND chunk)."""
    if data[:2] == b"\xff\xd8":
        if data.rfind(b"\xff\xd9") <= data.rfind(b"\xff\xda"):
            return "a truncated JPEG (no end-of-image marker FFD9 after the last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            return "a truncated PNG (no IEND chunk)"
    return ""


def read_image(path: str):
    """The image at ``path`` as a uint8 (H, W, 3) BGR array (``cv2.IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION``,
    as the official reader), or None with a warning naming the file when it cannot be read, is truncated or
    does not decode."""
    import cv2

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        warnings.warn(f"CocoKeypoints: cannot read {path} ({exc.strerror or exc}): sample skipped", stacklevel=2)
        return None
    why = _check_complete(data)
    if why:
        warnings.warn(f"CocoKeypoints: {path} is {why}: sample skipped", stacklevel=2)
        return None
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        warnings.warn(f"CocoKeypoints: {path} does not decode as an image: sample skipped", stacklevel=2)
        return None
    return img


def _field(ann: Dict, key: str, where: str):
    if key not in ann:
        raise ValueError(f"CocoKeypoints: {where} has no {key!r} field")
    return ann[key]


class CocoKeypoints(torch.utils.data.Dataset):
    """The person samples of a COCO keypoint annotation file, cleaned as the official training set.

    Args:
        ann_file: path of the annotation JSON (``person_keypoints_train2017.json``).
        image_dir: the folder the images' ``file_name`` is relative to.
        num_joints: K (17 for COCO).
        image_size: the model input ``(H, W)``: the aspect ratio the boxes are grown to (``_xywh2cs``).

    ``ds[i]`` is a dict: ``index`` int, ``image`` uint8 (H, W, 3) BGR ndarray (None when the file is unreadable,
    truncated or does not decode: a warning names it), ``center`` (2,) and ``scale`` (2,) float32, ``keypoints``
    (K, 2) float32 image pixels, ``visible`` (K,) float32, ``image_file`` str. ``stats`` counts what the cleaning
    dropped. Raises ``FileNotFoundError`` for a missing file or folder, ``ValueError`` (naming the file and the
    annotation) for no person sample at all, a NaN keypoint, an unknown category or a missing field.
    """

    def __init__(self, ann_file: str, image_dir: str, num_joints: int = 17, image_size: Sequence[int] = (256, 192)):
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"CocoKeypoints: ann_file {ann_file!r} is not a file")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"CocoKeypoints: image_dir {image_dir!r} is not a folder")
        if isinstance(num_joints, bool) or not isinstance(num_joints, int) or num_joints < 1:
            raise ValueError(f"CocoKeypoints: num_joints must be a positive int, got {num_joints!r}")
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"CocoKeypoints: image_size must be (H, W), got {image_size!r}") from None
        if h < 1 or w < 1:
            raise ValueError(f"CocoKeypoints: image_size must be positive (H, W), got {image_size!r}")
        self.ann_file, self.image_dir, self.num_joints, self.image_size = ann_file, image_dir, num_joints, (h, w)
        with open(ann_file) as fh:
            try:
                dataset = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"CocoKeypoints: {ann_file} is not valid JSON ({exc})") from None
        self._load(dataset)

    def _load(self, dataset: Dict) -> None:
        k, src = self.num_joints, self.ann_file
        if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
            raise ValueError(f"CocoKeypoints: {src} is not a COCO annotation file (no 'images' list)")
        cats = dataset.get("categories") or []
        if not cats:
            raise ValueError(f"CocoKeypoints: {src} has no categories")
        person = cats[0]["id"]  # the official class index 1: the first category (COCO's person)
        known = {c["id"] for c in cats}
        by_image: Dict[int, List[Dict]] = {}
        for ann in dataset.get("annotations") or []:
            by_image.setdefault(ann.get("image_id"), []).append(ann)
        stats = dict(annotations=0, crowd=0, invalid_box=0, not_person=0, no_keypoints=0, zero_size=0)
        files, boxes, kps, vis, ann_ids = [], [], [], [], []
        for img in dataset["images"]:
            where_img = f"{src}: image {img.get('id')}"
            width, height = _field(img, "width", where_img), _field(img, "height", where_img)
            file_name = _field(img, "file_name", where_img)
            for ann in by_image.get(img["id"], []):
                stats["annotations"] += 1
                where = f"{src}: annotation {ann.get('id')} (image {img['id']}, {file_name})"
                if ann.get("iscrowd", 0):
                    stats["crowd"] += 1
                    continue
                bbox = _field(ann, "bbox", where)
                if len(bbox) != 4:
                    raise ValueError(f"CocoKeypoints: {where} has bbox {bbox!r}, expected [x, y, w, h]")
                x, y, bw, bh = (float(v) for v in bbox)
                # coco.py:161-172 (a NaN box fails every comparison there: dropped)
                if any(math.isnan(v) for v in (x, y, bw, bh)):
                    stats["invalid_box"] += 1
                    continue
                x1, y1 = max(0.0, x), max(0.0, y)
                x2, y2 = min(width - 1, x1 + max(0.0, bw - 1)), min(height - 1, y1 + max(0.0, bh - 1))
                if not (_field(ann, "area", where) > 0 and x2 >= x1 and y2 >= y1):
                    stats["invalid_box"] += 1
                    continue
                cat = _field(ann, "category_id", where)
                if cat not in known:
                    raise ValueError(f"CocoKeypoints: {where} has category_id {cat!r}, not in the file's categories")
                if cat != person:
                    stats["not_person"] += 1
                    continue
                kp = _field(ann, "keypoints", where)
                if len(kp) < 3 * k:
                    raise ValueError(f"CocoKeypoints: {where} has {len(kp)} keypoint values, expected {3 * k}")
                kp = np.asarray(kp[:3 * k], dtype=np.float64).reshape(k, 3)
                if np.isnan(kp).any():
                    j = int(np.nonzero(np.isnan(kp).any(1))[0][0])
                    raise ValueError(f"CocoKeypoints: {where} has a NaN keypoint (joint {j}: {kp[j].tolist()})")
                if max(_field(ann, "keypoints", where)) == 0:  # coco.py:181
                    stats["no_keypoints"] += 1
                    continue
                if x2 - x1 == 0 and y2 - y1 == 0:  # scale 0 in the official code: no crop can be made
                    stats["zero_size"] += 1
                    continue
                files.append(os.path.join(self.image_dir, file_name))
                boxes.append((x1, y1, x2 - x1, y2 - y1))
                kps.append(kp[:, :2])
                vis.append(np.minimum(kp[:, 2], 1))  # coco.py:190-194
                ann_ids.append(ann.get("id", -1))
        if not files:
            raise ValueError(f"CocoKeypoints: {src} has no person annotation with keypoints ({stats})")
        self.stats = stats
        center, scale = boxes_to_center_scale(np.asarray(boxes, dtype=np.float64), (self.image_size[1], self.image_size[0]))
        self.center, self.scale = center.numpy(), scale.numpy()
        self.keypoints = np.stack(kps).astype(np.float32)
        self.visible = np.stack(vis).astype(np.float32)
        self.image_files = np.array(files)  # one array, not N str objects: forked workers share its pages
        self.ann_ids = np.array(ann_ids, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.center.shape[0])

    def __getitem__(self, i: int) -> Dict:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"CocoKeypoints: index {i} out of range for {n} samples")
        i = int(i) % n
        path = str(self.image_files[i])
        return {"index": i, "image": read_image(path), "center": self.center[i].copy(), "scale": self.scale[i].copy(),
                "keypoints": self.keypoints[i].copy(), "visible": self.visible[i].copy(), "image_file": path}


def collate(samples: Sequence[Dict]) -> Dict:
    """A batch of :class:`CocoKeypoints` samples; those without an image (unreadable, truncated) are dropped and
    counted in ``skipped``. Returns ``images`` (list of M uint8 (H_i, W_i, 3) tensors, BGR), ``index`` int64 (M,),
    ``center`` and ``scale`` float32 (M, 2), ``keypoints`` float32 (M, K, 2), ``visible`` float32 (M, K),
    ``image_width`` int64 (M,) (the mirror axis of :func:`~hrnet_fast.training.augment`), ``image_file`` (list
    of M str) and ``skipped`` (int)."""
    if len(samples) == 0:
        raise ValueError("collate: samples is empty")
    k = int(np.asarray(samples[0]["keypoints"]).shape[0])
    kept = [s for s in samples if s["image"] is not None]
    m = len(kept)

    def stack(key: str, shape) -> torch.Tensor:
        if not kept:
            return torch.zeros((0, *shape), dtype=torch.float32)
        return torch.from_numpy(np.stack([np.asarray(s[key], dtype=np.float32) for s in kept]))

    return {
        "images": [torch.from_numpy(np.ascontiguousarray(s["image"])) for s in kept],
        "index": torch.tensor([int(s["index"]) for s in kept], dtype=torch.int64).reshape(m),
        "center": stack("center", (2,)),
        "scale": stack("scale", (2,)),
        "keypoints": stack("keypoints", (k, 2)),
        "visible": stack("visible", (k,)),
        "image_width": torch.tensor([int(s["image"].shape[1]) for s in kept], dtype=torch.int64).reshape(m),
        "image_file": [s["image_file"] for s in kept],
        "skipped": len(samples) - m,
    }
