"""The lean inference path behind :func:`hrnet_fast.optimize`: convolutions with fused epilogues and a plan
that runs the network without per-call checks.

``optimize()`` folds every BatchNorm, then :func:`freeze` turns the model into an inference-only one:

* Every convolution becomes a :class:`FusedConv2d` (the same ``weight``/``bias`` parameters, so the
  state_dict keys do not change) whose ``forward(x, residual=None, relu=False)`` computes
  ``[relu](conv(x) [+ residual])`` as one library call where the library has one: on the CPU oneDNN's
  fused convolutions with weights reordered once (``mkldnn._convolution_pointwise`` and its ``.binary``
  overload, what inductor uses), on CUDA cuDNN's ``cudnn_convolution_relu`` /
  ``cudnn_convolution_add_relu``; elsewhere the plain ops. The choice is made per shape class -- device,
  dtype, size class, spatial size, batch class (powers of two), layout and epilogue: whether cuDNN has a
  fused engine depends on all of them -- on the first call of that class, where the fused call is kept
  only if it runs and agrees with the plain ops (a check that needs a host sync, so during a CUDA-graph
  capture an undecided class runs the plain ops and is decided later, eagerly). A fused call that fails
  later falls back to the plain ops for its class, for good. Under
  ``torch.compile``/``torch.export``/ONNX export, or when the input requires grad, the plain ops run, so
  traced graphs hold only standard ops.
* An :class:`InferencePlan` holds, for the whole network, lists of those convolutions and of the exchange
  units' prepared arguments (folded 1x1 weights and biases as plain tensors, the op's placeholder lists),
  and runs them without ``nn.Module.__call__``, argument checks or backend resolution per call: the input
  is checked once, at the model boundary. The backend of the fused exchange op is resolved once per
  (device, dtype). Module hooks on submodules do not run in a frozen model.
* On CUDA, the branches of a stage and the output branches of an exchange unit run on separate streams
  (:mod:`hrnet_fast._streams`), which CUDA-graph capture records as parallel work.
"""
from __future__ import annotations

from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _streams

__all__ = ["FusedConv2d", "InferencePlan", "freeze"]


def _capturing(x: torch.Tensor) -> bool:
    """True while the current CUDA stream is being captured into a graph (no host sync allowed then)."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _exporting() -> bool:
    """True while torch.compile / torch.export / ONNX export trace: only standard ops may appear then."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and getattr(onnx, "is_in_onnx_export", lambda: False)())


