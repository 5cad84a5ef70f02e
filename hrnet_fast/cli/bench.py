"""``hrnet-fast bench``: the official reference against hrnet_fast in one run, side by side: the exchange units
alone, the whole model (official eager, folded/channels_last, CUDA graph, torch.compile, hrnet_fast's
default ``optimize()``) and heatmap decoding; speed-ups, the spread of repeated rounds and the max error,
printed and written as JSON. Timing: :mod:`hrnet_fast._timing`.
"""
from __future__ import annotations

import argparse
import datetime
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._console import say
from ._common import (add_common_args, build_model, check_outputs, check_writable, file_index, resolve_device_arg, torch_dtype,
                      validate_config_and_weights, versions, write_output)

DESCRIPTION = ("Measure the official reference against hrnet_fast in one run: the exchange units alone, the whole model, "
               "and heatmap decoding; print speed-ups, the spread of repeated rounds and the max relative error, write JSON. "
               "Warns (each warning once) when the rounds disagree or the load average, sampled during the whole run, "
               "exceeds the cores.")
BACKENDS = ("auto", "torch", "cpp", "cuda", "triton")
_DEFAULT_BATCH = "1,8"


# ---------------------------------------------------------------------------------------------- arguments


def _engine_list(text: str) -> List[str]:
    """--engines: 'auto', 'none' or a comma-separated subset of openvino,onnxruntime."""
    if text in ("auto", "none"):
        return [text]
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names or any(n not in ("openvino", "onnxruntime") for n in names):
        raise argparse.ArgumentTypeError(f"expected auto, none or a comma-separated list of openvino, onnxruntime; got {text!r}")
    return list(dict.fromkeys(names))


def _batch_list(text: str) -> List[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        batches = [int(p) for p in parts]
    except ValueError:
        batches = []
    if not batches or any(b <= 0 for b in batches):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 1,8), got {text!r}")
    return batches


