"""Person crops: the official per-box OpenCV pipeline vs hrnet_fast.ops.crop_boxes backends.

    python benchmarks/bench_crop_boxes.py [--device cpu|cuda] [--boxes 8] [--image 640x480] [--size 256x192]
                                          [--dtype fp32] [--threads N] [--quick] [--out results/crop.json]

One image (W x H, BGR uint8, as cv2.imread gives) and M person boxes (inside, touching and crossing the
border), cropped to the model's input (H x W) as normalised RGB (M, 3, H, W) tensors:

* ``cv2``: what the official test loader does per box: ``get_affine_transform`` + ``cv2.warpAffine``
  (INTER_LINEAR, border 0) + BGR->RGB + ``/255``, ``- mean``, ``/ std`` (torchvision's ToTensor + Normalize, in
  numpy) + HWC->CHW, then the M crops stacked into one tensor (and copied to the GPU with ``--device cuda``);
  OpenCV runs on as many threads as torch.
* ``torch`` (the reference), ``cpp`` (CPU), ``cuda``, ``triton`` (GPU): one ``crop_boxes`` call for all boxes
  (the transforms included).

Times are interleaved round by round (``hrnet_fast._timing.measure_rounds``). The table gives the median
per call, p20-p80, the time per box and the speed-up over ``cv2``, and each provider's largest difference
from the ``cv2`` crops in grey levels (OpenCV rounds to uint8: >= 0.5 expected). JSON is written only
with ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os

import numpy as np
import torch

import hrnet_fast
from hrnet_fast import _backends
from hrnet_fast._timing import environment, load_warning, measure_rounds, spread_warnings
from hrnet_fast.baselines.official_numpy import get_affine_transform
from hrnet_fast._atomic import atomic_open  # a killed run never leaves truncated JSON

CROP = hrnet_fast.ops.OPS["crop_boxes"].module  # the op's module (hrnet_fast.ops.crop_boxes is the op)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _pair(text: str):
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AxB with positive integers (e.g. 640x480), got {text!r}") from None
    if min(a, b) < 2:
        raise argparse.ArgumentTypeError(f"expected sizes of at least 2, got {text!r}")
    return a, b


def make_inputs(img_w: int, img_h: int, m: int, out_h: int, out_w: int):
    """A smooth image with noise (BGR uint8, (H, W, 3)) and m person-like boxes (x, y, w, h), float64."""
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[0:img_h, 0:img_w]
    base = 127 + 100 * np.sin(xx[..., None] * 0.05 + yy[..., None] * 0.03 + np.arange(3) * 2.0)
    img = np.clip(base + g.integers(-30, 31, (img_h, img_w, 3)), 0, 255).astype(np.uint8)
    bw = g.uniform(0.15, 0.45, m) * img_w
    bh = np.minimum(bw * g.uniform(1.5, 3.0, m), img_h * 1.1)
    x = g.uniform(-0.1, 0.9, m) * img_w - bw * 0.2
    y = g.uniform(-0.1, 0.6, m) * img_h
    return img, np.stack([x, y, bw, bh], 1)


def official_pipeline(img, center, scale, out_h, out_w, mean, std, device):
    """The official loader's per-box crop and normalisation, stacked into one (M, 3, H, W) tensor."""
    import cv2

    crops = []
    for c, s in zip(center, scale):
        trans = get_affine_transform(c, s, 0, (out_w, out_h))
        crop = cv2.warpAffine(img, trans, (out_w, out_h), flags=cv2.INTER_LINEAR)
        x = (crop[..., ::-1].astype(np.float32) / 255.0 - mean) / std
        crops.append(x.transpose(2, 0, 1))
    out = torch.from_numpy(np.ascontiguousarray(np.stack(crops)))
    return out.to(device) if device != "cpu" else out




