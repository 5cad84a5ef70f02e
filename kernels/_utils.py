"""What every Triton launcher of ``kernels/`` needs: the launch device, the output layout, the poison hook.

Kernels are leaves: no module under ``kernels/`` imports ``hrnet_fast`` (the ops call down into the
launchers with validated arguments and everything else they need, never the other way round).
"""
from __future__ import annotations

import contextlib
import os
from typing import ContextManager

import torch

#: Test hook shared with the compiled extension (``hrnet_fast._backends.POISON_ENV``): with this environment
#: variable set to "1", launchers fill their freshly allocated outputs with NaN before the kernels run, so an
#: element a kernel fails to write shows in the comparisons.
POISON_ENV = "HRNET_FAST_POISON_OUTPUTS"


def poison(*tensors: torch.Tensor) -> None:
    """Fill ``tensors`` with NaN when the :data:`POISON_ENV` test hook is on (read per call: tests set it)."""
    if os.environ.get(POISON_ENV) == "1":
        for t in tensors:
            t.fill_(float("nan"))


def _current_device() -> int:
    """The index of the current CUDA device (a seam: tests replace it to fake a second GPU)."""
    return torch.cuda.current_device()


def launch_device(t: torch.Tensor) -> ContextManager:
    """The context to launch Triton kernels on ``t``'s GPU in.

    Triton launches on the *current* CUDA device, whatever device the pointers belong to: a tensor on
    ``cuda:1`` while ``cuda:0`` is current would be read by a kernel running on GPU 0 (an illegal address
    or silent peer reads). So switch with ``torch.cuda.device`` when ``t`` is on another GPU, and do
    nothing (``contextlib.nullcontext``) otherwise: CPU tensors (the interpreter), or the common case of
    the tensor on the current device. ``with torch.device(...)`` would not do: it only sets torch's
    default factory device (through a TorchFunctionMode that costs tens of microseconds per launch) and
    does not make that GPU current.
    """
    if t.is_cuda and t.device.index is not None and t.device.index != _current_device():
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels_last when ``t`` (4-d) is strictly channels_last dense, else contiguous: the layout the
    launchers give their outputs and scratch buffers."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
