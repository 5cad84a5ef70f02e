"""The whole pipeline, image and boxes in, keypoints in image pixels out: the official recipe against
hrnet_fast.PoseEstimator, side by side in one run, with each stage's time.

    python benchmarks/bench_pipeline.py [--device cpu|cuda] [--config w32_256x192] [--image 640x480] [--persons 8]
                                        [--dtype fp32|fp16] [--rounds 3] [--min-time 4] [--out JSON] [--quick]

Pipelines (the same network and weights; random weights with measured BatchNorm statistics: speed does not
depend on them):

- ``official, validate batching``: hrnet_fast/baselines/official_pipeline.py with ``batch="image"``: the
  official recipe (cv2.cvtColor, get_affine_transform + cv2.warpAffine per box, ToTensor/Normalize, the
  official eager model on the boxes of the image, then on their mirror images, flip_back + shift + merge,
  get_final_preds on the host), batched as ``validate()``'s data loader batches an image's boxes;
- ``official, demo batching``: the same, one box per forward, as the official ``demo/inference.py`` runs it;
- ``hrnet_fast``: ``PoseEstimator`` (crop_boxes, one forward of the crops and their mirror images on the
  ``optimize()``d model, fused flip decode), from the uint8 numpy image to keypoints on the host;
- on the CPU, ``hrnet_fast ... engine=openvino`` / ``onnxruntime`` (``--engines``, default: the installed ones):
  the same PoseEstimator with the network run by that engine on hrnet_fast's ONNX export (one export for
  both, compiled once; :mod:`hrnet_fast.engines`); speed-ups are against the torch row.

Stages: ``crop`` (colour conversion / input checks, box transform, warp, normalisation, copies), ``forward``
(the model calls, with the input flip and, for the official recipe, its host copies), ``decode`` (flip merge,
decoding, back-transform, rescoring). The totals are timed without anything added; the stages come from the
same calls on the CPU and, on CUDA, from separate calls with a synchronisation after each stage.

On CUDA the script also checks the two GPU targets: one person per 640x480 frame from host image to host
keypoints (target < 2 ms) and 64 persons per call (target >= 4000 persons/s), fp16 unless ``--dtype``.
JSON (``--out``, results under benchmarks/results/) holds the environment, every row and the targets.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import hrnet_fast  # noqa: E402
from hrnet_fast._timing import environment, load_average, load_warning, spread_warnings  # noqa: E402
from hrnet_fast.estimator import PoseEstimator  # noqa: E402
from hrnet_fast.models.init import realistic_random_init  # noqa: E402
from hrnet_fast._atomic import atomic_open  # noqa: E402  (a killed run never leaves truncated JSON)

TINY_YAML = os.path.join(os.path.dirname(HERE), "tests", "data", "tiny_hrnet.yaml")
STAGES = ("crop", "forward", "decode")


def _size(text: str):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH (e.g. 640x480), got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"expected an image of at least 16x16, got {text!r}")
    return w, h


def person_boxes(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``n`` plausible person boxes (x, y, w, h, score) inside a ``width`` x ``height`` image."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.35, 0.9, n) * height
    w = h * rng.uniform(0.3, 0.6, n)
    x = rng.uniform(0, 1, n) * np.maximum(width - w, 1)
    y = rng.uniform(0, 1, n) * np.maximum(height - h, 1)
    return np.stack([x, y, w, h, rng.uniform(0.5, 1.0, n)], 1)




class _Stages:
    """Collects per-stage seconds from PoseEstimator's stage hook (synchronising first on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.t = 0.0
        self.acc = {s: 0.0 for s in STAGES}

    def start(self):
        self.acc = {s: 0.0 for s in STAGES}
        self.t = time.perf_counter()

    def __call__(self, stage: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.acc[stage] += now - self.t
        self.t = now


def _sample(fns, rounds: int, min_time: float, min_runs: int):
    """Interleaved rounds of each callable (``fn() -> stage seconds dict``); per callable the per-call totals
    and stage times pooled, and each round's median."""
    out = {name: {"total": [], "stages": {s: [] for s in STAGES}, "rounds": []} for name in fns}
    for fn in fns.values():  # warm-up (oneDNN primitives, CUDA graphs, caches)
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            times = []
            t_end = time.perf_counter() + min_time / rounds
            while len(times) < min_runs or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                stages = fn()
                times.append(time.perf_counter() - t0)
                for s in STAGES:
                    if stages is not None and s in stages:
                        out[name]["stages"][s].append(stages[s])
            out[name]["total"] += times
            out[name]["rounds"].append(statistics.median(times))
    return out


def _row(name, data, persons):
    xs = sorted(data["total"])
    ms = statistics.median(xs) * 1e3
    q = lambda f: xs[min(len(xs) - 1, int(f * (len(xs) - 1) + 0.5))] * 1e3  # noqa: E731
    rounds = [r * 1e3 for r in data["rounds"]]
    row = {"pipeline": name, "total_ms": ms, "p20_ms": q(0.2), "p80_ms": q(0.8), "runs": len(xs),
           "rounds_ms": rounds, "round_spread": (max(rounds) - min(rounds)) / min(rounds),
           "persons_per_s": persons / (ms / 1e3)}
    row["stages_ms"] = {s: statistics.median(v) * 1e3 for s, v in data["stages"].items() if v}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--config", default="w32_256x192", help="config name or YAML (default w32_256x192)")
    p.add_argument("--image", type=_size, default=(640, 480), help="image size WxH (default 640x480)")
    p.add_argument("--persons", type=int, default=8, help="person boxes in the image (default 8)")
    p.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"],
                   help="hrnet_fast's dtype (default: fp32 on the CPU, fp16 on CUDA; the official recipe runs fp32)")
    p.add_argument("--no-flip", action="store_true", help="without the flip test (both sides)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per pipeline over all rounds (default 6 CPU, 3 CUDA)")
    p.add_argument("--no-demo", action="store_true", help="skip the one-box-per-forward official baseline")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for both sides (default: torch's; 1 is steadier on a shared machine)")
    p.add_argument("--engines", default="auto",
                   help="CPU engine rows: auto (the installed ones), none, or a list such as openvino,onnxruntime")
    p.add_argument("--out", default=None, help="write JSON here (results: benchmarks/results/)")
    p.add_argument("--quick", action="store_true", help="smoke run: the tiny test network, a small image, short timings")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.config, args.image, args.persons = TINY_YAML, (160, 120), min(args.persons, 2)
        args.rounds, args.min_time = 1, 0.0
    min_time = args.min_time if args.min_time is not None else (6.0 if device.type == "cpu" else 3.0)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(
        args.dtype, torch.float16 if device.type == "cuda" else torch.float32)

    try:
        import cv2
    except ImportError:  # GPU machines may lack OpenCV: hrnet_fast alone then (and the GPU targets)
        cv2 = None
    skipped = [] if cv2 is not None else ["official recipe: OpenCV is not installed (pip install opencv-python-headless)"]
    load_start = load_average()
    torch.manual_seed(0)
    model = hrnet_fast.pose_hrnet(args.config)
    w_in, h_in = model.cfg["IMAGE_SIZE"]
    realistic_random_init(model, image_hw=(h_in, w_in), seed=0, batches=1, batch_size=2)
    for unit in model.exchange_units():
        unit.configure(fused=False)  # the official computation
    official_model = model.to(device).eval()
    flip = not args.no_flip
    est = PoseEstimator(model, device=device, dtype=dtype, flip_test=flip)
    width, height = args.image
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (height + 4, width + 4, 3)).astype(np.float64)
    image = sum(noise[dy:dy + height, dx:dx + width] for dy in range(5) for dx in range(5)) / 25  # a smooth BGR frame
    image = image.round().astype(np.uint8)
    boxes = person_boxes(args.persons, width, height)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    def run_official(pipe):
        def fn():
            pipe(image, boxes)
            return dict(pipe.last_times)
        return fn

    stages = _Stages(device)

    def run_est(e):
        def fn():
            if device.type == "cpu":  # the hook costs nothing on the CPU: stages and total from the same call
                e._stage_hook = stages
                stages.start()
                e(image, boxes).keypoints.numpy()
                stages("decode")  # the rescoring and the split per image belong to decoding
                e._stage_hook = None
                return dict(stages.acc)
            e(image, boxes).keypoints.cpu()
            return None
        return fn

    run_ours = run_est(est)
    engine_ests, engine_info, skipped_engines = _engine_estimators(args.engines, model, device, dtype, flip)
    skipped += skipped_engines

    fns = {}
    if cv2 is not None:
        from hrnet_fast.baselines.official_pipeline import OfficialPipeline

        official = OfficialPipeline(official_model, (w_in, h_in), device=device, flip_test=flip, batch="image")
        fns["official, validate batching (all boxes of the image in one forward, then their mirror images)"] = run_official(official)
        if not args.no_demo:
            demo = OfficialPipeline(official_model, (w_in, h_in), device=device, flip_test=flip, batch="box")
            fns["official, demo batching (one forward per box)"] = run_official(demo)
    ours_name = "hrnet_fast PoseEstimator (one forward of the crops and their mirror images)"
    fns[ours_name] = run_ours
    for name, e in engine_ests.items():
        fns[name] = run_est(e)
    with torch.no_grad():
        data = _sample(fns, args.rounds, min_time, min_runs=1 if args.quick else 3)
        if device.type == "cuda":  # the stage split from separate, synchronised calls
            est._stage_hook = stages
            per = {s: [] for s in STAGES}
            for _ in range(5 if args.quick else 30):
                stages.start()
                est(image, boxes).keypoints.cpu()
                stages("decode")
                for s in STAGES:
                    per[s].append(stages.acc[s])
            est._stage_hook = None
            data[ours_name]["stages"] = per
    rows = [_row(name, d, len(boxes)) for name, d in data.items()]
    ours = next(r for r in rows if r["pipeline"] == ours_name)
    official_rows = [r for r in rows if r["pipeline"].startswith("official")]
    for r in rows:
        r["kind"] = "official" if r in official_rows else ("hrnet_fast" if r is ours else "engine")
        if r["pipeline"] in engine_info:
            r.update(engine_info[r["pipeline"]], speedup_vs_hrnet_fast_torch=ours["total_ms"] / r["total_ms"])
    for r in official_rows:
        ours[f"speedup_vs_{'validate' if 'validate' in r['pipeline'] else 'demo'}"] = r["total_ms"] / ours["total_ms"]
        r["stages_speedup"] = {s: r["stages_ms"][s] / ours["stages_ms"][s] for s in STAGES
                               if s in r["stages_ms"] and ours["stages_ms"].get(s)}

    # accuracy cross-check: same keypoints as the official recipe (see tests/test_pipeline_official.py)
    agree = None
    if cv2 is not None:
        with torch.no_grad():
            pred, _ = official(image, boxes)
            kp = est(image, boxes).keypoints.cpu().double().numpy()
        agree = float((np.abs(kp[..., :2] - pred).max(-1) < 1e-2).mean())
    with torch.no_grad():  # each engine against the torch path: the same keypoints to fp32 rounding
        kp_torch = est(image, boxes).keypoints.cpu().double().numpy()
        for r in rows:
            if r["pipeline"] in engine_ests:
                kp_e = engine_ests[r["pipeline"]](image, boxes).keypoints.cpu().double().numpy()
                r["keypoints_equal_to_torch_fraction"] = float((np.abs(kp_e[..., :2] - kp_torch[..., :2]).max(-1) < 1e-2).mean())

    targets = None
    if device.type == "cuda":
        targets = gpu_targets(est, image, width, height, args.quick, sync)
    load_end = load_average()
    warnings = [m for m in (load_warning(load_start), load_warning(load_end)) if m][:1]
    warnings += spread_warnings({r["pipeline"]: r for r in rows})
    doc = {"benchmark": "pipeline", "complete": True, "env": {**environment(device), "load_average": [load_start, load_end]},
           "setup": {"config": os.path.basename(args.config), "image": f"{width}x{height}", "persons": len(boxes),
                     "dtype": str(dtype).replace("torch.", ""), "official_dtype": "float32", "flip_test": flip,
                     "decode": "quarter", "quick": bool(args.quick), "rounds": args.rounds, "min_time_s": min_time},
           "rows": rows, "keypoints_equal_to_official_fraction": agree, "gpu_targets": targets, "skipped": skipped,
           "warnings": warnings}
    _print(doc)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with atomic_open(args.out) as fh:
            json.dump(doc, fh, indent=2)
        print(f"wrote {args.out}")
    return 0


