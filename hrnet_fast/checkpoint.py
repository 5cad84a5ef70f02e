"""Load official, mmpose and DataParallel HRNet checkpoints into :class:`PoseHighResolutionNet`."""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

__all__ = ["CheckpointMismatchError", "CheckpointReadError", "normalize_state_dict", "load_checkpoint"]

# mmpose names the backbone "backbone." and the 1x1 head "head.final_layer." (1.x) or
# "keypoint_head.final_layer." (0.x); the official model calls that conv "final_layer".
_PREFIX_MAP = (
    ("module.", ""),
    ("backbone.", ""),
    ("head.final_layer.", "final_layer."),
    ("keypoint_head.final_layer.", "final_layer."),
)


class CheckpointReadError(ValueError):
    """A checkpoint file that ``torch.load`` cannot read (empty, truncated, not a PyTorch file, or holding
    Python objects that ``weights_only=True`` refuses). Nothing was loaded."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint whose keys, shapes or tensors do not fit the model. Nothing was loaded.

    ``missing``/``unexpected``: key lists; ``shape_conflicts``: (key, checkpoint shape, model shape);
    ``unloadable``: (key, why) for tensors that cannot be copied into the model at all (on the ``meta``
    device, a dtype that does not cast to the parameter's, not a dense tensor).
    """

    def __init__(self, missing: List[str], unexpected: List[str], shape_conflicts: List[Tuple[str, tuple, tuple]],
                 unloadable: Optional[List[Tuple[str, str]]] = None, reason: Optional[str] = None):
        self.missing, self.unexpected, self.shape_conflicts = missing, unexpected, shape_conflicts
        self.unloadable = list(unloadable or [])
        if reason is not None:  # one cause explains every key: say it instead of listing them
            super().__init__(f"checkpoint does not fit the model (nothing was loaded): {reason}")
            return

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
        if self.unloadable:
            parts.append(f"  tensors that cannot be loaded ({len(self.unloadable)}): "
                         f"{show([f'{k}: {why}' for k, why in self.unloadable])}")
        super().__init__("\n".join(parts))


_WRAPPERS = ("state_dict", "model", "model_state_dict", "net")


def _unwrap(obj) -> Mapping[str, torch.Tensor]:
    """Strip ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers (nested, as training scripts save them).

    A wrapper key holding a mapping is followed even when tensors sit beside it (a training checkpoint's
    ``{'epoch': tensor(3), 'state_dict': {...}, 'optimizer': {...}}``): in a state dict itself every value
    is a tensor, so a mapping under one of these keys is never part of it.
    """
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
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


def _read(path: str, map_location):
    """``torch.load(path, weights_only=True)``, with an error naming the file for what it cannot read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises EOFError, RuntimeError, KeyError, IndexError, ...
        msg = str(exc).strip()
        if "Unsupported global" in msg:
            # "... Unsupported global: GLOBAL argparse.Namespace was not an allowed global by default. ..."
            what = msg.split("Unsupported global:", 1)[1].split(" was not", 1)[0].replace("GLOBAL", "").strip()
            raise CheckpointReadError(
                f"checkpoint: {path!r} holds Python objects that torch.load(weights_only=True) refuses to unpickle "
                f"(unsupported global {what[:200]}); if you trust the file, load it with "
                f"torch.load(weights_only=False) and pass the state dict") from exc
        size = os.path.getsize(path)
        detail = f"{type(exc).__name__}: {msg.splitlines()[0][:200]}" if msg else type(exc).__name__
        raise CheckpointReadError(
            f"checkpoint: {path!r} ({size} bytes) is not a readable checkpoint (empty, truncated, or not written "
            f"by torch.save?): torch.load raised {detail}") from exc


def _unloadable(sd: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> List[Tuple[str, str]]:
    """(key, why) for every tensor that ``load_state_dict`` would fail to copy into the model's."""
    out = []
    for k in sorted(sd):
        v, target = sd[k], own[k]
        if v.device.type == "meta":
            out.append((k, "on the meta device (it holds no values)"))
        elif v.layout != torch.strided:
            out.append((k, f"a {v.layout} tensor (a dense tensor is expected)"))
        elif not torch.can_cast(v.dtype, target.dtype):
            out.append((k, f"dtype {v.dtype} does not cast to the model's {target.dtype}"))
    return out


def _batchnorm_folded(model: nn.Module, unexpected: List[str]) -> bool:
    """Whether ``model`` had its BatchNorm folded away (by optimize() or fold_batchnorm) while the checkpoint
    has BatchNorm statistics for it."""
    if getattr(model, "inference_config", None) is not None:
        return True
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return not has_bn and any(k.endswith(".running_mean") for k in unexpected)


def load_checkpoint(
    model: nn.Module,
    path_or_state_dict: Union[str, "os.PathLike[str]", Mapping[str, torch.Tensor]],
    strict: bool = True,
    map_location: Union[str, torch.device, None] = "cpu",
):
    """Load an HRNet checkpoint into ``model``, all or nothing.

    ``path_or_state_dict``: a file (read with ``torch.load(weights_only=True)``) or a mapping. Accepts
    official checkpoints, mmpose ones (``backbone.`` prefix, ``head.final_layer.`` or
    ``keypoint_head.final_layer.``), ``module.`` prefixes from DataParallel and ``{'state_dict': ...}``
    wrappers, also with other entries beside them (epoch, optimizer state).

    Every tensor is checked (name, shape, device, dtype castability) before any is copied, so a failed
    load leaves the model unchanged. ``strict=True``: any missing or unexpected key or shape conflict
    raises :class:`CheckpointMismatchError` listing them all. ``strict=False``: loads the keys whose names
    and shapes match and returns the (missing, unexpected, shape_conflicts) lists. Either way a tensor that
    cannot be loaded at all (``meta`` device, a dtype that does not cast, sparse) raises
    :class:`CheckpointMismatchError`, and a file ``torch.load`` cannot read raises
    :class:`CheckpointReadError` naming it. A model whose BatchNorm was folded (:func:`hrnet_fast.optimize`)
    takes only a state dict of the same folded form; any other raises :class:`CheckpointMismatchError`
    saying to load the checkpoint before ``optimize()`` (with ``strict=False`` too).
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = os.fspath(path_or_state_dict)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint: no such file {path!r}")
        raw = _read(path, map_location)
    else:
        raw = path_or_state_dict
    sd = normalize_state_dict(raw)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    conflicts = [(k, tuple(sd[k].shape), tuple(own[k].shape)) for k in sorted(own) if k in sd and sd[k].shape != own[k].shape]
    if (missing or unexpected or conflicts) and _batchnorm_folded(model, unexpected):
        # even strict=False: the matching conv weights would replace folded ones and leave stale biases
        raise CheckpointMismatchError(
            missing, unexpected, conflicts, reason=(
                f"the model's BatchNorm layers are folded into its convolutions (an optimize()d model: "
                f"{len(missing)} keys missing, {len(unexpected)} unexpected): load the checkpoint before optimize(): "
                f"model = hrnet_fast.pose_hrnet(...); hrnet_fast.load_checkpoint(model, checkpoint); "
                f"fast = hrnet_fast.optimize(model)"))
    bad = {k for k, _, _ in conflicts}
    to_load = {k: v for k, v in sd.items() if k in own and k not in bad}
    unloadable = _unloadable(to_load, own)
    if unloadable or (strict and (missing or unexpected or conflicts)):
        raise CheckpointMismatchError(missing if strict else [], unexpected if strict else [],
                                      conflicts if strict else [], unloadable)
    model.load_state_dict(to_load, strict=strict)
    return missing, unexpected, conflicts