class FusedConv2d(nn.Conv2d):
    """A convolution whose ``forward(x, residual=None, relu=False)`` is ``[relu](conv(x) [+ residual])``.

    Same parameters as ``nn.Conv2d`` (made with :meth:`from_conv`, which shares them). Inference only:
    weights are reordered once for oneDNN, so changing them after the first call is not seen.
    """

    _impl: Dict[Hashable, str]
    _packed: Dict[Tuple[int, ...], torch.Tensor]
    # Measured on this project's CPU (2 threads, 3x3 convs, channels_last): plain ops win at 2.4M
    # multiply-adds per call, oneDNN's fused call wins from 9.4M on (benchmarks: see the closing note of
    # the "Fast by default" issue); the threshold sits between.
    _MIN_ONEDNN_MACS = 4_000_000
    # shape classes remembered per convolution (a few per input size; bounded for a model fed every size)
    _MAX_CHOICES = 256

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "FusedConv2d":
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"FusedConv2d: only explicit zero padding is supported, got {conv.padding_mode!r} / {conv.padding!r}")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                     "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(new, name, getattr(conv, name))
        new.weight = conv.weight
        new.bias = conv.bias
        new._impl = {}
        new._packed = {}
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        # multiply-adds per input pixel (all channels): output pixels are input pixels / stride^2
        new._macs_per_pixel = conv.out_channels * conv.in_channels // conv.groups * kh * kw // (sh * sw)
        return new

    def _key(self, x: torch.Tensor, residual: Optional[torch.Tensor], relu: bool) -> Hashable:
        """The shape class of a call: (device, dtype, big, H, W, batch class, channels_last, residual, relu).

        ``big``: on the CPU, whether oneDNN's fixed cost pays off (always True on CUDA). The batch class is
        ``N.bit_length()`` (1, 2-3, 4-7, ...): engines rarely depend on the batch beyond that, and a model
        fed every batch size then decides a handful of times, not once per size."""
        n, _, h, w = x.shape
        big = x.device.type != "cpu" or self._macs_per_pixel * x.numel() // x.shape[1] >= self._MIN_ONEDNN_MACS
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return (x.device, x.dtype, big, h, w, n.bit_length(), channels_last, residual is not None, bool(relu))

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None, relu: bool = False) -> torch.Tensor:  # type: ignore[override]
        if x.requires_grad or _exporting():
            return self._plain(x, residual, relu)
        key = self._key(x, residual, relu)
        impl = self._impl.get(key)
        if impl is None:
            impl, out = self._choose(x, residual, relu, key)
            if out is not None:  # computed while choosing
                return out
        if impl == "plain":
            return self._plain(x, residual, relu)
        try:
            return self._mkldnn(x, residual, relu) if impl == "mkldnn" else self._cudnn(x, residual)
        except (RuntimeError, NotImplementedError):
            # the library refused a call of a class it ran before (an engine missing for this exact shape, a
            # workspace it could not get): the plain ops for this class from now on
            self._impl[key] = "plain"
            return self._plain(x, residual, relu)

    # ------------------------------------------------------------------------------------------------

    def _plain(self, x, residual, relu):
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return torch.relu(y) if relu else y

    def _candidate(self, x: torch.Tensor, big: bool, relu: bool) -> str:
        """The library call that could run this class: "mkldnn", "cudnn" or "plain"."""
        if big and x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
            return "mkldnn"
        # cuDNN's fused calls all end in a ReLU: without one there is nothing to fuse
        if relu and x.device.type == "cuda" and x.dtype in (torch.float16, torch.float32) and torch.backends.cudnn.is_available():
            return "cudnn"
        return "plain"

    def _choose(self, x, residual, relu, key) -> Tuple[str, Optional[torch.Tensor]]:
        """Pick the implementation for ``key`` (a shape class, see :meth:`_key`) once: try the fused call,
        compare it with the plain ops on this very input, and keep it only if it runs and agrees (to the
        dtype's rounding). During a CUDA-graph capture the comparison (a host sync) cannot run: the plain
        ops run and nothing is recorded, so the next eager call decides (the graph cache's warm-up is one).

        Returns (implementation, this call's result when the check computed it, else None)."""
        candidate = self._candidate(x, key[2], relu)
        out = None
        if candidate != "plain":
            if _capturing(x):
                return "plain", None
            try:
                want = out = self._plain(x, residual, relu)
                got = self._mkldnn(x, residual, relu) if candidate == "mkldnn" else self._cudnn(x, residual)
                tol = 1e-3 if x.dtype == torch.float32 else 2e-2
                scale = want.abs().max().clamp_min(1e-6)
                if got.shape != want.shape or not bool(((got - want).abs().max() <= tol * scale).item()):
                    candidate = "plain"
                else:
                    out = got
            except (RuntimeError, NotImplementedError):  # op missing in this build, layout or dtype refused
                candidate = "plain"
        if len(self._impl) >= self._MAX_CHOICES:
            self._impl.pop(next(iter(self._impl)))
        self._impl[key] = candidate
        return candidate, out

    def _mkldnn(self, x, residual, relu):
        shape = tuple(x.shape)
        packed = self._packed.get(shape)
        if packed is None:
            # oneDNN picks the weight layout for this input shape; reordered once, not per call
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.detach().to_mkldnn(), list(self.padding), list(self.stride), list(self.dilation),
                self.groups, list(shape))
            if len(self._packed) >= 16:  # a handful of input shapes per layer; bound the cache anyway
                self._packed.pop(next(iter(self._packed)))
            self._packed[shape] = packed
        unary = "relu" if relu else "none"
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, packed, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups,
                unary, [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, residual, packed, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups,
            "add", None, "relu" if relu else None, [], "")

    def _cudnn(self, x, residual):
        if residual is None:
            return torch.cudnn_convolution_relu(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                                self.groups)
        return torch.cudnn_convolution_add_relu(x, self.weight, residual, 1.0, self.bias, self.stride, self.padding,
                                                self.dilation, self.groups)


