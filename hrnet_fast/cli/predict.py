"""``hrnet-fast predict``: images (or a video) and person boxes to COCO keypoint results.

    hrnet-fast predict --config w32_256x192 [--weights W.pth] IMAGES_OR_DIR [--ann coco.json] [--boxes dets.json]
                       [--min-box-score 0.0] --out keypoints.json [--draw OUTDIR] [--no-flip] [--decode dark]
    hrnet-fast predict --config ... [--weights ...] --video in.mp4 [--boxes per_frame.json] --draw-video out.mp4
    torchrun --nproc_per_node N -m hrnet_fast predict ...     # images sharded over the ranks, rank 0 writes

Boxes, in this order: ``--boxes`` (COCO results format: ``image_id``, ``bbox`` [x, y, w, h], ``score``,
``category_id`` 1; keyed by the annotation file's image ids, or by file name without ``--ann``); else the
ground-truth person boxes of ``--ann``, cleaned as the official ``COCODataset`` does (clipped to the image,
``w - 1``, ``h - 1``, persons without keypoints and crowds skipped); else the whole image. Image ids are those
of ``--ann``, else the file names. Without ``--weights`` the network has random weights (a loud warning).

Safety: every argument and input file is checked before the model is built (a user error is one line, exit
2); no output may be an input (``--draw`` into the image folder, ``--draw-video`` onto ``--video``); every
output is written atomically (:mod:`hrnet_fast._atomic`); a person whose keypoints are not finite is not
written (JSON has no NaN); a run with no person to estimate is an error (exit 1) unless ``--allow-empty``.

Here: the arguments, the jobs of a run (:func:`image_jobs`) and the loop that feeds them to a
:class:`hrnet_fast.PoseEstimator` (:func:`predict_jobs`). The library parts: COCO files, boxes and results
in :mod:`hrnet_fast.coco`, drawing in :mod:`hrnet_fast.draw`, videos in :mod:`hrnet_fast.video`, torchrun in
:mod:`hrnet_fast._dist`. Libraries (the ``pipeline`` extra): OpenCV reads images and videos and draws; tqdm
shows the progress bar (a plain line per 10% without it); pycocotools evaluates (``hrnet-fast eval``).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .._console import ProgressBar, say
from .._dist import Dist
from ._common import (DTYPE_CHOICES, add_common_args, build_model, check_outputs, check_readable, check_writable, file_index, input_at,
                      positive_int, torch_dtype, validate_config_and_weights, write_output)

DESCRIPTION = ("Top-down pose estimation of images or a video: boxes from --boxes (detections), the "
               "ground truth of --ann, or the whole image; keypoints written in the COCO keypoint "
               "results format. Under torchrun the images are sharded over the ranks and rank 0 "
               "writes one merged file. Needs OpenCV (pip install 'hrnet_fast[pipeline]').")
PIPELINE_EXTRA = "pip install 'hrnet_fast[pipeline]'"

if TYPE_CHECKING:  # numpy and the library modules are imported when the command runs (`predict --help` stays light)
    import numpy as np


# ---------------------------------------------------------------------------------------------- arguments


def add_arguments(pr: argparse.ArgumentParser) -> None:
    pr.add_argument("inputs", nargs="*", metavar="IMAGES_OR_DIR", help="image files or directories (with --ann: the image directory)")
    pr.add_argument("--ann", default=None, help="COCO annotation file: image ids and file names (and person boxes without --boxes)")
    pr.add_argument("--draw", default=None, metavar="OUTDIR", help="write each image with its poses drawn to this directory")
    pr.add_argument("--video", default=None, help="a video file instead of images (read with OpenCV)")
    pr.add_argument("--draw-video", default=None, metavar="OUT.mp4", help="write the video with the poses drawn (mp4v)")
    pr.add_argument("--allow-empty", action="store_true",
                    help="no person to run (no box matches an image) is not an error: write an empty results file")
    add_model_and_run_args(pr, required=True)


def add_model_and_run_args(p: argparse.ArgumentParser, required: bool) -> None:
    """The model and running options of predict (required: --config) and eval (optional)."""
    add_common_args(p, model=True, required=required, config_default=None,
                    weights_help="official or mmpose checkpoint (.pth); see the README, 'Weights' (default: random "
                                 "weights, said so: the keypoints mean nothing)", device=True, dtype="auto",
                    dtypes=("auto",) + DTYPE_CHOICES, dtype_help="compute dtype (default: fp16 on CUDA, fp32 on the CPU)")
    p.add_argument("--boxes", default=None,
                   help="person detections in the COCO results format (image_id, bbox [x, y, w, h], score, category_id 1), "
                        "keyed by the --ann image ids (or the file names without --ann); for --video: per frame index")
    p.add_argument("--box-format", default="xywh", choices=("xywh", "xyxy"), help="how --boxes gives a box (default: xywh, COCO's)")
    p.add_argument("--min-box-score", type=float, default=0.0, help="drop detections scoring below this (default: 0.0)")
    p.add_argument("--out", default=None, help="write the keypoints here, COCO keypoint results format")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about twice as fast, slightly less accurate)")
    p.add_argument("--decode", default="quarter", choices=("quarter", "argmax", "dark", "udp"),
                   help="heatmap decoding (default: quarter, the official one)")
    p.add_argument("--max-batch", type=positive_int, default=64,
                   help="persons per forward; the flip test doubles the forward batch (default: 64)")
    p.add_argument("--oks-nms", type=float, default=None, help="apply the official OKS-NMS with this threshold (official: 0.9)")
    p.add_argument("--workers", type=positive_int, default=2, help="threads reading images (default: 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _need(parser: argparse.ArgumentParser, module: str, what: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        parser.error(f"{what} needs {package}, which is not installed: {PIPELINE_EXTRA} (or pip install {package})")


def _json_arg(parser: argparse.ArgumentParser, opt: str, path: str, what: str):
    from ..coco import read_json

    check_readable(parser, opt, path)
    try:
        return read_json(path, what)
    except ValueError as exc:
        parser.error(f"{opt} {exc}")


@contextlib.contextmanager
def _quiet_stderr():
    """FFmpeg (inside OpenCV) logs to the process's stderr ("moov atom not found") when a file is not a video:
    silence file descriptor 2 while probing, so a user error stays one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_video(parser: argparse.ArgumentParser, path: str) -> None:
    """--video must be a video OpenCV can read a frame of (checked now, not after the model is built)."""
    import cv2

    with _quiet_stderr():
        cap = cv2.VideoCapture(path)
        try:
            ok = cap.isOpened() and cap.read()[0]
        finally:
            cap.release()
    if not ok:
        parser.error(f"--video {path}: OpenCV cannot read a frame of it (not a video, or a codec this OpenCV build lacks)")


