"""``hrnet-fast train``: the official recipe (:func:`hrnet_fast.training.fit`) from the command line, in one process or
under ``torchrun`` (one process per GPU, DistributedDataParallel).

    hrnet-fast train --config w32_256x192 --data data/coco --out runs/w32 --amp bf16 --channels-last \\
        --pretrained hrnet_w32-36af842e.pth
    torchrun --nproc_per_node 4 -m hrnet_fast train --config w32_256x192 --data data/coco --out runs/w32 --batch 32
    hrnet-fast train --config exp.yaml --train-ann A.json --train-images DIR [--val-ann V.json --val-images DIR] --out RUN

Every path is checked before any work (a missing one is a usage error: one line, exit 2), and so are the flags
that cannot work here (--sync-bn or --amp fp16 without CUDA, --resume PATH that is no file).
"""
from __future__ import annotations

import argparse
import os
import sys

from ._common import device_arg, positive_int, resolve_device_arg

DESCRIPTION = ("Train an HRNet with the official recipe (augmentation, Gaussian targets, JointsMSELoss, Adam, "
               "MultiStepLR, validation AP) into a run directory in the official layout (checkpoint.pth, "
               "model_best.pth, final_state.pth) plus log.jsonl. Decoding runs in DataLoader workers, everything "
               "else on the device; under torchrun each process trains on its share of every batch. "
               "Needs OpenCV, and pycocotools for validation (pip install 'hrnet_fast[pipeline]').")

AMP_CHOICES = ("off", "bf16", "fp16")