# ----------------------------------------------------------------------------------------------------
# Freezing: FusedConv2d everywhere, then the plan.

Step = Tuple[FusedConv2d, bool]  # a convolution and whether a ReLU follows it


def _fuse_convs(module: nn.Module) -> None:
    """Replace every nn.Conv2d child (recursively) by a FusedConv2d sharing its parameters."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and not isinstance(child, FusedConv2d):
            setattr(module, name, FusedConv2d.from_conv(child))
        else:
            _fuse_convs(child)


def _chain(seq: nn.Module) -> List[Step]:
    """The (conv, relu) steps of a Sequential of conv / folded-BN (Identity) / ReLU modules, nested or not."""
    steps: List[Step] = []
    for m in seq.modules() if isinstance(seq, nn.Sequential) else [seq]:
        if isinstance(m, nn.Sequential):
            continue
        if isinstance(m, FusedConv2d):
            steps.append((m, False))
        elif isinstance(m, nn.ReLU):
            if not steps:
                raise ValueError("freeze: a ReLU before any convolution")
            steps[-1] = (steps[-1][0], True)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise ValueError("freeze: BatchNorm must be folded first (hrnet_fast.optimize does it)")
        elif not isinstance(m, nn.Identity):
            raise ValueError(f"freeze: unexpected {type(m).__name__} in a conv chain")
    return steps


def _run_chain(steps: Sequence[Step], x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Run conv steps; ``residual`` is added after the last one (fused into it where the library can)."""
    last = len(steps) - 1
    for k, (conv, relu) in enumerate(steps):
        x = conv.forward(x, residual if k == last else None, relu)
    return x


class _Block:
    """A BasicBlock / Bottleneck as its convolution steps: the last conv adds the shortcut, then ReLU."""

    def __init__(self, block: nn.Module):
        from .models.pose_hrnet import BasicBlock, Bottleneck

        convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(block, Bottleneck) else [])
        if not isinstance(block, (BasicBlock, Bottleneck)):
            raise TypeError(f"freeze: unexpected block {type(block).__name__}")
        self.head = [(c, True) for c in convs[:-1]]
        self.tail = convs[-1]
        self.shortcut = None if block.downsample is None else _chain(block.downsample)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else _run_chain(self.shortcut, x)
        for conv, _ in self.head:
            x = conv.forward(x, None, True)
        return self.tail.forward(x, shortcut, True)


