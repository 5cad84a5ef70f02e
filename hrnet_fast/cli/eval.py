"""``hrnet-fast eval``: pycocotools' keypoint AP table of a results file against a COCO annotation file, or
``predict`` first (its options, sharded under torchrun likewise), then the table
(:func:`hrnet_fast.coco.evaluate`, :func:`hrnet_fast.coco.format_stats`).

    hrnet-fast eval --ann person_keypoints.json --results keypoints.json
    hrnet-fast eval --config ... --weights ... --ann ... --images DIR [--boxes dets.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import predict
from ._common import check_readable

DESCRIPTION = ("Print pycocotools' keypoint AP table (AP, AP .5, AP .75, AP (M), AP (L), AR, ...) of "
               "--results against --ann, or run predict on --images first (with --config and "
               "--weights). Needs pycocotools (pip install 'hrnet_fast[pipeline]').")


def add_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--ann", required=True, help="COCO person keypoint annotation file (e.g. person_keypoints_val2017.json)")
    ev.add_argument("--results", default=None, help="keypoint results (COCO results format) to evaluate")
    ev.add_argument("--images", default=None, metavar="DIR", help="with --config: the image directory of --ann")
    ev.add_argument("--json", default=None, help="also write the stats as JSON here")
    predict.add_model_and_run_args(ev, required=False)
    ev.set_defaults(draw=None)  # predict's --draw, which eval does not offer


def validate(parser: argparse.ArgumentParser, args) -> None:
    """--ann and --results, or --config/--weights/--images and then every check of ``predict``."""
    predict._need(parser, "pycocotools", "eval", "pycocotools")
    check_readable(parser, "--ann", args.ann)
    if args.results and args.config:
        parser.error("give --results (evaluate a file) or --config/--weights/--images (predict, then evaluate), not both")
    if args.results:
        check_readable(parser, "--results", args.results)
        return
    if not args.config:
        parser.error("give --results keypoints.json, or --config, --weights and --images to predict first")
    if not args.weights:
        parser.error("--config needs --weights")
    if not args.images:
        parser.error("--config needs --images DIR (the images of --ann)")
    args.inputs, args.video, args.draw_video, args.box_format = [args.images], None, None, "xywh"
    if not args.out:
        import tempfile

        fd, args.out = tempfile.mkstemp(prefix="hrnet_fast_keypoints_", suffix=".json")
        os.close(fd)
        args.out_is_temp = True
    predict.validate(parser, args)


def run(args) -> int:
    """Evaluate --results, or predict and then evaluate; exit 1 when the results do not fit --ann."""
    from ..coco import evaluate, format_stats

    if args.results:
        results = args.results
    else:
        results = predict.run_predict(args)
        if results is None:  # a rank other than 0 under torchrun
            return 0
        if not getattr(args, "out_is_temp", False):
            with open(args.out, "w") as fh:
                json.dump(results, fh)
            print(f"wrote {len(results)} person results to {args.out}")
    try:
        stats = evaluate(args.ann, results)
    except ValueError as exc:
        print(f"hrnet-fast eval: {exc}", file=sys.stderr)
        return 1
    finally:
        if getattr(args, "out_is_temp", False) and os.path.exists(args.out):
            os.remove(args.out)
    print(format_stats(stats))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"ann": args.ann, "stats": stats}, fh, indent=2)
    return 0
