"""Host overhead of one exchange-unit call: what a GPU waits on in eager mode, measured without a GPU.

The W32 stage-4 exchange unit on tiny branch tensors (1x32x8x8, 1x64x4x4, 1x128x2x2, 1x256x1x1), where
the arithmetic is negligible: the time is Python, dispatch and allocation. Three versions side by side:

* ``official``: the official fuse layers (1x1 conv + BN + upsample, strided 3x3 conv + BN (+ReLU), adds,
  ReLU), op for op, eval mode;
* ``unit``: the ExchangeUnit of a plain (not optimized) hrnet_fast model: one fused op per output branch,
  arguments checked and the fold cache validated per call;
* ``optimized``: the same unit inside ``hrnet_fast.optimize()``'s frozen plan (prepared arguments, the
  backend bound once, fused convolution epilogues).

Besides time (noisy on a shared machine: rounds interleaved, spread reported) it counts the operators
each call dispatches (a TorchDispatchMode), which does not depend on the machine's load.

    python benchmarks/exchange_host_overhead.py [--rounds 5] [--out benchmarks/results/host-overhead.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import hrnet_fast
from hrnet_fast import _timing
from hrnet_fast._atomic import atomic_open  # a killed run never leaves truncated JSON


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn) -> int:
    with _CountOps() as mode:
        fn()
    return mode.count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="w32_256x192")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of sampling per version, over all rounds")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model = hrnet_fast.pose_hrnet(args.config).eval()
    fast = hrnet_fast.optimize(model, channels_last=False, cuda_graphs=False)
    official = model.stage4[0].fuse_layers
    plan_unit = fast.inference_plan().exchange(fast.stage4[0].fuse_layers)
    chans = list(model.stage4_cfg["NUM_CHANNELS"])  # W32: 32, 64, 128, 256
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(1, c, 8 >> i, 8 >> i, generator=gen) for i, c in enumerate(chans)]
    fns = {
        "official": lambda: official.reference_forward(xs),
        "unit": lambda: official.fused_forward(xs),
        "optimized": lambda: plan_unit(xs),
    }
    with torch.no_grad():
        for fn in fns.values():  # first calls choose implementations, reorder weights, fold: not per call
            fn()
        ops = {name: count_ops(fn) for name, fn in fns.items()}
        stats = _timing.measure_rounds(fns, torch.device("cpu"), rounds=args.rounds, min_time=args.min_time,
                                       min_runs=20, max_runs=100000)
    base = stats["official"]["ms"]
    print(f"exchange unit host overhead: {args.config} stage 4 unit on {[tuple(x.shape) for x in xs]}, "
          f"{_timing.device_name(torch.device('cpu'))}")
    warn = _timing.load_warning()
    if warn:
        print(f"warning: {warn}")
    print(f"{'version':10s} {'ops':>5s} {'us/call':>9s} {'p20':>8s} {'p80':>8s} {'x official':>10s} {'round spread':>12s}")
    for name, st in stats.items():
        print(f"{name:10s} {ops[name]:5d} {st['ms'] * 1e3:9.1f} {st['p20_ms'] * 1e3:8.1f} {st['p80_ms'] * 1e3:8.1f} "
              f"{st['ms'] / base:10.2f} {st['round_spread'] * 100:11.0f}%")
    for w in _timing.spread_warnings(stats):
        print(f"warning: {w}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with atomic_open(args.out) as fh:
            json.dump({"config": args.config, "device": _timing.device_name(torch.device("cpu")),
                       "torch": torch.__version__, "load_average": _timing.load_average(),
                       "ops": ops, "stats": stats}, fh, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