class _BatchAction(argparse.Action):
    """Stores the parsed list and notes that the user gave it (``--quick`` keeps a given batch)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.batch_given = True


def add_arguments(b: argparse.ArgumentParser) -> None:
    add_common_args(b, model=True, weights_help="an official/mmpose checkpoint instead of random weights", device=True,
                    device_help="auto, cpu, cuda or cuda:N (default: auto = cuda when present)", dtype="fp32")
    b.add_argument("--batch", default=_batch_list(_DEFAULT_BATCH), type=_batch_list, action=_BatchAction,
                   help="comma-separated batch sizes (default: 1,8)")
    b.add_argument("--backend", default="auto", choices=BACKENDS, help="hrnet_fast backend (default: auto)")
    b.add_argument("--json", default=None, help="write the results as JSON to this path")
    b.add_argument("--quick", action="store_true", help="batch 1 (or the first --batch) and short timings (a smoke run)")
    b.add_argument("--no-compile", action="store_true",
                   help="skip torch.compile of the official model (on the CPU inductor takes minutes per batch size)")
    b.add_argument("--compile-batches", default=None, type=_batch_list,
                   help="compile the official model only at these batch sizes (default: all)")
    b.add_argument("--engines", default=["auto"], type=_engine_list,
                   help="CPU inference engines measured beside hrnet_fast on hrnet_fast's ONNX export: openvino,onnxruntime, "
                        "none, or auto (default: the installed ones; none with --quick)")
    b.set_defaults(batch_given=False)


def validate(parser: argparse.ArgumentParser, args) -> None:
    """--config, --weights, --json, --device and --backend checked before the models are built."""
    validate_config_and_weights(parser, args)
    if args.json:
        check_outputs(parser, [("--json", args.json)], file_index([("--weights", args.weights), ("--config", args.config)]))
        check_writable(parser, "--json", args.json)
    args.device_obj = resolve_device_arg(parser, args.device)
    if args.backend != "auto":
        from .. import backends

        st = backends()[args.backend]
        if not st["available"]:
            parser.error(f"--backend {args.backend}: not available here: {st['reason']}")
    if args.engines not in (["auto"], ["none"]):
        from ..engines import PACKAGES, _missing

        for name in args.engines:
            if _missing(name):
                parser.error(f"--engines {name}: not installed ({', '.join(_missing(name))}): "
                             f"pip install \"hrnet_fast[{PACKAGES[name][1]}]\"")


# ---------------------------------------------------------------------------------------------- the benchmark

Timer = Callable[[Dict[str, Callable[[], Any]]], Dict[str, Dict[str, Any]]]


def _build_models(args, device, dtype):
    """(official fp32 model, official model in ``dtype``, hrnet_fast default, (H, W)), all on ``device``.

    The official models run the official computation (exchange units unfused); hrnet_fast is
    ``optimize(model, dtype=dtype)`` as a user calls it (CUDA graphs on by default on a GPU)."""
    import copy

    import torch

    import hrnet_fast

    model, (h, w) = build_model(args, doing="timing",  # a bad --weights file: a usage error (exit 2)
                                meaning="fine for timing and equivalence, the heatmaps mean nothing")
    for unit in model.exchange_units():
        unit.configure(fused=False)  # the reference is the official computation
    official32 = model.to(device=device, dtype=torch.float32).eval()
    reference = official32 if dtype == torch.float32 else copy.deepcopy(official32).to(dtype)
    fast = hrnet_fast.optimize(official32, dtype=None if dtype == torch.float32 else dtype, channels_last=True,
                               backend=args.backend)
    return official32, reference, fast, (h, w)


def _build_engines(args, official32, device, dtype) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """The CPU engine rows (issue 20): (variant, engine module, info) for each engine of --engines that runs
    ``dtype`` here, all compiled from one ONNX export of the official model; info holds the engine's version,
    the export and compile seconds."""
    from .. import engines

    names = args.engines
    if names == ["none"] or device.type != "cpu":
        return []
    if names == ["auto"]:
        names = [] if args.quick else [e for e in engines.AUTO_ORDER if not engines._missing(e)]
    usable = []
    for name in names:
        problem = engines._dtype_problem(name, dtype)
        if problem:
            say(f"engine {name}: skipped: {problem}")
        else:
            usable.append(name)
    if not usable:
        return []
    import time

    say(f"exporting the model to ONNX for {', '.join(usable)} (tens of seconds for W32)")
    t0 = time.perf_counter()
    graph = engines.onnx_bytes(official32)
    export_s = round(time.perf_counter() - t0, 1)
    out = []
    for name in usable:
        module = engines.EngineModule(graph, name, dtype)
        label = engines.PACKAGES[name][2]
        precision = engines._OV_PRECISION[dtype] if name == "openvino" else "fp32"
        out.append((f"{label} {module.version} {precision} (our ONNX)", module,
                    dict(engine=name, version=module.version, export_s=export_s, compile_s=round(module.compile_s, 2))))
    return out


def _capture_unit_inputs(model, x):
    """The branch tensors each exchange unit receives in one forward of ``model``."""
    import torch

    units = model.exchange_units()
    captured: List[Optional[list]] = [None] * len(units)
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
    return captured


def _row(section, batch, dtype_name, variant, stats, **extra):
    keep = ("ms", "p20_ms", "p80_ms", "runs", "calls", "spread", "rounds_ms", "round_spread")
    return dict(section=section, batch=batch, dtype=dtype_name, variant=variant, **{k: stats[k] for k in keep if k in stats},
                **extra)


def _bench_exchange(reference, fast, x, timer: Timer, rows, batch, dtype_name):
    import torch

    from .._numerics import max_rel_err

    ref_units = reference.exchange_units()
    # hrnet_fast's units as its frozen plan runs them (prepared op calls, fused conv epilogues)
    plan = fast.inference_plan()
    fast_units = [plan.exchange(u) if plan is not None and plan.frozen else u for u in fast.exchange_units()]
    # Both paths get the same values (the reference's), each in the memory layout its model runs in, so
    # the error measures the units alone and not the drift of the models upstream.
    ref_in = _capture_unit_inputs(reference, x)
    fmt = torch.channels_last if plan is not None and plan.channels_last else torch.contiguous_format
    fast_dtype = next(fast.parameters()).dtype
    fast_in = [[t.to(fast_dtype).contiguous(memory_format=fmt) for t in xs] for xs in ref_in]

    def run(units, inputs):
        return [u(xs) for u, xs in zip(units, inputs)]

    with torch.no_grad():
        ref_out, fast_out = run(ref_units, ref_in), run(fast_units, fast_in)
        err = max(max_rel_err(f, r) for fo, ro in zip(fast_out, ref_out) for f, r in zip(fo, ro))
        t = timer({"ref": lambda: run(ref_units, ref_in), "fast": lambda: run(fast_units, fast_in)})
    rows.append(_row("exchange", batch, dtype_name, f"reference: {len(ref_units)} units, official", t["ref"]))
    rows.append(_row("exchange", batch, dtype_name, "hrnet_fast: BN folded, fused op", t["fast"],
                     speedup=t["ref"]["ms"] / t["fast"]["ms"], max_rel_err=err))


def _bench_model(official32, reference, fast, x, device, timer: Timer, rows, batch, dtype_name, compile_ref: bool,
                 engines=()):
    """The whole model, every variant side by side in one timing run, each with its max relative error
    against the official model in fp32 (issue: "Fast by default", item 6).

    CUDA: official eager fp32; official eager in the bench dtype, channels_last; the same under a CUDA
    graph (captured by hand); torch.compile of it (default and reduce-overhead); hrnet_fast default.
    CPU: official eager; official with BatchNorm folded + channels_last (``optimize(fused=False)``: the
    module-level equivalent of torch.fx's conv/BN fusion); torch.compile (inductor, with its compile time);
    hrnet_fast default; then the CPU engines of --engines (OpenVINO, onnxruntime) on hrnet_fast's ONNX export."""
    import copy
    import time

    import torch

    from .._numerics import max_rel_err
    from .._timing import capture_cuda_graph
    from .._optimize import optimize

    cl = torch.channels_last
    x32 = x.float()
    fns: Dict[str, Callable[[], Any]] = {}
    outs: Dict[str, Any] = {}
    extra: Dict[str, Dict[str, Any]] = {}
    failed: Dict[str, str] = {}

    def add(name, fn, **info):
        try:
            with torch.no_grad():
                outs[name] = fn()
            fns[name] = fn
            extra[name] = info
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a row, not the end of the run
            say(f"{name} failed: {type(exc).__name__}: {exc}")
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]

    base = "official eager fp32"
    add(base, lambda: official32(x32))
    ref_cl = copy.deepcopy(reference).to(memory_format=cl)
    x_cl = x.contiguous(memory_format=cl)
    if device.type == "cuda":
        add(f"official eager {dtype_name} channels_last", lambda: ref_cl(x_cl))
        try:
            with torch.no_grad():
                graph, static_out = capture_cuda_graph(lambda: ref_cl(x_cl))
            add(f"official {dtype_name} channels_last + CUDA graph", lambda: (graph.replay(), static_out)[1])
        except Exception as exc:  # noqa: BLE001
            failed[f"official {dtype_name} channels_last + CUDA graph"] = f"{type(exc).__name__}: {exc}"[:500]
        modes = ("default", "reduce-overhead") if compile_ref else ()
    else:
        folded = optimize(official32, fused=False, channels_last=True)
        add("official + BN folded + channels_last", lambda: folded(x32))
        modes = ("default",) if compile_ref else ()
    for mode in modes:
        name = f"official + torch.compile({mode})"
        say(f"model batch {batch}: compiling the official model, mode={mode} (a minute or more)")
        compiled = torch.compile(ref_cl if device.type == "cuda" else official32, mode=mode)
        arg = x_cl if device.type == "cuda" else x32
        t0 = time.perf_counter()
        add(name, lambda c=compiled, a=arg: c(a))
        if name in extra:
            extra[name]["compile_s"] = round(time.perf_counter() - t0, 1)
            say(f"compiled in {extra[name]['compile_s']} s")
    add("hrnet_fast default (optimize)", lambda: fast(x))
    for name, module, info in engines:
        add(name, lambda m=module: m(x), **info)
    with torch.no_grad():
        t = timer(fns)
    want = outs[base]
    for name in list(fns) + list(failed):
        if name in failed:
            rows.append(dict(section="model", batch=batch, dtype=dtype_name, variant=name, error=failed[name]))
            continue
        info = dict(extra[name])
        if name != base:
            info.update(speedup=t[base]["ms"] / t[name]["ms"], max_rel_err=max_rel_err(outs[name].float(), want))
        rows.append(_row("model", batch, dtype_name, name, t[name], **info))


