"""Heatmap decoding: the official numpy decode (with its device-to-host copy) vs hrnet_fast backends.

    python benchmarks/decode_table.py [--device cpu|cuda] [--batches 1,64,1024] [--json OUT]

Measures side by side in one run, interleaved round by round (hrnet_fast._timing.measure_rounds), prints
a table (median ms, p20-p80, speed-ups over the numpy baseline and over the torch backend) and writes
JSON (device, versions, commit, rows; rewritten after every row group, so a run stopped by a time limit
keeps what it measured). On CUDA the rows are timed with CUDA events over loops of calls (launch and
Python overhead included, no host sync inside a call), and the hrnet_fast rows again as CUDA-graph
replays (``graph_median_ms``: GPU time alone; a failed capture is recorded as ``graph_error``); the
numpy rows include the copy to the host.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os

import torch

from _decode_setup import DTYPES, SHAPES, make_inputs, providers
from hrnet_fast._timing import environment, load_warning, measure, measure_rounds, spread_warnings
from hrnet_fast._atomic import atomic_open  # a killed run never leaves truncated JSON

HERE = os.path.dirname(os.path.abspath(__file__))


def _shapes(text: str):
    try:
        out = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW[,HxW...] (e.g. 64x48,96x72), got {text!r}") from None
    if any(len(s) != 2 or min(s) < 3 for s in out):
        raise argparse.ArgumentTypeError(f"expected heatmap sizes HxW of at least 3x3, got {text!r}")
    return out


def _ints(text: str):
    try:
        out = [int(v) for v in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return out


def _graph_ms(fn, device, budget):
    """Median ms per call of ``fn`` replayed from a CUDA graph of 20 calls; (None, error) if capture fails."""
    try:
        return measure(fn, device, min_time=budget, min_runs=5, cuda_graph=True, graph_calls=20)["ms"], None
    except Exception as exc:  # noqa: BLE001 - report, do not fail the table
        return None, f"{type(exc).__name__}: {exc}"[:300]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--shapes", type=_shapes, default=SHAPES, help="heatmap sizes HxW (default 64x48,96x72)")
    p.add_argument("--batches", type=_ints, default=[1, 64, 1024])
    p.add_argument("--dtypes", default="fp32,fp16")
    p.add_argument("--methods", default="quarter,flip_quarter,dark,udp",
                   help="dark/udp rows have no numpy baseline (the official code has quarter only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (the cpp backend's threads); default: torch's default")
    p.add_argument("--budget", type=float, default=0.5, help="seconds per measurement (approximate)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement")
    p.add_argument("--json", default=None, help="output JSON (default benchmarks/results/decode-<device>-<date>.json)")
    args = p.parse_args(argv)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    bad = [d for d in args.dtypes.split(",") if d not in DTYPES]
    if bad:
        p.error(f"--dtypes: expected a comma-separated subset of {sorted(DTYPES)}, got {args.dtypes!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    provs = providers(device)
    env = environment(device)
    rows = []
    out = args.json or os.path.join(HERE, "results", f"decode-{device}-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    def save(complete):
        env["load_average"] = os.getloadavg()  # the machine is shared: other work skews the timings
        with atomic_open(out) as f:
            json.dump({"benchmark": "decode_heatmaps", "env": env, "complete": complete, "rows": rows}, f, indent=2)

    print(f"# decode_heatmaps on {env['device_name']} (torch {env['torch']}, commit {env['commit']})")
    header = f"{'HxW':>6} {'N':>5} {'dtype':>5} {'method':>8} {'provider':>15} {'median ms':>10} {'p20-p80 ms':>17} {'x numpy':>9} {'x torch':>8}"
    print(header)
    print("-" * len(header))
    # inner loops of ~20 ms on the CPU (perf_counter resolution, Python overhead), ~10 ms on the GPU
    sample_time = 0.01 if device == "cuda" else 0.02
    for (h, w) in args.shapes:
        for n in args.batches:
            for dname in args.dtypes.split(","):
                x = make_inputs(n, h, w, DTYPES[dname], device)
                for method in args.methods.split(","):
                    # the callables exist before any timing or capture: each binds its provider and method
                    fns = {name: (lambda fn=fn, method=method: fn(method, x)) for name, fn in provs.items()
                           if name != "numpy_official" or method in ("quarter", "flip_quarter", "argmax")}
                    res = measure_rounds(fns, device, rounds=args.rounds, min_time=args.budget, min_runs=1,
                                         sample_time=sample_time)
                    base = res["numpy_official"]["ms"] if "numpy_official" in res else None
                    tref = res["torch"]["ms"]
                    for name, st in res.items():
                        row = dict(H=h, W=w, N=n, K=17, dtype=dname, method=method, provider=name,
                                   median_ms=st["ms"], p20_ms=st["p20_ms"], p80_ms=st["p80_ms"], rounds=len(st["rounds_ms"]),
                                   round_spread=st["round_spread"], calls=st["calls"],
                                   speedup_vs_numpy=(base / st["ms"]) if base else None, speedup_vs_torch=tref / st["ms"])
                        if device == "cuda" and name != "numpy_official":
                            row["graph_median_ms"], err = _graph_ms(fns[name], device, args.budget / 2)
                            if err:
                                row["graph_error"] = err
                                print(f"  (CUDA graph capture of {name} failed: {err})")
                        rows.append(row)
                        xn = f"{row['speedup_vs_numpy']:.1f}" if base else "-"
                        print(f"{h}x{w:<3} {n:>5} {dname:>5} {method:>8} {name:>15} {row['median_ms']:>10.4f} "
                              f"{row['p20_ms']:>8.4f}-{row['p80_ms']:<8.4f} {xn:>9} {row['speedup_vs_torch']:>8.1f}"
                              + (f"  graph {row['graph_median_ms']:.4f} ms" if row.get("graph_median_ms") else ""))
                    save(complete=False)
                    for msg in spread_warnings({f"{h}x{w} N={n} {dname} {method} {k}": v for k, v in res.items()},
                                               threshold=0.25):
                        print(f"  warning: {msg}")
    busy = load_warning()
    if busy:
        print(f"warning: {busy}")
    save(complete=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
