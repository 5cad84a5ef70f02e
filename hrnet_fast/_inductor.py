"""``optimize(model, engine="inductor")``: the model compiled by TorchInductor with freezing and the C++ wrapper.

An opt-in beside the default torch path (issue 20, item 3): inductor constant-folds the frozen weights,
prepacks them for oneDNN and fuses the epilogues (the same ``mkldnn._convolution_pointwise`` calls the default
path makes), and its C++ wrapper removes the Python between kernels. It pays for that with a compilation per
input shape -- 36-40 s for W32 on 2 CPU threads, reported in :attr:`InductorModule.compile_s` and logged --
and it needs a C++ compiler at run time. Measured on the issue's machine (AMD EPYC, 2 threads, W32 256x192):
40.6 / 271 ms at batch 1 / 8 against ``optimize(m)``'s 42.8 / 291-311 ms in the same runs.

What is compiled: ``optimize(model, fused=False)`` -- BatchNorm folded, channels_last, the exchange units as
the official op sequence (inductor fuses the upsample-and-sum itself; hrnet_fast's custom op would be opaque
to it), parameters frozen. The module is a torch module with the model's state_dict names; copying and
pickling keep the model and compile again on the next call (a compiled graph is not kept).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Dict, Tuple

import torch
import torch.nn as nn

__all__ = ["InductorModule"]

_log = logging.getLogger("hrnet_fast")
# what inductor is asked for: weights frozen into constants (folded, prepacked) and the C++ wrapper
_INDUCTOR_CONFIG = {"freezing": True, "cpp_wrapper": True}


class InductorModule(nn.Module):
    """``model`` (an ``optimize(..., fused=False)`` HRNet) compiled by inductor on first use per input shape.

    ``forward(x)``: (N, 3, H, W) -> the model's heatmaps, as the model; inference only (no autograd: inductor's
    freezing needs ``torch.no_grad``, which forward enters). ``compile_s``: {input shape: seconds the first call
    of that shape took, compilation included}. A compilation failure (no C++ compiler, an inductor error)
    raises a ``RuntimeError`` that names inductor and the way back (``engine="torch"``).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"InductorModule: model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.cfg = getattr(model, "cfg", None)
        self.engine = "inductor"
        self.compile_s: Dict[Tuple[int, ...], float] = {}
        self._compiled = None

    def _compile(self):
        # dynamic=False: one graph per input shape, each fully specialised (what freezing folds for)
        return torch.compile(self.model, backend="inductor", dynamic=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"InductorModule: x must be a tensor (N, 3, H, W), got {type(x).__name__}")
        if self._compiled is None:
            self._compiled = self._compile()
        shape = tuple(x.shape)
        first = shape not in self.compile_s
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), torch._inductor.config.patch(_INDUCTOR_CONFIG):
                out = self._compiled(x)
        except Exception as exc:  # noqa: BLE001 - torch._dynamo wraps compiler errors in many types
            if not first:
                raise
            raise RuntimeError(f"optimize(engine='inductor'): compiling for input {shape} failed "
                               f"({type(exc).__name__}: {str(exc)[:300]}); inductor needs a working C++ compiler. "
                               f"engine='torch' (the default) needs none") from exc
        if first:
            self.compile_s[shape] = time.perf_counter() - t0
            _log.info("optimize(engine='inductor'): compiled for input %s in %.1f s", shape, self.compile_s[shape])
        return out

    # copies and pickles hold the model, not the compiled graph (recompiled on the next call)
    def __deepcopy__(self, memo):
        new = InductorModule(copy.deepcopy(self.model, memo))
        memo[id(self)] = new
        return new

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = None
        state["compile_s"] = {}
        return state

    def extra_repr(self) -> str:
        return f"engine='inductor', compiled shapes={sorted(self.compile_s)}"
