"""``hrnet-fast export``: the network (and optionally heatmap decoding) to ONNX with
:func:`hrnet_fast.export_onnx`; ``--check`` runs the file in onnxruntime against torch
(:func:`hrnet_fast.export.verify_onnx`)."""
from __future__ import annotations

import argparse
import os

from .._console import say
from ._common import (add_common_args, build_model, check_outputs, check_writable, file_index, torch_dtype,
                      validate_config_and_weights)

DESCRIPTION = ("Export the network (and optionally heatmap decoding) to ONNX with torch.onnx.export(dynamo=True). "
               "Input 'images' (N, 3, H, W), normalised crops; output 'heatmaps'; with --decode also inputs "
               "'center', 'scale' (N, 2) and outputs 'coords' (N, K, 2), 'maxvals' (N, K, 1). Needs torch >= 2.6 "
               "and pip install \"hrnet_fast[export]\".")
EXPORT_DTYPES = ("fp32", "fp16")  # bf16: onnxruntime's CPU provider has almost no bfloat16 kernels
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


def add_arguments(e: argparse.ArgumentParser) -> None:
    add_common_args(e, model=True, weights_help="an official/mmpose checkpoint (default: random weights, said so)",
                    dtype="fp32", dtypes=EXPORT_DTYPES, dtype_help="weights, images and heatmaps (default: fp32)")
    e.add_argument("--out", required=True, help="the .onnx file to write (weights included)")
    e.add_argument("--batch", default="dynamic", type=_export_batch,
                   help="'dynamic' (a dimension named batch) or a fixed batch size (default: dynamic)")
    e.add_argument("--opset", default=18, type=int, help="ONNX opset, 18 or higher (default: 18)")
    e.add_argument("--decode", default="none", choices=EXPORT_DECODES,
                   help="include keypoint decoding in the graph (default: none)")
    e.add_argument("--trt-plugins", action="store_true",
                   help="emit each exchange unit as an hrnet_fast.FusedExchange node for a TensorRT plugin (onnxruntime cannot run it)")
    e.add_argument("--optimize", action="store_true",
                   help="export hrnet_fast.optimize(model), what you run in torch (same graph; --check compares against it)")
    e.add_argument("--check", action="store_true",
                   help="run the ONNX model in onnxruntime (CPU) against torch on random inputs; exit 1 past 1e-4 (fp32)")


def validate(parser: argparse.ArgumentParser, args) -> None:
    """--config, --weights, --out, --opset and the exporter's packages checked before the export."""
    validate_config_and_weights(parser, args)
    check_outputs(parser, [("--out", args.out)], file_index([("--weights", args.weights), ("--config", args.config)]))
    check_writable(parser, "--out", args.out)
    if args.check and args.trt_plugins:
        parser.error("--check runs the graph in onnxruntime, which cannot run the --trt-plugins nodes: drop one of them")
    from ..export import MIN_OPSET, check_export_support, max_opset

    top = max_opset()
    if not MIN_OPSET <= args.opset <= top:
        parser.error(f"--opset {args.opset}: expected {MIN_OPSET} to {top} (what this torch's ONNX exporter writes)")
    try:
        check_export_support(need_onnxruntime=args.check)
    except (ImportError, RuntimeError) as exc:
        parser.error(str(exc).removeprefix("export_onnx: "))


def run(args) -> int:
    """Export (atomically: :func:`hrnet_fast.export_onnx` writes a temporary file beside --out and renames it);
    with --check, exit 1 when onnxruntime's heatmaps differ from torch's past the tolerance."""
    import time

    import hrnet_fast
    from ..export import export_onnx, verify_onnx

    # a bad --weights file: a usage error (exit 2); no --weights: the loud random-weights warning
    model, (h, w) = build_model(args, doing="exporting", meaning="the graph is the real one, its outputs mean nothing")
    if args.optimize:
        model = hrnet_fast.optimize(model)
    dtype = torch_dtype(args.dtype)
    decode = None if args.decode == "none" else args.decode
    say(f"exporting {args.config} ({h}x{w}, batch {args.batch}, {args.dtype}, opset {args.opset}"
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
