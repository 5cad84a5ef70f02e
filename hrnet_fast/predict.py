"""``hrnet-fast predict`` and ``hrnet-fast eval``: images (or a video) and person boxes to COCO keypoint results,
and their COCO evaluation.

    hrnet-fast predict --config w32_256x192 --weights W.pth IMAGES_OR_DIR [--ann coco.json] [--boxes dets.json]
                       [--min-box-score 0.0] --out keypoints.json [--draw OUTDIR] [--no-flip] [--decode dark]
    hrnet-fast predict --config ... --weights ... --video in.mp4 [--boxes per_frame.json] --draw-video out.mp4
    hrnet-fast eval --ann person_keypoints.json --results keypoints.json
    hrnet-fast eval --config ... --weights ... --ann ... --images DIR [--boxes dets.json]
    torchrun --nproc_per_node N -m hrnet_fast predict ...     # images sharded over the ranks, rank 0 writes

Boxes, in this order: ``--boxes`` (COCO results format: ``image_id``, ``bbox`` [x, y, w, h], ``score``,
``category_id`` 1; keyed by the annotation file's image ids, or by file name without ``--ann``); else the
ground-truth person boxes of ``--ann``, cleaned as the official ``COCODataset`` does (clipped to the image,
``w - 1``, ``h - 1``, persons without keypoints and crowds skipped); else the whole image. Image ids are those
of ``--ann``, else the file names.

Libraries (the ``pipeline`` extra): OpenCV reads images and videos and draws; tqdm shows the progress bar
(a plain line per 10% without it); pycocotools evaluates. The command line parses its arguments without
importing torch; this module is imported once a command runs.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: COCO person skeleton, 0-based joint indices (the annotation file's ``skeleton`` minus one).
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
                 (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
#: pycocotools' keypoint stats, in its order, with the names the official code prints.
STAT_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
PIPELINE_EXTRA = "pip install 'hrnet_fast[pipeline]'"
DRAW_SCORE = 0.2  # keypoints drawn above this score (the official IN_VIS_THRE)


def _progress(msg: str) -> None:
    print(f"[hrnet-fast] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- inputs
@dataclass
class Job:
    """One image to process: its place in the output, its id in the results, its file and its boxes
    ((M, 5) x, y, w, h, score; None = the whole image)."""

    index: int
    image_id: Any
    path: str
    boxes: Optional[np.ndarray]


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
    try:
        with open(path) as fh:
            return json.load(fh)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON {what} ({exc})") from None


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


def image_jobs(inputs: Sequence[str], ann: Optional[Dict[str, Any]], dets: Optional[Dict[Any, np.ndarray]]
               ) -> Tuple[List[Job], List[str]]:
    """The jobs of a run and the notes worth printing (unmatched detections). Raises ValueError."""
    notes = []
    if ann is not None:
        if not isinstance(ann, dict) or not isinstance(ann.get("images"), list):
            raise ValueError("--ann: not a COCO annotation file (no 'images' list)")
        by_name = {os.path.basename(im["file_name"]): im for im in ann["images"]}
        if len(inputs) == 1 and os.path.isdir(inputs[0]):
            pairs = [(im, os.path.join(inputs[0], im["file_name"])) for im in ann["images"]]
        else:
            pairs = []
            for p in find_images(inputs):
                im = by_name.get(os.path.basename(p))
                if im is None:
                    raise ValueError(f"{p}: not an image of --ann (its file names are like {next(iter(by_name), '?')!r})")
                pairs.append((im, p))
        missing = [p for _, p in pairs if not os.path.isfile(p)]
        if missing:
            raise ValueError(f"{len(missing)} image(s) of --ann not found, e.g. {missing[0]}")
        boxes = dets if dets is not None else gt_person_boxes(ann)
        jobs = [Job(i, im["id"], p, boxes.get(im["id"], np.zeros((0, 5)))) for i, (im, p) in enumerate(pairs)]
        if dets is not None:
            unknown = set(dets) - {im["id"] for im, _ in pairs}
            if unknown:
                notes.append(f"{len(unknown)} image id(s) of --boxes are not among the images processed (e.g. {next(iter(unknown))!r})")
        return jobs, notes
    paths = find_images(inputs)
    if not paths:
        raise ValueError(f"no image files in {', '.join(inputs)} (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"{missing[0]}: no such file")
    names = [os.path.basename(p) for p in paths]
    dup = [n for n, c in collections.Counter(names).items() if c > 1]
    if dup:
        raise ValueError(f"image ids are the file names without --ann, and {dup[0]!r} appears twice")
    jobs = []
    used = set()
    for i, (p, name) in enumerate(zip(paths, names)):
        boxes = None
        if dets is not None:
            key = next((k for k in (name, os.path.splitext(name)[0], p) if k in dets), None)
            boxes = dets[key] if key is not None else np.zeros((0, 5))
            used.add(key)
        jobs.append(Job(i, name, p, boxes))
    if dets is not None:
        unknown = set(dets) - used
        if unknown:
            notes.append(f"{len(unknown)} image id(s) of --boxes match no image file (e.g. {next(iter(unknown))!r}); "
                         f"without --ann they are file names")
    return jobs, notes


# ---------------------------------------------------------------------------------------------- running
def to_coco(image_id, result, category_id: int = 1) -> List[Dict[str, Any]]:
    """One image's :class:`PoseResult` (numpy) in the COCO keypoint results format."""
    kp = np.asarray(result.keypoints, dtype=np.float64)
    sc = np.asarray(result.scores, dtype=np.float64)
    return [{"image_id": image_id, "category_id": category_id, "keypoints": [float(v) for v in kp[i].reshape(-1)],
             "score": float(sc[i])} for i in range(kp.shape[0])]