def _check_outputs(parser: argparse.ArgumentParser, args) -> None:
    """No output path may be an input file: --out, --draw-video and each drawing of --draw against the images,
    --ann, --boxes, --video, --weights and --config (resolved paths, links included)."""
    config_file = args.config if args.config and os.path.isfile(args.config) else None
    inputs = file_index([("IMAGES_OR_DIR", j.path) for j in args.jobs]
                        + [("--ann", args.ann), ("--boxes", args.boxes), ("--video", args.video),
                           ("--weights", args.weights), ("--config", config_file)])
    check_outputs(parser, [("--out", args.out), ("--draw-video", args.draw_video)], inputs)
    if args.draw:
        for job in args.jobs:
            path = os.path.join(args.draw, os.path.basename(job.path))
            hit = input_at(path, inputs)
            if hit is not None:
                parser.error(f"--draw {args.draw}: its drawing {path} would replace the input {hit[0]} {hit[1]}: "
                             f"choose another folder for the drawings")


def validate(parser: argparse.ArgumentParser, args) -> None:
    """Every argument of ``predict`` checked before any work (usage + one-line error, exit 2); sets ``args.cfg``,
    ``args.jobs``/``args.notes`` (images) or ``args.frame_boxes`` (video), ``args.dist`` and ``args.device_obj``."""
    from ..coco import IMAGE_EXTENSIONS, check_annotations, detection_boxes, video_boxes

    _need(parser, "cv2", "predict", "opencv-python-headless")
    validate_config_and_weights(parser, args)  # --config required, --weights optional: both checked
    inputs = list(args.inputs or [])
    if args.video and inputs:
        parser.error("give images (IMAGES_OR_DIR) or --video, not both")
    if not args.video and not inputs:
        parser.error("nothing to do: give IMAGES_OR_DIR or --video")
    if args.draw_video and not args.video:
        parser.error("--draw-video needs --video")
    if args.oks_nms is not None and not 0 < args.oks_nms <= 1:
        parser.error(f"--oks-nms {args.oks_nms}: expected a threshold in (0, 1] (official: 0.9)")
    if not math.isfinite(args.min_box_score):
        parser.error(f"--min-box-score {args.min_box_score}: expected a finite number")
    for p in inputs:
        if not os.path.exists(p):
            parser.error(f"{p}: no such file or directory")
    ann = _json_arg(parser, "--ann", args.ann, "COCO annotation file") if args.ann else None
    if ann is not None:
        try:
            check_annotations(ann, f"--ann {args.ann}")
        except ValueError as exc:
            parser.error(str(exc))
    if args.video:
        check_readable(parser, "--video", args.video)
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
        if not args.out and not getattr(args, "out_optional", False):
            parser.error("--out keypoints.json is required for images")
        dets = None
        if args.boxes:
            doc = _json_arg(parser, "--boxes", args.boxes, "detection file")
            try:
                dets = detection_boxes(doc, args.min_box_score, f"--boxes {args.boxes}", args.box_format)
            except ValueError as exc:
                parser.error(str(exc))
        if ann is not None and len(inputs) == 1 and not os.path.isdir(inputs[0]) and not inputs[0].lower().endswith(IMAGE_EXTENSIONS):
            parser.error(f"{inputs[0]}: with --ann, give the image directory (or image files)")
        try:
            args.jobs, args.notes = image_jobs(inputs, ann, dets)
        except ValueError as exc:
            parser.error(str(exc))
        if not args.jobs:
            parser.error("no images to process")
    _check_outputs(parser, args)
    if args.video:
        _check_video(parser, args.video)
    args.dist = Dist.from_env()
    if args.out and args.dist.rank == 0:  # only rank 0 writes (and two ranks probing one path would race)
        check_writable(parser, "--out", args.out)
    if args.draw_video:
        check_writable(parser, "--draw-video", args.draw_video)
    if args.draw:
        try:
            os.makedirs(args.draw, exist_ok=True)
        except OSError as exc:
            parser.error(f"--draw {args.draw}: cannot create the directory ({exc.strerror})")
        if not os.access(args.draw, os.W_OK):
            parser.error(f"--draw {args.draw}: not writable")
    if args.dist.world > 1 and args.video:
        parser.error("--video runs in one process; torchrun shards images only")
    try:  # cuda:LOCAL_RANK under torchrun with GPUs, else --device checked to exist here
        args.device_obj = args.dist.device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(f"--device {args.device}: {exc}")


