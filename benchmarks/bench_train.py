"""Training step speed (issue 21, section 4): the official step against hrnet_fast's, augmentation included.

    python benchmarks/bench_train.py [--device cpu|cuda] [--config w32_256x192] [--batch N] [--threads 2]
        [--workers N] [--images 48] [--rounds 3] [--steps 3] [--warmup 1] [--out JSON] [--quick]

Data: synthetic COCO keypoints (``tests/_synthetic.py`` ``make_coco``: 640x480 photographs of colour-coded
persons, one or two per image), re-encoded as JPEG (quality 90) like COCO, in a temporary folder.

Variants, every one from the same official init (``official_init``, seed 0), the same data and the same Adam(1e-3):

- ``official step``: the official ``__getitem__`` (:mod:`hrnet_fast.baselines.official_dataset`: read, half body,
  scale, rotation, flip, ``cv2.warpAffine``, ``generate_target``; ToTensor + Normalize) in a ``DataLoader``
  (shuffle, ``--workers``), the official op order (``fused=False``), NCHW fp32, the official ``JointsMSELoss``, and
  the official per-step host work (``loss.item()``, ``accuracy()`` on the host: ``function.py:62-68``);
- ``hrnet_fast step ...``: :class:`hrnet_fast.training.data.CocoKeypoints` in a ``DataLoader`` (the workers only
  decode), then :func:`hrnet_fast.training.step.train_step`: the augmentation draws and geometry, the crops
  (``crop_boxes`` with rotation and flip), the targets (``heatmap_targets``), the fused model, our
  ``JointsMSELoss`` and Adam, all on the device; fp32 NCHW, fp32 channels_last, and with autocast (bf16 on the
  CPU; bf16 and fp16 + GradScaler on a GPU), channels_last;
- ``... model-only``: forward, loss, backward and Adam on one fixed batch (no data, no augmentation): the official
  model with the official ``JointsMSELoss``, the fused ones with ours.

Timing: interleaved rounds (every variant in turn in each round, so drifting load hits them alike); a round of a
variant is ``--steps`` consecutive steps timed as one block (one device synchronisation at its end, so the
GPU steps overlap as in training). Per variant: seconds per step (median over rounds, p20-p80), images/s, the
data-wait share (the time spent waiting for the loader's next batch over the whole time), and the speed-up
against ``official step`` (step rows) or ``official model-only`` (model rows). Also per sample: the official
``__getitem__`` in this process, our decode (``CocoKeypoints[i]``), and our device-side batch preparation
(``batch_inputs``) per batch.

``--device cuda`` is the GPU mode (default batch 32, the official per-GPU batch; workers default to the cores,
at most 8); without a CUDA GPU it says so and exits 0 (the JSON, if asked for, records the skip). Prints the
tables; writes JSON atomically (default ``benchmarks/results/train-<cpu|cuda>-<date>.json``; with ``--quick``
only where ``--out`` says). ``--quick``: the tiny test network, batch 2, 4 images, one round of one step: a smoke
run (tests/test_benchmarks_smoke.py).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # _synthetic.make_coco

from hrnet_fast._atomic import write_json  # noqa: E402
from hrnet_fast._timing import LoadMonitor, environment, load_warning, spread_warnings, synchronize  # noqa: E402

TINY_YAML = os.path.join(ROOT, "tests", "data", "tiny_hrnet.yaml")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # train.py:143-145
LR = 1e-3
OFFICIAL_STEP, OFFICIAL_MODEL = "official step", "official model-only"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "official" (the official step), "ours" (train_step), "model" (model-only)
    fused: bool = True
    channels_last: bool = False
    amp: str = "off"  # "off", "bf16", "fp16"
    official_loss: bool = False  # model-only rows: the official loss (the official model's row)


def variants_for(device: str) -> List[Variant]:
    if device == "cuda":
        amps = [("fp32", "off", False), ("fp32 channels_last", "off", True), ("bf16 channels_last", "bf16", True),
                ("fp16 channels_last", "fp16", True)]
    else:
        amps = [("fp32", "off", False), ("fp32 channels_last", "off", True), ("bf16 channels_last", "bf16", True)]
    out = [Variant(OFFICIAL_STEP, "official", fused=False)]
    out += [Variant(f"hrnet_fast step {label}", "ours", channels_last=cl, amp=amp) for label, amp, cl in amps]
    out.append(Variant(OFFICIAL_MODEL, "model", fused=False, official_loss=True))
    out += [Variant(f"fused model-only {label}", "model", channels_last=cl, amp=amp) for label, amp, cl in amps]
    return out


# ------------------------------------------------------------------------------------------------ data


def make_data(root: str, images: int, seed: int = 0):
    """``make_coco`` (PNG) re-encoded as JPEG (quality 90): (annotation file, image folder, persons)."""
    import cv2
    from _synthetic import make_coco

    ann_path, img_dir, ann = make_coco(root, n_images=images, seed=seed, size=(640, 480))
    for im in ann["images"]:
        png = os.path.join(img_dir, im["file_name"])
        jpg = os.path.splitext(png)[0] + ".jpg"
        cv2.imwrite(jpg, cv2.imread(png), [cv2.IMWRITE_JPEG_QUALITY, 90])
        os.remove(png)
        im["file_name"] = os.path.basename(jpg)
    with open(ann_path, "w") as fh:
        json.dump(ann, fh)
    return ann_path, img_dir, len(ann["annotations"])


class ToTensorNormalize:
    """torchvision ``ToTensor()`` + ``Normalize(MEAN, STD)`` (train.py:143-148), written out (torchvision need not
    match the installed torch): HWC uint8 -> CHW float32."""

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div(255)
        return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def official_dataset(exp, ann_path, img_dir):
    from hrnet_fast.baselines.official_dataset import OfficialCocoKeypoints

    m, d = exp["MODEL"], exp["DATASET"]
    return OfficialCocoKeypoints(ann_path, img_dir, image_size=list(m["IMAGE_SIZE"]), heatmap_size=list(m["HEATMAP_SIZE"]),
                                 sigma=m["SIGMA"], scale_factor=d["SCALE_FACTOR"], rotation_factor=d["ROT_FACTOR"],
                                 flip=d["FLIP"], num_joints_half_body=d["NUM_JOINTS_HALF_BODY"],
                                 prob_half_body=d["PROB_HALF_BODY"], color_rgb=d["COLOR_RGB"],
                                 use_different_joints_weight=exp["LOSS"]["USE_DIFFERENT_JOINTS_WEIGHT"],
                                 transform=ToTensorNormalize())


def cycle(loader):
    """(epoch, batch) forever: the loader re-iterated epoch after epoch (reshuffled by its sampler)."""
    epoch = 0
    while True:
        for batch in loader:
            yield epoch, batch
        epoch += 1


# ------------------------------------------------------------------------------------------------ steps


class Runner:
    """The models (one per (fused, channels_last): amp variants share the fp32 weights, as autocast does), the
    loaders and the fixed model-only batch; ``run(variant, steps)`` times one block of steps."""

    def __init__(self, args, exp, ann_path, img_dir, device):
        from hrnet_fast.training.data import CocoKeypoints, collate

        self.args, self.exp, self.device = args, exp, torch.device(device)
        self.image_hw = (int(exp["MODEL"]["IMAGE_SIZE"][1]), int(exp["MODEL"]["IMAGE_SIZE"][0]))
        self.models: Dict[Any, Any] = {}
        self.scalers: Dict[str, Any] = {}
        common = dict(batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True,
                      pin_memory=self.device.type == "cuda", persistent_workers=args.workers > 0)
        self.official_ds = official_dataset(exp, ann_path, img_dir)
        self.ours_ds = CocoKeypoints(ann_path, img_dir, image_size=self.image_hw)
        loader_gen = torch.Generator().manual_seed(0)
        self.iters = {
            "official": cycle(torch.utils.data.DataLoader(self.official_ds, generator=loader_gen, **common)),
            "ours": cycle(torch.utils.data.DataLoader(self.ours_ds, collate_fn=collate, generator=loader_gen, **common)),
        }
        g = torch.Generator().manual_seed(1)
        hh, hw = self.image_hw[0] // 4, self.image_hw[1] // 4
        k = int(exp["MODEL"]["NUM_JOINTS"])
        self.fixed = [t.to(self.device) for t in (torch.randn(args.batch, 3, *self.image_hw, generator=g),
                                                  torch.rand(args.batch, k, hh, hw, generator=g) ** 8,
                                                  (torch.rand(args.batch, k, 1, generator=g) > 0.2).float())]

    def model(self, v: Variant):
        """(model, optimizer) of the variant's (fused, channels_last), built on first use."""
        import hrnet_fast
        from hrnet_fast.models.init import official_init

        key = (v.fused, v.channels_last)
        if key not in self.models:
            model = official_init(hrnet_fast.pose_hrnet(self.args.config), generator=torch.Generator().manual_seed(0))
            for unit in model.exchange_units():
                unit.configure(fused=v.fused)
            model = model.to(self.device).train()
            if v.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self.models[key] = (model, torch.optim.Adam(model.parameters(), lr=LR))
        return self.models[key]

    def scaler(self, amp: str):
        from hrnet_fast.training.step import amp_scaler

        if amp not in self.scalers:
            self.scalers[amp] = amp_scaler(amp, self.device)
        return self.scalers[amp]

    def recipe(self, v: Variant):
        from hrnet_fast.training.step import Recipe

        return Recipe.from_experiment(self.exp, amp=v.amp, channels_last=v.channels_last)

    def run(self, v: Variant, steps: int) -> Dict[str, float]:
        """``steps`` steps of ``v``: {"total_s", "wait_s"} (one synchronisation at the end)."""
        model, opt = self.model(v)
        step = {"official": self._official_step, "ours": self._ours_step, "model": self._model_step}[v.kind]
        recipe = self.recipe(v) if v.kind == "ours" else None
        synchronize(self.device)
        wait = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            wait += step(v, model, opt, recipe)
        synchronize(self.device)
        return {"total_s": time.perf_counter() - t0, "wait_s": wait}

    def _official_step(self, v, model, opt, recipe) -> float:
        """``lib/core/function.py:30-68`` without the meters' printing: returns the data wait."""
        from hrnet_fast.baselines.official_loss import JointsMSELoss, accuracy

        t = time.perf_counter()
        _, (input, target, target_weight, meta) = next(self.iters["official"])
        wait = time.perf_counter() - t
        input = input.to(self.device, non_blocking=True)  # DataParallel scatters the input to the device
        output = model(input)
        target = target.to(self.device, non_blocking=True)
        target_weight = target_weight.to(self.device, non_blocking=True)
        loss = JointsMSELoss(True)(output, target, target_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # losses.update(loss.item(), input.size(0))
        accuracy(output.detach().cpu().numpy(), target.detach().cpu().numpy())
        return wait

    def _ours_step(self, v, model, opt, recipe) -> float:
        from hrnet_fast.training.step import train_step

        t = time.perf_counter()
        epoch, batch = next(self.iters["ours"])
        wait = time.perf_counter() - t
        train_step(model, opt, batch, recipe, seed=0, epoch=epoch, scaler=self.scaler(v.amp))
        return wait

    def _model_step(self, v, model, opt, recipe) -> float:
        from hrnet_fast.baselines.official_loss import JointsMSELoss as OfficialLoss
        from hrnet_fast.training.loss import JointsMSELoss

        x, target, weight = self.fixed
        if v.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[v.amp]
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(x)
        loss = (OfficialLoss(True) if v.official_loss else JointsMSELoss(True))(out, target, weight)
        opt.zero_grad()
        scaler = self.scaler(v.amp)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return 0.0

    def per_sample(self, n: int) -> Dict[str, float]:
        """ms per sample of the official ``__getitem__`` and of our decode, in this process; ms per batch of our
        device-side preparation (augmentation geometry, crops, targets)."""
        from hrnet_fast.training.data import collate
        from hrnet_fast.training.step import batch_inputs

        n = min(n, len(self.official_ds), len(self.ours_ds))
        np.random.seed(0)
        t = time.perf_counter()
        for i in range(n):
            self.official_ds[i]
        official = (time.perf_counter() - t) / n
        t = time.perf_counter()
        samples = [self.ours_ds[i] for i in range(n)]
        decode = (time.perf_counter() - t) / n
        batch = collate(samples[: self.args.batch])
        recipe = self.recipe(Variant("prep", "ours"))
        batch_inputs(batch, recipe, 0, 0, self.device)  # warm-up (first calls resolve backends)
        reps = 3
        synchronize(self.device)
        t = time.perf_counter()
        for r in range(reps):
            batch_inputs(batch, recipe, 0, r, self.device)
        synchronize(self.device)
        prep = (time.perf_counter() - t) / reps
        return {"official_getitem_ms_per_sample": 1e3 * official, "ours_decode_ms_per_sample": 1e3 * decode,
                "ours_batch_inputs_ms_per_batch": 1e3 * prep, "batch": len(batch["images"]), "samples": n}


# ------------------------------------------------------------------------------------------------ report


def _q(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def summarize(variants: List[Variant], results: Dict[str, List[Dict[str, float]]], steps: int, batch: int) -> List[Dict]:
    rows = []
    for v in variants:
        per_step = [r["total_s"] / steps for r in results[v.name]]
        med = statistics.median(per_step)
        total = sum(r["total_s"] for r in results[v.name])
        rows.append({"variant": v.name, "kind": "model" if v.kind == "model" else "step", "fused": v.fused,
                     "channels_last": v.channels_last, "amp": v.amp, "batch": batch, "s_per_step": med,
                     "p20_s": _q(per_step, 0.2), "p80_s": _q(per_step, 0.8), "rounds_s": per_step,
                     "round_spread": (max(per_step) - min(per_step)) / min(per_step), "img_per_s": batch / med,
                     "data_wait_share": sum(r["wait_s"] for r in results[v.name]) / total if v.kind != "model" else None})
    base = {r["kind"]: r["s_per_step"] for r in rows if r["variant"] in (OFFICIAL_STEP, OFFICIAL_MODEL)}
    for r in rows:
        r["x_official"] = base[r["kind"]] / r["s_per_step"] if r["kind"] in base else None
    return rows


def print_tables(doc) -> None:
    env, setup = doc["env"], doc["setup"]
    print(f"\ntraining step, {setup['config']} {setup['input_hw'][0]}x{setup['input_hw'][1]}, batch {setup['batch']}, "
          f"{env['device_name']}, workers {setup['workers']}, {setup['rounds']} rounds x {setup['steps']} steps")
    print(f"{'variant':44s} {'s/step':>8s} {'p20-p80':>15s} {'img/s':>8s} {'wait':>6s} {'x official':>10s}")
    for r in doc["rows"]:
        wait = "" if r["data_wait_share"] is None else f"{100 * r['data_wait_share']:5.1f}%"
        x = "" if r["x_official"] is None else f"x{r['x_official']:.2f}"
        print(f"{r['variant']:44s} {r['s_per_step']:8.3f} {r['p20_s']:7.3f}-{r['p80_s']:<7.3f} {r['img_per_s']:8.1f} "
              f"{wait:>6s} {x:>10s}")
    ps = doc.get("per_sample")
    if ps:
        print(f"per sample: official __getitem__ {ps['official_getitem_ms_per_sample']:.2f} ms, our decode "
              f"{ps['ours_decode_ms_per_sample']:.2f} ms; our device-side batch_inputs {ps['ours_batch_inputs_ms_per_batch']:.1f} "
              f"ms per batch of {ps['batch']}")
    for w in doc["warnings"]:
        print(f"warning: {w}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cpu (default) or cuda (the GPU mode)")
    p.add_argument("--config", default="w32_256x192", help="experiment name or YAML (default w32_256x192)")
    p.add_argument("--batch", type=int, default=None, help="images per step (default 8 on the CPU, 32 on a GPU)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 2 on the CPU; the cores, at most 8, "
                                                              "on a GPU)")
    p.add_argument("--images", type=int, default=None, help="synthetic 640x480 JPEGs (default 48 on the CPU, 256 on a GPU)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=None, help="steps per variant per round (default 3 on the CPU, 20 on a GPU)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per variant first (default 1)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train-<device>-<date>.json)")
    p.add_argument("--quick", action="store_true", help="smoke run: the tiny network, batch 2, 4 images, 1 round of 1 step")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    if args.quick:
        args.config, args.images, args.rounds, args.steps, args.warmup = TINY_YAML, 4, 1, 1, 1
        args.batch = args.batch or 2
        args.workers = 0 if args.workers is None else args.workers
    args.batch = args.batch or (32 if gpu else 8)
    args.workers = args.workers if args.workers is not None else (min(8, os.cpu_count() or 1) if gpu else 2)
    args.images = args.images or (256 if gpu else 48)
    args.steps = args.steps or (20 if gpu else 3)
    for name in ("batch", "threads", "images", "rounds", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.workers < 0 or args.warmup < 0:
        p.error("--workers and --warmup must be >= 0")
    out = args.out
    if out is None and not args.quick:
        out = os.path.join(HERE, "results", f"train-{args.device}-{datetime.date.today().isoformat()}.json")
    if gpu and not torch.cuda.is_available():
        print("bench_train: --device cuda: no CUDA GPU here, GPU mode skipped")
        if out:
            write_json(out, {"benchmark": "train", "complete": False, "skipped": "no CUDA GPU",
                             "env": environment("cpu")}, indent=2)
            print(f"wrote {out}")
        return 0
    torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cudnn.benchmark = True  # the official CUDNN.BENCHMARK: true (train.py:99-101)
    from hrnet_fast.config import load_experiment

    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_color_warning())
        exp = load_experiment(args.config)
    variants = variants_for(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp, LoadMonitor() as load:
        ann_path, img_dir, persons = make_data(tmp, args.images)
        if persons < args.batch:
            p.error(f"--images {args.images} gives {persons} persons, fewer than --batch {args.batch}")
        runner = Runner(args, exp, ann_path, img_dir, args.device)
        print(f"[bench_train] {len(variants)} variants, {persons} persons: warm-up", file=sys.stderr, flush=True)
        for v in variants:
            if args.warmup:
                runner.run(v, args.warmup)
        results: Dict[str, List[Dict[str, float]]] = {v.name: [] for v in variants}
        for r in range(args.rounds):
            print(f"[bench_train] round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for v in variants:
                results[v.name].append(runner.run(v, args.steps))
        per_sample = runner.per_sample(2 * args.batch)
    rows = summarize(variants, results, args.steps, args.batch)
    warnings = [m for m in (load_warning(load.peak),) if m]
    warnings += spread_warnings({r["variant"]: r for r in rows})
    h, w = runner.image_hw
    doc = {"benchmark": "train", "complete": True, "env": {**environment(args.device), "load_average": load.as_dict()},
           "setup": {"config": os.path.basename(args.config), "input_hw": [h, w], "batch": args.batch,
                     "workers": args.workers, "threads": args.threads, "images": args.images, "persons": persons,
                     "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "quick": bool(args.quick),
                     "data": "tests/_synthetic.py make_coco, 640x480 JPEG q90", "init": "official_init(seed 0)",
                     "optimizer": f"Adam(lr={LR})"},
           "rows": rows, "per_sample": per_sample, "warnings": warnings}
    print_tables(doc)
    if out:
        write_json(out, doc, indent=2)
        print(f"wrote {out}")
    return 0


@contextlib.contextmanager
def _quiet_color_warning():
    """load_experiment warns when a YAML leaves DATASET.COLOR_RGB unset (the tiny test YAML does): expected here."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*COLOR_RGB.*")
        yield


if __name__ == "__main__":
    sys.exit(main())
