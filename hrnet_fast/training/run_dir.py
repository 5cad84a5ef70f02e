"""The run directory of :func:`hrnet_fast.training.fit` (``hrnet-fast train --out RUN_DIR``), in the official layout:

- ``checkpoint.pth``: what the official ``train.py`` saves and resumes from (``train.py:171-183, 212-219``):
  ``epoch`` (epochs completed), ``model`` (MODEL.NAME), ``state_dict`` (the ``module.``-prefixed keys of the
  official DataParallel model), ``best_state_dict`` (the plain state dict, as the official code stores it: the
  current weights, whatever its name says), ``perf`` (the last AP), ``optimizer`` (its groups carry
  ``initial_lr``, which the official resume's ``MultiStepLR(last_epoch=epoch)`` needs); and for a bitwise
  resume ``step`` (optimizer steps done), ``scheduler``, ``scaler`` (fp16), ``best_perf``, ``settings`` and
  ``experiment``. Only tensors and plain Python values (``torch.load(weights_only=True)`` reads it; the
  official ``torch.load`` fails on a numpy scalar since torch 2.6).
- ``model_best.pth`` (the weights of the best AP so far) and ``final_state.pth`` (the weights at the end):
  plain state dicts, which the official ``test.py`` loads (``final_state.pth`` strictly, ``test.py:88-96``).
- ``log.jsonl``: one JSON record a line (training: loss, lr, img/s, data-wait share; validation: the AP table).

Every file is replaced atomically (:mod:`hrnet_fast._atomic`): a crash mid-write leaves the previous file.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional

import torch

from .._atomic import atomic_open, atomic_path

__all__ = ["CheckpointError", "RunDir", "plain_values", "read_checkpoint", "unprefixed"]

CHECKPOINT, BEST, FINAL, LOG = "checkpoint.pth", "model_best.pth", "final_state.pth", "log.jsonl"
#: the keys of the official checkpoint (train.py:212-219), then ours
OFFICIAL_KEYS = ("epoch", "model", "state_dict", "best_state_dict", "perf", "optimizer")
OUR_KEYS = ("step", "scheduler", "scaler", "best_perf", "settings", "experiment")


class CheckpointError(ValueError):
    """A checkpoint to resume from that is missing, unreadable, or not a training checkpoint."""


def plain_values(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with every number a Python ``int``/``float``/``bool`` (a numpy or 0-dim value converted), tuples
    kept, tensors kept; ``TypeError`` naming the place of anything else (what ``weights_only`` loading refuses)."""
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (bool, int, float, str):
        return obj  # exact types: numpy.float64 is a float subclass, which weights_only loading refuses
    if isinstance(obj, Mapping):
        return {k: plain_values(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain_values(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # a numpy scalar
        return obj.item()
    for base in (bool, int, float, str):  # another subclass (an IntEnum, ...): its plain value
        if isinstance(obj, base):
            return base(obj)
    raise TypeError(f"{where}: {type(obj).__name__} is neither a tensor nor a plain Python value")


class RunDir:
    """The files of one training run in ``path`` (created by :meth:`create`, on rank 0)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def create(self) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise OSError(f"run directory {self.path}: cannot create it ({exc.strerror})") from None

    # ------------------------------------------------------------------ writing (rank 0)
    def _save(self, name: str, obj) -> None:
        with atomic_path(self.file(name)) as tmp:
            torch.save(obj, tmp)

    def save_checkpoint(self, *, epoch: int, step: int, model_name: str, state_dict: Mapping[str, torch.Tensor],
                        perf: float, best_perf: float, optimizer: Mapping, scheduler: Mapping, scaler: Optional[Mapping],
                        settings: Mapping, experiment: Mapping) -> None:
        """``checkpoint.pth`` (see the module docstring); ``state_dict`` is the plain (unprefixed) one."""
        plain = dict(state_dict)
        ckpt = {"epoch": int(epoch), "model": str(model_name), "state_dict": {"module." + k: v for k, v in plain.items()},
                "best_state_dict": plain, "perf": float(perf), "optimizer": optimizer, "scheduler": scheduler,
                "scaler": scaler, "step": int(step), "best_perf": float(best_perf), "settings": settings,
                "experiment": experiment}
        self._save(CHECKPOINT, plain_values(ckpt))

    def save_state_dict(self, name: str, state_dict: Mapping[str, torch.Tensor]) -> None:
        """``model_best.pth`` or ``final_state.pth``: a plain state dict."""
        self._save(name, dict(state_dict))

    def log(self, record: Mapping[str, Any]) -> None:
        """One record appended to ``log.jsonl`` (one write of one line)."""
        with open(self.file(LOG), "a") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")

    def read_log(self) -> List[Dict[str, Any]]:
        try:
            with open(self.file(LOG)) as fh:
                return [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []

    def truncate_log(self, step: int) -> List[Dict[str, Any]]:
        """Keep the records up to ``step`` (a resume from there logs the later ones again); returns them."""
        kept = [r for r in self.read_log() if int(r.get("step", 0)) <= step]
        with atomic_open(self.file(LOG)) as fh:
            fh.writelines(json.dumps(r, allow_nan=True) + "\n" for r in kept)
        return kept

    # ------------------------------------------------------------------ resuming (every rank)
    def resume_path(self, resume: Optional[str]) -> Optional[str]:
        """The checkpoint that ``resume`` names: None (start afresh), ``"auto"`` (``checkpoint.pth`` here when it
        exists, else afresh) or a path (``CheckpointError`` when it is not a file)."""
        if resume is None:
            return None
        if resume == "auto":
            path = self.file(CHECKPOINT)
            return path if os.path.isfile(path) else None
        if not os.path.isfile(resume):
            raise CheckpointError(f"resume: no such checkpoint file {resume!r}")
        return os.fspath(resume)


def read_checkpoint(path: str) -> Dict[str, Any]:
    """A training checkpoint (``torch.load(weights_only=True)`` on the CPU): ours, or the official ``train.py``'s
    (then without ``step``). ``CheckpointError`` naming the file when it cannot be read or lacks a key."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated file, a pickle, not a checkpoint at all
        raise CheckpointError(f"resume: cannot read {path} as a training checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"resume: {path} holds a {type(ckpt).__name__}, not a training checkpoint")
    missing = [k for k in ("epoch", "state_dict", "optimizer") if k not in ckpt]
    if missing:
        raise CheckpointError(f"resume: {path} is not a training checkpoint (no {', '.join(missing)}: a plain state dict "
                              f"such as final_state.pth is loaded with --pretrained, not resumed)")
    return dict(ckpt)


def unprefixed(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The plain keys of the official ``module.``-prefixed ``state_dict``."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