def no_person_problem(args) -> Optional[str]:
    """Why this run has no person to estimate (every image without a box, every frame of --video without one),
    or None. Checked before the model is built: an empty results file is an error unless --allow-empty."""
    if args.video:
        if args.frame_boxes is None or any(len(b) for b in args.frame_boxes.values()):
            return None
        return f"--boxes {args.boxes} has no box for any frame of --video {args.video}"
    if any(j.boxes is None or len(j.boxes) for j in args.jobs):
        return None
    source = f"--boxes {args.boxes}" if args.boxes else f"the ground truth of --ann {args.ann}"
    why = f" ({'; '.join(args.notes)})" if args.notes else ""
    return f"{source} has no person box for any of the {len(args.jobs)} image(s){why}"


# ---------------------------------------------------------------------------------------------- the jobs of a run


@dataclass
class Job:
    """One image to process: its place in the output, its id in the results, its file and its boxes
    ((M, 5) x, y, w, h, score; None = the whole image)."""

    index: int
    image_id: Any
    path: str
    boxes: Optional[np.ndarray]


def image_jobs(inputs: Sequence[str], ann: Optional[Dict[str, Any]], dets: Optional[Dict[Any, np.ndarray]]
               ) -> Tuple[List[Job], List[str]]:
    """The jobs of a run and the notes worth printing (unmatched detections). Raises ValueError."""
    import numpy as np

    from ..coco import IMAGE_EXTENSIONS, find_images, gt_person_boxes

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


