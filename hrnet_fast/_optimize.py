"""Inference preparation: BatchNorm folding, channels_last, half precision, and :func:`optimize`, which does
all of it and freezes an HRNet for inference (:mod:`hrnet_fast._inference`).

The package exports these as ``hrnet_fast.optimize``, ``hrnet_fast.fold_batchnorm`` and
``hrnet_fast.fold_conv_bn`` (the module's name is not the function's, so that importing it never shadows
the function on the package)."""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn

from ._folding import fold_batchnorm, fold_conv_bn  # re-exported: the package face takes them from here

__all__ = ["fold_conv_bn", "fold_batchnorm", "optimize"]


def optimize(
    model: nn.Module,
    dtype: Optional[torch.dtype] = None,
    channels_last: Optional[bool] = None,
    fused: bool = True,
    backend: str = "auto",
    cuda_graphs: Optional[bool] = None,
    max_graphs: int = 8,
    engine: str = "torch",
) -> nn.Module:
    """A new eval-mode copy of ``model`` prepared for inference; the caller's model is untouched.

    - Every BatchNorm is folded into the convolution before it (stem, blocks, transitions, fuse layers).
    - ``channels_last`` (default: True) converts weights to channels_last; inputs are converted in forward.
    - ``dtype`` (default: the model's) casts weights, e.g. ``torch.float16`` / ``torch.bfloat16`` on a GPU;
      inputs are cast to the weights' dtype in forward, and the heatmaps come out in that dtype.
    - ``fused`` and ``backend`` choose how the exchange units run (see :class:`ExchangeUnit`).
    - With ``fused=True`` (the default) an HRNet is frozen for inference (:mod:`hrnet_fast._inference`):
      convolutions with fused epilogues (oneDNN with weights reordered once on the CPU, cuDNN on CUDA),
      the exchange units' op calls prepared once, the input checked once at the model boundary, and on
      CUDA the branches of each stage on parallel streams. ``fused=False`` keeps the folded model's plain
      module forward (the official op sequence with BatchNorm folded).
    - ``cuda_graphs`` (default None: on whenever the input is a CUDA tensor, decided per call): each
      (input shape, dtype, device) is captured into a CUDA graph on first use and replayed afterwards
      (:class:`hrnet_fast.cuda_graphs.GraphCache`, at most ``max_graphs`` shapes, least recently used
      evicted); outputs are copies, so they may be kept. A call that autograd would record runs eagerly.
      ``cuda_graphs=False`` turns it off. Needs ``fused=True``.
    - ``engine`` (default ``"torch"``: this module): ``"openvino"``, ``"onnxruntime"`` or ``"auto"`` return a CPU
      inference engine running hrnet_fast's ONNX export, called the same way (:mod:`hrnet_fast.engines`).
      ``"inductor"`` (opt-in, not part of ``"auto"``) compiles the folded model with TorchInductor (freezing, C++
      wrapper; :mod:`hrnet_fast._inductor`): a torch module, about 40 s of compiling per input shape on 2 CPU threads.

    For an HRNet the returned module keeps the official state_dict names (BatchNorm entries are gone:
    folded) and ``exchange_units()``, records these arguments as ``inference_config`` (plain data) and
    holds everything it prepares in one plan (``inference_plan()``), which it rebuilds when it is copied,
    pickled, saved and loaded, moved or cast with ``.to()``, or given new weights with
    ``load_state_dict``. It is inference-only: its parameters do not require grad, and changing them in
    place after the first call is not seen by the prepared kernels. Optimizing it again works; arguments
    left at None keep what the first ``optimize()`` chose.
    """
    from ._inference import InferenceConfig
    from .models.pose_hrnet import ExchangeUnit, PoseHighResolutionNet

    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize: model must be an nn.Module, got {type(model).__name__}")
    if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ValueError(f"optimize: dtype must be torch.float32, float16, bfloat16 or float64, got {dtype}")
    if cuda_graphs not in (None, True, False):
        raise TypeError(f"optimize: cuda_graphs must be None (auto), True or False, got {cuda_graphs!r}")
    if cuda_graphs and not fused:
        raise ValueError("optimize: cuda_graphs=True needs fused=True (the frozen inference path is what is captured)")
    if engine not in ("torch", "openvino", "onnxruntime", "auto", "inductor"):
        raise ValueError(f"optimize: engine must be 'torch', 'openvino', 'onnxruntime', 'auto' or 'inductor', got {engine!r}")
    if engine == "inductor":  # hrnet_fast/_inductor.py: the plain-op folded model, compiled with freezing
        from ._inductor import InductorModule
        return InductorModule(optimize(model, dtype=dtype, channels_last=channels_last, fused=False, backend=backend,
                                       cuda_graphs=False, max_graphs=max_graphs))
    if engine != "torch":  # hrnet_fast/engines.py: OpenVINO / onnxruntime behind the same module contract
        from .engines import build
        return build(model, engine, dtype=dtype,
                     torch_build=lambda dt: optimize(model, dtype=dt, channels_last=channels_last, fused=fused,
                                                     backend=backend, cuda_graphs=cuda_graphs, max_graphs=max_graphs))
    if not isinstance(max_graphs, int) or isinstance(max_graphs, bool) or max_graphs < 1:
        raise ValueError(f"optimize: max_graphs must be a positive int, got {max_graphs!r}")
    out = copy.deepcopy(model).eval()  # an optimized model's plan is not copied (derived state)
    previous = getattr(out, "inference_config", None)
    if isinstance(out, PoseHighResolutionNet):
        out.inference_config = None  # no plan while the weights change below
    if previous is not None:  # optimize(optimize(m)): what the first call chose, unless asked otherwise
        if dtype is None and previous.dtype is not None:
            dtype = out.conv1.weight.dtype  # keeps casting inputs (to the weights' dtype, as it did)
        if channels_last is None:
            channels_last = previous.channels_last
    fold_batchnorm(out)
    if dtype is not None:
        out = out.to(dtype)
    if channels_last is None:
        channels_last = True
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    for unit in out.modules():
        if isinstance(unit, ExchangeUnit):
            unit.configure(fused=fused, backend=backend)
    for p in out.parameters():
        p.requires_grad_(False)
    if isinstance(out, PoseHighResolutionNet):
        # the plan is built from this (now, and again whenever the model rebuilds it)
        out.inference_config = InferenceConfig(dtype=dtype, channels_last=bool(channels_last), fused=bool(fused),
                                               backend=backend, cuda_graphs=cuda_graphs, max_graphs=max_graphs)
    return out
