"""Training targets: the official per-sample numpy loop vs hrnet_fast.ops.heatmap_targets backends.

    python benchmarks/bench_heatmap_targets.py [--device cpu|cuda] [--batch 32] [--method msra|udp]
                                               [--threads N] [--quick] [--out results/targets.json]

A batch of N samples of 17 COCO joints in crop pixels (some outside the crop, a fifth invisible), targets for
a 256x192 input and 64x48 heatmaps (sigma 2), or 384x288 / 96x72 (sigma 3) with ``--large``:

* ``official``: what the official loader does, per sample: ``JointsDataset.generate_target`` (numpy port,
  ``hrnet_fast/baselines/official_targets.py``; for udp, mmpose's ``UDPHeatmap`` encode), then the batch
  collated into tensors (``torch.from_numpy`` + ``torch.stack``, as the DataLoader's collate, and copied to the
  GPU with ``--device cuda``).
* ``torch`` (the reference), ``cpp`` (CPU), ``cuda``, ``triton`` (GPU): one ``heatmap_targets`` call.

Times are interleaved round by round (``hrnet_fast._timing.measure_rounds``). The table gives the median per
call, p20-p80, the time per sample, the speed-up over ``official`` and each provider's largest difference from
the official targets (0 expected for msra). JSON is written (atomically) only with ``--out``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os

import numpy as np
import torch

import hrnet_fast  # noqa: F401  (registers the ops)
from hrnet_fast import _backends
from hrnet_fast._atomic import atomic_open  # a killed run never leaves truncated JSON
from hrnet_fast._timing import environment, load_warning, measure_rounds, spread_warnings
from hrnet_fast.baselines import official_targets as O
from hrnet_fast.ops import OPS, heatmap_targets

T = OPS["heatmap_targets"].module  # the op's module (hrnet_fast.ops.heatmap_targets is the op)


def make_inputs(n: int, image_hw, seed: int = 0):
    """(N, 17, 2) float32 keypoints in crop pixels (10% outside) and (N, 17) float32 visibilities (0/1)."""
    g = np.random.default_rng(seed)
    ih, iw = image_hw
    kp = (g.uniform(-0.05, 1.05, (n, 17, 2)) * np.array([iw, ih])).astype(np.float32)
    vis = (g.uniform(size=(n, 17)) > 0.2).astype(np.float32)
    return kp, vis


def official_batch(kp, vis, image_hw, heatmap_hw, sigma, method, device):
    """The official per-sample targets, collated into (N, K, H, W) and (N, K, 1) tensors."""
    (ih, iw), (hh, hw) = image_hw, heatmap_hw
    ts, ws = [], []
    for n in range(kp.shape[0]):
        if method == "msra":
            joints = np.zeros((kp.shape[1], 3), dtype=np.float64)  # coco.py:184: float64 joints_3d
            joints[:, :2] = kp[n]
            jv = np.repeat(vis[n][:, None].astype(np.float64), 3, 1)
            t, w = O.generate_target(joints, jv, (iw, ih), (hw, hh), sigma)
        else:
            t, w = O.udp_gaussian_heatmaps(kp[n:n + 1], vis[n:n + 1], (iw, ih), (hw, hh), sigma)
            w = w.reshape(-1, 1)
        ts.append(torch.from_numpy(t))
        ws.append(torch.from_numpy(w))
    out = torch.stack(ts), torch.stack(ws)
    return tuple(o.to(device) for o in out) if device != "cpu" else out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=32, help="samples per call (default 32, the official batch per GPU)")
    p.add_argument("--method", default="msra", choices=sorted(T.METHODS))
    p.add_argument("--large", action="store_true", help="384x288 input, 96x72 heatmaps, sigma 3")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--budget", type=float, default=1.0, help="seconds per provider (approximate)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--quick", action="store_true", help="tiny batch and budget (smoke test)")
    p.add_argument("--out", default=None, help="write the results as JSON here (e.g. benchmarks/results/targets-cpu.json)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    if args.batch < 1:
        p.error("--batch must be positive")
    if args.quick:
        args.batch, args.budget, args.rounds = 2, 0.02, 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    image_hw, heatmap_hw, sigma = ((384, 288), (96, 72), 3.0) if args.large else ((256, 192), (64, 48), 2.0)
    kp, vis = make_inputs(args.batch, image_hw)
    kp_dev, vis_dev = torch.from_numpy(kp).to(device), torch.from_numpy(vis).to(device)

    fns = {"official": lambda: official_batch(kp, vis, image_hw, heatmap_hw, sigma, args.method, device)}
    skipped = {}
    for name in ("torch", "cpp", "cuda", "triton"):
        if name == "triton" and device == "cpu":
            skipped[name] = "the Triton interpreter is not a CPU backend"
            continue
        why = T.SUPPORT.not_supported_reasons(name, torch.device(device), torch.float64,
                                              (T.METHODS[args.method], *heatmap_hw))
        if why:
            skipped[name] = "; ".join(why)
            continue
        fns[name] = (lambda be: lambda: heatmap_targets(kp_dev, vis_dev, image_hw, heatmap_hw, sigma=sigma,
                                                        method=args.method, backend=be))(name)

    outs = {name: [o.cpu() for o in fn()] for name, fn in fns.items()}
    stats = measure_rounds(fns, device, rounds=args.rounds, min_time=args.budget * len(fns))
    env = environment(device)
    warnings = ([load_warning()] if load_warning() else []) + spread_warnings(stats)
    base = stats["official"]["ms"]
    rows = []
    print(f"heatmap_targets ({args.method}) on {env['device_name']}: {args.batch} samples x 17 joints, "
          f"{image_hw[0]}x{image_hw[1]} -> {heatmap_hw[0]}x{heatmap_hw[1]}, sigma {sigma:g}, torch {env['torch']}, "
          f"{env['threads']} threads")
    print(f"{'provider':<9} {'median ms':>10} {'p20-p80 ms':>15} {'us/sample':>10} {'vs official':>12} {'max |d|':>9}")
    for name, st in stats.items():
        diff = max(float((o - r).abs().max()) if o.numel() else 0.0 for o, r in zip(outs[name], outs["official"]))
        row = {"provider": name, "median_ms": st["ms"], "p20_ms": st["p20_ms"], "p80_ms": st["p80_ms"],
               "us_per_sample": 1000.0 * st["ms"] / args.batch, "round_spread": st["round_spread"],
               "speedup_vs_official": base / st["ms"], "max_diff_vs_official": diff}
        rows.append(row)
        print(f"{name:<9} {st['ms']:>10.3f} {st['p20_ms']:>7.3f}-{st['p80_ms']:<7.3f} {row['us_per_sample']:>10.1f} "
              f"{'x%.1f' % row['speedup_vs_official']:>12} {diff:>9.2g}")
    for name, why in skipped.items():
        print(f"{name:<9} skipped: {why}")
    for w in warnings:
        print(f"warning: {w}")
    if args.out:
        doc = {"benchmark": "heatmap_targets", "date": datetime.datetime.now().isoformat(timespec="seconds"), "env": env,
               "config": {"batch": args.batch, "joints": 17, "method": args.method, "image_hw": list(image_hw),
                          "heatmap_hw": list(heatmap_hw), "sigma": sigma, "rounds": args.rounds, "quick": args.quick},
               "rows": rows, "skipped": skipped, "warnings": warnings, "backends": _backends.backends()}
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with atomic_open(args.out) as fh:
            json.dump(doc, fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