def _bench_decode(fast, x, device, timer: Timer, rows, batch, dtype_name, backend):
    """Official decoding (host copy + numpy get_final_preds) vs hrnet_fast.decode_heatmaps (quarter)."""
    import numpy as np
    import torch

    from ..baselines.official_numpy import official_decode
    from ..ops.decode_heatmaps import decode_heatmaps

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
    t = timer({"ref": lambda: official_decode(ref_in, center_np, scale_np),
               "fast": lambda: decode_heatmaps(heatmaps, center_d, scale_d, method="quarter", backend=backend)})
    rows.append(_row("decode", batch, dtype_name, "official numpy (incl. device-to-host copy)", t["ref"]))
    rows.append(_row("decode", batch, dtype_name, "hrnet_fast.decode_heatmaps (quarter)", t["fast"],
                     speedup=t["ref"]["ms"] / t["fast"]["ms"], max_abs_err_px=err))


def _print_table(meta, rows) -> None:
    print()
    print(f"hrnet-fast bench: {meta['config']} on {meta['device_name']} ({meta['device']}), dtype {meta['dtype']}, "
          f"torch {meta['versions']['torch']}, triton {meta['versions']['triton']}, {meta['versions']['threads']} threads")
    header = (f"{'section':9s} {'batch':>5s}  {'variant':45s} {'median ms':>10s} {'p20-p80 ms':>17s} {'spread':>7s} "
              f"{'speed-up':>8s} {'max err':>9s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['section']:9s} {r['batch']:>5d}  {r['variant']:45s} FAILED: {r['error'][:60]}")
            continue
        err = r.get("max_rel_err", r.get("max_abs_err_px"))
        err_s = "" if err is None else (f"{err:.1e}" + ("px" if "max_abs_err_px" in r else ""))
        sp = f"x{r['speedup']:.2f}" if "speedup" in r else ""
        rs = f"{100 * r['round_spread']:.0f}%" if "round_spread" in r else ""
        print(f"{r['section']:9s} {r['batch']:>5d}  {r['variant']:45s} {r['ms']:10.3f} {r['p20_ms']:8.3f}-{r['p80_ms']:<8.3f} "
              f"{rs:>7s} {sp:>8s} {err_s:>9s}")
    print("(exchange: whole units, the strided 3x3 downsampling included; max err: max relative error of "
          "hrnet_fast's output against the reference; for decode, the max coordinate difference in pixels; "
          "spread: (max - min) / min of the medians of repeated rounds, each side measured interleaved with the other)")


