"""Load official, mmpose and DataParallel HRNet checkpoints into :class:`PoseHighResolutionNet`."""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Tuple, Union

import torch
import torch.nn as nn

__all__ = ["CheckpointMismatchError", "normalize_state_dict", "load_checkpoint"]

# mmpose names the backbone "backbone." and the 1x1 head "head.final_layer." (1.x) or
# "keypoint_head.final_layer." (0.x); the official model calls that conv "final_layer".
_PREFIX_MAP = (
    ("module.", ""),
    ("backbone.", ""),
    ("head.final_layer.", "final_layer."),
    ("keypoint_head.final_layer.", "final_layer."),
)


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose keys or shapes do not fit the model. Nothing was loaded."""

    def __init__(self, missing: List[str], unexpected: List[str], shape_conflicts: List[Tuple[str, tuple, tuple]]):
        self.missing, self.unexpected, self.shape_conflicts = missing, unexpected, shape_conflicts

        def show(keys, n=20):
            more = f" ... and {len(keys) - n} more" if len(keys) > n else ""
            return ", ".join(keys[:n]) + more

        parts = ["checkpoint does not fit the model (nothing was loaded):"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if shape_conflicts:
            shown = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in shape_conflicts]
            parts.append(f"  shape conflicts ({len(shape_conflicts)}): {show(shown)}")
        super().__init__("\n".join(parts))


def _unwrap(obj) -> Mapping[str, torch.Tensor]:
    """Strip ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers (nested, as training scripts save them)."""
    wrappers = ("state_dict", "model", "model_state_dict", "net")
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in wrappers if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise TypeError(f"checkpoint must be a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
    return obj


def normalize_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official key names from official, mmpose or DataParallel checkpoints (non-tensor entries dropped)."""
    out: Dict[str, torch.Tensor] = {}
    for key, value in _unwrap(state_dict).items():
        if not isinstance(value, torch.Tensor):
            continue
        new = key
        changed = True
        while changed:  # prefixes can stack: module.backbone.conv1.weight
            changed = False
            for old, rep in _PREFIX_MAP:
                if new.startswith(old):
                    new = rep + new[len(old):]
                    changed = True
        if new in out:
            raise ValueError(f"checkpoint: keys {key!r} and another one both map to {new!r}")
        out[new] = value
    return out


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: Union[str, "os.PathLike[str]", Mapping[str, torch.Tensor]],
    strict: bool = True,
    map_location: Union[str, torch.device, None] = "cpu",
):
    """Load an HRNet checkpoint into ``model``.

    ``path_or_state_dict``: a file (read with ``torch.load(weights_only=True)``) or a mapping. Accepts
    official checkpoints, mmpose ones (``backbone.`` prefix, ``head.final_layer.`` or
    ``keypoint_head.final_layer.``), ``module.`` prefixes from DataParallel and ``{'state_dict': ...}``
    wrappers.

    ``strict=True``: any missing or unexpected key or shape conflict raises
    :class:`CheckpointMismatchError` listing them all, and nothing is loaded. ``strict=False``: loads the
    keys whose names and shapes match and returns the (missing, unexpected, shape_conflicts) lists.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = os.fspath(path_or_state_dict)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint: no such file {path!r}")
        raw = torch.load(path, map_location=map_location, weights_only=True)
    else:
        raw = path_or_state_dict
    sd = normalize_state_dict(raw)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    conflicts = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in sorted(own) if k in sd and sd[k].shape != own[k].shape]
    if strict and (missing or unexpected or conflicts):
        raise CheckpointMismatchError(missing, unexpected, conflicts)
    bad = {k for k, _, _ in conflicts}
    to_load = {k: v for k, v in sd.items() if k in own and k not in bad}
    model.load_state_dict(to_load, strict=strict)
    return missing, unexpected, conflicts
