"""``hrnet-fast check``: every available backend of every op against its reference on seeded inputs
(:func:`hrnet_fast.checks.run_checks` over :data:`hrnet_fast.ops.OPS`); exit 1 on a mismatch or when nothing
could be compared. The last line names the ops and backends compared."""
from __future__ import annotations

import argparse

from ._common import add_common_args, resolve_device_arg

DESCRIPTION = ("Run every available backend of every op (fused_exchange, decode_heatmaps, crop_boxes) against its "
               "reference on seeded random inputs, in every dtype the op's backends run on the device (fused_exchange "
               "against float64, with a tolerance derived from the torch reference's own error; fp32 means IEEE fp32 "
               "unless TF32 is enabled for matmuls). Exit 1 on any mismatch, or when nothing could be compared.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_args(p, device=True)


def validate(parser: argparse.ArgumentParser, args) -> None:
    args.device_obj = resolve_device_arg(parser, args.device)


def run(args) -> int:
    from ..checks import run_checks

    device = args.device_obj
    summary = run_checks(device, report=print)
    if summary.failures:
        print(f"hrnet-fast check: {len(summary.failures)} mismatch(es): " + "; ".join(summary.failures))
        print(f"hrnet-fast check: compared {summary.describe()}")
        return 1
    if summary.compared == 0:
        print(f"hrnet-fast check: nothing was compared on {device}: every backend was skipped ({summary.skipped} skipped)")
        return 1
    print(f"hrnet-fast check: {summary.compared} comparisons on {device}, all match the reference ({summary.skipped} "
          f"skipped); compared {summary.describe()}")
    return 0