def _engine_estimators(spec, model, device, dtype, flip):
    """{row name: PoseEstimator on an engine module} for ``--engines`` on the CPU (one ONNX export of ``model``
    shared by the engines), {row name: engine info}, and the reasons engines were skipped."""
    from hrnet_fast import engines

    if spec == "none" or device.type != "cpu":
        return {}, {}, []
    names = list(engines.AUTO_ORDER) if spec == "auto" else [n.strip() for n in spec.split(",") if n.strip()]
    skipped, usable = [], []
    for name in names:
        if name not in engines.PACKAGES:
            raise SystemExit(f"--engines: unknown engine {name!r} (openvino, onnxruntime, auto or none)")
        missing = engines._missing(name)
        problem = (f"not installed ({', '.join(missing)})" if missing else engines._dtype_problem(name, dtype))
        if problem:
            skipped.append(f"engine {name}: {problem}")
        else:
            usable.append(name)
    if not usable:
        return {}, {}, skipped
    t0 = time.perf_counter()
    graph = engines.onnx_bytes(model)
    export_s = time.perf_counter() - t0
    ests, info = {}, {}
    for name in usable:
        module = engines.EngineModule(graph, name, dtype, cfg=model.cfg)
        label = f"hrnet_fast PoseEstimator, engine={name} ({engines.PACKAGES[name][2]} {module.version})"
        ests[label] = PoseEstimator(module, device=device, dtype=dtype, flip_test=flip)
        info[label] = {"engine": name, "version": module.version, "export_s": export_s, "compile_s": module.compile_s}
    return ests, info, skipped


