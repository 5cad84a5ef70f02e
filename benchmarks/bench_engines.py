"""hrnet_fast against the CPU engines users export to (issue 20): one run, the same weights, side by side.

    python benchmarks/bench_engines.py [--config w32_256x192] [--batch 1,8] [--threads 2] [--rounds 5]
                                       [--min-time 12] [--weights CKPT] [--top 12] [--out JSON] [--quick]

Variants (the same network and weights; random weights with measured BatchNorm statistics unless --weights):

- ``official eager fp32``: the official computation (exchange units unfused, BatchNorm unfolded);
- ``hrnet_fast optimize(m) fp32``: hrnet_fast's default CPU path;
- ``onnxruntime fp32`` and ``OpenVINO f32``: :mod:`hrnet_fast.engines` on hrnet_fast's ONNX export (one export,
  dynamic batch, compiled once; OpenVINO with ``INFERENCE_PRECISION_HINT: f32`` set explicitly);
- ``hrnet_fast optimize(m, dtype=bf16)`` and ``OpenVINO bf16`` (``INFERENCE_PRECISION_HINT: bf16``; skipped where
  OpenVINO lists no BF16 capability for this CPU).

Per batch: median, p20-p80 and the spread of the medians of interleaved rounds (every variant sampled in
turn in each round, so drifting load hits them alike), the speed-up against the official model and against
hrnet_fast fp32, and the max relative error of the heatmaps against the official fp32 model.

Where the time goes, per layer: OpenVINO's own counters (``PERF_COUNT``, ``get_profiling_info()``: per node
its type, the kernel it ran and its time) beside torch's profiler over ``optimize(m)`` (per op and input
shape), for fp32 and bf16; the top layers of each and the totals per op type.

bf16 accuracy on keypoints (item 4): photographs from scikit-image's data module (astronaut, camera, coffee,
chelsea, rocket), each with person-shaped boxes; the crops go through the official fp32 model and every
variant; per variant the fraction of keypoints whose heatmap argmax lies within one heatmap pixel
(Chebyshev distance <= 1) of the fp32 argmax, and the fraction exactly equal. With random weights the
heatmaps have weak peaks, so these fractions are a pessimistic bound; give --weights for the real numbers.

Prints the tables; ``--out`` writes JSON atomically (a temporary file renamed into place). ``--quick``: the
tiny test network, batch 1, short timings, two photographs (a smoke run: tests/test_benchmarks_smoke.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import hrnet_fast  # noqa: E402
from hrnet_fast import engines  # noqa: E402
from hrnet_fast._atomic import write_json  # noqa: E402
from hrnet_fast._numerics import max_rel_err  # noqa: E402
from hrnet_fast._timing import environment, load_average, load_warning, measure_rounds, spread_warnings  # noqa: E402
from hrnet_fast.models.init import realistic_random_init  # noqa: E402

from _conv_shapes import compare, openvino_conv_shapes, print_rows, torch_conv_shapes  # noqa: E402

TINY_YAML = os.path.join(os.path.dirname(HERE), "tests", "data", "tiny_hrnet.yaml")
OFFICIAL = "official eager fp32"
FAST32 = "hrnet_fast optimize(m) fp32"
ORT = "onnxruntime fp32"
OV32 = "OpenVINO f32"
FAST16 = "hrnet_fast optimize(m, dtype=bf16)"
OV16 = "OpenVINO bf16"
INDUCTOR = "hrnet_fast engine=inductor fp32"
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket")


def _batches(text: str) -> List[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 1,8), got {text!r}")
    return out


# ---------------------------------------------------------------------------------------------- the variants


def build_variants(model, threads: int, inductor: bool = False) -> Dict[str, Any]:
    """{variant: callable module} and the export/compile facts. ``model``: the official model (fp32, eval).
    ``inductor``: add ``optimize(model, engine="inductor")`` (compiled on its first call per batch size)."""
    variants: Dict[str, Any] = {OFFICIAL: model, FAST32: hrnet_fast.optimize(model)}
    if inductor:
        variants[INDUCTOR] = hrnet_fast.optimize(model, engine="inductor")
    info: Dict[str, Any] = {"skipped": {}, "compile_s": {}}
    versions = engines.engine_versions()
    usable = [e for e in ("onnxruntime", "openvino") if not engines._missing(e)]
    for e in ("onnxruntime", "openvino"):
        if e not in usable:
            info["skipped"][e] = f"not installed ({', '.join(engines._missing(e))}): pip install \"hrnet_fast[{e}]\""
    if usable:
        t0 = time.perf_counter()
        graph = engines.onnx_bytes(model)
        info["export_s"] = time.perf_counter() - t0
        info["graph"] = graph
        if "onnxruntime" in usable:
            variants[ORT] = engines.EngineModule(graph, "onnxruntime", threads=threads, cfg=model.cfg)
        if "openvino" in usable:
            variants[OV32] = engines.EngineModule(graph, "openvino", threads=threads, cfg=model.cfg)
    variants[FAST16] = hrnet_fast.optimize(model, dtype=torch.bfloat16)
    if "openvino" in usable:
        problem = engines._dtype_problem("openvino", torch.bfloat16)
        if problem:
            info["skipped"][OV16] = problem
        else:
            variants[OV16] = engines.EngineModule(info["graph"], "openvino", torch.bfloat16, threads=threads, cfg=model.cfg)
    for name, m in variants.items():
        if isinstance(m, engines.EngineModule):
            info["compile_s"][name] = m.compile_s
    info["versions"] = versions
    return variants, info


def _input(variant: str, x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16) if variant == FAST16 else x


def time_batch(variants, batch: int, hw, rounds: int, min_time: float) -> List[Dict[str, Any]]:
    """One row per variant: timing stats, speed-ups and the error against the official fp32 model."""
    x = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        want = variants[OFFICIAL](x)
        errs = {name: max_rel_err(m(_input(name, x)).float(), want) for name, m in variants.items() if name != OFFICIAL}
        fns = {name: (lambda m=m, xi=_input(name, x): m(xi)) for name, m in variants.items()}
        stats = measure_rounds(fns, "cpu", rounds=rounds, min_time=min_time, min_runs=2, warmup=2)
    rows = []
    for name in variants:
        st = stats[name]
        row = {"batch": batch, "variant": name, **{k: st[k] for k in ("ms", "p20_ms", "p80_ms", "runs", "rounds_ms", "round_spread")}}
        row["x_official"] = stats[OFFICIAL]["ms"] / st["ms"]
        row["x_hrnet_fast_fp32"] = stats[FAST32]["ms"] / st["ms"]
        if name in errs:
            row["max_rel_err"] = errs[name]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- per layer


def torch_layers(module, x, calls: int, top: int) -> Dict[str, Any]:
    """torch's profiler over ``calls`` forwards of ``module``: self CPU time per (op, input shapes) per
    forward, the top ``top`` and the totals per op."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        module(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(calls):
                module(x)
    by_shape = [{"op": e.key, "shapes": str(e.input_shapes)[:120], "count": e.count / calls,
                 "self_us": e.self_cpu_time_total / calls} for e in prof.key_averages(group_by_input_shape=True)]
    by_op = [{"op": e.key, "count": e.count / calls, "self_us": e.self_cpu_time_total / calls} for e in prof.key_averages()]
    total = sum(r["self_us"] for r in by_op)
    by_shape.sort(key=lambda r: -r["self_us"])
    by_op.sort(key=lambda r: -r["self_us"])
    conv = sum(r["self_us"] for r in by_op if "conv" in r["op"].lower() or "fused_exchange" in r["op"])
    return {"total_us": total, "conv_share": conv / total if total else 0.0, "top_layers": by_shape[:top], "by_op": by_op[:top]}


