"""The ``hrnet-fast`` command line: ``bench``, ``info``, ``check``, ``export``, ``predict``, ``eval``.

    hrnet-fast bench [--config w32_256x192] [--batch 1,8] [--dtype fp32] [--device auto]
                     [--backend auto] [--weights PATH] [--json OUT] [--quick]
    hrnet-fast info
    hrnet-fast check [--device auto]
    hrnet-fast export --out model.onnx [--config w32_256x192] [--weights PATH] [--batch dynamic] [--dtype fp32]
                      [--opset 18] [--decode none] [--trt-plugins] [--optimize] [--check]
    hrnet-fast predict --config C --weights W.pth IMAGES_OR_DIR [--ann A] [--boxes D] --out keypoints.json
    hrnet-fast predict --config C --weights W.pth --video in.mp4 [--boxes per_frame.json] --draw-video out.mp4
    hrnet-fast eval --ann A (--results keypoints.json | --config C --weights W.pth --images DIR [--boxes D])
    hrnet-fast --version

``predict`` and ``eval`` are implemented in :mod:`hrnet_fast.predict` (imported when they run).

Arguments are checked before any work starts: a bad one prints the usage and a one-line error and exits
with status 2 (argparse's convention). torch and the package are imported only once a command runs, so
``--help`` and ``--version`` answer at once.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from typing import Any, Callable, Dict, List, Optional

from . import __version__

DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
BACKENDS = ("auto", "torch", "cpp", "cuda", "triton")
_DEFAULT_BATCH = "1,8"


def _progress(msg: str) -> None:
    print(f"[hrnet-fast] {msg}", file=sys.stderr, flush=True)


def _dtype(name: str):
    import torch

    return getattr(torch, DTYPE_NAMES[name])


# ---------------------------------------------------------------------------------------------- argument checks
# The type= functions run while argparse parses (no torch); the _validate_* functions run right after, before
# any work, and may import torch (device availability) or the config reader.


def _batch_list(text: str) -> List[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        batches = [int(p) for p in parts]
    except ValueError:
        batches = []
    if not batches or any(b <= 0 for b in batches):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 1,8), got {text!r}")
    return batches


def _device_arg(text: str) -> str:
    kind, _, index = text.partition(":")
    if text in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N (hrnet_fast runs on CPUs and CUDA GPUs), got {text!r}")


def _resolve_device(parser: argparse.ArgumentParser, name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"--device {name}: torch sees no CUDA GPU (torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            parser.error(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _check_writable(parser: argparse.ArgumentParser, opt: str, path: str) -> None:
    """Fail now, not after the benchmark, when ``path`` cannot be written (the folder is created)."""
    if os.path.isdir(path):
        parser.error(f"{opt} {path}: is a directory; expected a file path")
    existed = os.path.exists(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as exc:
        parser.error(f"{opt} {path}: cannot write there ({exc.strerror})")
    if not existed:
        os.remove(path)


def _validate_config_and_weights(parser: argparse.ArgumentParser, args) -> None:
    """``--config`` must name a readable config (sets ``args.cfg``); ``--weights``, if given, a readable file."""
    from .config import ConfigError, resolve_config

    try:
        args.cfg = resolve_config(args.config)
    except (ConfigError, TypeError) as exc:
        parser.error(f"--config {args.config}: {str(exc).removeprefix('config: ')}")
    if args.weights is not None and not os.path.isfile(args.weights):
        parser.error(f"--weights {args.weights}: no such file")
    if args.weights is not None and not os.access(args.weights, os.R_OK):
        parser.error(f"--weights {args.weights}: not readable")


def _validate_bench(parser: argparse.ArgumentParser, args) -> None:
    _validate_config_and_weights(parser, args)
    if args.json:
        _check_writable(parser, "--json", args.json)
    args.device_obj = _resolve_device(parser, args.device)
    if args.backend != "auto":
        from . import backends

        st = backends()[args.backend]
        if not st["available"]:
            parser.error(f"--backend {args.backend}: not available here: {st['reason']}")


def _validate_check(parser: argparse.ArgumentParser, args) -> None:
    args.device_obj = _resolve_device(parser, args.device)


EXPORT_DTYPES = ("fp32", "fp16")
EXPORT_DECODES = ("none", "argmax", "quarter")


def _export_batch(text: str):
    if text == "dynamic":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or a positive integer, got {text!r}")
    return value


def _validate_export(parser: argparse.ArgumentParser, args) -> None:
    _validate_config_and_weights(parser, args)
    _check_writable(parser, "--out", args.out)
    if args.check and args.trt_plugins:
        parser.error("--check runs the graph in onnxruntime, which cannot run the --trt-plugins nodes: drop one of them")
    from .export import MIN_OPSET, check_export_support, max_opset

    top = max_opset()
    if not MIN_OPSET <= args.opset <= top:
        parser.error(f"--opset {args.opset}: expected {MIN_OPSET} to {top} (what this torch's ONNX exporter writes)")
    try:
        check_export_support(need_onnxruntime=args.check)
    except (ImportError, RuntimeError) as exc:
        parser.error(str(exc).removeprefix("export_onnx: "))


def _versions() -> Dict[str, Any]:
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001
        triton_version = None
    return {
        "hrnet_fast": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------------- info


def cmd_info(args) -> int:
    import torch

    from . import backends
    from ._timing import cpu_name

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
    for name, st in backends().items():
        print(f"  {name:7s} {'yes' if st['available'] else 'no ':3s}  {st['reason']}")
    return 0


# ---------------------------------------------------------------------------------------------- bench

Timer = Callable[[Dict[str, Callable[[], Any]]], Dict[str, Dict[str, Any]]]


def _build_models(args, device, dtype):
    """(official fp32 model, official model in ``dtype``, hrnet_fast default, (H, W)), all on ``device``.

    The official models run the official computation (exchange units unfused); hrnet_fast is
    ``optimize(model, dtype=dtype)`` as a user calls it (CUDA graphs on by default on a GPU)."""
    import copy

    import torch

    import hrnet_fast
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(args.cfg)
    h, w = model.cfg["IMAGE_SIZE"][1], model.cfg["IMAGE_SIZE"][0]
    if args.weights:
        hrnet_fast.load_checkpoint(model, args.weights, strict=True)
        model.eval()
    else:
        realistic_random_init(model, image_hw=(h, w), seed=0, batches=1, batch_size=2)
    for unit in model.exchange_units():
        unit.configure(fused=False)  # the reference is the official computation
    official32 = model.to(device=device, dtype=torch.float32).eval()
    reference = official32 if dtype == torch.float32 else copy.deepcopy(official32).to(dtype)
    fast = hrnet_fast.optimize(official32, dtype=None if dtype == torch.float32 else dtype, channels_last=True,
                               backend=args.backend)
    return official32, reference, fast, (h, w)


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

    from ._numerics import max_rel_err

    ref_units = reference.exchange_units()
    # hrnet_fast's units as its frozen plan runs them (prepared arguments, fused conv epilogues)
    plan = getattr(fast, "_plan", None)
    fast_units = ([m.exchange for stage in plan.stages for m in stage if m.exchange is not None] if plan is not None
                  else fast.exchange_units())
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
        err = max(max_rel_err(f, r) for fo, ro in zip(fast_out, ref_out) for f, r in zip(fo, ro))
        t = timer({"ref": lambda: run(ref_units, ref_in), "fast": lambda: run(fast_units, fast_in)})
    rows.append(_row("exchange", batch, dtype_name, f"reference: {len(ref_units)} units, official", t["ref"]))
    rows.append(_row("exchange", batch, dtype_name, "hrnet_fast: BN folded, fused op", t["fast"],
                     speedup=t["ref"]["ms"] / t["fast"]["ms"], max_rel_err=err))


def _bench_model(official32, reference, fast, x, device, timer: Timer, rows, batch, dtype_name, compile_ref: bool):
    """The whole model, every variant side by side in one timing run, each with its max relative error
    against the official model in fp32 (issue: "Fast by default", item 6).

    CUDA: official eager fp32; official eager in the bench dtype, channels_last; the same under a CUDA
    graph (captured by hand); torch.compile of it (default and reduce-overhead); hrnet_fast default.
    CPU: official eager; official with BatchNorm folded + channels_last (``optimize(fused=False)``: the
    module-level equivalent of torch.fx's conv/BN fusion); torch.compile (inductor, with its compile time);
    hrnet_fast default."""
    import copy
    import time

    import torch

    from ._numerics import max_rel_err
    from ._timing import capture_cuda_graph
    from .optimize import optimize

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
            _progress(f"{name} failed: {type(exc).__name__}: {exc}")
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
        _progress(f"model batch {batch}: compiling the official model, mode={mode} (a minute or more)")
        compiled = torch.compile(ref_cl if device.type == "cuda" else official32, mode=mode)
        arg = x_cl if device.type == "cuda" else x32
        t0 = time.perf_counter()
        add(name, lambda c=compiled, a=arg: c(a))
        if name in extra:
            extra[name]["compile_s"] = round(time.perf_counter() - t0, 1)
            _progress(f"compiled in {extra[name]['compile_s']} s")
    add("hrnet_fast default (optimize)", lambda: fast(x))
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

    from .baselines.official_numpy import official_decode
    from .ops.decode_heatmaps import decode_heatmaps

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
    for w in meta.get("warnings", []):
        print(f"warning: {w}")


def cmd_bench(args) -> int:
    import torch

    from ._timing import ROUND_SPREAD_WARN, cores, device_name, load_average, load_warning, measure_rounds, spread_warnings

    device = args.device_obj
    dtype = _dtype(args.dtype)
    if device.type == "cpu" and dtype != torch.float32:
        _progress(f"note: {args.dtype} on the CPU is slow in PyTorch itself; the CPU kernels are fp32/fp64")
    batches = list(args.batch)
    if args.quick:
        batches = batches[:1] if args.batch_given else [1]
    # seconds per callable, split over interleaved rounds (reference and hrnet_fast alternate)
    min_time = 0.05 if args.quick else (0.5 if device.type == "cuda" else 1.0)
    rounds = 2 if args.quick else 3

    def timer(fns):
        return measure_rounds(fns, device, rounds=rounds, min_time=min_time, min_runs=1 if args.quick else 2, warmup=1)

    load_start = load_average()
    busy = load_warning(load_start)
    if busy:
        _progress(f"warning: {busy}; timings will swing")
    _progress(f"building {args.config} (random weights, measured BatchNorm statistics)" if not args.weights else f"loading {args.weights}")
    from .checkpoint import CheckpointMismatchError, CheckpointReadError

    try:
        official32, reference, fast, (h, w) = _build_models(args, device, dtype)
    except (CheckpointReadError, CheckpointMismatchError) as exc:  # a bad --weights file: the user's error
        args.parser.error(f"--weights {args.weights}: {exc}")
    rows: List[Dict[str, Any]] = []
    for batch in batches:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch)).to(device=device, dtype=dtype)
        _progress(f"batch {batch}: exchange units")
        _bench_exchange(reference, fast, x, timer, rows, batch, args.dtype)
        _progress(f"batch {batch}: whole model")
        compile_ref = not (args.quick or args.no_compile) and (args.compile_batches is None or batch in args.compile_batches)
        _bench_model(official32, reference, fast, x, device, timer, rows, batch, args.dtype, compile_ref=compile_ref)
        _progress(f"batch {batch}: decoding")
        _bench_decode(fast, x, device, timer, rows, batch, args.dtype, args.backend)
    load_end = load_average()
    warnings = [m for m in (load_warning(load_start), load_warning(load_end)) if m][:1]
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
        "load_average": {"start": load_start, "end": load_end},
        "cores": cores(),
        "warnings": warnings,
        "versions": _versions(),
    }
    _print_table(meta, rows)
    for msg in warnings:
        _progress(f"warning: {msg}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": rows}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------------------------------- check


def cmd_check(args) -> int:
    from .checks import run_checks

    device = args.device_obj
    summary = run_checks(device, report=print)
    if summary.failures:
        print(f"hrnet-fast check: {len(summary.failures)} mismatch(es): " + "; ".join(summary.failures))
        return 1
    if summary.compared == 0:
        print(f"hrnet-fast check: nothing was compared on {device}: every backend was skipped ({summary.skipped} checks)")
        return 1
    print(f"hrnet-fast check: every available backend matches the reference ({summary.compared} compared, "
          f"{summary.skipped} skipped)")
    return 0


# ---------------------------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    import time

    import hrnet_fast
    from hrnet_fast.checkpoint import CheckpointMismatchError, CheckpointReadError
    from hrnet_fast.export import export_onnx, verify_onnx
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(args.cfg)
    h, w = model.cfg["IMAGE_SIZE"][1], model.cfg["IMAGE_SIZE"][0]
    if args.weights:
        try:
            hrnet_fast.load_checkpoint(model, args.weights, strict=True)
        except (CheckpointReadError, CheckpointMismatchError) as exc:
            args.parser.error(f"--weights {args.weights}: {exc}")
        model.eval()
    else:
        _progress("no --weights: exporting RANDOM weights (BatchNorm statistics measured on random images); the graph "
                  "is the real one, its outputs mean nothing")
        realistic_random_init(model, image_hw=(h, w), seed=0, batches=1, batch_size=2)
    if args.optimize:
        model = hrnet_fast.optimize(model)
    dtype = _dtype(args.dtype)
    decode = None if args.decode == "none" else args.decode
    _progress(f"exporting {args.config} ({h}x{w}, batch {args.batch}, {args.dtype}, opset {args.opset}"
              f"{', decode ' + decode if decode else ''}{', TensorRT plugin nodes' if args.trt_plugins else ''})")
    t0 = time.perf_counter()
    export_onnx(model, args.out, batch=args.batch, dtype=dtype, opset=args.opset, decode=decode,
                trt_plugins=args.trt_plugins)
    names = "images -> heatmaps" if decode is None else "images, center, scale -> heatmaps, coords, maxvals"
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB, {names}) in {time.perf_counter() - t0:.1f} s")
    if not args.check:
        return 0
    errors = verify_onnx(args.out, model)
    tol = 1e-4 if args.dtype == "fp32" else 1e-2
    print("onnxruntime vs torch: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    if not errors["heatmaps_rel"] <= tol:
        print(f"hrnet-fast export: the ONNX heatmaps differ from torch's by more than {tol:.0e} (relative)")
        return 1
    return 0

# ---------------------------------------------------------------------------------------------- predict, eval
# The work lives in hrnet_fast/predict.py, imported only when one of these commands runs.


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _from_predict(name: str):
    def call(*args):
        from . import predict

        return getattr(predict, name)(*args)

    call.__name__ = name
    return call


def _add_predict_args(p: argparse.ArgumentParser, required: bool) -> None:
    """The model and running options of predict (required: --config, --weights) and eval (optional)."""
    p.add_argument("--config", default=None, required=required, help="config name or official experiment YAML (e.g. w32_256x192)")
    p.add_argument("--weights", default=None, required=required, help="official or mmpose checkpoint (.pth); see the README, 'Weights'")
    p.add_argument("--boxes", default=None,
                   help="person detections in the COCO results format (image_id, bbox [x, y, w, h], score, category_id 1), "
                        "keyed by the --ann image ids (or the file names without --ann); for --video: per frame index")
    p.add_argument("--box-format", default="xywh", choices=("xywh", "xyxy"), help="how --boxes gives a box (default: xywh, COCO's)")
    p.add_argument("--min-box-score", type=float, default=0.0, help="drop detections scoring below this (default: 0.0)")
    p.add_argument("--out", default=None, help="write the keypoints here, COCO keypoint results format")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about twice as fast, slightly less accurate)")
    p.add_argument("--decode", default="quarter", choices=("quarter", "argmax", "dark", "udp"),
                   help="heatmap decoding (default: quarter, the official one)")
    p.add_argument("--device", default="auto", type=_device_arg, help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--dtype", default="auto", choices=("auto",) + tuple(sorted(DTYPE_NAMES)),
                   help="compute dtype (default: fp16 on CUDA, fp32 on the CPU)")
    p.add_argument("--max-batch", type=_positive_int, default=64,
                   help="persons per forward; the flip test doubles the forward batch (default: 64)")
    p.add_argument("--oks-nms", type=float, default=None, help="apply the official OKS-NMS with this threshold (official: 0.9)")
    p.add_argument("--workers", type=_positive_int, default=2, help="threads reading images (default: 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------- main


class _BatchAction(argparse.Action):
    """Stores the parsed list and notes that the user gave it (``--quick`` keeps a given batch)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.batch_given = True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hrnet-fast", description="A drop-in, faster HRNet: benchmarks, equivalence checks, environment "
                                                               "info, ONNX export, pose estimation of images and videos, COCO evaluation.")
    p.add_argument("--version", action="version", version=f"hrnet-fast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("bench", help="measure reference vs hrnet_fast side by side (exchange units, whole model, decoding)",
                       description="Measure the official reference against hrnet_fast in one run: the exchange units alone, the whole model, "
                                   "and heatmap decoding; print speed-ups, the spread of repeated rounds and the max relative error, write JSON. "
                                   "Warns when the rounds disagree or the load average exceeds the cores.")
    b.add_argument("--config", default="w32_256x192", help="config name or official experiment YAML (default: w32_256x192)")
    b.add_argument("--batch", default=_batch_list(_DEFAULT_BATCH), type=_batch_list, action=_BatchAction,
                   help="comma-separated batch sizes (default: 1,8)")
    b.add_argument("--dtype", default="fp32", choices=sorted(DTYPE_NAMES), help="compute dtype (default: fp32)")
    b.add_argument("--device", default="auto", type=_device_arg, help="auto, cpu, cuda or cuda:N (default: auto = cuda when present)")
    b.add_argument("--backend", default="auto", choices=BACKENDS, help="hrnet_fast backend (default: auto)")
    b.add_argument("--weights", default=None, help="an official/mmpose checkpoint instead of random weights")
    b.add_argument("--json", default=None, help="write the results as JSON to this path")
    b.add_argument("--quick", action="store_true", help="batch 1 (or the first --batch) and short timings (a smoke run)")
    b.add_argument("--no-compile", action="store_true",
                   help="skip torch.compile of the official model (on the CPU inductor takes minutes per batch size)")
    b.add_argument("--compile-batches", default=None, type=_batch_list,
                   help="compile the official model only at these batch sizes (default: all)")
    b.set_defaults(func=cmd_bench, validate=_validate_bench, parser=b, batch_given=False)

    i = sub.add_parser("info", help="versions, devices, and which backends are available and why not",
                       description="Print versions, devices, and which backends are built and available here (and why not).")
    i.set_defaults(func=cmd_info, validate=None, parser=i)

    c = sub.add_parser("check", help="equivalence only: every available backend vs the reference; non-zero exit on mismatch",
                       description="Run every available backend of every op against a reference on seeded random inputs, in fp32 and "
                                   "the device's other dtypes (fused_exchange against float64, with a tolerance derived from the torch "
                                   "reference's own error; fp32 means IEEE fp32 unless TF32 is enabled for matmuls). Exit 1 on any "
                                   "mismatch, or when nothing could be compared.")
    c.add_argument("--device", default="auto", type=_device_arg, help="auto, cpu, cuda or cuda:N (default: auto)")
    c.set_defaults(func=cmd_check, validate=_validate_check, parser=c)

    e = sub.add_parser("export", help="write an ONNX model (torch.onnx dynamo exporter); --check runs it in onnxruntime",
                       description="Export the network (and optionally heatmap decoding) to ONNX with torch.onnx.export(dynamo=True). "
                                   "Input 'images' (N, 3, H, W), normalised crops; output 'heatmaps'; with --decode also inputs "
                                   "'center', 'scale' (N, 2) and outputs 'coords' (N, K, 2), 'maxvals' (N, K, 1). Needs torch >= 2.6 "
                                   "and pip install \"hrnet_fast[export]\".")
    e.add_argument("--config", default="w32_256x192", help="config name or official experiment YAML (default: w32_256x192)")
    e.add_argument("--weights", default=None, help="an official/mmpose checkpoint (default: random weights, said so)")
    e.add_argument("--out", required=True, help="the .onnx file to write (weights included)")
    e.add_argument("--batch", default="dynamic", type=_export_batch,
                   help="'dynamic' (a dimension named batch) or a fixed batch size (default: dynamic)")
    e.add_argument("--dtype", default="fp32", choices=EXPORT_DTYPES, help="weights, images and heatmaps (default: fp32)")
    e.add_argument("--opset", default=18, type=int, help="ONNX opset, 18 or higher (default: 18)")
    e.add_argument("--decode", default="none", choices=EXPORT_DECODES,
                   help="include keypoint decoding in the graph (default: none)")
    e.add_argument("--trt-plugins", action="store_true",
                   help="emit each exchange unit as an hrnet_fast.FusedExchange node for a TensorRT plugin (onnxruntime cannot run it)")
    e.add_argument("--optimize", action="store_true",
                   help="export hrnet_fast.optimize(model), what you run in torch (same graph; --check compares against it)")
    e.add_argument("--check", action="store_true",
                   help="run the ONNX model in onnxruntime (CPU) against torch on random inputs; exit 1 past 1e-4 (fp32)")
    e.set_defaults(func=cmd_export, validate=_validate_export, parser=e)

    pr = sub.add_parser("predict", help="images (or a video) and person boxes to COCO keypoint results",
                        description="Top-down pose estimation of images or a video: boxes from --boxes (detections), the "
                                    "ground truth of --ann, or the whole image; keypoints written in the COCO keypoint "
                                    "results format. Under torchrun the images are sharded over the ranks and rank 0 "
                                    "writes one merged file. Needs OpenCV (pip install 'hrnet_fast[pipeline]').")
    pr.add_argument("inputs", nargs="*", metavar="IMAGES_OR_DIR", help="image files or directories (with --ann: the image directory)")
    pr.add_argument("--ann", default=None, help="COCO annotation file: image ids and file names (and person boxes without --boxes)")
    pr.add_argument("--draw", default=None, metavar="OUTDIR", help="write each image with its poses drawn to this directory")
    pr.add_argument("--video", default=None, help="a video file instead of images (read with OpenCV)")
    pr.add_argument("--draw-video", default=None, metavar="OUT.mp4", help="write the video with the poses drawn (mp4v)")
    _add_predict_args(pr, required=True)
    pr.set_defaults(func=_from_predict("cmd_predict"), validate=_from_predict("validate_predict"), parser=pr)

    ev = sub.add_parser("eval", help="COCO keypoint AP of a results file (or predict, then evaluate)",
                        description="Print pycocotools' keypoint AP table (AP, AP .5, AP .75, AP (M), AP (L), AR, ...) of "
                                    "--results against --ann, or run predict on --images first (with --config and "
                                    "--weights). Needs pycocotools (pip install 'hrnet_fast[pipeline]').")
    ev.add_argument("--ann", required=True, help="COCO person keypoint annotation file (e.g. person_keypoints_val2017.json)")
    ev.add_argument("--results", default=None, help="keypoint results (COCO results format) to evaluate")
    ev.add_argument("--images", default=None, metavar="DIR", help="with --config: the image directory of --ann")
    ev.add_argument("--json", default=None, help="also write the stats as JSON here")
    _add_predict_args(ev, required=False)
    ev.set_defaults(func=_from_predict("cmd_eval"), validate=_from_predict("validate_eval"), parser=ev, draw=None)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.validate is not None:
        args.validate(args.parser, args)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
