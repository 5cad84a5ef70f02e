"""``hrnet-fast eval``: pycocotools' keypoint AP table of a results file against a COCO annotation file, or
``predict`` first (its options, sharded under torchrun likewise), then the table
(:func:`hrnet_fast.coco.evaluate`, :func:`hrnet_fast.coco.format_stats`).

    hrnet-fast eval --ann person_keypoints.json --results keypoints.json
    hrnet-fast eval --config ... [--weights ...] --ann ... --images DIR [--boxes dets.json]

Every file is checked before any work: --ann is a COCO keypoint annotation file pycocotools can evaluate
against, every entry of --results is a keypoint result of it (an image id of --ann, a category of it, 51
finite keypoint values, a finite score), --json can be written. A user error is one line naming the file (and
the entry), exit 2; nothing is left behind. With --config the predictions stay in memory (written only to
--out when it is given).
"""
from __future__ import annotations

import argparse
import sys

from . import predict
from ._common import check_outputs, check_readable, check_writable, file_index, write_output

DESCRIPTION = ("Print pycocotools' keypoint AP table (AP, AP .5, AP .75, AP (M), AP (L), AR, ...) of "
               "--results against --ann, or run predict on --images first (with --config, and --weights or "
               "random weights). Needs pycocotools (pip install 'hrnet_fast[pipeline]').")


def add_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--ann", required=True, help="COCO person keypoint annotation file (e.g. person_keypoints_val2017.json)")
    ev.add_argument("--results", default=None, help="keypoint results (COCO results format) to evaluate")
    ev.add_argument("--images", default=None, metavar="DIR", help="with --config: the image directory of --ann")
    ev.add_argument("--json", default=None, help="also write the stats as JSON here")
    predict.add_model_and_run_args(ev, required=False)
    ev.set_defaults(draw=None, allow_empty=False)  # predict's --draw and --allow-empty, which eval does not offer


def _read(parser: argparse.ArgumentParser, opt: str, path: str, what: str):
    from ..coco import read_json

    check_readable(parser, opt, path)
    try:
        return read_json(path, what)
    except ValueError as exc:
        parser.error(f"{opt} {exc}")


def validate(parser: argparse.ArgumentParser, args) -> None:
    """--ann (parsed and checked: ``args.ann_doc``) and --results (``args.results_doc``, every entry checked), or
    --config/--images and then every check of ``predict``; --json writable; no output is an input."""
    from ..coco import check_annotations, check_results

    predict._need(parser, "pycocotools", "eval", "pycocotools")
    if args.results and args.config:
        parser.error("give --results (evaluate a file) or --config/--images (predict, then evaluate), not both")
    if not args.results and not args.config:
        parser.error("give --results keypoints.json, or --config (and --weights) and --images to predict first")
    if args.config and not args.images:
        parser.error("--config needs --images DIR (the images of --ann)")
    args.ann_doc = _read(parser, "--ann", args.ann, "COCO annotation file")
    try:
        check_annotations(args.ann_doc, f"--ann {args.ann}", for_eval=True)
    except ValueError as exc:
        parser.error(str(exc))
    if args.results:
        args.results_doc = _read(parser, "--results", args.results, "keypoint results file")
        try:
            check_results(args.results_doc, args.ann_doc, f"--results {args.results}")
        except ValueError as exc:
            parser.error(str(exc))
        check_outputs(parser, [("--json", args.json)], file_index([("--ann", args.ann), ("--results", args.results)]))
    else:
        args.inputs, args.video, args.draw_video, args.box_format = [args.images], None, None, "xywh"
        args.out_optional = True  # the predictions are evaluated in memory; --out only when given
        predict.validate(parser, args)  # --ann, --boxes, --weights ... are inputs there: --out is checked against them
        check_outputs(parser, [("--json", args.json)], file_index([("--ann", args.ann), ("--boxes", args.boxes),
                                                                  ("--weights", args.weights)]))
    if args.json:
        check_writable(parser, "--json", args.json)


def run(args) -> int:
    """Evaluate --results, or predict and then evaluate (exit 1 when there is no person to run); write --json
    atomically."""
    from ..coco import evaluate, format_stats

    if args.results:
        results = args.results_doc
    else:
        if predict.refuse_empty(args, "eval"):
            return 1
        results = predict.run_predict(args)
        if results is None:  # a rank other than 0 under torchrun
            return 0
        if args.out:
            if not write_output("eval", "--out", args.out, results, allow_nan=False):
                return 1
            print(f"wrote {len(results)} person results to {args.out}")
    try:
        stats = evaluate(args.ann_doc, results)
    except ValueError as exc:  # predictions that cannot be evaluated (none at all): said in one line
        print(f"hrnet-fast eval: {exc}", file=sys.stderr)
        return 1
    print(format_stats(stats))
    if args.json and not write_output("eval", "--json", args.json, {"ann": args.ann, "stats": stats}, indent=2):
        return 1
    return 0