def run(args) -> int:
    """Build the models, measure every batch size, print the table and write --json (atomically). Each warning
    is printed once, on stderr; the load average is watched during the whole run and its peak reported."""
    import torch

    from .._timing import ROUND_SPREAD_WARN, LoadMonitor, cores, device_name, load_warning, measure_rounds, spread_warnings

    device = args.device_obj
    dtype = torch_dtype(args.dtype)
    if device.type == "cpu" and dtype != torch.float32:
        say(f"note: {args.dtype} on the CPU is slow in PyTorch itself; the CPU kernels are fp32/fp64")
    batches = list(args.batch)
    if args.quick:
        batches = batches[:1] if args.batch_given else [1]
    # seconds per callable, split over interleaved rounds (reference and hrnet_fast alternate)
    min_time = 0.05 if args.quick else (0.5 if device.type == "cuda" else 1.0)
    rounds = 2 if args.quick else 3

    def timer(fns):
        load.sample()  # between sections too: the thread samples every few seconds, a quick run may be shorter
        return measure_rounds(fns, device, rounds=rounds, min_time=min_time, min_runs=1 if args.quick else 2, warmup=1)

    printed = set()

    def warn(msg: str) -> None:
        if msg not in printed:
            printed.add(msg)
            say(f"warning: {msg}")

    rows: List[Dict[str, Any]] = []
    with LoadMonitor() as load:
        busy = load_warning(load.start)
        if busy:
            warn(busy)  # said now (timings will swing), and not again at the end unless the load got higher
        say(f"building {args.config}" if not args.weights else f"loading {args.weights}")
        official32, reference, fast, (h, w) = _build_models(args, device, dtype)
        engine_rows = _build_engines(args, official32, device, dtype)
        for batch in batches:
            x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch)).to(device=device, dtype=dtype)
            say(f"batch {batch}: exchange units")
            _bench_exchange(reference, fast, x, timer, rows, batch, args.dtype)
            say(f"batch {batch}: whole model")
            compile_ref = not (args.quick or args.no_compile) and (args.compile_batches is None or batch in args.compile_batches)
            _bench_model(official32, reference, fast, x, device, timer, rows, batch, args.dtype, compile_ref=compile_ref,
                         engines=engine_rows)
            say(f"batch {batch}: decoding")
            _bench_decode(fast, x, device, timer, rows, batch, args.dtype, args.backend)
    warnings = [m for m in (load_warning(load.peak),) if m]  # the highest load seen, start to end
    warnings += spread_warnings({f"{r['section']} batch {r['batch']} {r['variant']}": r for r in rows if "ms" in r},
                                threshold=ROUND_SPREAD_WARN)
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
        "rounds": rounds,
        "load_average": load.as_dict(),
        "cores": cores(),
        "warnings": warnings,
        "versions": versions(),
        "engines": {info["engine"]: info["version"] for _, _, info in engine_rows},
    }
    _print_table(meta, rows)
    for msg in warnings:
        warn(msg)
    if args.json:
        if not write_output("bench", "--json", args.json, {"meta": meta, "results": rows}, indent=2):
            return 1
        print(f"wrote {args.json}")
    return 0