class _Exchange:
    """One exchange unit, prepared: per output branch the strided-conv chains from the higher-resolution
    inputs (the last step adds into the running base) and the fused op's folded low-resolution weights."""

    def __init__(self, unit: nn.Module):
        from .ops import OPS

        fe = OPS["fused_exchange"].module  # the op's module (the package attribute of that name is the op)

        self.unit = unit
        self.rows = []  # (i, [(j, conv steps)] for j < i, [j] for j > i)
        for i in range(len(unit)):
            row = unit[i]
            self.rows.append((i, [(j, _chain(row[j])) for j in range(i)], list(range(i + 1, unit.num_inputs))))
        self._fe = fe

    def _bind(self, x: torch.Tensor) -> List[Callable]:
        """Per output branch, a callable ``(base, lows) -> out``: the backend chosen for x's device and dtype,
        the folded 1x1 weights and biases made once for them (so a model moved after optimize() still
        gets weights on its device)."""
        fe = self._fe
        backend = fe.resolve_backend(x, self.unit.backend)
        # 16-bit cuda backend: float32 biases, which it adds as they are (no conversion per call); weights
        # in the inputs' dtype, which its GEMM reads as they are (cuBLAS mixes no 16- and 32-bit inputs)
        b_dtype = torch.float32 if backend.name == "cuda" and x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        calls = []
        for i, _, lows in self.rows:
            ws, bs = [], []
            with torch.no_grad():
                for j in lows:
                    w, b = self.unit._folded(i, j, self.unit[i][j][0], self.unit[i][j][1])
                    ws.append(w.to(device=x.device, dtype=x.dtype).contiguous())
                    bs.append(None if b is None else b.to(device=x.device, dtype=b_dtype).contiguous())
            calls.append(lambda base, lows, ws=ws, bs=bs, run=backend.run: run(base, lows, ws, bs, True))
        return calls

    def __call__(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        if not self.unit.fused:  # configure(fused=False) after optimize(): the official op sequence
            return self.unit.reference_forward(xs)
        key = (xs[0].device, xs[0].dtype)
        calls = self.unit._bound.get(key)  # on the unit, so configure() resets it
        if calls is None:
            calls = self.unit._bound[key] = self._bind(xs[0])

        def branch(r):
            i, downs, lows = self.rows[r]
            base = xs[i]
            for j, steps in downs:
                base = _run_chain(steps, xs[j], base)
            return calls[r](base, [xs[j] for j in lows])

        return _streams.run_parallel([lambda r=r: branch(r) for r in range(len(self.rows))], xs[0])


class _Module:
    """A HighResolutionModule: its branches (in parallel on CUDA), then its exchange unit."""

    def __init__(self, module: nn.Module):
        self.branches = [[_Block(b) for b in branch] for branch in module.branches]
        self.exchange = None if module.fuse_layers is None else _Exchange(module.fuse_layers)

    def __call__(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        def branch(i):
            x = xs[i]
            for blk in self.branches[i]:
                x = blk(x)
            return x

        ys = _streams.run_parallel([lambda i=i: branch(i) for i in range(len(self.branches))], xs[0])
        return ys if self.exchange is None else self.exchange(ys)


class InferencePlan:
    """The whole network as lists of prepared steps (see the module docstring). ``plan(x)`` takes the
    checked, cast input and returns the heatmaps."""

    def __init__(self, model: nn.Module):
        self.stem = [(model.conv1, True), (model.conv2, True)]
        self.layer1 = [_Block(b) for b in model.layer1]
        self.transitions = []
        self.stages = []
        for t, s in ((model.transition1, model.stage2), (model.transition2, model.stage3), (model.transition3, model.stage4)):
            self.transitions.append([None if m is None else _chain(m) for m in t])
            self.stages.append([_Module(m) for m in s])
        self.final = model.final_layer

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _run_chain(self.stem, x)
        for blk in self.layer1:
            x = blk(x)
        xs = [x]
        for k, (trans, stage) in enumerate(zip(self.transitions, self.stages)):
            # as the official forward: stage 2's transitions all take the stem output; later ones take the
            # previous stage's last branch, and a missing transition passes branch i through
            src = x if k == 0 else xs[-1]
            xs = [(x if k == 0 else xs[i]) if steps is None else _run_chain(steps, src) for i, steps in enumerate(trans)]
            for module in stage:
                xs = module(xs)
        return self.final.forward(xs[0])


def freeze(model: nn.Module) -> InferencePlan:
    """Turn a BatchNorm-folded, eval-mode PoseHighResolutionNet into an inference-only one (in place) and
    return its plan. Convolutions become :class:`FusedConv2d`; state_dict keys are unchanged."""
    _fuse_convs(model)
    return InferencePlan(model)


def backend_summary(model: nn.Module) -> Dict[str, str]:
    """What a frozen model chose per layer kind so far (for ``hrnet-fast info``-style reports and tests)."""
    out: Dict[str, str] = {}
    for name, m in model.named_modules():
        if isinstance(m, FusedConv2d) and m._impl:
            out[name] = ",".join(sorted(set(m._impl.values())))
    return out

