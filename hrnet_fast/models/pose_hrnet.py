"""HRNet for pose estimation, module for module the official ``lib/models/pose_hrnet.py``.

Module names, parameter and buffer names, shapes, dtypes and semantics are those of the official
code, so an official checkpoint loads with ``strict=True`` and gives the same heatmaps. The one
structural difference is invisible to the state_dict: each ``HighResolutionModule.fuse_layers`` is an
:class:`ExchangeUnit`, a ``ModuleList`` subclass holding exactly the official fuse layers, that also
owns the multi-scale fusion forward; that is the seam where the fused kernels plug in.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .._folding import fold_conv_norm
from ..config import ConfigError, ConfigLike, resolve_config

BN_MOMENTUM = 0.1

__all__ = ["BasicBlock", "Bottleneck", "ExchangeUnit", "HighResolutionModule", "PoseHighResolutionNet", "pose_hrnet"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with an identity (or projected) shortcut; ``expansion = 1``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 conv + BN with a shortcut; ``expansion = 4``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


class ExchangeUnit(nn.ModuleList):
    """The multi-scale fusion of one ``HighResolutionModule`` (the official ``fuse_layers``).

    ``self[i][j]`` is the official fuse layer from input branch ``j`` to output branch ``i``:
    ``None`` for ``j == i``; ``Sequential(conv1x1, BN, Upsample(2^(j-i)))`` for ``j > i``;
    ``Sequential`` of ``i - j`` strided 3x3 conv + BN steps (ReLU between steps, not after the last)
    for ``j < i``. Being a ``ModuleList`` of those, its state_dict keys are the official ones.

    ``forward(xs)`` takes the branch tensors ``xs[j]`` of shape (N, C_j, H/2^j, W/2^j) and returns, for
    each output branch ``i``, ``ReLU(x_i + sum_{j<i} down_ij(x_j) + sum_{j>i} up(BN(conv1x1(x_j))))``.

    Fused (the default): per output branch, ``base = x_i + sum_{j<i} down_ij(x_j)`` runs as usual
    (cuDNN / oneDNN convolutions), and one prepared :func:`hrnet_fast.ops.fused_exchange` call
    (:func:`~hrnet_fast.ops.fused_exchange.prepare`) does the rest: the unit's inputs go to the op and from
    it to the kernel. In eval mode the 1x1 conv and its BN fold into (weights, biases), cached on the unit
    and refreshed when a parameter or buffer changes; in train mode BN needs batch statistics, so conv + BN
    run at low resolution in PyTorch and the fused op does upsample + sum + ReLU. With ``backend="auto"``
    the backend is chosen per call, and inputs no fused backend can run (e.g. float16 on the CPU) take the
    reference path. ``configure(fused=False)`` (or ``backend="torch"``) always takes the reference path.
    :meth:`prepare` gives the prepared calls on the folded weights once, for a frozen model's plan.
    """

    def __init__(self, layers: Sequence[nn.ModuleList], num_inputs: int):
        super().__init__(layers)
        self.num_inputs = num_inputs
        self.fused = True
        self.backend = "auto"
        # The eager fused path's folds: (i, j) -> (tensors the fold was computed from, their _version, (W, b)).
        # A plain attribute, so the state_dict keeps exactly the official keys.
        self._fold_cache: Dict[Any, Any] = {}

    def configure(self, fused: bool = True, backend: str = "auto") -> "ExchangeUnit":
        """Choose the fused kernels (``fused=True``, ``backend`` as in :func:`hrnet_fast.ops.fused_exchange`)
        or the plain reference path (``fused=False`` or ``backend="torch"``)."""
        from .._backends import BACKENDS

        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"ExchangeUnit.configure: backend must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
        self.fused = bool(fused) and backend != "torch"
        self.backend = backend
        self._fold_cache = {}
        return self

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:  # type: ignore[override]
        if not self.fused:
            return self.reference_forward(xs)
        from ..ops.fused_exchange import resolve_backend

        # one resolution per forward (cached), shared by every output branch
        name = resolve_backend(xs[0], self.backend).name
        if name == "torch" and self.backend == "auto":
            return self.reference_forward(xs)  # the official op order, not the fused formula in torch
        return self.fused_forward(xs, name)

    def reference_forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        """The official computation, op for op (summation order included)."""
        out = []
        for i in range(len(self)):
            row = self[i]
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, self.num_inputs):
                y = y + (xs[j] if i == j else row[j](xs[j]))
            out.append(torch.relu(y))
        return out

    def fused_forward(self, xs: List[torch.Tensor], backend: Optional[str] = None) -> List[torch.Tensor]:
        """The same result through one prepared :func:`~hrnet_fast.ops.fused_exchange` call per output branch
        (``backend``: a backend name, as resolved by the caller; None: ``self.backend``).

        Differentiable: in train mode BatchNorm needs batch statistics, so conv + BN of the lower-resolution
        inputs run at low resolution in PyTorch (the official order) and the op does the rest; in eval mode
        the folded weights (cached while the parameters do not change) go to the op."""
        from ..ops.fused_exchange import prepare

        backend = self.backend if backend is None else backend
        out = []
        for i in range(len(self)):
            row = self[i]
            base = xs[i]
            for j in range(i):
                base = base + row[j](xs[j])
            lows: List[torch.Tensor] = []
            weights: List[Optional[torch.Tensor]] = []
            biases: List[Optional[torch.Tensor]] = []
            for j in range(i + 1, self.num_inputs):
                conv, norm = row[j][0], row[j][1]
                if isinstance(norm, nn.modules.batchnorm._BatchNorm) and (norm.training or norm.running_mean is None):
                    lows.append(norm(conv(xs[j])))
                    weights.append(None)
                    biases.append(None)
                else:
                    w, b = self._folded(i, j, conv, norm)
                    lows.append(xs[j])
                    weights.append(w)
                    biases.append(b)
            # prepared per call: these weights change with the parameters (and carry their gradients)
            out.append(prepare(weights, biases, relu=True, backend=backend)(base, lows))
        return out

    def prepare(self, backend: Optional[str] = None) -> list:
        """Per output branch ``i``, the fused op prepared (:func:`hrnet_fast.ops.fused_exchange.prepare`) on
        the folded 1x1 weights (C_i, C_j) and biases of every lower-resolution input ``j > i`` -- BatchNorm
        with its running statistics folded in float64, rounded to the weights' dtype -- so that
        ``prepared[i](x_i + sum_{j<i} down_ij(x_j), [x_j for j > i])`` is output ``i``. For inference: what
        a frozen model runs (:mod:`hrnet_fast._inference`); later changes of the parameters are not seen.
        ``backend``: default ``self.backend``."""
        from ..ops.fused_exchange import prepare

        prepared = []
        with torch.no_grad():
            for i in range(len(self)):
                folds = [self._fold(self[i][j][0], self[i][j][1]) for j in range(i + 1, self.num_inputs)]
                prepared.append(prepare([w for w, _ in folds], [b for _, b in folds], relu=True,
                                        backend=self.backend if backend is None else backend))
        return prepared

    @staticmethod
    def _fold(conv: nn.Conv2d, norm: nn.Module):
        """(W (C, C_j), b (C,) or None) of conv followed by norm (eval BN or Identity): folded in float64,
        rounded to the conv's dtype."""
        w, b = fold_conv_norm(conv, norm, torch.float64)
        dt = conv.weight.dtype
        return w.reshape(w.shape[0], w.shape[1]).to(dt), None if b is None else b.to(dt)

    def _folded(self, i: int, j: int, conv: nn.Conv2d, norm: nn.Module):
        """:meth:`_fold`, cached per (i, j) while the parameters and buffers do not change (the eager fused
        path); inline and differentiable when autograd records or torch.compile traces."""
        tensors = [conv.weight, conv.bias]
        if isinstance(norm, nn.modules.batchnorm._BatchNorm):
            tensors += [norm.weight, norm.bias, norm.running_mean, norm.running_var]
        needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
        if needs_grad or torch.compiler.is_compiling():
            # differentiable (and traceable) inline fold: a few (C, C_j) ops, cheap
            w, b = fold_conv_norm(conv, norm, conv.weight.dtype)
            return w.reshape(w.shape[0], w.shape[1]), b
        # Identity (the cache holds the tensors, so their ids cannot be reused), the version counter, which
        # every in-place change bumps (load_state_dict, optimizer steps, .copy_), and the storage, dtype and
        # device, which change when .to()/.half() swap a parameter's .data without bumping its version.
        versions = [None if t is None else (t._version, t.data_ptr(), t.dtype, t.device) for t in tensors]
        hit = self._fold_cache.get((i, j))
        if hit is not None and all(a is b for a, b in zip(hit[0], tensors)) and hit[1] == versions:
            return hit[2]
        with torch.no_grad():
            folded = self._fold(conv, norm)
        self._fold_cache[(i, j)] = (tensors, versions, folded)
        return folded


