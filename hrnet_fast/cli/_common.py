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
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

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

    ``required``: --config must be given (then ``config_default`` is ignored); otherwise it defaults to
    ``config_default`` (None: no default). --weights is never required: without it the network gets random
    weights, and :func:`build_model` says so loudly (a new user can try every command without a checkpoint)."""
    if model:
        if required or config_default is None:
            p.add_argument("--config", default=None, required=required,
                           help=f"config name or official experiment YAML (e.g. {DEFAULT_CONFIG})")
        else:
            p.add_argument("--config", default=config_default,
                           help=f"config name or official experiment YAML (default: {config_default})")
        p.add_argument("--weights", default=None, help=weights_help)
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
    """Fail now, not after the work, when ``path`` cannot be written (its folder is created). Outputs are
    written atomically (:mod:`hrnet_fast._atomic`): a file is created beside ``path``, so that is the probe; a
    probe file is removed at once and ``path`` itself is not touched."""
    from .._atomic import writable_problem

    if os.path.isdir(path):
        parser.error(f"{opt} {path}: is a directory; expected a file path")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as exc:
        parser.error(f"{opt} {path}: cannot write there ({exc.strerror})")
    problem = writable_problem(path)
    if problem:
        parser.error(f"{opt} {path}: {problem}")


def file_index(inputs: Iterable[Tuple[str, Optional[str]]]) -> Dict[Tuple[int, int], Tuple[str, str]]:
    """The existing input files of a command, ``(option, path)`` pairs (None paths skipped), keyed by their
    ``(st_dev, st_ino)``: one file however it is named (relative, absolute, through a symlink or a hard link),
    as ``os.path.samefile`` compares them."""
    index: Dict[Tuple[int, int], Tuple[str, str]] = {}
    for opt, path in inputs:
        if path:
            try:
                st = os.stat(path)
            except OSError:
                continue
            index.setdefault((st.st_dev, st.st_ino), (opt, path))
    return index


def check_outputs(parser: argparse.ArgumentParser, outputs: Iterable[Tuple[str, Optional[str]]],
                  inputs: Dict[Tuple[int, int], Tuple[str, str]]) -> None:
    """Refuse (usage error, exit 2, one line naming both options) an output path that is an input file
    (:func:`file_index`): writing it would destroy the input (a video would be truncated while it is read).
    ``outputs``: ``(option, path)`` pairs; an output that does not exist yet is no input."""
    for opt, path in outputs:
        if not path:
            continue
        hit = input_at(path, inputs)
        if hit is not None:
            parser.error(f"{opt} {path}: is the input {hit[0]} {hit[1]}; writing it would destroy that input: "
                         f"choose another output path")


def input_at(path: str, inputs: dict):
    """The ``(option, path)`` of the input file that ``path`` is (same device and inode, so links and ``..``
    are seen through), or None when it is none of them or does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return inputs.get((st.st_dev, st.st_ino))


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


def write_output(command: str, opt: str, path: str, obj, indent: Optional[int] = None, allow_nan: bool = True) -> bool:
    """``obj`` as JSON to ``path``, atomically (:func:`hrnet_fast._atomic.write_json`): a failed write (a full
    disk, a file-size limit) leaves the previous file and no temporary file. On failure prints one line
    naming ``opt`` and returns False (the command exits 1)."""
    import sys

    from .._atomic import write_json

    try:
        write_json(path, obj, indent=indent, allow_nan=allow_nan)
    except OSError as exc:
        print(f"hrnet-fast {command}: cannot write {opt} {path}: {exc.strerror or exc} (nothing was replaced)", file=sys.stderr)
        return False
    return True


def random_weights_warning(doing: str, meaning: str) -> None:
    """The one loud warning of every command run without --weights (``doing``: "exporting", ...)."""
    from .._console import say

    say(f"warning: no --weights: {doing} RANDOM weights (BatchNorm statistics measured on random images); {meaning}")


def mismatch_line(exc, config: str) -> str:
    """A :class:`~hrnet_fast.checkpoint.CheckpointMismatchError` (several lines, up to 20 keys each) in one
    line: the counts and one example of each kind."""
    parts = []
    if exc.shape_conflicts:
        key, a, b = exc.shape_conflicts[0]
        parts.append(f"{len(exc.shape_conflicts)} shape conflict(s), e.g. {key}: checkpoint {tuple(a)} vs model {tuple(b)}")
    for what, keys in (("missing", exc.missing), ("unexpected", exc.unexpected)):
        if keys:
            parts.append(f"{len(keys)} {what} key(s), e.g. {keys[0]}")
    if exc.unloadable:
        key, why = exc.unloadable[0]
        parts.append(f"{len(exc.unloadable)} tensor(s) that cannot be loaded, e.g. {key}: {why}")
    return (f"does not fit --config {config} (nothing was loaded): {'; '.join(parts)} "
            f"(a checkpoint of another architecture or config?)")


def build_model(args, doing: str = "running", meaning: str = "the outputs mean nothing"):
    """``(network of args.cfg, (H, W) of its input)``: ``--weights`` loaded strictly (a file that is not a
    matching checkpoint, truncated or of another architecture, is a usage error: one line, exit 2) and the
    network in eval mode, or, without weights, realistic random weights (BatchNorm statistics measured on random
    images, seed 0) after :func:`random_weights_warning` (``doing``, ``meaning``)."""
    import hrnet_fast
    from hrnet_fast.checkpoint import CheckpointMismatchError, CheckpointReadError
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(args.cfg)
    h, w = model.cfg["IMAGE_SIZE"][1], model.cfg["IMAGE_SIZE"][0]
    if args.weights:
        try:
            hrnet_fast.load_checkpoint(model, args.weights, strict=True)
        except CheckpointReadError as exc:  # a bad --weights file: the user's error
            args.parser.error(f"--weights {args.weights}: {exc}")
        except CheckpointMismatchError as exc:
            args.parser.error(f"--weights {args.weights}: {mismatch_line(exc, args.config)}")
        model.eval()
    else:
        random_weights_warning(doing, meaning)
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
