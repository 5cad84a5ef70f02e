"""Heatmap decoding: the official numpy decode (with its device-to-host copy) vs hrnet_fast backends.

    python benchmarks/decode_table.py [--device cpu|cuda] [--batches 1,64,1024] [--json OUT]

Measures side by side in one run (on the CPU, interleaved round by round), prints a table (median ms, p20-p80, speed-ups over the numpy baseline
and over the torch backend) and writes JSON (device, versions, commit, rows). On CUDA the hrnet_fast rows
are timed with CUDA events over a loop of calls (so they include launch and Python overhead, with no
host sync inside a call), and again as CUDA-graph replays (``graph_median_ms``: GPU time alone); the
numpy rows are wall-clock and include the copy to the host.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import torch

from _decode_setup import DTYPES, SHAPES, environment, make_inputs, providers

HERE = os.path.dirname(os.path.abspath(__file__))


def _time_cpu_interleaved(fns, budget_s):
    """Time several callables side by side: each round times every one in turn (inner loops of about
    20 ms), so drifting load on a shared machine hits them alike. Returns {name: [seconds per call]}."""
    one = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()  # warm-up, and the estimate of one call
        one[name] = max(time.perf_counter() - t0, 1e-7)
        if one[name] < 0.1:
            t0 = time.perf_counter()
            fn()
            one[name] = max(time.perf_counter() - t0, 1e-7)
    inner = {name: max(1, min(1000, int(0.02 / t))) for name, t in one.items()}
    per_round = sum(one[name] * inner[name] for name in fns)
    rounds = max(3, min(15, int(budget_s * len(fns) / per_round)))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return times


def _time_cuda(fn, budget_s):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    one = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, min(200, int(0.01 / one)))
    rounds = max(5, min(20, int(budget_s / (one * inner))))
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    return times


def _time_cuda_graph(fn, reps=20, rounds=10):
    """GPU time of one call without host overhead: `reps` calls captured in a CUDA graph, replayed."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(reps):
                fn()
        graph.replay()
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - report, do not fail the table
        print(f"  (CUDA graph capture failed: {type(exc).__name__}: {exc})")
        return None
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / reps)
    return times


def _quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--batches", default="1,64,1024")
    p.add_argument("--dtypes", default="fp32,fp16")
    p.add_argument("--methods", default="quarter,flip_quarter,dark,udp",
                   help="dark/udp rows have no numpy baseline (the official code has quarter only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (the cpp backend's threads); default: torch's default")
    p.add_argument("--budget", type=float, default=0.5, help="seconds per measurement (approximate)")
    p.add_argument("--json", default=None, help="output JSON (default benchmarks/results/decode-<device>-<date>.json)")
    args = p.parse_args(argv)
    device = args.device
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("decode_table: --device cuda but no GPU is visible")
    timer = _time_cuda
    provs = providers(device)
    env = environment(device)
    rows = []
    print(f"# decode_heatmaps on {env['device_name']} (torch {env['torch']}, commit {env['commit']})")
    header = f"{'HxW':>6} {'N':>5} {'dtype':>5} {'method':>8} {'provider':>15} {'median ms':>10} {'p20-p80 ms':>17} {'x numpy':>9} {'x torch':>8}"
    print(header)
    print("-" * len(header))
    for (h, w) in SHAPES:
        for n in [int(b) for b in args.batches.split(",")]:
            for dname in args.dtypes.split(","):
                x = make_inputs(n, h, w, DTYPES[dname], device)
                for method in args.methods.split(","):
                    fns = {name: (lambda fn=fn: fn(method, x)) for name, fn in provs.items()
                           if name != "numpy_official" or method in ("quarter", "flip_quarter", "argmax")}
                    if device == "cpu":
                        res = _time_cpu_interleaved(fns, args.budget)
                    else:
                        res = {name: timer(fn, args.budget) for name, fn in fns.items()}
                    base = statistics.median(res["numpy_official"]) if "numpy_official" in res else None
                    tref = statistics.median(res["torch"])
                    for name, times in res.items():
                        med = statistics.median(times)
                        row = dict(H=h, W=w, N=n, K=17, dtype=dname, method=method, provider=name,
                                   median_ms=med * 1e3, p20_ms=_quantile(times, 0.2) * 1e3,
                                   p80_ms=_quantile(times, 0.8) * 1e3, rounds=len(times),
                                   speedup_vs_numpy=(base / med) if base else None, speedup_vs_torch=tref / med)
                        if device == "cuda" and name != "numpy_official":
                            g = _time_cuda_graph(lambda: fn(method, x))
                            row["graph_median_ms"] = statistics.median(g) * 1e3 if g else None
                        rows.append(row)
                        xn = f"{row['speedup_vs_numpy']:.1f}" if base else "-"
                        print(f"{h}x{w:<3} {n:>5} {dname:>5} {method:>8} {name:>15} {row['median_ms']:>10.4f} "
                              f"{row['p20_ms']:>8.4f}-{row['p80_ms']:<8.4f} {xn:>9} {row['speedup_vs_torch']:>8.1f}"
                              + (f"  graph {row['graph_median_ms']:.4f} ms" if row.get("graph_median_ms") else ""))
    env["load_average"] = os.getloadavg()  # the machine is shared: other work skews the timings
    out = args.json or os.path.join(HERE, "results", f"decode-{device}-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"benchmark": "decode_heatmaps", "env": env, "rows": rows}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