def gpu_targets(est, image, width, height, quick, sync):
    """Host image to host keypoints, wall clock: 1 person per call (target < 2 ms), 64 persons (>= 4000/s)."""
    out = {}
    for persons, key in ((1, "one_person"), (64, "64_persons")):
        boxes = person_boxes(persons, width, height, seed=1)
        for _ in range(3 if quick else 20):  # warm-up: graph capture per padded batch size
            est(image, boxes).keypoints.cpu()
        sync()
        times = []
        for _ in range(5 if quick else 200):
            t0 = time.perf_counter()
            est(image, boxes).keypoints.cpu()
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        out[key] = {"persons": persons, "ms": ms, "p20_ms": sorted(times)[len(times) // 5] * 1e3,
                    "p80_ms": sorted(times)[(4 * len(times)) // 5] * 1e3, "persons_per_s": persons / (ms / 1e3)}
    out["one_person"]["target"] = "< 2 ms"
    out["one_person"]["met"] = out["one_person"]["ms"] < 2.0
    out["64_persons"]["target"] = ">= 4000 persons/s"
    out["64_persons"]["met"] = out["64_persons"]["persons_per_s"] >= 4000
    return out


def _print(doc):
    env, setup = doc["env"], doc["setup"]
    print(f"# pipeline: {setup['config']}, one {setup['image']} image with {setup['persons']} persons, flip test "
          f"{setup['flip_test']}, hrnet_fast {setup['dtype']} (official {setup['official_dtype']}) on {env['device_name']}, "
          f"torch {env['torch']}, OpenCV {env['opencv']}, commit {env['commit']}")
    head = f"{'pipeline':80s} {'total ms':>9s} {'p20-p80 ms':>17s} {'crop':>8s} {'forward':>9s} {'decode':>8s} {'persons/s':>10s} {'speed-up':>9s}"
    print(head)
    print("-" * len(head))
    ours = next(r for r in doc["rows"] if r["kind"] == "hrnet_fast")
    for r in doc["rows"]:
        st = r["stages_ms"]
        sp = "" if r is ours else f"x{r['total_ms'] / ours['total_ms']:.2f}"
        print(f"{r['pipeline'][:80]:80s} {r['total_ms']:9.1f} {r['p20_ms']:8.1f}-{r['p80_ms']:<8.1f} {st.get('crop', 0):8.2f} "
              f"{st.get('forward', 0):9.1f} {st.get('decode', 0):8.2f} {r['persons_per_s']:10.1f} {sp:>9s}")
    print("(speed-up: that row's time / hrnet_fast's (torch); stages: median ms per call)")
    for r in doc["rows"]:
        if r["kind"] == "engine":
            print(f"{r['pipeline']}: export {r['export_s']:.1f} s, compile {r['compile_s']:.2f} s, keypoints equal to the "
                  f"torch path's (within 0.01 px): {100 * r.get('keypoints_equal_to_torch_fraction', float('nan')):.0f}%")
    for r in [r for r in doc["rows"] if r["kind"] == "official"]:
        parts = ", ".join(f"{s} x{v:.2f}" for s, v in r.get("stages_speedup", {}).items())
        print(f"per stage, hrnet_fast vs {r['pipeline'].split(' (')[0]}: {parts}")
    if doc["keypoints_equal_to_official_fraction"] is not None:
        print(f"keypoints equal to the official recipe's (within 0.01 px): {100 * doc['keypoints_equal_to_official_fraction']:.0f}% "
              f"(the others move with the official recipe's uint8 rounding of its crops: tests/test_pipeline_official.py)")
    for s in doc["skipped"]:
        print(f"skipped: {s}")
    if doc["gpu_targets"]:
        for key, t in doc["gpu_targets"].items():
            print(f"GPU target {key}: {t['ms']:.3f} ms per call, {t['persons_per_s']:.0f} persons/s (target {t['target']}: "
                  f"{'met' if t['met'] else 'NOT met'})")
    for w in doc["warnings"]:
        print(f"warning: {w}")


if __name__ == "__main__":
    sys.exit(main())
