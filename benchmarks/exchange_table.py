"""Side-by-side table: every exchange unit of W32 and W48 at 256x192, fused vs the unfused reference.

    PYTHONPATH=. python benchmarks/exchange_table.py                 # CPU: batch 1 and 8, cpp vs torch
    PYTHONPATH=. python benchmarks/exchange_table.py --device cuda   # GPU: batch 1, 8, 64, fp16/fp32,
                                                                     # cuda/triton vs torch and torch.compile

Per unit shape (with how many units of the model share it) and for the whole model (sum over units),
per batch, dtype, layout and mode (fwd; fwdbwd = forward + backward w.r.t. every input): median time per
provider, the speedup of each fused provider over the unfused reference (torch), and on a GPU the
effective forward bandwidth (bytes that must move / time) against a device-to-device copy of the same
size. Providers are measured interleaved, round after round, so a noisy machine hits them alike; the
reported time is the best round's median per call (all rounds are in the JSON). Writes JSON to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exchange_cases import (MODELS, copy_time, device_info, forward_bytes, make_args, measure,  # noqa: E402
                            provider_fn, workloads)
from hrnet_fast.ops.fused_exchange import resolve_backend  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def parse():
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if gpu else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=None, help="default: 1 8 (CPU), 1 8 64 (GPU)")
    p.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES),
                   help="default: float32 (CPU), float16 float32 (GPU)")
    p.add_argument("--layouts", nargs="+", default=["nchw", "nhwc"], choices=["nchw", "nhwc"])
    p.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    p.add_argument("--providers", nargs="+", default=None,
                   help="default: torch cpp (CPU); torch compile cuda triton (GPU)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    p.add_argument("--min-time", type=float, default=0.15, help="seconds per provider per round")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/exchange_<device>.json)")
    a = p.parse_args()
    a.batches = a.batches or ([1, 8, 64] if a.device == "cuda" else [1, 8])
    a.dtypes = a.dtypes or (["float16", "float32"] if a.device == "cuda" else ["float32"])
    a.providers = a.providers or (["torch", "compile", "cuda", "triton"] if a.device == "cuda" else ["torch", "cpp"])
    return a


def available(provider: str, device: str, dtype: torch.dtype) -> bool:
    if provider in ("torch", "compile"):
        return True
    try:
        resolve_backend(torch.empty(1, 1, 1, 1, device=device, dtype=dtype), provider)
        return True
    except RuntimeError as exc:
        print(f"# skipping {provider} for {dtype}: {exc}", file=sys.stderr)
        return False


def main():
    a = parse()
    if a.threads:
        torch.set_num_threads(a.threads)
    info = device_info(a.device)
    print(f"# {info['device']} | torch {info['torch']} | commit {info['commit']}")
    rows = []
    for model in a.models:
        wls = workloads(model)
        for batch in a.batches:
            for dname in a.dtypes:
                dtype = DTYPES[dname]
                provs = [p for p in a.providers if available(p, a.device, dtype)]
                for layout in a.layouts:
                    for mode in a.modes:
                        totals = {p: 0.0 for p in provs}
                        for wl in wls:
                            args = make_args(wl, batch, dtype=dtype, device=a.device,
                                             channels_last=layout == "nhwc", requires_grad=mode == "fwdbwd")
                            fns = {p: provider_fn(p, args, mode) for p in provs}
                            per_round = {p: [] for p in provs}
                            for _ in range(a.rounds):
                                for p in provs:
                                    per_round[p].append(measure(fns[p], a.device, min_time=a.min_time)["median"])
                            # the best round: on a shared machine, slow rounds are other processes' time
                            t = {p: min(v) for p, v in per_round.items()}
                            row = dict(model=model, unit=wl.stage, count=wl.count, batch=batch, dtype=dname,
                                       layout=layout, mode=mode, times_s=t, rounds_s=per_round)
                            if mode == "fwd":
                                row["bytes"] = forward_bytes(args)
                                if a.device == "cuda":
                                    row["copy_s"] = copy_time(row["bytes"], a.device)
                            rows.append(row)
                            for p in provs:
                                totals[p] += wl.count * t[p]
                        rows.append(dict(model=model, unit="all", count=sum(w.count for w in wls), batch=batch,
                                         dtype=dname, layout=layout, mode=mode, times_s=totals))
    print_table(rows, a)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"exchange_{a.device}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "info": info, "args": vars(a), "rows": rows}, f, indent=1)
    print(f"# wrote {out}")


def print_table(rows, a):
    provs = a.providers
    fused = [p for p in provs if p not in ("torch", "compile")]
    head = f"{'model':12} {'unit':14} {'n':>2} {'batch':>5} {'dtype':8} {'layout':6} {'mode':6} "
    head += " ".join(f"{p + ' ms':>10}" for p in provs)
    head += " " + " ".join(f"{'x' + p:>9}" for p in fused)
    if a.device == "cuda":
        head += " " + " ".join(f"{p + ' %copy':>12}" for p in fused)
    print(head)
    for r in rows:
        t = r["times_s"]
        line = (f"{r['model'][:12]:12} {r['unit']:14} {r['count']:>2} {r['batch']:>5} {r['dtype']:8} {r['layout']:6} "
                f"{r['mode']:6} ")
        line += " ".join(f"{t[p] * 1e3:>10.3f}" if p in t else f"{'-':>10}" for p in provs)
        line += " " + " ".join(f"{t['torch'] / t[p]:>9.2f}" if p in t and "torch" in t else f"{'-':>9}" for p in fused)
        if a.device == "cuda" and "copy_s" in r:
            # %copy: effective bandwidth (bytes / time) relative to the copy's (bytes / copy time)
            line += " " + " ".join(f"{100 * r['copy_s'] / t[p]:>11.0f}%" if p in t else f"{'-':>12}" for p in fused)
        print(line)


if __name__ == "__main__":
    main()
