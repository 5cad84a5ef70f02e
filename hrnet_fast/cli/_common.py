"""What several ``hrnet-fast`` commands share: the dtype names, the ``--config/--weights/--device/--dtype``
options (:func:`add_common_args`, each command with its own defaults and choices), the argument checks
that run before any work, and the model every model command starts from.

Imported by ``hrnet-fast <command> --help``: nothing here imports torch, numpy or yaml at module level.
The ``type=`` functions run while argparse parses; the ``validate_*``/``check_*`` helpers run right after,
before any work, and turn a bad argument into argparse's usage + one-line error (exit status 2).
"""
from __future__ import annotations

import argparse
import os
import platform
from typing import Any, Dict, Optional, Sequence

from .._version import __version__

#: the --dtype names of the command line and the torch dtypes they name
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DTYPE_CHOICES = tuple(sorted(DTYPE_NAMES))
DEFAULT_CONFIG = "w32_256x192"
DEVICE_HELP = "auto, cpu, cuda or cuda:N (default: auto)"


def torch_dtype(name: str):
    """The torch dtype of a --dtype name (``"fp16"`` -> ``torch.float16``)."""
    import torch

    return getattr(torch, DTYPE_NAMES[name])


# ---------------------------------------------------------------------------------------------- options


def device_arg(text: str) -> str:
    """``type=`` of --device: auto, cpu, cuda or cuda:N (whether it exists is checked by :func:`resolve_device_arg`)."""
    kind, _, index = text.partition(":")
    if text in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N (hrnet_fast runs on CPUs and CUDA GPUs), got {text!r}")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def add_common_args(p: argparse.ArgumentParser, *, model: bool = False, required: bool = False,
                    config_default: Optional[str] = DEFAULT_CONFIG, weights_help: str = "", device: bool = False,
                    device_help: str = DEVICE_HELP, dtype: Optional[str] = None, dtypes: Sequence[str] = DTYPE_CHOICES,
                    dtype_help: Optional[str] = None) -> None:
    """Add --config/--weights (``model``), --device (``device``) and --dtype (``dtype``: its default; None = no
    --dtype), spelled alike in every command, with this command's defaults, choices and help.

    ``required``: --config and --weights must be given (then ``config_default`` is ignored); otherwise
    --config defaults to ``config_default`` (None: no default) and --weights to None."""
    if model:
        if required or config_default is None:
            p.add_argument("--config", default=None, required=required,
                           help=f"config name or official experiment YAML (e.g. {DEFAULT_CONFIG})")
        else:
            p.add_argument("--config", default=config_default,
                           help=f"config name or official experiment YAML (default: {config_default})")
        p.add_argument("--weights", default=None, required=required, help=weights_help)
    if device:
        p.add_argument("--device", default="auto", type=device_arg, help=device_help)
    if dtype is not None:
        p.add_argument("--dtype", default=dtype, choices=tuple(dtypes), help=dtype_help or f"compute dtype (default: {dtype})")


# ---------------------------------------------------------------------------------------------- checks


def resolve_device_arg(parser: argparse.ArgumentParser, name: str):
    """--device as a ``torch.device`` (auto: cuda when present); a device that is not here is a usage error."""
    from .._device import resolve_device

    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        parser.error(f"--device {name}: {exc}")


def check_writable(parser: argparse.ArgumentParser, opt: str, path: str) -> None:
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


def check_readable(parser: argparse.ArgumentParser, opt: str, path: str) -> None:
    """``path`` must be a readable file."""
    if not os.path.isfile(path):
        parser.error(f"{opt} {path}: no such file")
    if not os.access(path, os.R_OK):
        parser.error(f"{opt} {path}: not readable")


def validate_config_and_weights(parser: argparse.ArgumentParser, args) -> None:
    """``--config`` must name a readable config (sets ``args.cfg``); ``--weights``, if given, a readable file."""
    from ..config import ConfigError, resolve_config

    try:
        args.cfg = resolve_config(args.config)
    except (ConfigError, TypeError) as exc:
        parser.error(f"--config {args.config}: {str(exc).removeprefix('config: ')}")
    if args.weights is not None:
        check_readable(parser, "--weights", args.weights)


# ---------------------------------------------------------------------------------------------- shared work


def build_model(args):
    """``(network of args.cfg, (H, W) of its input)``: ``--weights`` loaded strictly (a file that is not a
    matching checkpoint is a usage error, exit 2) and the network in eval mode, or, without weights,
    realistic random weights (BatchNorm statistics measured on random images, seed 0)."""
    import hrnet_fast
    from hrnet_fast.checkpoint import CheckpointMismatchError, CheckpointReadError
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(args.cfg)
    h, w = model.cfg["IMAGE_SIZE"][1], model.cfg["IMAGE_SIZE"][0]
    if args.weights:
        try:
            hrnet_fast.load_checkpoint(model, args.weights, strict=True)
        except (CheckpointReadError, CheckpointMismatchError) as exc:  # a bad --weights file: the user's error
            args.parser.error(f"--weights {args.weights}: {exc}")
        model.eval()
    else:
        realistic_random_init(model, image_hw=(h, w), seed=0, batches=1, batch_size=2)
    return model, (h, w)


def versions() -> Dict[str, Any]:
    """hrnet_fast, torch (and its CUDA), triton and python versions and torch's thread count."""
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