def openvino_layers(graph: bytes, dtype, threads: int, x, calls: int, top: int, cfg) -> Dict[str, Any]:
    """OpenVINO's PERF_COUNT counters of the last of ``calls`` forwards: per node, and totals per node type
    and per kernel (exec type)."""
    m = engines.EngineModule(graph, "openvino", dtype, threads=threads, cfg=cfg, options={"PERF_COUNT": True})
    for _ in range(calls):
        m(x)
    nodes = m.profile()
    total = sum(n["real_us"] for n in nodes)
    shapes = openvino_conv_shapes(m._compiled)

    def group(key):
        acc: Dict[str, Dict[str, float]] = {}
        for n in nodes:
            a = acc.setdefault(n[key], {"count": 0, "real_us": 0.0})
            a["count"] += 1
            a["real_us"] += n["real_us"]
        return sorted(({key: k, **v} for k, v in acc.items()), key=lambda r: -r["real_us"])[:top]

    conv = sum(n["real_us"] for n in nodes if n["node_type"] == "Convolution")
    return {"total_us": total, "conv_share": conv / total if total else 0.0, "nodes": len(nodes),
            "top_layers": sorted(nodes, key=lambda n: -n["real_us"])[:top], "by_type": group("node_type"),
            "by_kernel": group("exec_type"), "conv_shapes": shapes}


