"""The list of ops: :data:`OPS`, from op name to its :class:`OpSpec`.

What iterates it: ``hrnet-fast check`` (:mod:`hrnet_fast.checks`: every available backend of every op
against the op's reference, on the op's samples), ``benchmarks/sanitize_cuda.py`` (every op's CUDA kernels
under compute-sanitizer) and the shared op-contract tests (``tests/test_op_contract.py``). Adding an op is
one :class:`OpSpec` entry in :data:`OPS` (its support table, seeded sample inputs, its reference and a
tolerance per dtype); those three then cover it.

Each spec also carries the op's module (``OPS["crop_boxes"].module``): the package attribute of an op's
name is the op itself (``hrnet_fast.ops.crop_boxes`` is the function), so this is how code reaches the
module's table and helpers.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import types
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch

from .. import _backends
from .crop_boxes import crop_boxes
from .decode_heatmaps import COCO_FLIP_PAIRS, decode_heatmaps
from .fused_exchange import fused_exchange, fused_exchange_reference
from .heatmap_targets import heatmap_targets

__all__ = ["OPS", "OpSpec", "Sample"]


class Sample(NamedTuple):
    """One call of an op: ``spec.public(*args, **kwargs, backend=...)``; ``label`` names it in reports."""

    label: str
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]


@dataclasses.dataclass(frozen=True, eq=False)
class OpSpec:
    """One op, as everything that iterates the ops sees it.

    * ``support``: the op's backend table (``hrnet_fast._backends.OpSupport``; dtypes per backend).
    * ``public``: the op, ``public(*args, backend=name, **kwargs)``.
    * ``reference``: the torch spec with the public signature, without ``backend``.
    * ``samples(device, dtype)``: a list of :class:`Sample` (fresh, seeded: the same values on every call),
      ``dtype`` being the dtype that the op's table speaks of (the output dtype of ``crop_boxes``).
    * The comparison rule: the largest ``max|out - ref| / max|ref|`` over the outputs of a sample (one
      tensor or a tuple) may be ``tolerance[dtype]``. With ``exact_dtype`` set, ``ref`` is the reference run
      on the sample's floating inputs cast to that dtype, and a backend may also be ``ref_factor`` times as
      far from it as the reference run in the tested dtype (what rounding to that dtype costs, measured in
      the same run); the tolerance is then a floor.
    """

    name: str
    module: types.ModuleType
    support: _backends.OpSupport
    public: Callable[..., Any]
    reference: Callable[..., Any]
    samples: Callable[[torch.device, torch.dtype], List[Sample]]
    tolerance: Mapping[torch.dtype, float]
    exact_dtype: Optional[torch.dtype] = None
    ref_factor: float = 4.0

    def dtypes(self, device_type: str, backends: Tuple[str, ...] = ("cpp", "cuda", "triton")) -> Tuple[torch.dtype, ...]:
        """The dtypes that ``backends`` run on ``device_type`` tensors according to the table (every dtype
        with a tolerance for a backend without a dtype list), in the order of :attr:`tolerance`."""
        found = set()
        for name in backends:
            entry = self.support.backends.get(name)
            if entry is None or (entry.devices is not _backends.ANY and device_type not in entry.devices):
                continue
            found.update(self.tolerance if entry.dtypes is _backends.ANY else entry.dtypes)
        return tuple(d for d in self.tolerance if d in found)


def _module_of(fn: Callable[..., Any]) -> types.ModuleType:
    return sys.modules[fn.__module__]


def _randn(gen: torch.Generator, device, dtype, *shape) -> torch.Tensor:
    # drawn in float32 on the CPU, then moved: the same values on every device and for every dtype
    return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)


def _exchange_samples(device, dtype) -> List[Sample]:
    """base (2, 48, 16, 12); lows (2, 96, 8, 6) with a 96->48 1x1 conv and (2, 48, 4, 3) without one."""
    gen = torch.Generator().manual_seed(0)
    base = _randn(gen, device, dtype, 2, 48, 16, 12)
    lows = [_randn(gen, device, dtype, 2, 96, 8, 6), _randn(gen, device, dtype, 2, 48, 4, 3)]
    weights = [_randn(gen, device, dtype, 48, 96) * 0.1, None]
    biases = [_randn(gen, device, dtype, 48), _randn(gen, device, dtype, 48)]
    return [Sample("2 lows, one with a 1x1 conv", (base, lows, weights, biases), {"relu": True})]


def _decode_samples(device, dtype) -> List[Sample]:
    """(4, 17, 64, 48) noisy Gaussian heatmaps with their flipped twin and boxes: quarter and DARK."""
    gen = torch.Generator().manual_seed(1)
    n, k, h, w = 4, 17, 64, 48
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    centre = torch.rand(n, k, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    heat = torch.exp(-((xs - centre[..., :1, None]) ** 2 + (ys - centre[..., 1:, None]) ** 2) / 8.0)
    heat = (heat + 0.01 * torch.rand(n, k, h, w, generator=gen)).to(device=device, dtype=dtype)
    center = (torch.rand(n, 2, generator=gen) * 200).to(device)
    scale = (torch.rand(n, 2, generator=gen) + 0.5).to(device)
    flip = dict(flipped=heat.flip(-1), flip_pairs=COCO_FLIP_PAIRS)
    return [Sample(f"{method}, flip test", (heat, center, scale), dict(method=method, **flip))
            for method in ("quarter", "dark")]


def _crop_samples(device, dtype) -> List[Sample]:
    """Two BGR images of different sizes; boxes inside, across the border and outside; BGR NCHW, then RGB
    channels_last with rotations and the UDP geometry. ``dtype`` is the output dtype."""
    gen = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen).to(device) for h, w in ((37, 53), (64, 48))]
    index = torch.tensor([0, 1, 0, 1], device=device)
    center = torch.tensor([[20.0, 18.0], [0.0, 60.0], [500.0, -300.0], [24.0, 32.0]], device=device)
    scale = torch.tensor([[0.2, 0.25], [0.3, 0.4], [0.1, 0.1], [0.24, 0.32]], device=device)
    rotation = torch.tensor([0.0, 30.0, -45.0, 90.0], device=device)
    args = (images, index, center, scale, (32, 24))
    return [Sample("bgr, nchw", args, dict(color="bgr", dtype=dtype)),
            Sample("rgb, channels_last, rotation, udp", args,
                   dict(rotation=rotation, color="rgb", dtype=dtype, channels_last=True, udp=True))]


def _targets_samples(device, dtype) -> List[Sample]:
    """(3, 17) keypoints of ``dtype`` around a 256x192 crop (some outside the map, one on ``br = 0``, negative
    coordinates where truncation differs from floor), mixed visibility: msra with joint weights (sigma 2) and
    udp (sigma 3)."""
    gen = torch.Generator().manual_seed(3)
    kp = torch.rand(3, 17, 2, generator=gen, dtype=torch.float64) * torch.tensor([232.0, 296.0]) - 20.0
    kp[0, :4] = torch.tensor([[-3.0, 10.0], [-27.9, 40.0], [300.0, 50.0], [50.0, -30.0]], dtype=torch.float64)
    kp = kp.to(device=device, dtype=dtype)
    vis = (torch.rand(3, 17, generator=gen) > 0.2).float().to(device)
    jw = (torch.rand(17, generator=gen) + 0.5).to(device)
    return [Sample("msra, sigma 2, joint weights", (kp, vis, (256, 192), (64, 48)), dict(sigma=2.0, joint_weights=jw)),
            Sample("udp, sigma 3", (kp, vis, (256, 192), (64, 48)), dict(sigma=3.0, method="udp"))]


_EXCHANGE = OpSpec(
    name="fused_exchange",
    module=_module_of(fused_exchange),
    support=_module_of(fused_exchange).SUPPORT,
    public=fused_exchange,
    reference=fused_exchange_reference,
    samples=_exchange_samples,
    # floors where the float64 reference is exact: rounding noise of each dtype
    tolerance={torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-12},
    exact_dtype=torch.float64,
)
_DECODE = OpSpec(
    name="decode_heatmaps",
    module=_module_of(decode_heatmaps),
    support=_module_of(decode_heatmaps).SUPPORT,
    public=decode_heatmaps,
    reference=functools.partial(decode_heatmaps, backend="torch"),
    samples=_decode_samples,
    # every backend computes in fp32 (back-transform in fp64) whatever the heatmaps' dtype
    tolerance={torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5},
)
_CROP = OpSpec(
    name="crop_boxes",
    module=_module_of(crop_boxes),
    support=_module_of(crop_boxes).SUPPORT,
    public=crop_boxes,
    reference=functools.partial(crop_boxes, backend="torch"),
    samples=_crop_samples,
    # the GPU tests' absolute bounds (a few fp32 ulp from fused multiply-adds, then one rounding to the
    # dtype: 1e-5, 4e-3, 3e-2) over the largest normalised value (about 2.6)
    tolerance={torch.float32: 4e-6, torch.float16: 1.5e-3, torch.bfloat16: 1.2e-2},
)

_TARGETS = OpSpec(
    name="heatmap_targets",
    module=_module_of(heatmap_targets),
    support=_module_of(heatmap_targets).SUPPORT,
    public=heatmap_targets,
    reference=functools.partial(heatmap_targets, backend="torch"),
    samples=_targets_samples,
    # every backend computes in float64 whatever the keypoints' dtype: msra pastes the same float32 table
    # (exact); udp's float64 exp may differ in its last bits between libraries before the rounding to float32
    tolerance={torch.float32: 1e-6, torch.float64: 1e-6},
)

#: Every op of the package, by name.
OPS: Dict[str, OpSpec] = {spec.name: spec for spec in (_EXCHANGE, _DECODE, _CROP, _TARGETS)}
