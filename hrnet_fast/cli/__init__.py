"""The ``hrnet-fast`` command line: ``bench``, ``info``, ``check``, ``export``, ``predict``, ``eval``, ``train``.

    hrnet-fast bench [--config w32_256x192] [--batch 1,8] [--dtype fp32] [--device auto]
                     [--backend auto] [--weights PATH] [--json OUT] [--quick]
    hrnet-fast info
    hrnet-fast check [--device auto]
    hrnet-fast export --out model.onnx [--config w32_256x192] [--weights PATH] [--batch dynamic] [--dtype fp32]
                      [--opset 18] [--decode none] [--trt-plugins] [--optimize] [--check]
    hrnet-fast predict --config C [--weights W.pth] IMAGES_OR_DIR [--ann A] [--boxes D] --out keypoints.json
    hrnet-fast predict --config C [--weights W.pth] --video in.mp4 [--boxes per_frame.json] --draw-video out.mp4
    hrnet-fast eval --ann A (--results keypoints.json | --config C [--weights W.pth] --images DIR [--boxes D])
    hrnet-fast train --config C (--data COCO_ROOT | --train-ann A --train-images DIR [--val-ann V --val-images DIR])
                     --out RUN_DIR [--epochs] [--batch] [--lr] [--amp off|bf16|fp16] [--resume auto|PATH] ...
    hrnet-fast --version

One module per command (``hrnet_fast/cli/bench.py``, ...), listed in :data:`commands_dict` (as pip's
``commands_dict``) and imported by :func:`create_command` only when that command is parsed: ``hrnet-fast
--help`` imports none of them, ``hrnet-fast bench --help`` only ``bench``, and no command module imports
torch before its command runs. A command module holds ``DESCRIPTION``, ``add_arguments(parser)``,
``validate(parser, args)`` (None when there is nothing to check) and ``run(args) -> exit status``; the
options several commands share are in :mod:`hrnet_fast.cli._common`. The work itself lives in library
modules (:mod:`hrnet_fast.coco`, :mod:`hrnet_fast.draw`, :mod:`hrnet_fast.video`, ...), which never import
this package.

Arguments, and the files they name, are checked before any work starts: a bad one prints the usage and a
one-line error and exits with status 2 (argparse's convention). Without --weights every model command runs on
random weights after a loud warning. No output may be an input file, and every output is written atomically
(:mod:`hrnet_fast._atomic`).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Dict, List, NamedTuple, Optional, Sequence

from .._version import __version__

__all__ = ["CommandInfo", "build_parser", "commands_dict", "create_command", "main"]


class CommandInfo(NamedTuple):
    module_path: str
    summary: str  # the line of `hrnet-fast --help`


#: command name -> where it lives and its one-line summary, in the order `hrnet-fast --help` lists them
commands_dict: Dict[str, CommandInfo] = {
    "bench": CommandInfo("hrnet_fast.cli.bench",
                         "measure reference vs hrnet_fast side by side (exchange units, whole model, decoding)"),
    "info": CommandInfo("hrnet_fast.cli.info", "versions, devices, and which backends are available and why not"),
    "check": CommandInfo("hrnet_fast.cli.check",
                         "equivalence only: every available backend vs the reference; non-zero exit on mismatch"),
    "export": CommandInfo("hrnet_fast.cli.export",
                          "write an ONNX model (torch.onnx dynamo exporter); --check runs it in onnxruntime"),
    "predict": CommandInfo("hrnet_fast.cli.predict", "images (or a video) and person boxes to COCO keypoint results"),
    "eval": CommandInfo("hrnet_fast.cli.eval", "COCO keypoint AP of a results file (or predict, then evaluate)"),
    "train": CommandInfo("hrnet_fast.cli.train",
                         "train with the official recipe (one process, or one per GPU under torchrun) into a run directory"),
}


def create_command(name: str) -> ModuleType:
    """The module of command ``name``, imported now (``KeyError`` for an unknown name)."""
    return importlib.import_module(commands_dict[name].module_path)


def _command_name(argv: Sequence[str]) -> Optional[str]:
    """The command ``argv`` names: its first word that is not an option (the top level has only flags)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in commands_dict else None


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of ``hrnet-fast``: every command listed with its summary, the arguments of ``command``
    (None: no command module is imported)."""
    p = argparse.ArgumentParser(prog="hrnet-fast", description="A drop-in, faster HRNet: benchmarks, equivalence checks, environment "
                                                               "info, ONNX export, pose estimation of images and videos, COCO evaluation, "
                                                               "training.")
    p.add_argument("--version", action="version", version=f"hrnet-fast {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, info in commands_dict.items():
        sp = sub.add_parser(name, help=info.summary, description=info.summary)
        if name == command:
            module = create_command(name)
            sp.description = module.DESCRIPTION
            module.add_arguments(sp)
            sp.set_defaults(func=module.run, validate=module.validate, parser=sp)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``hrnet-fast`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status (argparse exits
    with 2 on a bad argument)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_name(argv)).parse_args(argv)
    if args.validate is not None:
        args.validate(args.parser, args)
    return int(args.func(args) or 0)