def draw_pose(image: np.ndarray, keypoints: np.ndarray, boxes_xywh: Optional[np.ndarray] = None,
              min_score: float = DRAW_SCORE, skeleton=COCO_SKELETON) -> np.ndarray:
    """A copy of the BGR image with each person's box, keypoints above ``min_score`` and skeleton drawn."""
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


def _read_image(path: str):
    import cv2

    # as the official COCODataset reads them (BGR, EXIF orientation ignored)
    return cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)


def _groups(jobs: Sequence[Job], max_persons: int) -> List[List[Job]]:
    """Consecutive jobs whose persons fill one estimator call (at most ``max_persons``, one image at least)."""
    groups: List[List[Job]] = []
    cur: List[Job] = []
    n = 0
    for job in jobs:
        m = 1 if job.boxes is None else len(job.boxes)
        if cur and (n + m > max_persons or len(cur) >= max_persons):
            groups.append(cur)
            cur, n = [], 0
        cur.append(job)
        n += m
    if cur:
        groups.append(cur)
    return groups


class _Progress:
    """tqdm when installed (images/s and persons/s), else a line every 10%."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.images = self.persons = 0
        self.start = time.perf_counter()
        self.bar = None
        self._next_line = 0.1
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="img", desc=desc, file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, images: int, persons: int) -> None:
        self.images += images
        self.persons += persons
        if not self.enabled:
            return
        dt = max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.persons / dt:.1f} persons/s", refresh=False)
            self.bar.update(images)
        elif self.total and self.images >= self._next_line * self.total:
            self._next_line = (int(10 * self.images / self.total) + 1) / 10
            _progress(f"{self.desc}: {self.images}/{self.total} images, {self.images / dt:.1f} images/s, "
                      f"{self.persons / dt:.1f} persons/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def summary(self) -> str:
        dt = max(time.perf_counter() - self.start, 1e-9)
        return (f"{self.images} images, {self.persons} persons in {dt:.1f} s ({self.images / dt:.1f} images/s, "
                f"{self.persons / dt:.1f} persons/s)")


def predict_jobs(estimator, jobs: Sequence[Job], draw_dir: Optional[str] = None, progress: bool = True,
                 workers: int = 2, desc: str = "predict") -> Tuple[List[Tuple[int, List[Dict[str, Any]]]], str]:
    """Run ``estimator`` over ``jobs``: ``([(job.index, COCO results of the image)], summary line)``.

    Images are read by ``workers`` threads (OpenCV releases the GIL) a few calls ahead of the estimator;
    an unreadable file is reported and skipped. With ``draw_dir`` each image is written there with its poses.
    """
    groups = _groups(jobs, estimator.max_batch)
    bar = _Progress(len(jobs), progress, desc)
    out: List[Tuple[int, List[Dict[str, Any]]]] = []
    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        it = iter(groups)

        def submit():
            g = next(it, None)
            if g is not None:
                pending.append((g, [pool.submit(_read_image, j.path) for j in g]))

        for _ in range(3):
            submit()
        while pending:
            group, futures = pending.popleft()
            submit()
            images, kept = [], []
            for job, fut in zip(group, futures):
                img = fut.result()
                if img is None:
                    _progress(f"warning: cannot read {job.path} as an image: skipped")
                    continue
                images.append(img)
                kept.append(job)
            if images:
                results = estimator(images, [j.boxes for j in kept])
                for job, img, res in zip(kept, images, results):
                    res = res.numpy()
                    out.append((job.index, to_coco(job.image_id, res)))
                    if draw_dir:
                        _write_drawing(draw_dir, job, img, res, estimator.box_format)
            bar.update(len(group), sum(1 if j.boxes is None else len(j.boxes) for j in kept))
    bar.close()
    return out, bar.summary()


def _write_drawing(draw_dir: str, job: Job, img, res, box_format: str) -> None:
    import cv2

    boxes = np.asarray(res.boxes, dtype=np.float64)
    if box_format == "xyxy":
        boxes = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], 1)
    os.makedirs(draw_dir, exist_ok=True)
    path = os.path.join(draw_dir, os.path.basename(job.path))
    if not cv2.imwrite(path, draw_pose(img, res.keypoints, boxes)):
        _progress(f"warning: could not write {path}")


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
    bar = _Progress(total, progress, "video")
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


# ---------------------------------------------------------------------------------------------- evaluation
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


# ---------------------------------------------------------------------------------------------- distribution
@dataclass
class Dist:
    """Where this process stands under ``torchrun`` (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, requested: str):
        """The device of this rank: ``cuda:LOCAL_RANK`` for auto/cuda under torchrun with GPUs."""
        import torch

        if self.world > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        if requested == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(requested)

    def init(self, device) -> None:
        if self.world <= 1:
            return
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def gather(self, items: list) -> Optional[list]:
        """Every rank's ``items`` on rank 0 (one list, concatenated), None elsewhere."""
        if self.world <= 1:
            return items
        import torch.distributed as dist

        parts = [None] * self.world if self.rank == 0 else None
        dist.gather_object(items, parts, dst=0)
        return [x for p in parts for x in p] if self.rank == 0 else None

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- commands
def _need(parser: argparse.ArgumentParser, module: str, what: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        parser.error(f"{what} needs {package}, which is not installed: {PIPELINE_EXTRA} (or pip install {package})")


def _readable(parser: argparse.ArgumentParser, opt: str, path: str) -> None:
    if not os.path.isfile(path):
        parser.error(f"{opt} {path}: no such file")
    if not os.access(path, os.R_OK):
        parser.error(f"{opt} {path}: not readable")


def _json_arg(parser: argparse.ArgumentParser, opt: str, path: str, what: str):
    _readable(parser, opt, path)
    try:
        return read_json(path, what)
    except ValueError as exc:
        parser.error(f"{opt} {exc}")


def validate_predict(parser: argparse.ArgumentParser, args) -> None:
    """Every argument of ``predict`` checked before any work (usage + one-line error, exit 2)."""
    from .cli import _check_writable
    from .config import ConfigError, resolve_config

    _need(parser, "cv2", "predict", "opencv-python-headless")
    try:
        args.cfg = resolve_config(args.config)
    except (ConfigError, TypeError) as exc:
        parser.error(f"--config {args.config}: {str(exc).removeprefix('config: ')}")
    _readable(parser, "--weights", args.weights)
    inputs = list(args.inputs or [])
    if args.video and inputs:
        parser.error("give images (IMAGES_OR_DIR) or --video, not both")
    if not args.video and not inputs:
        parser.error("nothing to do: give IMAGES_OR_DIR or --video")
    if args.draw_video and not args.video:
        parser.error("--draw-video needs --video")
    if args.oks_nms is not None and not 0 < args.oks_nms <= 1:
        parser.error(f"--oks-nms {args.oks_nms}: expected a threshold in (0, 1] (official: 0.9)")
    for p in inputs:
        if not os.path.exists(p):
            parser.error(f"{p}: no such file or directory")
    ann = _json_arg(parser, "--ann", args.ann, "COCO annotation file") if args.ann else None
    if args.video:
        _readable(parser, "--video", args.video)
        if args.ann:
            parser.error("--ann applies to images, not to --video")
        if not (args.draw_video or args.out):
            parser.error("--video needs --draw-video OUT.mp4 and/or --out keypoints.json")
        doc = _json_arg(parser, "--boxes", args.boxes, "per-frame box file") if args.boxes else None
        try:
            args.frame_boxes = video_boxes(doc, args.box_format, f"--boxes {args.boxes}") if doc is not None else None
        except ValueError as exc:
            parser.error(str(exc))
        args.jobs, args.notes = [], []
    else:
        if not args.out:
            parser.error("--out keypoints.json is required for images")
        dets = None
        if args.boxes:
            doc = _json_arg(parser, "--boxes", args.boxes, "detection file")
            try:
                dets = detection_boxes(doc, args.min_box_score, f"--boxes {args.boxes}")
            except ValueError as exc:
                parser.error(str(exc))
            if args.box_format == "xyxy":
                for a in dets.values():
                    a[:, 2:4] -= a[:, 0:2]
        if ann is not None and len(inputs) == 1 and not os.path.isdir(inputs[0]) and not inputs[0].lower().endswith(IMAGE_EXTENSIONS):
            parser.error(f"{inputs[0]}: with --ann, give the image directory (or image files)")
        try:
            args.jobs, args.notes = image_jobs(inputs, ann, dets)
        except ValueError as exc:
            parser.error(str(exc))
        if not args.jobs:
            parser.error("no images to process")
    args.dist = Dist.from_env()
    if args.out and args.dist.rank == 0:  # only rank 0 writes (and two ranks probing one path would race)
        _check_writable(parser, "--out", args.out)
    if args.draw_video:
        _check_writable(parser, "--draw-video", args.draw_video)
    if args.draw:
        try:
            os.makedirs(args.draw, exist_ok=True)
        except OSError as exc:
            parser.error(f"--draw {args.draw}: cannot create the directory ({exc.strerror})")
        if not os.access(args.draw, os.W_OK):
            parser.error(f"--draw {args.draw}: not writable")
    if args.dist.world > 1 and args.video:
        parser.error("--video runs in one process; torchrun shards images only")
    if args.dist.world == 1:
        from .cli import _resolve_device

        args.device_obj = _resolve_device(parser, args.device)
    else:
        args.device_obj = args.dist.device(args.device)


def _estimator(args):
    import torch

    from .cli import DTYPE_NAMES
    from .estimator import PoseEstimator

    dtype = None if args.dtype == "auto" else getattr(torch, DTYPE_NAMES[args.dtype])
    return PoseEstimator(args.cfg, weights=args.weights, device=args.device_obj, dtype=dtype, flip_test=not args.no_flip,
                         decode=args.decode, max_batch=args.max_batch, color="bgr", box_format="xywh", oks_nms=args.oks_nms)


def run_predict(args) -> Optional[List[Dict[str, Any]]]:
    """The predict command's work; returns the merged results on rank 0 (None elsewhere)."""
    dist = args.dist
    dist.init(args.device_obj)
    try:
        if dist.world > 1 and args.device_obj.type == "cpu":
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))))
        estimator = _estimator(args)
        if dist.rank == 0:
            for note in args.notes:
                _progress(f"note: {note}")
        if args.video:
            results, summary = predict_video(estimator, args.video, args.frame_boxes, args.draw_video,
                                             progress=not args.no_progress)
            _progress(summary)
            return results
        mine = args.jobs[dist.rank::dist.world]
        desc = "predict" if dist.world == 1 else f"predict (rank 0 of {dist.world})"
        out, summary = predict_jobs(estimator, mine, draw_dir=args.draw, progress=not args.no_progress and dist.rank == 0,
                                    workers=args.workers, desc=desc)
        if dist.rank == 0:
            _progress(summary + ("" if dist.world == 1 else f" on rank 0; {dist.world} ranks"))
        merged = dist.gather(out)
        if merged is None:
            return None
        merged.sort(key=lambda item: item[0])
        return [r for _, rs in merged for r in rs]
    finally:
        dist.close()


