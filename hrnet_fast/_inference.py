"""The frozen model behind :func:`hrnet_fast.optimize`: one :class:`InferencePlan` per optimized model, holding
everything prepared for inference, and convolutions with fused epilogues.

``optimize()`` folds every BatchNorm and records what it was asked for as an :class:`InferenceConfig` (plain
data) on the model; the model builds its plan from that config and its weights
(``PoseHighResolutionNet.inference_plan()``). The plan is the one owner of the frozen state -- nothing is
written onto the model's modules -- and it is derived: ``copy.deepcopy``, pickling and ``torch.save`` leave
it out, and ``.to()``/``_apply``/``load_state_dict`` replace it, so it is never stale.

* Every convolution gets a :class:`FusedConv`, the plan's prepared call of it (sharing the conv's
  ``weight``/``bias``): ``fused(x, residual=None, relu=False)`` computes ``[relu](conv(x) [+ residual])``
  as one library call where the library has one: on the CPU (fp32, and bf16 where the CPU has it)
  oneDNN's fused convolutions with weights reordered once (``mkldnn._convolution_pointwise`` and its
  ``.binary`` overload, what inductor uses), on
  CUDA cuDNN's ``cudnn_convolution_relu`` / ``cudnn_convolution_add_relu``; elsewhere the plain ops. The
  choice is made per shape class -- device, dtype, size class, spatial size, batch class (powers of two),
  layout and epilogue: whether cuDNN has a fused engine depends on all of them -- on the first call of
  that class, where the fused call is kept only if it runs and agrees with the plain ops (a check that
  needs a host sync, so during a CUDA-graph capture an undecided class runs the plain ops and is decided
  later, eagerly). A fused call that fails later falls back to the plain ops for its class, for good.
  Under ``torch.compile``/``torch.export``/ONNX export, or when the input requires grad, the plain ops
  run, so traced graphs hold only standard ops.
* The plan runs the whole network as lists of those convolutions and of the exchange units' prepared op
  calls (:func:`hrnet_fast.ops.fused_exchange.prepare` on the folded 1x1 weights: backend, converted
  weights and placeholder lists bound once per device and dtype), without ``nn.Module.__call__`` or
  backend resolution per call: the input is checked once, at the model boundary. Module hooks on
  submodules do not run in a frozen model.
* On CUDA, the branches of a stage and the output branches of an exchange unit run on separate streams
  (:mod:`hrnet_fast._streams`), which CUDA-graph capture records as parallel work, and each input shape
  is captured into a CUDA graph (:class:`hrnet_fast.cuda_graphs.GraphCache`, held by the plan).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _streams

__all__ = ["FusedConv", "InferenceConfig", "InferencePlan", "backend_summary"]


_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def _onednn_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (avx512_bf16 / AMX); without, it would emulate slowly."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def _capturing(x: torch.Tensor) -> bool:
    """True while the current CUDA stream is being captured into a graph (no host sync allowed then)."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def _exporting() -> bool:
    """True while torch.compile / torch.export / ONNX export trace: only standard ops may appear then."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and getattr(onnx, "is_in_onnx_export", lambda: False)())


class FusedConv:
    """The prepared call of one ``nn.Conv2d`` of a frozen model: ``fused(x, residual=None, relu=False)`` is
    ``[relu](conv(x) [+ residual])``, as one library call where one fits (module docstring).

    Owned by an :class:`InferencePlan`, never by the model: it shares the conv's ``weight`` and ``bias``
    (no copy) and keeps what it prepares from them -- the implementation chosen per shape class (``_impl``)
    and oneDNN's reordered weights per input shape (``_packed``, opaque tensors). Inference only: a change
    of the weights in place after the first call is not seen (``.to()``/``load_state_dict`` rebuild the
    plan, and with it this).
    """

    _impl: Dict[Hashable, str]
    _packed: Dict[Tuple[int, ...], torch.Tensor]
    # Measured on this project's CPU (2 threads, 3x3 convs, channels_last): plain ops win at 2.4M
    # multiply-adds per call, oneDNN's fused call wins from 9.4M on (benchmarks: see the closing note of
    # the "Fast by default" issue); the threshold sits between.
    _MIN_ONEDNN_MACS = 4_000_000
    # shape classes remembered per convolution (a few per input size; bounded for a model fed every size)
    _MAX_CHOICES = 256

    def __init__(self, conv: nn.Conv2d):
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"FusedConv: conv must be an nn.Conv2d, got {type(conv).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"FusedConv: only explicit zero padding is supported, got {conv.padding_mode!r} / {conv.padding!r}")
        self.weight = conv.weight
        self.bias = conv.bias
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self._impl = {}
        self._packed = {}
        self._bound = {}
        self._conv_args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        # multiply-adds per input pixel (all channels): output pixels are input pixels / stride^2
        self._macs_per_pixel = conv.out_channels * conv.in_channels // conv.groups * kh * kw // (sh * sw)

    def _key(self, x: torch.Tensor, residual: Optional[torch.Tensor], relu: bool) -> Hashable:
        """The shape class of a call: (device, dtype, big, H, W, batch class, channels_last, residual, relu).

        ``big``: on the CPU, whether oneDNN's fixed cost pays off (always True on CUDA). The batch class is
        ``N.bit_length()`` (1, 2-3, 4-7, ...): engines rarely depend on the batch beyond that, and a model
        fed every batch size then decides a handful of times, not once per size."""
        n, _, h, w = x.shape
        big = x.device.type != "cpu" or self._macs_per_pixel * x.numel() // x.shape[1] >= self._MIN_ONEDNN_MACS
        channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return (x.device, x.dtype, big, h, w, n.bit_length(), channels_last, residual is not None, bool(relu))

    def __call__(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None, relu: bool = False) -> torch.Tensor:
        if x.requires_grad or _exporting():
            return self._plain(x, residual, relu)
        # the hot path: a call of an exact (shape, strides, dtype, device, epilogue) already run through oneDNN
        # goes straight to the op with its packed weights (about 10 us less Python per call, 260 calls per W32
        # forward); a failure drops these and takes the full path below, which falls back for the class
        exact = (x.shape, x.stride(), x.dtype, x.device, residual is None, relu)
        bound = self._bound.get(exact)
        if bound is not None:
            try:
                return bound(x, residual)
            except (RuntimeError, NotImplementedError):
                self._bound.clear()
        key = self._key(x, residual, relu)
        impl = self._impl.get(key)
        if impl is None:
            impl, out = self._choose(x, residual, relu, key)
            if out is not None:  # computed while choosing
                return out
        if impl == "plain":
            return self._plain(x, residual, relu)
        try:
            if impl == "mkldnn":
                out = self._mkldnn(x, residual, relu)
                self._bind(exact, x, residual is not None, relu)
                return out
            return self._cudnn(x, residual)
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
        if big and x.device.type == "cpu" and x.dtype in _ONEDNN_DTYPES and torch.backends.mkldnn.is_available():
            # bf16 too (where the CPU has it): oneDNN's fused bf16 call ran a batch-1 W32 forward in 65 ms against
            # 77 ms for aten's unfused bf16 convolution + ReLU + add (issue 20, AMD EPYC, 2 threads)
            if x.dtype == torch.float32 or _onednn_bf16():
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

    def _bind(self, exact, x: torch.Tensor, has_residual: bool, relu: bool) -> None:
        """Remember the oneDNN call of this exact input for the hot path of ``__call__``."""
        packed, bias = self._packed.get(tuple(x.shape)), self.bias
        if packed is None:  # _mkldnn packs the weights for every shape it runs: nothing to bind otherwise
            return
        if len(self._bound) >= 16:  # each holds packed weights: as few as _packed keeps
            self._bound.pop(next(iter(self._bound)))
        padding, stride, dilation, groups = self._conv_args
        unary = "relu" if relu else "none"
        if not has_residual:
            op = torch.ops.mkldnn._convolution_pointwise
            self._bound[exact] = lambda x, residual: op(x, packed, bias, padding, stride, dilation, groups, unary, [], "")
        else:
            op = torch.ops.mkldnn._convolution_pointwise.binary
            post = "relu" if relu else None
            self._bound[exact] = lambda x, residual: op(x, residual, packed, bias, padding, stride, dilation, groups, "add",
                                                        None, post, [], "")

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
# The plan

Step = Tuple[FusedConv, bool]  # a convolution and whether a ReLU follows it


@dataclasses.dataclass(frozen=True)
class InferenceConfig:
    """What :func:`hrnet_fast.optimize` was asked for: plain, picklable data kept on the optimized module
    (``model.inference_config``), from which its :class:`InferencePlan` is (re)built.

    ``dtype``: the dtype optimize() cast the weights to, or None; when set, inputs are cast to the weights'
    dtype in forward (the weights' dtype as it is now: ``.to(torch.float64)`` afterwards makes the model
    cast to float64). ``channels_last``: inputs are converted to channels_last. ``fused``: the frozen plan
    runs the network (else the folded module forward does). ``backend``: the exchange units' backend.
    ``cuda_graphs``/``max_graphs``: the CUDA-graph cache (None: on for CUDA inputs; False: off).
    """

    dtype: Optional[torch.dtype] = None
    channels_last: bool = True
    fused: bool = True
    backend: str = "auto"
    cuda_graphs: Optional[bool] = None
    max_graphs: int = 8


def _chain(seq: nn.Module, fuse: Callable[[nn.Conv2d], FusedConv]) -> List[Step]:
    """The (conv, relu) steps of a Sequential of conv / folded-BN (Identity) / ReLU modules, nested or not."""
    steps: List[Step] = []
    for m in seq.modules() if isinstance(seq, nn.Sequential) else [seq]:
        if isinstance(m, nn.Sequential):
            continue
        if isinstance(m, nn.Conv2d):
            steps.append((fuse(m), False))
        elif isinstance(m, nn.ReLU):
            if not steps:
                raise ValueError("InferencePlan: a ReLU before any convolution")
            steps[-1] = (steps[-1][0], True)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise ValueError("InferencePlan: BatchNorm must be folded first (hrnet_fast.optimize does it)")
        elif not isinstance(m, nn.Identity):
            raise ValueError(f"InferencePlan: unexpected {type(m).__name__} in a conv chain")
    return steps


def _run_chain(steps: Sequence[Step], x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Run conv steps; ``residual`` is added after the last one (fused into it where the library can)."""
    last = len(steps) - 1
    for k, (conv, relu) in enumerate(steps):
        x = conv(x, residual if k == last else None, relu)
    return x