#: the progress bar advances at least this many times in a run: calls are made smaller when there are few persons
PROGRESS_STEPS = 10


def call_size(jobs: Sequence[Job], max_batch: int) -> int:
    """Persons per estimator call: ``max_batch``, but at most a tenth of the run's persons (one at least), so that
    the bar advances in steps even when every person would fit one call (on a CPU one call of 64 persons takes
    many seconds; on a GPU small calls cost little and large runs use full ``max_batch`` calls)."""
    persons = sum(1 if j.boxes is None else len(j.boxes) for j in jobs)
    return max(1, min(max_batch, math.ceil(persons / PROGRESS_STEPS)))


def predict_jobs(estimator, jobs: Sequence[Job], draw_dir: Optional[str] = None, progress: bool = True,
                 workers: int = 2, desc: str = "predict") -> Tuple[List[Tuple[int, List[Dict[str, Any]]]], str]:
    """Run ``estimator`` over ``jobs``: ``([(job.index, COCO results of the image)], summary line)``.

    Images are read by ``workers`` threads (OpenCV releases the GIL) a few calls ahead of the estimator, in
    calls of :func:`call_size` persons (the bar advances per call); an unreadable file is reported and skipped
    (counted apart in the summary), a person whose keypoints are not finite is not written (counted, with
    why). With ``draw_dir`` each image is written there with its poses (atomically).
    """
    from ..coco import read_image, to_coco

    groups = _groups(jobs, call_size(jobs, estimator.max_batch))
    bar = ProgressBar(len(jobs), progress, desc)
    out: List[Tuple[int, List[Dict[str, Any]]]] = []
    dropped = 0
    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        it = iter(groups)

        def submit():
            g = next(it, None)
            if g is not None:
                pending.append((g, [pool.submit(read_image, j.path) for j in g]))

        for _ in range(3):
            submit()
        while pending:
            group, futures = pending.popleft()
            submit()
            images, kept = [], []
            for job, fut in zip(group, futures):
                img = fut.result()
                if img is None:
                    say(f"warning: cannot read {job.path} as an image: skipped")
                    continue
                images.append(img)
                kept.append(job)
            if images:
                results = estimator(images, [j.boxes for j in kept])
                for job, img, res in zip(kept, images, results):
                    res = res.numpy()
                    rows = to_coco(job.image_id, res)
                    dropped += len(res) - len(rows)
                    out.append((job.index, rows))
                    if draw_dir:
                        _write_drawing(draw_dir, job, img, res, estimator.box_format)
            bar.update(len(kept), sum(1 if j.boxes is None else len(j.boxes) for j in kept), skipped=len(group) - len(kept))
    bar.close()
    return out, bar.summary() + dropped_note(dropped)


def dropped_note(dropped: int) -> str:
    """The summary's note on persons not written because a keypoint or the score is NaN/inf."""
    if not dropped:
        return ""
    return (f"; {dropped} person(s) not written: their keypoints or score are not finite (NaN/inf in the model's "
            f"output: broken weights, or an fp16 overflow: try --dtype fp32)")


