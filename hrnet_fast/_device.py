"""One resolver of a device name for the library and the command line: :func:`resolve_device`."""
from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["resolve_device"]


def resolve_device(device: Optional[Union[str, torch.device]]) -> torch.device:
    """``None``/``"auto"`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    (or a ``torch.device``) -> that device, checked to exist here.

    Raises ``ValueError`` for another device type (``"device must be ..."``) and ``RuntimeError`` for a CUDA
    device torch cannot reach (no GPU, or an index past the last one). The messages name no caller: the
    caller prefixes its own (``PoseEstimator: ...``, ``--device cuda: ...``)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"torch sees no CUDA GPU (torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"there are {torch.cuda.device_count()} CUDA device(s)")
    return dev
