"""Side-by-side table: every exchange unit of W32 and W48 at 256x192, fused vs the unfused reference.

    PYTHONPATH=. python benchmarks/exchange_table.py                 # CPU: batch 1 and 8, cpp vs torch
    PYTHONPATH=. python benchmarks/exchange_table.py --device cuda   # GPU: batch 1, 8, 64, fp16/fp32,
                                                                     # cuda/triton vs torch and torch.compile

Per unit shape (with how many units of the model share it) and for the whole model (sum over units),
per batch, dtype, layout and mode (fwd; fwdbwd = forward + backward w.r.t. every input): median time per
provider, the speedup of each fused provider over the unfused reference (torch), and on a GPU the
effective forward bandwidth (bytes that must move / time) against a device-to-device copy of the same
size. Providers are measured interleaved, round after round (hrnet_fast._timing.measure_rounds), so a
noisy machine hits them alike; the reported time is the best round's median per call (all rounds are in
the JSON). On a GPU, forward rows are also timed as CUDA-graph replays (``graph_times_s``: GPU time
without the host's per-op overhead, which dominates eager timings of these small ops). The JSON is
rewritten after every unit, so a run stopped by a time limit keeps what it measured.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exchange_cases import (IMAGE, MODELS, available, copy_time, device_info, forward_bytes,  # noqa: E402
                            make_args, provider_fn, workloads)
from hrnet_fast._timing import measure_rounds  # noqa: E402
from hrnet_fast._atomic import atomic_open  # noqa: E402  (a killed run never leaves truncated JSON)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def _hw(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 256x192), got {text!r}") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise argparse.ArgumentTypeError(f"expected positive multiples of 32, got {text!r}")
    return h, w


def parse(argv=None):
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if gpu else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="config names or YAML paths")
    p.add_argument("--image", type=_hw, default=IMAGE, help="input HxW (default 256x192; smaller for a smoke run)")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 8 (CPU), 1 8 64 (GPU)")
    p.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES),
                   help="default: float32 (CPU), float16 bfloat16 (GPU)")
    p.add_argument("--layouts", nargs="+", default=["nchw", "nhwc"], choices=["nchw", "nhwc"])
    p.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    p.add_argument("--providers", nargs="+", default=None,
                   help="default: torch cpp (CPU); torch compile cuda triton (GPU)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    p.add_argument("--min-time", type=float, default=0.15, help="seconds per provider per round")
    p.add_argument("--no-cuda-graph", action="store_true", help="on a GPU, skip the CUDA-graph timings")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/exchange_<device>.json)")
    a = p.parse_args(argv)
    if a.device == "cuda" and not gpu:
        p.error("--device cuda: torch sees no CUDA GPU")
    if a.rounds < 1 or any(b <= 0 for b in a.batches or []):
        p.error("--rounds and --batches must be positive")
    a.batches = a.batches or ([1, 8, 64] if a.device == "cuda" else [1, 8])
    a.dtypes = a.dtypes or (["float16", "bfloat16"] if a.device == "cuda" else ["float32"])
    a.providers = a.providers or (["torch", "compile", "cuda", "triton"] if a.device == "cuda" else ["torch", "cpp"])
    return a


def _graph_times(fns, device, min_time):
    """Per provider: seconds per call as CUDA-graph replays, or the capture's error (recorded, not fatal)."""
    times, errors = {}, {}
    for p, fn in fns.items():
        try:
            times[p] = measure_rounds({p: fn}, device, rounds=1, min_time=min_time, cuda_graph=True,
                                      graph_calls=5)[p]["ms"] / 1e3
        except Exception as exc:  # noqa: BLE001 - one provider's capture failing must not lose the table
            errors[p] = f"{type(exc).__name__}: {exc}"[:300]
    return times, errors