# ---------------------------------------------------------------------------------------------- bf16 on keypoints


def photographs(names, persons: int, seed: int = 0):
    """[(name, (H, W, 3) uint8 RGB, (M, 4) xywh person-shaped boxes)] from scikit-image's data module."""
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = np.ascontiguousarray(img[..., :3])
        h, w = img.shape[:2]
        bh = rng.uniform(0.5, 0.95, persons) * h
        bw = bh * rng.uniform(0.3, 0.6, persons)
        bx = rng.uniform(0, 1, persons) * np.maximum(w - bw, 1)
        by = rng.uniform(0, 1, persons) * np.maximum(h - bh, 1)
        out.append((name, img, np.stack([bx, by, bw, bh], 1)))
    return out


def keypoint_agreement(variants, photos, input_wh) -> Dict[str, Any]:
    """Per variant: the fraction of keypoints whose heatmap argmax is within one heatmap pixel (Chebyshev) of
    the official fp32 model's, and exactly equal, over every box of every photograph."""
    from hrnet_fast.ops.crop_boxes import boxes_to_center_scale, crop_boxes

    imgs = [torch.from_numpy(img) for _, img, _ in photos]
    boxes = np.concatenate([b for _, _, b in photos])
    index = np.concatenate([np.full(len(b), i) for i, (_, _, b) in enumerate(photos)])
    center, scale = boxes_to_center_scale(boxes, input_wh)
    crops = crop_boxes(imgs, index, center, scale, (input_wh[1], input_wh[0]), color="rgb")

    def argmax_yx(hm):
        hm = hm.float()
        idx = hm.flatten(2).argmax(-1)
        return torch.stack([idx // hm.shape[-1], idx % hm.shape[-1]], -1)

    with torch.no_grad():
        want = argmax_yx(variants[OFFICIAL](crops))
        out = {}
        for name, m in variants.items():
            if name == OFFICIAL:
                continue
            got = argmax_yx(m(_input(name, crops)))
            dist = (got - want).abs().max(-1).values
            out[name] = {"within_1px": float((dist <= 1).float().mean()), "exact": float((dist == 0).float().mean()),
                         "keypoints": int(dist.numel())}
    return {"photos": [n for n, _, _ in photos], "boxes": int(len(boxes)), "variants": out}


# ---------------------------------------------------------------------------------------------- output


def _print(doc) -> None:
    env, setup = doc["env"], doc["setup"]
    print(f"# engines: {setup['config']} {setup['input_hw'][0]}x{setup['input_hw'][1]}, {setup['threads']} threads, "
          f"{setup['weights']} weights on {env['device_name']}; torch {env['torch']}, "
          + ", ".join(f"{k} {v}" for k, v in env["engines"].items() if v) + f"; commit {env['commit']}")
    head = f"{'batch':>5s}  {'variant':36s} {'median ms':>10s} {'p20-p80 ms':>17s} {'spread':>7s} {'x official':>10s} {'x fast fp32':>11s} {'rel err':>8s}"
    print(head)
    print("-" * len(head))
    for r in doc["rows"]:
        err = f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else ""
        print(f"{r['batch']:5d}  {r['variant']:36s} {r['ms']:10.2f} {r['p20_ms']:8.2f}-{r['p80_ms']:<8.2f} "
              f"{100 * r['round_spread']:6.0f}% {r['x_official']:10.2f} {r['x_hrnet_fast_fp32']:11.2f} {err:>8s}")
    if doc.get("export_s") is not None:
        def secs(v):  # one compilation (an engine), or one per input shape (inductor)
            return f"{v:.2f} s" if not isinstance(v, dict) else ", ".join(f"{s} {t:.1f} s" for s, t in v.items())
        print(f"(ONNX export {doc['export_s']:.1f} s; compile " + ", ".join(f"{k} {secs(v)}" for k, v in doc["compile_s"].items())
              + "; spread: (max - min) / min of the medians of interleaved rounds)")
    for key, prof in doc["profiles"].items():
        t, o = prof["torch"], prof.get("openvino")
        print(f"\n## per layer, {key}: hrnet_fast {t['total_us'] / 1e3:.2f} ms of op self time ({100 * t['conv_share']:.0f}% "
              f"convolutions)" + (f"; OpenVINO {o['total_us'] / 1e3:.2f} ms over {o['nodes']} nodes "
                                  f"({100 * o['conv_share']:.0f}% Convolution)" if o else ""))
        print(f"{'hrnet_fast op (torch profiler)':38s} {'input shapes':44s} {'calls':>5s} {'us':>9s}")
        for r in t["top_layers"]:
            print(f"{r['op'][:38]:38s} {r['shapes'][:44]:44s} {r['count']:5.0f} {r['self_us']:9.0f}")
        if o:
            print(f"{'OpenVINO node (PERF_COUNT)':48s} {'type':14s} {'kernel':24s} {'us':>9s}")
            for r in o["top_layers"]:
                print(f"{r['name'][:48]:48s} {r['node_type'][:14]:14s} {r['exec_type'][:24]:24s} {r['real_us']:9.0f}")
            print("OpenVINO per kernel: " + ", ".join(f"{r['exec_type']} {r['real_us'] / 1e3:.2f} ms ({r['count']})"
                                                     for r in o["by_kernel"][:6]))
        print("hrnet_fast per op: " + ", ".join(f"{r['op']} {r['self_us'] / 1e3:.2f} ms ({r['count']:.0f})"
                                                for r in t["by_op"][:6]))
        if prof.get("conv_shapes"):
            print(f"per convolution shape, {key} (oneDNN verbose times for hrnet_fast, PERF_COUNT for OpenVINO; "
                  f"largest difference first):")
            print_rows(prof["conv_shapes"], doc["setup"]["top"])
    acc = doc.get("accuracy")
    if acc:
        print(f"\n## keypoints against the official fp32 model: {acc['boxes']} person boxes on {', '.join(acc['photos'])} "
              f"({doc['setup']['weights']} weights)")
        for name, v in acc["variants"].items():
            print(f"{name:36s} within one heatmap pixel {100 * v['within_1px']:6.2f}%   argmax equal {100 * v['exact']:6.2f}%")
    for k, v in doc["skipped"].items():
        print(f"skipped: {k}: {v}")
    for w in doc["warnings"]:
        print(f"warning: {w}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="w32_256x192", help="config name or YAML (default w32_256x192)")
    p.add_argument("--weights", default=None, help="a checkpoint (official or mmpose) instead of random weights")
    p.add_argument("--batch", type=_batches, default=[1, 8], help="batch sizes (default 1,8)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every variant (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--min-time", type=float, default=12.0, help="seconds per variant over all rounds (default 12)")
    p.add_argument("--top", type=int, default=12, help="layers listed per profile (default 12)")
    p.add_argument("--persons", type=int, default=8, help="person boxes per photograph for the keypoint accuracy (default 8)")
    p.add_argument("--no-accuracy", action="store_true", help="skip the keypoint accuracy on photographs")
    p.add_argument("--inductor", action="store_true",
                   help="add optimize(m, engine='inductor') (TorchInductor, freezing + C++ wrapper; ~40 s of compiling "
                        "per batch size for W32 on 2 threads, reported)")
    p.add_argument("--out", default=None, help="write JSON here (results: benchmarks/results/)")
    p.add_argument("--quick", action="store_true", help="smoke run: the tiny test network, batch 1, short timings")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.quick:
        args.config, args.batch, args.rounds, args.min_time, args.top, args.persons = TINY_YAML, [1], 2, 0.1, 5, 2
    torch.set_num_threads(args.threads)
    load_start = load_average()

    torch.manual_seed(0)
    model = hrnet_fast.pose_hrnet(args.config)
    w_in, h_in = model.cfg["IMAGE_SIZE"]
    if args.weights:
        hrnet_fast.load_checkpoint(model, args.weights)
    else:
        realistic_random_init(model, image_hw=(h_in, w_in), seed=0, batches=1, batch_size=2)
    for unit in model.exchange_units():
        unit.configure(fused=False)  # the official computation
    model.eval()
    variants, info = build_variants(model, args.threads, inductor=args.inductor)
    graph = info.pop("graph", None)

    rows: List[Dict[str, Any]] = []
    profiles: Dict[str, Any] = {}
    for batch in args.batch:
        print(f"[bench_engines] batch {batch}: timing {len(variants)} variants", file=sys.stderr, flush=True)
        rows += time_batch(variants, batch, (h_in, w_in), args.rounds, args.min_time)
        x = torch.randn(batch, 3, h_in, w_in, generator=torch.Generator().manual_seed(batch))
        calls = 2 if args.quick else 3
        for key, fast, dtype, ov_name in (("fp32", FAST32, torch.float32, OV32), ("bf16", FAST16, torch.bfloat16, OV16)):
            prof = {"torch": torch_layers(variants[fast], _input(fast, x), calls, args.top)}
            ours = torch_conv_shapes(variants[fast], _input(fast, x))
            theirs = {}
            if ov_name in variants:
                prof["openvino"] = openvino_layers(graph, dtype, args.threads, x, calls, args.top, model.cfg)
                theirs = prof["openvino"].pop("conv_shapes")
            prof["conv_shapes"] = compare(ours, theirs)
            profiles[f"{key} batch {batch}"] = prof
    accuracy = None
    if not args.no_accuracy:
        print("[bench_engines] keypoints on photographs", file=sys.stderr, flush=True)
        photos = photographs(PHOTOS[:2] if args.quick else PHOTOS, args.persons)
        accuracy = keypoint_agreement(variants, photos, (w_in, h_in))
    if INDUCTOR in variants:
        info["compile_s"][INDUCTOR] = {"x".join(map(str, k)): v for k, v in variants[INDUCTOR].compile_s.items()}
    load_end = load_average()
    warnings = [m for m in (load_warning(load_start), load_warning(load_end)) if m][:1]
    warnings += spread_warnings({f"batch {r['batch']} {r['variant']}": r for r in rows})
    caps = None
    if "openvino" not in info["skipped"]:
        caps = list(engines._ov_capabilities())
    env = {**environment("cpu"), "load_average": [load_start, load_end], "engines": info["versions"],
           "openvino_cpu_capabilities": caps}
    doc = {"benchmark": "engines", "complete": True, "env": env,
           "setup": {"config": os.path.basename(args.config), "input_hw": [h_in, w_in], "batches": args.batch,
                     "threads": args.threads, "rounds": args.rounds, "min_time_s": args.min_time, "quick": bool(args.quick),
                     "top": args.top,
                     "weights": os.path.basename(args.weights) if args.weights else "random"},
           "rows": rows, "export_s": info.get("export_s"), "compile_s": info["compile_s"], "profiles": profiles,
           "accuracy": accuracy, "skipped": info["skipped"], "warnings": warnings}
    _print(doc)
    if args.out:
        write_json(args.out, doc, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