class _Block:
    """A BasicBlock (conv1, conv2) / Bottleneck (conv1..conv3) as its convolution steps: the last conv adds
    the shortcut (``downsample`` or identity), then ReLU."""

    def __init__(self, block: nn.Module, fuse: Callable[[nn.Conv2d], FusedConv]):
        if not all(isinstance(getattr(block, n, None), nn.Conv2d) for n in ("conv1", "conv2")):
            raise TypeError(f"InferencePlan: unexpected block {type(block).__name__}")
        convs = [block.conv1, block.conv2] + ([block.conv3] if isinstance(getattr(block, "conv3", None), nn.Conv2d) else [])
        self.head = [(fuse(c), True) for c in convs[:-1]]
        self.tail = fuse(convs[-1])
        self.shortcut = None if block.downsample is None else _chain(block.downsample, fuse)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else _run_chain(self.shortcut, x)
        for conv, _ in self.head:
            x = conv(x, None, True)
        return self.tail(x, shortcut, True)


class _Exchange:
    """One exchange unit, prepared: per output branch the strided-conv chains from the higher-resolution
    inputs (the last step adds into the running base) and the fused op prepared on the unit's folded
    low-resolution 1x1 weights (:meth:`ExchangeUnit.prepare`, bound per device and dtype by the op)."""

    def __init__(self, unit: nn.Module, fuse: Callable[[nn.Conv2d], FusedConv]):
        self.unit = unit
        self.rows = []  # (i, [(j, conv steps)] for j < i, [j] for j > i)
        for i in range(len(unit)):
            row = unit[i]
            self.rows.append((i, [(j, _chain(row[j], fuse)) for j in range(i)], list(range(i + 1, unit.num_inputs))))
        self.backend = unit.backend
        self.prepared = unit.prepare()

    def __call__(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        unit = self.unit
        if not unit.fused:  # configure(fused=False) after optimize(): the official op sequence
            return unit.reference_forward(xs)
        if unit.backend != self.backend:  # configure(backend=...) after optimize()
            self.backend, self.prepared = unit.backend, unit.prepare()
        prepared = self.prepared

        def branch(r):
            i, downs, lows = self.rows[r]
            base = xs[i]
            for j, steps in downs:
                base = _run_chain(steps, xs[j], base)
            return prepared[r](base, [xs[j] for j in lows])

        return _streams.run_parallel([lambda r=r: branch(r) for r in range(len(self.rows))], xs[0])


class _Module:
    """A HighResolutionModule: its branches (in parallel on CUDA), then its exchange unit."""

    def __init__(self, module: nn.Module, fuse: Callable[[nn.Conv2d], FusedConv]):
        self.branches = [[_Block(b, fuse) for b in branch] for branch in module.branches]
        self.exchange = None if module.fuse_layers is None else _Exchange(module.fuse_layers, fuse)

    def __call__(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        def branch(i):
            x = xs[i]
            for blk in self.branches[i]:
                x = blk(x)
            return x

        ys = _streams.run_parallel([lambda i=i: branch(i) for i in range(len(self.branches))], xs[0])
        return ys if self.exchange is None else self.exchange(ys)


class InferencePlan:
    """Everything an optimized PoseHighResolutionNet prepares for inference, in one object owned by the
    model (``model.inference_plan()``): the input dtype and layout, and with ``config.fused`` the network
    as lists of prepared steps -- a :class:`FusedConv` per convolution (its implementation choices and
    packed weights), the exchange units' prepared op calls -- and the CUDA-graph cache (``graphs``).

    Derived state: the model builds it from its :class:`InferenceConfig` and its weights, drops it when
    copied, pickled or saved, and builds a new one after ``.to()``/``_apply`` and ``load_state_dict``.
    Nothing of it is written onto the model or its submodules.

    ``plan(x)`` takes a checked input (the model's ``check_input``), casts it and converts its layout
    (:meth:`prepare_input`) and returns the heatmaps, through the graph cache when it applies; ``run(x)``
    is the network alone, on a prepared input.
    """

    def __init__(self, model: nn.Module, config: InferenceConfig):
        from .cuda_graphs import GraphCache

        self.config = config
        self.input_dtype = model.conv1.weight.dtype if config.dtype is not None else None
        self.channels_last = bool(config.channels_last)
        self.frozen = bool(config.fused)
        self.graphs = None
        self._convs: Dict[nn.Conv2d, FusedConv] = {}
        self._names = {m: name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
        if not self.frozen:
            return
        fuse = self._fuse
        self.stem = [(fuse(model.conv1), True), (fuse(model.conv2), True)]
        self.layer1 = [_Block(b, fuse) for b in model.layer1]
        self.transitions = []
        self.stages = []
        for t, s in ((model.transition1, model.stage2), (model.transition2, model.stage3), (model.transition3, model.stage4)):
            self.transitions.append([None if m is None else _chain(m, fuse) for m in t])
            self.stages.append([_Module(m, fuse) for m in s])
        self.final = fuse(model.final_layer)
        self._exchanges = {m.exchange.unit: m.exchange for stage in self.stages for m in stage if m.exchange is not None}
        if config.cuda_graphs is not False:
            self.graphs = GraphCache(self.run, max_graphs=config.max_graphs)

    def _fuse(self, conv: nn.Conv2d) -> FusedConv:
        fused = self._convs.get(conv)
        if fused is None:
            fused = self._convs[conv] = FusedConv(conv)
        return fused

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` cast to the input dtype (when the config casts) and made channels_last (when it converts)."""
        if self.input_dtype is not None and x.dtype != self.input_dtype:
            x = x.to(self.input_dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare_input(x)
        return self.run(x) if self.graphs is None else self.graphs(x)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen network on a prepared input (no graph): (N, 3, H, W) -> (N, K, H/4, W/4) heatmaps."""
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
        return self.final(xs[0])

    def exchange(self, unit: nn.Module) -> Callable[[List[torch.Tensor]], List[torch.Tensor]]:
        """The prepared step of exchange unit ``unit`` (one of ``model.exchange_units()``): ``step(xs)`` runs
        it as the plan does (benchmarks time the units alone through this)."""
        try:
            return self._exchanges[unit]
        except (AttributeError, KeyError):
            raise KeyError("InferencePlan.exchange: not an exchange unit of this frozen plan's model") from None

    def summary(self) -> Dict[str, str]:
        """What the convolutions chose so far, by module name: ``{"conv1": "mkldnn", ...}`` (comma-separated
        when the shape classes of one convolution chose differently)."""
        return {self._names[conv]: ",".join(sorted(set(f._impl.values()))) for conv, f in self._convs.items() if f._impl}

    def __repr__(self) -> str:
        kind = "frozen" if self.frozen else "module forward"
        return (f"InferencePlan({kind}, input dtype {self.input_dtype}, channels_last={self.channels_last}, "
                f"{len(self._convs)} convolutions, graphs={self.graphs is not None})")


def backend_summary(model: nn.Module) -> Dict[str, str]:
    """What a frozen model's convolutions chose so far (:meth:`InferencePlan.summary`; {} without a plan)."""
    plan_of = getattr(model, "inference_plan", None)
    plan = plan_of() if callable(plan_of) else None
    return plan.summary() if plan is not None else {}