def main(argv=None):
    a = parse(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    info = device_info(a.device)
    print(f"# {info['device']} | torch {info['torch']} | commit {info['commit']}")
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"exchange_{a.device}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    args_json = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(a).items()}
    rows, skipped = [], {}

    def save(complete):
        with atomic_open(out) as f:
            json.dump({"date": date, "info": info, "args": args_json, "complete": complete, "skipped": skipped,
                       "rows": rows}, f, indent=1)

    for model in a.models:
        wls = workloads(model, a.image)
        for batch in a.batches:
            for dname in a.dtypes:
                dtype = DTYPES[dname]
                provs = []
                for p in a.providers:
                    why = available(p, a.device, dtype)
                    if why:
                        skipped[f"{p}/{dname}"] = why
                        print(f"# skipping {p} for {dname}: {why}", file=sys.stderr)
                    else:
                        provs.append(p)
                for layout in a.layouts:
                    for mode in a.modes:
                        totals = {p: 0.0 for p in provs}
                        for wl in wls:
                            args = make_args(wl, batch, dtype=dtype, device=a.device,
                                             channels_last=layout == "nhwc", requires_grad=mode == "fwdbwd")
                            fns = {p: provider_fn(p, args, mode) for p in provs}
                            res = measure_rounds(fns, a.device, rounds=a.rounds, min_time=a.min_time * a.rounds,
                                                 min_runs=5, warmup=2, sample_time=1e-3 if a.device == "cuda" else 0.0)
                            # the best round: on a shared machine, slow rounds are other processes' time
                            t = {p: min(r["rounds_ms"]) / 1e3 for p, r in res.items()}
                            row = dict(model=model, unit=wl.stage, count=wl.count, batch=batch, dtype=dname,
                                       layout=layout, mode=mode, times_s=t,
                                       rounds_s={p: [v / 1e3 for v in r["rounds_ms"]] for p, r in res.items()},
                                       round_spread={p: r["round_spread"] for p, r in res.items()})
                            if mode == "fwd":
                                row["bytes"] = forward_bytes(args)
                                if a.device == "cuda":
                                    row["copy_s"] = copy_time(row["bytes"], a.device)
                                    if not a.no_cuda_graph:
                                        row["graph_times_s"], errs = _graph_times(fns, a.device, a.min_time)
                                        if errs:
                                            row["graph_errors"] = errs
                            rows.append(row)
                            save(complete=False)
                            for p in provs:
                                totals[p] += wl.count * t[p]
                        rows.append(dict(model=model, unit="all", count=sum(w.count for w in wls), batch=batch,
                                         dtype=dname, layout=layout, mode=mode, times_s=totals))
    print_table(rows, a)
    save(complete=True)
    print(f"# wrote {out}")


def print_table(rows, a):
    provs = a.providers
    fused = [p for p in provs if p not in ("torch", "compile")]
    head = f"{'model':12} {'unit':14} {'n':>2} {'batch':>5} {'dtype':8} {'layout':6} {'mode':6} "
    head += " ".join(f"{p + ' ms':>10}" for p in provs)
    head += " " + " ".join(f"{'x' + p:>9}" for p in fused)
    if a.device == "cuda":
        head += " " + " ".join(f"{p + ' %copy':>12}" for p in fused)
        head += " " + " ".join(f"{p + ' graph':>12}" for p in provs)
    print(head)
    for r in rows:
        t = r["times_s"]
        line = (f"{os.path.basename(r['model'])[:12]:12} {r['unit']:14} {r['count']:>2} {r['batch']:>5} {r['dtype']:8} "
                f"{r['layout']:6} {r['mode']:6} ")
        line += " ".join(f"{t[p] * 1e3:>10.3f}" if p in t else f"{'-':>10}" for p in provs)
        line += " " + " ".join(f"{t['torch'] / t[p]:>9.2f}" if p in t and "torch" in t else f"{'-':>9}" for p in fused)
        if a.device == "cuda" and "copy_s" in r:
            # %copy: effective bandwidth (bytes / time) relative to the copy's (bytes / copy time)
            line += " " + " ".join(f"{100 * r['copy_s'] / t[p]:>11.0f}%" if p in t else f"{'-':>12}" for p in fused)
            g = r.get("graph_times_s", {})
            line += " " + " ".join(f"{g[p] * 1e3:>12.4f}" if p in g else f"{'-':>12}" for p in provs)
        print(line)


if __name__ == "__main__":
    main()