def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--boxes", type=int, default=8)
    p.add_argument("--image", type=_pair, default=(640, 480), help="image W x H (default 640x480)")
    p.add_argument("--size", type=_pair, default=(256, 192), help="crop H x W (default 256x192)")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (and OpenCV's threads)")
    p.add_argument("--budget", type=float, default=1.0, help="seconds per provider (approximate)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--quick", action="store_true", help="tiny sizes and budget (smoke test)")
    p.add_argument("--out", default=None, help="write the results as JSON here (e.g. benchmarks/results/crop-cpu.json)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    if args.boxes < 1:
        p.error("--boxes must be positive")
    if args.quick:
        args.image, args.size, args.boxes, args.budget, args.rounds = (64, 48), (32, 24), 2, 0.02, 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device, dtype = args.device, DTYPES[args.dtype]
    (img_w, img_h), (out_h, out_w) = args.image, args.size
    img, boxes = make_inputs(img_w, img_h, args.boxes, out_h, out_w)
    center, scale = hrnet_fast.ops.boxes_to_center_scale(boxes, (out_w, out_h))
    mean, std = np.array(CROP.IMAGENET_MEAN, np.float32), np.array(CROP.IMAGENET_STD, np.float32)
    images = torch.from_numpy(img)[None].to(device)
    index = torch.zeros(args.boxes, dtype=torch.int64, device=device)
    c_dev, s_dev = center.to(device), scale.to(device)

    fns, skipped = {}, {}
    try:
        import cv2

        cv2.setNumThreads(torch.get_num_threads())
        c_np, s_np = center.numpy(), scale.numpy()
        fns["cv2"] = lambda: official_pipeline(img, c_np, s_np, out_h, out_w, mean, std, device)
    except ImportError:
        skipped["cv2"] = "opencv-python-headless is not installed"
    for name in ("torch", "cpp", "cuda", "triton"):
        if name == "triton" and device == "cpu":
            skipped[name] = "the Triton interpreter is not a CPU backend"
            continue
        why = CROP.SUPPORT.not_supported_reasons(name, torch.device(device), dtype)
        if why:
            skipped[name] = "; ".join(why)
            continue
        fns[name] = (lambda be: lambda: hrnet_fast.ops.crop_boxes(images, index, c_dev, s_dev, (out_h, out_w), dtype=dtype,
                                                                  backend=be))(name)

    outs = {name: fn().float().cpu() for name, fn in fns.items()}
    levels = 255.0 * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    stats = measure_rounds(fns, device, rounds=args.rounds, min_time=args.budget * len(fns))
    env = environment(device)
    warn = load_warning()
    rows = []
    base = stats.get("cv2", {}).get("ms")
    print(f"crop_boxes on {env['device_name']}: {args.boxes} boxes from one {img_w}x{img_h} image -> "
          f"{out_h}x{out_w} {args.dtype}, torch {env['torch']}, OpenCV {env['opencv']}")
    print(f"{'provider':<8} {'median ms':>10} {'p20-p80 ms':>15} {'ms/box':>8} {'vs cv2':>7} {'max |d| vs cv2 (levels)':>24}")
    for name, st in stats.items():
        diff = None
        if "cv2" in outs and name != "cv2":
            diff = float(((outs[name] - outs["cv2"]).abs() * levels).max())
        row = {"provider": name, "median_ms": st["ms"], "p20_ms": st["p20_ms"], "p80_ms": st["p80_ms"],
               "ms_per_box": st["ms"] / args.boxes, "round_spread": st["round_spread"],
               "speedup_vs_cv2": (base / st["ms"]) if base else None, "max_diff_vs_cv2_levels": diff}
        rows.append(row)
        sp = f"x{row['speedup_vs_cv2']:.2f}" if row["speedup_vs_cv2"] else "-"
        print(f"{name:<8} {st['ms']:>10.3f} {st['p20_ms']:>7.3f}-{st['p80_ms']:<7.3f} {row['ms_per_box']:>8.3f} {sp:>7} "
              f"{'-' if diff is None else f'{diff:.3f}':>24}")
    for name, why in skipped.items():
        print(f"{name:<8} skipped: {why}")
    for w in ([warn] if warn else []) + spread_warnings(stats):
        print(f"warning: {w}")
    if args.out:
        doc = {"benchmark": "crop_boxes", "date": datetime.datetime.now().isoformat(timespec="seconds"), "env": env,
               "config": {"boxes": args.boxes, "image_wh": [img_w, img_h], "crop_hw": [out_h, out_w], "dtype": args.dtype,
                          "rounds": args.rounds, "quick": args.quick},
               "rows": rows, "skipped": skipped, "warnings": ([warn] if warn else []) + spread_warnings(stats),
               "backends": _backends.backends()}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with atomic_open(args.out) as fh:
            json.dump(doc, fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
