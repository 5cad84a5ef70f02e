"""The ``hrnet-fast`` command line: ``bench``, ``info``, ``check``.

    hrnet-fast bench [--config w32_256x192] [--batch 1,8] [--dtype fp32] [--device auto]
                     [--backend auto] [--weights PATH] [--json OUT] [--quick]
    hrnet-fast info
    hrnet-fast check [--device auto]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from typing import Any, Dict, List, Optional

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _progress(msg: str) -> None:
    print(f"[hrnet-fast] {msg}", file=sys.stderr, flush=True)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("hrnet-fast: --device cuda asked for, but torch sees no CUDA GPU")
    return dev


def _versions() -> Dict[str, Any]:
    import hrnet_fast

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001
        triton_version = None
    return {
        "hrnet_fast": hrnet_fast.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------- info


def cmd_info(args) -> int:
    import hrnet_fast
    from hrnet_fast._timing import cpu_name

    v = _versions()
    print(f"hrnet_fast {v['hrnet_fast']}  torch {v['torch']} (CUDA {v['torch_cuda']})  triton {v['triton']}  python {v['python']}")
    print(f"CPU: {cpu_name()}, {v['threads']} torch threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")
    else:
        print("GPU: none visible to torch")
    print("backends:")
    for name, st in hrnet_fast.backends().items():
        print(f"  {name:7s} {'yes' if st['available'] else 'no ':3s}  {st['reason']}")
    return 0


# ---------------------------------------------------------------------------------------------- bench


def _build_models(args, device, dtype):
    import hrnet_fast
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(args.config)
    h, w = model.cfg["IMAGE_SIZE"][1], model.cfg["IMAGE_SIZE"][0]
    if args.weights:
        hrnet_fast.load_checkpoint(model, args.weights, strict=True)
        model.eval()
    else:
        realistic_random_init(model, image_hw=(h, w), seed=0, batches=1, batch_size=2)
    for unit in model.exchange_units():
        unit.configure(fused=False)  # the reference is the official computation
    reference = model.to(device=device, dtype=dtype).eval()
    fast = hrnet_fast.optimize(reference, channels_last=True, backend=args.backend)
    return reference, fast, (h, w)


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _capture_unit_inputs(model, x) -> List[List[torch.Tensor]]:
    """The branch tensors each exchange unit receives in one forward of ``model``."""
    units = model.exchange_units()
    captured: List[Optional[List[torch.Tensor]]] = [None] * len(units)
    hooks = []
    for k, unit in enumerate(units):
        def pre(mod, inputs, k=k):
            captured[k] = [t.detach().clone() for t in inputs[0]]
        hooks.append(unit.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hk in hooks:
            hk.remove()
    return captured  # type: ignore[return-value]


def _bench_exchange(reference, fast, x, device, timing, rows, batch, dtype_name):
    ref_units, fast_units = reference.exchange_units(), fast.exchange_units()
    # Both paths get the same values (the reference's), each in the memory layout its model runs in, so
    # the error measures the units alone and not the drift of the models upstream.
    ref_in = _capture_unit_inputs(reference, x)
    fmt = torch.channels_last if getattr(fast, "input_channels_last", False) else torch.contiguous_format
    fast_dtype = next(fast.parameters()).dtype
    fast_in = [[t.to(fast_dtype).contiguous(memory_format=fmt) for t in xs] for xs in ref_in]

    def run(units, inputs):
        return [u(xs) for u, xs in zip(units, inputs)]

    with torch.no_grad():
        ref_out, fast_out = run(ref_units, ref_in), run(fast_units, fast_in)
        err = max(_max_rel(f, r) for fo, ro in zip(fast_out, ref_out) for f, r in zip(fo, ro))
        t_ref = timing(lambda: run(ref_units, ref_in))
        t_fast = timing(lambda: run(fast_units, fast_in))
    rows.append(dict(section="exchange", batch=batch, dtype=dtype_name, variant=f"reference: {len(ref_units)} units, official", **t_ref))
    rows.append(dict(section="exchange", batch=batch, dtype=dtype_name, variant="hrnet_fast: BN folded, fused op", speedup=t_ref["ms"] / t_fast["ms"], max_rel_err=err, **t_fast))


def _bench_model(reference, fast, x, device, timing, rows, batch, dtype_name, compile_ref: bool):
    with torch.no_grad():
        ref_out = reference(x)
        fast_out = fast(x)
        err = _max_rel(fast_out, ref_out)
        t_ref = timing(lambda: reference(x))
        t_fast = timing(lambda: fast(x))
    rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant="reference (official eager)", **t_ref))
    rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant="hrnet_fast.optimize", speedup=t_ref["ms"] / t_fast["ms"], max_rel_err=err, **t_fast))
    if device.type == "cuda":
        # A failure here (a compile error, an op that cannot be captured) is recorded, not fatal: the
        # other rows of the run stay valid.
        if compile_ref:
            _progress(f"model batch {batch}: compiling the reference with torch.compile")
            try:
                compiled = torch.compile(reference)
                with torch.no_grad():
                    c_out = compiled(x)
                    t_c = timing(lambda: compiled(x))
                rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant="reference + torch.compile",
                                 speedup=t_ref["ms"] / t_c["ms"], max_rel_err=_max_rel(c_out, ref_out), **t_c))
            except Exception as exc:  # noqa: BLE001
                _progress(f"torch.compile of the reference failed: {type(exc).__name__}: {exc}")
                rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant="reference + torch.compile",
                                 error=f"{type(exc).__name__}: {exc}"[:500]))
        try:
            graph_fn, g_out = _cuda_graph(fast, x)
            t_g = timing(graph_fn)
            rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant="hrnet_fast.optimize + CUDA graph",
                             speedup=t_ref["ms"] / t_g["ms"], max_rel_err=_max_rel(g_out, ref_out), **t_g))
        except Exception as exc:  # noqa: BLE001
            _progress(f"CUDA graph capture of the optimized model failed: {type(exc).__name__}: {exc}")
            rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant="hrnet_fast.optimize + CUDA graph",
                             error=f"{type(exc).__name__}: {exc}"[:500]))


def _cuda_graph(model, x):
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = model(static_x)
    graph.replay()
    torch.cuda.synchronize()
    return graph.replay, static_out.clone()


def _bench_decode(fast, x, device, timing, rows, batch, dtype_name, backend):
    """Official decoding (host copy + numpy get_final_preds) vs hrnet_fast.decode_heatmaps (quarter)."""
    import numpy as np

    from hrnet_fast.baselines.official_numpy import official_decode
    from hrnet_fast.ops.decode_heatmaps import decode_heatmaps

    with torch.no_grad():
        heatmaps = fast(x)
    n, _, hh, hw = heatmaps.shape
    gen = torch.Generator().manual_seed(1)
    center = torch.rand(n, 2, generator=gen) * torch.tensor([4.0 * hw, 4.0 * hh])
    s = torch.rand(n, 1, generator=gen) + 0.5
    scale = torch.cat([s, s * hh / hw], dim=1)
    center_np, scale_np = center.numpy().astype(np.float64), scale.numpy().astype(np.float64)
    center_d, scale_d = center.to(device), scale.to(device)
    # what the official validate() gets: the model output in its dtype (numpy has no bfloat16)
    ref_in = heatmaps.float() if heatmaps.dtype == torch.bfloat16 else heatmaps
    ref_coords, _ = official_decode(ref_in, center_np, scale_np)
    coords, _ = decode_heatmaps(heatmaps, center_d, scale_d, method="quarter", backend=backend)
    err = float(np.abs(coords.double().cpu().numpy() - ref_coords).max())
    t_ref = timing(lambda: official_decode(ref_in, center_np, scale_np))
    t_fast = timing(lambda: decode_heatmaps(heatmaps, center_d, scale_d, method="quarter", backend=backend))
    rows.append(dict(section="decode", batch=batch, dtype=dtype_name, variant="official numpy (incl. device-to-host copy)", **t_ref))
    rows.append(dict(section="decode", batch=batch, dtype=dtype_name, variant="hrnet_fast.decode_heatmaps (quarter)",
                     speedup=t_ref["ms"] / t_fast["ms"], max_abs_err_px=err, **t_fast))


def _print_table(meta, rows) -> None:
    print()
    print(f"hrnet-fast bench: {meta['config']} on {meta['device_name']} ({meta['device']}), dtype {meta['dtype']}, "
          f"torch {meta['versions']['torch']}, triton {meta['versions']['triton']}, {meta['versions']['threads']} threads")
    header = f"{'section':9s} {'batch':>5s}  {'variant':45s} {'median ms':>10s} {'p20-p80 ms':>17s} {'speed-up':>8s} {'max err':>9s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['section']:9s} {r['batch']:>5d}  {r['variant']:45s} FAILED: {r['error'][:60]}")
            continue
        err = r.get("max_rel_err", r.get("max_abs_err_px"))
        err_s = "" if err is None else (f"{err:.1e}" + ("px" if "max_abs_err_px" in r else ""))
        sp = f"x{r['speedup']:.2f}" if "speedup" in r else ""
        print(f"{r['section']:9s} {r['batch']:>5d}  {r['variant']:45s} {r['ms']:10.3f} {r['p20_ms']:8.3f}-{r['p80_ms']:<8.3f} {sp:>8s} {err_s:>9s}")
    print("(exchange: whole units, the strided 3x3 downsampling included; max err: max relative error of "
          "hrnet_fast's output against the reference; for decode, the max coordinate difference in pixels)")


def cmd_bench(args) -> int:
    from hrnet_fast._timing import device_name, measure

    device = _resolve_device(args.device)
    dtype = DTYPES[args.dtype]
    if device.type == "cpu" and dtype != torch.float32:
        _progress(f"note: {args.dtype} on the CPU is slow in PyTorch itself; the CPU kernels are fp32/fp64")
    batches = [int(b) for b in str(args.batch).split(",") if b.strip()]
    if args.quick:
        batches = batches[:1] if args.batch != _DEFAULT_BATCH else [1]
    if not batches or any(b <= 0 for b in batches):
        raise SystemExit(f"hrnet-fast bench: --batch must be positive integers separated by commas, got {args.batch!r}")
    compile_batches = None if args.compile_batches is None else [int(b) for b in args.compile_batches.split(",") if b.strip()]
    min_time = 0.05 if args.quick else (0.5 if device.type == "cuda" else 1.0)
    min_runs = 2 if args.quick else 3

    def timing(fn):
        return measure(fn, device, min_time=min_time, min_runs=min_runs, warmup=1)

    _progress(f"building {args.config} (random weights, measured BatchNorm statistics)" if not args.weights else f"loading {args.weights}")
    reference, fast, (h, w) = _build_models(args, device, dtype)
    rows: List[Dict[str, Any]] = []
    for batch in batches:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch)).to(device=device, dtype=dtype)
        _progress(f"batch {batch}: exchange units")
        _bench_exchange(reference, fast, x, device, timing, rows, batch, args.dtype)
        _progress(f"batch {batch}: whole model")
        _bench_model(reference, fast, x, device, timing, rows, batch, args.dtype, compile_ref=not (args.quick or args.no_compile) and (compile_batches is None or batch in compile_batches))
        _progress(f"batch {batch}: decoding")
        _bench_decode(fast, x, device, timing, rows, batch, args.dtype, args.backend)
    meta = {
        "command": "hrnet-fast bench",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": args.config if not args.weights else f"{args.config} + {os.path.basename(args.weights)}",
        "device": device.type,
        "device_name": device_name(device),
        "dtype": args.dtype,
        "backend": args.backend,
        "batches": batches,
        "quick": bool(args.quick),
        "versions": _versions(),
    }
    _print_table(meta, rows)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": rows}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------------------------------- check


def cmd_check(args) -> int:
    from hrnet_fast.checks import run_checks

    device = _resolve_device(args.device)
    failures = run_checks(device, report=print)
    if failures:
        print(f"hrnet-fast check: {len(failures)} mismatch(es): " + "; ".join(failures))
        return 1
    print("hrnet-fast check: every available backend matches the reference")
    return 0


# ---------------------------------------------------------------------------------------------- main

_DEFAULT_BATCH = "1,8"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hrnet-fast", description="A drop-in, faster HRNet: benchmarks, equivalence checks, environment info.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="measure reference vs hrnet_fast side by side (exchange units, whole model, decoding)",
                       description="Measure the official reference against hrnet_fast in one run: the exchange units alone, the whole model, "
                                   "and heatmap decoding; print speed-ups and the max relative error, write JSON.")
    b.add_argument("--config", default="w32_256x192", help="config name or official experiment YAML (default: w32_256x192)")
    b.add_argument("--batch", default=_DEFAULT_BATCH, help="comma-separated batch sizes (default: 1,8)")
    b.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="compute dtype (default: fp32)")
    b.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto = cuda when present)")
    b.add_argument("--backend", default="auto", choices=["auto", "torch", "cpp", "cuda", "triton"], help="hrnet_fast backend (default: auto)")
    b.add_argument("--weights", default=None, help="an official/mmpose checkpoint instead of random weights")
    b.add_argument("--json", default=None, help="write the results as JSON to this path")
    b.add_argument("--quick", action="store_true", help="batch 1 and short timings (a smoke run)")
    b.add_argument("--no-compile", action="store_true", help="on a GPU, skip torch.compile of the reference (it takes a minute)")
    b.add_argument("--compile-batches", default=None, help="on a GPU, compile the reference only at these batch sizes (default: all)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="versions, devices, and which backends are available and why not",
                       description="Print versions, devices, and which backends are built and available here (and why not).")
    i.set_defaults(func=cmd_info)

    c = sub.add_parser("check", help="equivalence only: every available backend vs the reference; non-zero exit on mismatch",
                       description="Run every available backend of every op against the torch reference on random inputs, in fp32 and "
                                   "the device's half types; exit non-zero on any mismatch.")
    c.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    c.set_defaults(func=cmd_check)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