def _lr_steps(text: str):
    """``type=`` of --lr-steps: comma-separated 0-based epochs (empty: no decay)."""
    try:
        steps = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        steps = None
    if steps is None or any(v < 0 for v in steps):
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs such as 170,200, got {text!r}")
    return steps


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="config name (its official experiment: w32_256x192, w32_384x288, w48_256x192, w48_384x288) or an "
                        "official experiment YAML (merged over the official defaults)")
    data = p.add_argument_group("data (give --data, or --train-ann with --train-images)")
    data.add_argument("--data", metavar="COCO_ROOT", default=None,
                      help="a COCO folder in the official layout: annotations/person_keypoints_{train,val}2017.json and "
                           "images/{train,val}2017/ (train2017/ and val2017/ directly under COCO_ROOT work too)")
    data.add_argument("--train-ann", default=None, help="COCO person keypoint annotation file to train on")
    data.add_argument("--train-images", metavar="DIR", default=None, help="the image folder of --train-ann")
    data.add_argument("--val-ann", default=None, help="annotation file to validate on (AP with the ground-truth boxes)")
    data.add_argument("--val-images", metavar="DIR", default=None, help="the image folder of --val-ann")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory: checkpoint.pth, model_best.pth, final_state.pth, log.jsonl (created)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs in all (default: the config's TRAIN.END_EPOCH, 210)")
    p.add_argument("--batch", type=positive_int, default=None,
                   help="samples per step and process (default: the config's TRAIN.BATCH_SIZE_PER_GPU, 32)")
    p.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate (default: the config's TRAIN.LR, 1e-3)")
    p.add_argument("--lr-steps", type=_lr_steps, default=None, metavar="E1,E2",
                   help="0-based epochs from which the lr is multiplied by TRAIN.LR_FACTOR (default: the config's "
                        "TRAIN.LR_STEP, 170,200)")
    p.add_argument("--workers", type=_non_negative, default=None,
                   help="DataLoader workers per process, which only decode images (default: the CPUs / processes, at most 8)")
    p.add_argument("--amp", choices=AMP_CHOICES, default="off",
                   help="mixed precision: bf16, or fp16 with a gradient scaler (CUDA only); default off (fp32)")
    p.add_argument("--channels-last", action="store_true", help="channels_last weights and crops (faster convolutions)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across the torchrun processes (CUDA only)")
    p.add_argument("--val-every", type=_non_negative, default=1, metavar="N",
                   help="validate every N epochs (0: never; default 1, as the official code)")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help="ImageNet weights for MODEL.EXTRA.PRETRAINED_LAYERS (e.g. hrnet_w32-36af842e.pth), loaded after "
                        "the official init")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="continue a run: auto = RUN_DIR/checkpoint.pth if it exists, or a checkpoint path (also an "
                        "official train.py checkpoint)")
    p.add_argument("--seed", type=_non_negative, default=0, help="seed of the init, the data order and the augmentation (default 0)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps in all (a checkpoint is written there)")
    p.add_argument("--device", default="auto", type=device_arg,
                   help="auto, cpu, cuda or cuda:N (default: auto; under torchrun each process takes cuda:LOCAL_RANK)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def coco_layout(root: str):
    """``(train_ann, train_images, val_ann, val_images)`` of a COCO folder in the official layout (``coco.py:112-120,
    231-244``: ``annotations/person_keypoints_<set>.json``, ``images/<set>/``), or with the image folders directly
    under ``root`` (as the COCO downloads unpack)."""
    out = []
    for subset in ("train2017", "val2017"):
        ann = os.path.join(root, "annotations", f"person_keypoints_{subset}.json")
        images = os.path.join(root, "images", subset)
        if not os.path.isdir(images) and os.path.isdir(os.path.join(root, subset)):
            images = os.path.join(root, subset)
        out += [ann, images]
    return tuple(out)


def validate(parser: argparse.ArgumentParser, args) -> None:
    """The data (--data xor --train-ann/--train-images), every path, the config, and the flags this machine
    cannot run; sets ``args.exp`` (the experiment) and ``args.train_ann``... from --data."""
    from .predict import _need

    given = args.train_ann is not None or args.train_images is not None
    if args.data is not None and given:
        parser.error("give --data COCO_ROOT or --train-ann with --train-images, not both")
    if args.data is None and not given:
        parser.error("give the training data: --data COCO_ROOT, or --train-ann A.json with --train-images DIR")
    if args.data is not None:
        if args.val_ann or args.val_images:
            parser.error("--data COCO_ROOT brings its own validation set (val2017): --val-ann/--val-images go with --train-ann")
        if not os.path.isdir(args.data):
            parser.error(f"--data {args.data}: no such directory")
        args.train_ann, args.train_images, args.val_ann, args.val_images = coco_layout(args.data)
        where = f"--data {args.data}"
        for path, what in ((args.train_ann, "file"), (args.train_images, "directory"), (args.val_ann, "file"),
                           (args.val_images, "directory")):
            if not (os.path.isfile(path) if what == "file" else os.path.isdir(path)):
                parser.error(f"{where}: no {what} {path} (the official layout: annotations/person_keypoints_train2017.json, "
                             f"annotations/person_keypoints_val2017.json, images/train2017/, images/val2017/)")
    else:
        if args.train_ann is None or args.train_images is None:
            parser.error("--train-ann and --train-images go together")
        if (args.val_ann is None) != (args.val_images is None):
            parser.error("--val-ann and --val-images go together")
        for opt, path, is_dir in (("--train-ann", args.train_ann, False), ("--train-images", args.train_images, True),
                                  ("--val-ann", args.val_ann, False), ("--val-images", args.val_images, True)):
            if path is not None and not (os.path.isdir(path) if is_dir else os.path.isfile(path)):
                parser.error(f"{opt} {path}: no such {'directory' if is_dir else 'file'}")
    for opt, path in (("--pretrained", args.pretrained),
                      ("--resume", None if args.resume in (None, "auto") else args.resume)):
        if path is not None and not os.path.isfile(path):
            parser.error(f"{opt} {path}: no such file")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out}: is a file; expected a run directory")
    if args.resume is None and os.path.isfile(os.path.join(args.out, "checkpoint.pth")):
        parser.error(f"--out {args.out}: holds a run (checkpoint.pth): --resume auto continues it; choose another --out "
                     f"for a new run")
    from ..config import ConfigError, load_experiment

    try:
        args.exp = load_experiment(args.config)
    except (ConfigError, TypeError) as exc:
        parser.error(f"--config {args.config}: {str(exc).removeprefix('config: ')}")
    _need(parser, "cv2", "train", "opencv-python-headless")
    if args.val_ann is not None:
        _need(parser, "pycocotools", "train (validation)", "pycocotools")
    from .._dist import Dist

    dist = Dist.from_env()
    device = dist.device(args.device) if dist.world > 1 else resolve_device_arg(parser, args.device)
    if args.sync_bn and device.type != "cuda":
        parser.error("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernels); on the CPU each process keeps its own "
                     "BatchNorm statistics")
    if args.amp == "fp16" and device.type != "cuda":
        parser.error("--amp fp16 needs CUDA; on the CPU use --amp bf16")


def run(args) -> int:
    """Train; print where the run directory is and the last records (rank 0)."""
    from ..training.fit import fit

    records = fit(args.exp, args.train_ann, args.train_images, args.out, val_ann=args.val_ann, val_images=args.val_images,
                  max_steps=args.max_steps, epochs=args.epochs, batch=args.batch, lr=args.lr, lr_steps=args.lr_steps,
                  workers=args.workers, amp=args.amp, channels_last=args.channels_last, sync_bn=args.sync_bn,
                  val_every=args.val_every, pretrained=args.pretrained, resume=args.resume, seed=args.seed,
                  device=args.device, no_progress=args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        train = [r for r in records if r.get("kind") == "train"]
        val = [r for r in records if r.get("kind") == "val"]
        last = f"; last loss {train[-1]['loss']:.4g} at step {train[-1]['step']}" if train else ""
        best = f"; best AP {val[-1]['best_AP']:.3f}" if val else ""
        print(f"hrnet-fast train: wrote {args.out}{last}{best}", file=sys.stderr)
    return 0