def _write_drawing(draw_dir: str, job: Job, img, res, box_format: str) -> None:
    import cv2
    import numpy as np

    from .._atomic import write_bytes
    from ..draw import draw_pose

    boxes = np.asarray(res.boxes, dtype=np.float64)
    if box_format == "xyxy":
        boxes = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], 1)
    os.makedirs(draw_dir, exist_ok=True)
    path = os.path.join(draw_dir, os.path.basename(job.path))
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", draw_pose(img, res.keypoints, boxes))
    if not ok:
        say(f"warning: could not encode {path}")
        return
    try:  # atomically: a failed write never leaves a truncated image (nor replaces a previous drawing with one)
        write_bytes(path, encoded.tobytes(), fsync=False)
    except OSError as exc:
        say(f"warning: could not write {path} ({exc.strerror or exc})")


def _estimator(args):
    """The estimator of the run: the network built (or --weights loaded: a bad file is exit 2) and optimized,
    with the build shown (it takes seconds: ~12 s for W32 on a CPU)."""
    from ..estimator import PoseEstimator

    source = args.weights or "random weights"
    say(f"building {args.config} ({source}) on {args.device_obj}")
    t0 = time.perf_counter()
    model, _ = build_model(args, doing="predicting with", meaning="the keypoints mean nothing")
    dtype = None if args.dtype == "auto" else torch_dtype(args.dtype)
    est = PoseEstimator(model, device=args.device_obj, dtype=dtype, flip_test=not args.no_flip, decode=args.decode,
                        max_batch=args.max_batch, color="bgr", box_format="xywh", oks_nms=args.oks_nms)
    say(f"model ready in {time.perf_counter() - t0:.1f} s")
    return est


def run_predict(args) -> Optional[List[Dict[str, Any]]]:
    """The predict command's work; returns the merged results on rank 0 (None elsewhere). A video that fails
    while it is read raises :class:`hrnet_fast.video.VideoError` (no partial --draw-video is left)."""
    from ..video import predict_video

    dist = args.dist
    dist.init(args.device_obj)
    try:
        if dist.world > 1 and args.device_obj.type == "cpu":
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world))))
        estimator = _estimator(args)
        if dist.rank == 0:
            for note in args.notes:
                say(f"note: {note}")
        if args.video:
            results, summary = predict_video(estimator, args.video, args.frame_boxes, args.draw_video,
                                             progress=not args.no_progress)
            say(summary)
            return results
        mine = args.jobs[dist.rank::dist.world]
        desc = "predict" if dist.world == 1 else f"predict (rank 0 of {dist.world})"
        out, summary = predict_jobs(estimator, mine, draw_dir=args.draw, progress=not args.no_progress and dist.rank == 0,
                                    workers=args.workers, desc=desc)
        if dist.rank == 0:
            say(summary + ("" if dist.world == 1 else f" on rank 0; {dist.world} ranks"))
        merged = dist.gather(out)
        if merged is None:
            return None
        merged.sort(key=lambda item: item[0])
        return [r for _, rs in merged for r in rs]
    finally:
        dist.close()


def refuse_empty(args, command: str) -> bool:
    """Print why and return True when the run has no person to estimate (exit 1) and --allow-empty is not given."""
    problem = no_person_problem(args)
    if problem is None or getattr(args, "allow_empty", False):
        return False
    print(f"hrnet-fast {command}: no person found to run: {problem}"
          + (" (give --allow-empty to write an empty results file)" if command == "predict" else ""), file=sys.stderr)
    return True


def run(args) -> int:
    """Predict; rank 0 writes --out (atomically, never a NaN). Exit 1 when there is no person to run (unless
    --allow-empty) or the video cannot be read to the end."""
    from ..video import VideoError

    if refuse_empty(args, "predict"):
        return 1
    try:
        results = run_predict(args)
    except VideoError as exc:  # the video failed while it was read (checked readable before): no partial output
        print(f"hrnet-fast predict: {exc}", file=sys.stderr)
        return 1
    if results is not None and args.out:
        if not write_output("predict", "--out", args.out, results, allow_nan=False):  # to_coco wrote no NaN
            return 1
        print(f"wrote {len(results)} person results to {args.out}")
    return 0