def cmd_predict(args) -> int:
    results = run_predict(args)
    if results is not None and args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh)
        print(f"wrote {len(results)} person results to {args.out}")
    return 0


def validate_eval(parser: argparse.ArgumentParser, args) -> None:
    _need(parser, "pycocotools", "eval", "pycocotools")
    _readable(parser, "--ann", args.ann)
    if args.results and args.config:
        parser.error("give --results (evaluate a file) or --config/--weights/--images (predict, then evaluate), not both")
    if args.results:
        _readable(parser, "--results", args.results)
        return
    if not args.config:
        parser.error("give --results keypoints.json, or --config, --weights and --images to predict first")
    if not args.weights:
        parser.error("--config needs --weights")
    if not args.images:
        parser.error("--config needs --images DIR (the images of --ann)")
    args.inputs, args.video, args.draw_video, args.box_format = [args.images], None, None, "xywh"
    if not args.out:
        import tempfile

        fd, args.out = tempfile.mkstemp(prefix="hrnet_fast_keypoints_", suffix=".json")
        os.close(fd)
        args.out_is_temp = True
    validate_predict(parser, args)


def cmd_eval(args) -> int:
    if args.results:
        results = args.results
    else:
        results = run_predict(args)
        if results is None:  # a rank other than 0 under torchrun
            return 0
        if not getattr(args, "out_is_temp", False):
            with open(args.out, "w") as fh:
                json.dump(results, fh)
            print(f"wrote {len(results)} person results to {args.out}")
    try:
        stats = evaluate(args.ann, results)
    except ValueError as exc:
        print(f"hrnet-fast eval: {exc}", file=sys.stderr)
        return 1
    finally:
        if getattr(args, "out_is_temp", False) and os.path.exists(args.out):
            os.remove(args.out)
    print(format_stats(stats))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"ann": args.ann, "stats": stats}, fh, indent=2)
    return 0