class HighResolutionModule(nn.Module):
    """Parallel branches of residual blocks followed by the exchange unit (official names)."""

    def __init__(
        self,
        num_branches: int,
        blocks: type,
        num_blocks: Sequence[int],
        num_inchannels: List[int],
        num_channels: Sequence[int],
        fuse_method: str,
        multi_scale_output: bool = True,
    ):
        super().__init__()
        self._check_branches(num_branches, num_blocks, num_inchannels, num_channels)
        self.num_inchannels = list(num_inchannels)
        self.fuse_method = fuse_method
        self.num_branches = num_branches
        self.multi_scale_output = multi_scale_output
        self.branches = self._make_branches(num_branches, blocks, num_blocks, num_channels)
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(True)

    @staticmethod
    def _check_branches(num_branches, num_blocks, num_inchannels, num_channels) -> None:
        for name, value in (("NUM_BLOCKS", num_blocks), ("NUM_CHANNELS", num_channels), ("NUM_INCHANNELS", num_inchannels)):
            if num_branches != len(value):
                raise ConfigError(f"NUM_BRANCHES({num_branches}) <> {name}({len(value)})")

    def _make_one_branch(self, branch_index: int, block: type, num_blocks, num_channels, stride: int = 1) -> nn.Sequential:
        downsample = None
        planes = num_channels[branch_index]
        if stride != 1 or self.num_inchannels[branch_index] != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.num_inchannels[branch_index], planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
            )
        layers = [block(self.num_inchannels[branch_index], planes, stride, downsample)]
        self.num_inchannels[branch_index] = planes * block.expansion
        for _ in range(1, num_blocks[branch_index]):
            layers.append(block(self.num_inchannels[branch_index], planes))
        return nn.Sequential(*layers)

    def _make_branches(self, num_branches, block, num_blocks, num_channels) -> nn.ModuleList:
        return nn.ModuleList([self._make_one_branch(i, block, num_blocks, num_channels) for i in range(num_branches)])

    def _make_fuse_layers(self) -> Optional[ExchangeUnit]:
        if self.num_branches == 1:
            return None
        n = self.num_branches
        inch = self.num_inchannels
        rows = []
        for i in range(n if self.multi_scale_output else 1):
            row: List[Optional[nn.Module]] = []
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(inch[j], inch[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(inch[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    steps = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            steps.append(nn.Sequential(nn.Conv2d(inch[j], inch[i], 3, 2, 1, bias=False), nn.BatchNorm2d(inch[i])))
                        else:
                            steps.append(
                                nn.Sequential(nn.Conv2d(inch[j], inch[j], 3, 2, 1, bias=False), nn.BatchNorm2d(inch[j]), nn.ReLU(True))
                            )
                    row.append(nn.Sequential(*steps))
            rows.append(nn.ModuleList(row))
        return ExchangeUnit(rows, n)

    def get_num_inchannels(self) -> List[int]:
        return self.num_inchannels

    def forward(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        if self.num_branches == 1:
            return [self.branches[0](x[0])]
        xs = [self.branches[i](x[i]) for i in range(self.num_branches)]
        return self.fuse_layers(xs)


class PoseHighResolutionNet(nn.Module):
    """The HRNet pose network. Input (N, 3, H, W) with H, W divisible by 32; output heatmaps
    (N, NUM_JOINTS, H/4, W/4), same dtype and device as the input."""

    # hrnet_fast.optimize()'s InferenceConfig (plain data, saved with the module) and the InferencePlan
    # built from it (derived: never pickled or copied; see inference_plan()). None on a plain model.
    _inference_config: Optional[Any] = None
    _inference_plan: Optional[Any] = None

    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        extra = cfg["EXTRA"]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(Bottleneck, 64, 4)

        self.stage2_cfg = extra["STAGE2"]
        num_channels = self._stage_channels(self.stage2_cfg)
        self.transition1 = self._make_transition_layer([256], num_channels)
        self.stage2, pre_stage_channels = self._make_stage(self.stage2_cfg, num_channels)

        self.stage3_cfg = extra["STAGE3"]
        num_channels = self._stage_channels(self.stage3_cfg)
        self.transition2 = self._make_transition_layer(pre_stage_channels, num_channels)
        self.stage3, pre_stage_channels = self._make_stage(self.stage3_cfg, num_channels)

        self.stage4_cfg = extra["STAGE4"]
        num_channels = self._stage_channels(self.stage4_cfg)
        self.transition3 = self._make_transition_layer(pre_stage_channels, num_channels)
        self.stage4, pre_stage_channels = self._make_stage(self.stage4_cfg, num_channels, multi_scale_output=False)

        k = extra["FINAL_CONV_KERNEL"]
        self.final_layer = nn.Conv2d(pre_stage_channels[0], cfg["NUM_JOINTS"], kernel_size=k, stride=1, padding=1 if k == 3 else 0)
        self.pretrained_layers = extra.get("PRETRAINED_LAYERS", ["*"])

    @staticmethod
    def _stage_channels(stage_cfg) -> List[int]:
        block = BLOCKS[stage_cfg["BLOCK"]]
        return [c * block.expansion for c in stage_cfg["NUM_CHANNELS"]]

    def _make_transition_layer(self, num_channels_pre_layer: List[int], num_channels_cur_layer: List[int]) -> nn.ModuleList:
        num_branches_cur = len(num_channels_cur_layer)
        num_branches_pre = len(num_channels_pre_layer)
        layers: List[Optional[nn.Module]] = []
        for i in range(num_branches_cur):
            if i < num_branches_pre:
                if num_channels_cur_layer[i] != num_channels_pre_layer[i]:
                    layers.append(
                        nn.Sequential(
                            nn.Conv2d(num_channels_pre_layer[i], num_channels_cur_layer[i], 3, 1, 1, bias=False),
                            nn.BatchNorm2d(num_channels_cur_layer[i]),
                            nn.ReLU(inplace=True),
                        )
                    )
                else:
                    layers.append(None)
            else:
                steps = []
                for j in range(i + 1 - num_branches_pre):
                    inchannels = num_channels_pre_layer[-1]
                    outchannels = num_channels_cur_layer[i] if j == i - num_branches_pre else inchannels
                    steps.append(
                        nn.Sequential(nn.Conv2d(inchannels, outchannels, 3, 2, 1, bias=False), nn.BatchNorm2d(outchannels), nn.ReLU(inplace=True))
                    )
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def _make_stage(self, layer_config, num_inchannels: List[int], multi_scale_output: bool = True):
        num_modules = layer_config["NUM_MODULES"]
        modules = []
        for i in range(num_modules):
            # only the last module of the last stage drops the multi-scale outputs
            reset_multi_scale_output = multi_scale_output or i != num_modules - 1
            modules.append(
                HighResolutionModule(
                    layer_config["NUM_BRANCHES"],
                    BLOCKS[layer_config["BLOCK"]],
                    layer_config["NUM_BLOCKS"],
                    num_inchannels,
                    layer_config["NUM_CHANNELS"],
                    layer_config["FUSE_METHOD"],
                    reset_multi_scale_output,
                )
            )
            num_inchannels = modules[-1].get_num_inchannels()
        return nn.Sequential(*modules), num_inchannels

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input the network cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor of shape (N, 3, H, W), got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"input must have shape (N, 3, H, W) (rank 4), got rank {x.dim()} with shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(f"input must have 3 channels (RGB) in dim 1, got shape {tuple(x.shape)}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if h % 32 or w % 32 or h == 0 or w == 0:
            def near(v: int) -> str:
                lo, hi = (v // 32) * 32, (v // 32 + 1) * 32
                return f"{lo} or {hi}" if lo > 0 and lo != v else str(hi if v % 32 else v)

            raise ValueError(
                f"input height and width must be positive multiples of 32 (the network halves them 5 times), "
                f"got {h}x{w}; sizes that work near it: height {near(h)}, width {near(w)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        weight = self.conv1.weight
        if x.device != weight.device:
            raise RuntimeError(f"input is on {x.device} but the model's weights are on {weight.device}: move one of them "
                               f"(x.to({str(weight.device)!r}) or model.to({str(x.device)!r}))")
        casts = self._inference_config is not None and self._inference_config.dtype is not None
        # under autocast an input in the region's dtype meets fp32 weights, as every layer's input there does
        dev = x.device.type
        casts = casts or (torch.is_autocast_enabled(dev) and x.dtype == torch.get_autocast_dtype(dev))
        if not casts and x.dtype != weight.dtype:
            raise TypeError(
                f"input has dtype {x.dtype} but the model's weights are {weight.dtype}: cast the input "
                f"(x.to({weight.dtype})) or the model (model.to({x.dtype})); hrnet_fast.optimize(model, dtype=...) "
                f"returns a model that casts its inputs itself"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.check_input(x)
        plan = self._inference_plan
        if plan is None and self._inference_config is not None:
            plan = self.inference_plan()
        if plan is not None:
            if plan.frozen:
                return plan(x)
            x = plan.prepare_input(x)
        return self._module_forward(x)

    def _module_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The official forward, module by module (a frozen model's plan runs the same steps itself)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)

        x_list = [t(x) if t is not None else x for t in self.transition1]
        y_list = self.stage2(x_list)
        # The official code feeds y_list[-1] to every non-None transition (also i < previous branches).
        x_list = [t(y_list[-1]) if t is not None else y_list[i] for i, t in enumerate(self.transition2)]
        y_list = self.stage3(x_list)
        x_list = [t(y_list[-1]) if t is not None else y_list[i] for i, t in enumerate(self.transition3)]
        y_list = self.stage4(x_list)
        return self.final_layer(y_list[0])

    # ------------------------------------------------------------------ the optimized model's frozen state
    @property
    def inference_config(self) -> Optional[Any]:
        """The :class:`~hrnet_fast._inference.InferenceConfig` that :func:`hrnet_fast.optimize` gave this model
        (None for a plain model). Plain data, kept by ``state``-based copies, pickling and ``torch.save``;
        setting it (None: a plain forward again) replaces the plan."""
        return self._inference_config

    @inference_config.setter
    def inference_config(self, config: Optional[Any]) -> None:
        from .._inference import InferenceConfig

        if config is not None and not isinstance(config, InferenceConfig):
            raise TypeError(f"inference_config must be an InferenceConfig or None, got {type(config).__name__}")
        self.__dict__["_inference_config"] = config
        self._rebuild_plan()

    def inference_plan(self) -> Optional[Any]:
        """The :class:`~hrnet_fast._inference.InferencePlan` of an optimized model, the one owner of what it
        prepared for inference (input dtype and layout, fused convolutions, exchange calls, CUDA graphs),
        built from :attr:`inference_config` and the weights if there is none yet; None for a plain model.

        The plan is derived state: ``copy.deepcopy``, pickling and ``torch.save`` leave it out (the copy
        builds its own), and ``.to()``/``.half()``/``.cuda()`` (every ``_apply``) and ``load_state_dict``
        replace it, so a plan never outlives the weights it was made for."""
        if self._inference_config is not None and self._inference_plan is None:
            self._rebuild_plan()
        return self._inference_plan

    def _rebuild_plan(self) -> None:
        self.__dict__["_inference_plan"] = None  # first: a build that fails leaves no stale plan behind
        if self._inference_config is not None:
            from .._inference import InferencePlan

            self.__dict__["_inference_plan"] = InferencePlan(self, self._inference_config)

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        state.pop("_inference_plan", None)  # derived (and holds opaque packed weights, CUDA graphs)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        # built now rather than on the first call, so that a first call under torch.compile finds it
        self._rebuild_plan()

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()  # a shallow copy whose modules are replaced next
        replica.__dict__["_inference_plan"] = None  # built for the replica's own modules on its first call
        return replica

    def _apply(self, fn, *args, **kwargs):
        self.__dict__["_inference_plan"] = None
        out = super()._apply(fn, *args, **kwargs)
        self._rebuild_plan()  # for the moved or cast weights
        return out

    def load_state_dict(self, *args, **kwargs):
        try:
            return super().load_state_dict(*args, **kwargs)
        finally:
            self._rebuild_plan()  # the plan's packed weights and folds were made from the old values

    def exchange_units(self) -> List[ExchangeUnit]:
        """Every exchange unit, in forward order."""
        return [m for m in self.modules() if isinstance(m, ExchangeUnit)]


def pose_hrnet(config: ConfigLike = "w32_256x192") -> PoseHighResolutionNet:
    """Build the HRNet pose network.

    ``config``: a known name (``w32_256x192``, ``w32_384x288``, ``w48_256x192``, ``w48_384x288``,
    ``w32_256x256_mpii``, ``w48_256x256_mpii``), the path of an official experiment YAML file, or its
    contents as a dict (the whole file or its MODEL section). Weights are PyTorch's default init; load
    a checkpoint with :func:`hrnet_fast.load_checkpoint`.
    """
    return PoseHighResolutionNet(resolve_config(config))
