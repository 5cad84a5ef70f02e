"""Export for deployment: ONNX through ``torch.onnx.export(..., dynamo=True)``, checked with onnxruntime.

    hrnet_fast.export_onnx(model, "pose_hrnet_w32.onnx")                       # heatmaps, dynamic batch
    hrnet_fast.export_onnx(model, "pose_hrnet_w32.onnx", decode="quarter")     # + center/scale -> keypoints

The graph's contract (the README's "Export (ONNX, torch.export)" says the same):

* input ``images`` (N, 3, H, W) in the export dtype, (H, W) the config's IMAGE_SIZE: RGB crops scaled to
  [0, 1] and normalised with the ImageNet mean and std (:data:`INPUT_MEAN`, :data:`INPUT_STD`), as the
  official pipeline feeds the network;
* output ``heatmaps`` (N, K, H/4, W/4) in the export dtype;
* with ``decode="argmax"`` or ``"quarter"``, also inputs ``center`` and ``scale`` (N, 2) float32 (the
  official convention, ``scale`` in units of 200 pixels) and outputs ``coords`` (N, K, 2) float32, (x, y) in
  image coordinates, and ``maxvals`` (N, K, 1) float32: :func:`hrnet_fast.decode_heatmaps` without flip test;
* N is a dynamic dimension named ``batch`` (``batch="dynamic"``) or the given int.

How the custom ops export. The graph holds only standard ONNX ops by default:

* every exchange unit runs its official op sequence (:meth:`ExchangeUnit.reference_forward`): 1x1 Conv
  (BatchNorm folded) + Resize(nearest) + Add + Relu, the strided 3x3 Conv chains for downsampling; the
  fused kernels (``hrnet_fast::fused_exchange`` and its Triton twin) are not in the graph;
* decoding runs :func:`~hrnet_fast.ops.decode_heatmaps.decode_heatmaps_reference`, the spec of the decode
  kernels: ArgMax, GatherElements, Sign, Where and arithmetic. Its coordinate arithmetic is float32 here
  (float64 in the reference by default) because TensorRT has no float64: pixel positions and quarter
  offsets are exact in float32, the back-transform differs by a few float32 ulps of the coordinates.

With ``trt_plugins=True`` the upsample + 1x1 conv + sum + ReLU of each output branch of an exchange unit
becomes one custom-domain node ``hrnet_fast.FusedExchange`` (version 1; see :data:`PLUGIN_DOC`) for a
TensorRT plugin to implement; onnxruntime cannot run that graph. The exchange unit reaches the exporter as
the custom op ``hrnet_fast::fused_exchange`` (its fake kernel gives the shapes) and a
``custom_translation_table`` entry (an onnxscript function) turns it into that node.

The export works on a copy of the model (BatchNorm folded in float64, then cast to ``dtype``), on the
CPU; the caller's model, plain or optimized (:func:`~hrnet_fast.optimize`), is not modified. ``torch.export.export``
of an optimized model needs nothing from here: its custom ops stay ``hrnet_fast.*`` nodes, traced with
their fake kernels (README).

Needs torch >= 2.6 and the optional packages ``onnx`` and ``onnxscript`` (``onnxruntime`` for
:func:`verify_onnx`): ``pip install "hrnet_fast[export]"``.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ._atomic import atomic_path, writable_problem
from ._version import __version__

__all__ = [
    "DECODES",
    "DTYPES",
    "INPUT_MEAN",
    "INPUT_STD",
    "MIN_OPSET",
    "MIN_TORCH",
    "PLUGIN_DOC",
    "PLUGIN_DOMAIN",
    "PLUGIN_OP",
    "PLUGIN_VERSION",
    "check_export_support",
    "export_onnx",
    "max_opset",
    "verify_onnx",
]

MIN_TORCH = (2, 6)
#: The lowest opset exported: the exporter's own op library is written for opset 18.
MIN_OPSET = 18
#: Export dtypes. bfloat16 is refused: onnxruntime's CPU provider has almost no bfloat16 kernels.
DTYPES: Dict[torch.dtype, str] = {torch.float32: "float32", torch.float16: "float16"}
#: ``decode`` values. DARK and UDP are not exported (Gaussian blur, log and a 2x2 solve per keypoint in
#: float64); decode their heatmaps on the host with :func:`hrnet_fast.decode_heatmaps`.
DECODES = (None, "argmax", "quarter")
#: Normalisation of the ``images`` input (RGB in [0, 1], then ``(x - mean) / std``), as the official pipeline.
INPUT_MEAN = (0.485, 0.456, 0.406)
INPUT_STD = (0.229, 0.224, 0.225)

PLUGIN_DOMAIN = "hrnet_fast"
PLUGIN_OP = "FusedExchange"
PLUGIN_VERSION = 1
PLUGIN_DOC = """\
hrnet_fast.FusedExchange (version 1): one output branch of an HRNet exchange unit, the part after the
strided downsampling,

    output = relu(base + sum_j nearest_upsample(weight_j @ low_j + bias_j, scales[j]))

Inputs: base (N, C, H, W); then, for k low-resolution branches, low_1..low_k (N, C_j, H/s_j, W/s_j), then
weight_1..weight_k (C, C_j) (the 1x1 convolution with BatchNorm folded), then bias_1..bias_k (C,); weights
and biases are initializers. Attributes: scales (ints, s_j = 2, 4, 8: powers of two, the same in height
and width), relu (int, 1). Output: (N, C, H, W), the dtype of base. All inputs share one dtype (float32 or
float16); a plugin should accumulate in float32.
"""


# ----------------------------------------------------------------------------------------------------
# Checks, up front and cheap: before the copy of the model and the export, which take seconds to a minute


def check_export_support(need_onnxruntime: bool = False) -> None:
    """Raise if export cannot run here: ``RuntimeError`` for torch older than 2.6, ``ImportError`` naming
    the missing optional packages (``onnx``, ``onnxscript``, and ``onnxruntime`` when asked)."""
    _check_torch()
    _check_packages(need_onnxruntime)


def _check_torch() -> None:
    version = torch.torch_version.TorchVersion(torch.__version__)
    if version < MIN_TORCH:
        raise RuntimeError(f"export_onnx: needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]} (torch.onnx.export(..., dynamo=True) "
                           f"with custom translations), this is torch {torch.__version__}")


def _check_packages(need_onnxruntime: bool) -> None:
    wanted = ["onnx", "onnxscript"] + (["onnxruntime"] if need_onnxruntime else [])
    missing = []
    for name in wanted:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"export_onnx: the optional package(s) {', '.join(missing)} are not installed: "
                          f"pip install \"hrnet_fast[export]\" (onnx, onnxscript, onnxruntime)")


def max_opset() -> int:
    """The highest opset this torch exports (its ONNX_MAX_OPSET; 23 for torch 2.13)."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # a private module: fall back to torch 2.13's value
        return 23


def _check_args(model, path, batch, dtype, opset, decode, trt_plugins) -> Tuple[int, int]:
    """Validate ``export_onnx``'s arguments; return the input (H, W)."""
    from .models.pose_hrnet import PoseHighResolutionNet

    if not isinstance(model, PoseHighResolutionNet):
        raise TypeError(f"export_onnx: model must be an hrnet_fast PoseHighResolutionNet (plain or optimize()d), "
                        f"got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"export_onnx: path must be a file path (str or os.PathLike), got {type(path).__name__}")
    if os.path.isdir(path):
        raise ValueError(f"export_onnx: path {os.fspath(path)!r} is a directory; expected a file path such as model.onnx")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"export_onnx: the folder of {os.fspath(path)!r} does not exist ({parent})")
    problem = writable_problem(path)  # now, not after the whole export
    if problem:
        raise ValueError(f"export_onnx: path {os.fspath(path)!r}: {problem}")
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"export_onnx: batch must be 'dynamic' or a positive int, got {batch!r}")
    if dtype not in DTYPES:
        raise ValueError(f"export_onnx: dtype must be torch.float32 or torch.float16, got {dtype} "
                         f"(bfloat16: onnxruntime's CPU provider has almost no bfloat16 kernels)")
    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise ValueError(f"export_onnx: opset must be an int from {MIN_OPSET} to {top} (torch {torch.__version__}'s "
                         f"exporter), got {opset!r}")
    if decode not in DECODES:
        raise ValueError(f"export_onnx: decode must be None, 'argmax' or 'quarter', got {decode!r} (DARK/UDP are not "
                         f"exported: decode their heatmaps with hrnet_fast.decode_heatmaps)")
    if not isinstance(trt_plugins, bool):
        raise TypeError(f"export_onnx: trt_plugins must be a bool, got {type(trt_plugins).__name__}")
    width, height = (int(v) for v in model.cfg["IMAGE_SIZE"])
    return height, width


# ----------------------------------------------------------------------------------------------------
# The module that is exported


def _export_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A CPU copy of ``model`` in ``dtype`` that runs the official op sequence with BatchNorm folded.

    An ``optimize()``d model's frozen plan is derived state that a copy leaves out; the copy is made a plain
    module (``inference_config = None``: no input cast, the graph's input is already in the export dtype;
    no layout conversion, ONNX has none), so the caller's model is neither modified nor copied through it."""
    from ._folding import fold_batchnorm

    net = copy.deepcopy(model).eval()
    net.inference_config = None
    for p in net.parameters():
        p.requires_grad_(False)
    net.to(device="cpu")
    fold_batchnorm(net)  # in float64 before any cast (no-op for an optimize()d model)
    net.to(dtype=dtype, memory_format=torch.contiguous_format)
    for unit in net.exchange_units():
        unit.configure(fused=False)  # reference_forward: Conv + Resize + Add + Relu
    return net


class _PluginExchange(nn.Module):
    """An exchange unit for ``trt_plugins=True``: the downsampling convolutions as usual, then, per output
    branch with lower-resolution inputs, the fused op prepared on the folded 1x1 weights (buffers, so they
    become initializers) and traced as ``hrnet_fast::fused_exchange`` (``op``), which the translation table
    turns into a FusedExchange node."""

    def __init__(self, unit: nn.Module, op):
        super().__init__()
        self.unit = unit
        self._op = op
        for i in range(len(unit)):
            for j in range(i + 1, unit.num_inputs):
                w, b = unit._fold(unit[i][j][0], unit[i][j][1])
                self.register_buffer(f"weight_{i}_{j}", w)
                self.register_buffer(f"bias_{i}_{j}", torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        from .ops.fused_exchange import PreparedExchange

        unit = self.unit
        out = []
        for i in range(len(unit)):
            base = xs[i]
            for j in range(i):
                base = base + unit[i][j](xs[j])
            lows = list(range(i + 1, unit.num_inputs))
            if not lows:
                out.append(torch.relu(base))  # nothing to fuse: no plugin node
                continue
            # prepared per forward: the exporter traces the buffers (initializers), not copies of them
            prepared = PreparedExchange([getattr(self, f"weight_{i}_{j}") for j in lows],
                                        [getattr(self, f"bias_{i}_{j}") for j in lows], relu=True, op=self._op)
            out.append(prepared(base, [xs[j] for j in lows]))
        return out


def _plugin_op():
    """The fused exchange op the plugin graph is traced with: the C++ op where the extension is built, else
    the Triton op (always registered). Only its fake kernel runs during export."""
    import hrnet_fast.ops.fused_exchange  # noqa: F401 - registers the fake kernels

    from . import _backends

    if _backends.extension() is not None and hasattr(torch.ops.hrnet_fast, "fused_exchange"):
        return torch.ops.hrnet_fast.fused_exchange.default
    return torch.ops.hrnet_fast.fused_exchange_triton.default


def _register_plugin_schema() -> None:
    """Declare hrnet_fast.FusedExchange to onnx (once per process), so onnxscript can emit the node."""
    import onnx

    if onnx.defs.has(PLUGIN_OP, PLUGIN_DOMAIN):
        return
    S = onnx.defs.OpSchema
    onnx.defs.register_schema(S(
        PLUGIN_OP, PLUGIN_DOMAIN, PLUGIN_VERSION, PLUGIN_DOC,
        # one variadic input: torch 2.13's op recorder repeats the first argument when a single input
        # precedes a variadic one (base came out twice)
        inputs=[S.FormalParameter("inputs", "T", "base, low_1..low_k, weight_1..weight_k, bias_1..bias_k",
                                  param_option=S.FormalParameterOption.Variadic, min_arity=4)],
        outputs=[S.FormalParameter("output", "T", "(N, C, H, W)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float32 or float16")],
        attributes=[S.Attribute("scales", S.AttrType.INTS, "s_j per low input (power of two)"),
                    S.Attribute("relu", S.AttrType.INT, "1: ReLU at the end")],
    ))


def _plugin_translation(base, lows, weights, biases, relu):
    """onnxscript translation of ``hrnet_fast::fused_exchange`` to one hrnet_fast.FusedExchange node."""
    from onnxscript.values import Opset

    custom = Opset(PLUGIN_DOMAIN, PLUGIN_VERSION)
    scales = [int(base.shape[2]) // int(low.shape[2]) for low in lows]
    return custom.FusedExchange(base, *lows, *weights, *biases, scales=scales, relu=int(bool(relu)))


def _use_plugins(net: nn.Module) -> Dict[Any, Any]:
    """Swap every exchange unit of ``net`` (the export copy) for a :class:`_PluginExchange`; return the
    translation table for the exporter."""
    from .models.pose_hrnet import HighResolutionModule

    _register_plugin_schema()
    op = _plugin_op()
    for m in net.modules():
        if isinstance(m, HighResolutionModule) and m.fuse_layers is not None:
            m.fuse_layers = _PluginExchange(m.fuse_layers, op)
    return {op: _plugin_translation}


class _Heatmaps(nn.Module):
    """images -> heatmaps."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class _Decoded(nn.Module):
    """(images, center, scale) -> (heatmaps, coords, maxvals): the network, then the decode reference."""

    def __init__(self, net: nn.Module, method: str):
        from .ops.decode_heatmaps import METHODS

        super().__init__()
        self.net = net
        self.code = METHODS[method]

    def forward(self, images: torch.Tensor, center: torch.Tensor, scale: torch.Tensor):
        from .ops.decode_heatmaps import decode_heatmaps_reference

        heatmaps = self.net(images)
        coords, maxvals = decode_heatmaps_reference(heatmaps, None, None, center, scale, self.code, True, 11,
                                                    coord_dtype=torch.float32)
        return heatmaps, coords, maxvals


@contextlib.contextmanager
def _quiet_exporter():
    """Silence what the exporter says on every export and that does not concern this graph: one warning
    per torchvision op it cannot register (torchvision is not a dependency), a deprecation inside torch,
    and a note that the shared dimension ``batch`` is named once. Everything else still shows."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*The axis name: batch will not be used", category=UserWarning)
            yield
    finally:
        registration.setLevel(level)


# ----------------------------------------------------------------------------------------------------
# The public functions


def export_onnx(
    model: nn.Module,
    path: Union[str, os.PathLike],
    batch: Union[str, int] = "dynamic",
    dtype: torch.dtype = torch.float32,
    opset: int = 18,
    decode: Optional[str] = None,
    trt_plugins: bool = False,
) -> str:
    """Export ``model`` (a PoseHighResolutionNet, plain or from ``optimize()``) to an ONNX file at ``path``.

    Args:
        model: the network; not modified (a CPU copy is exported, in eval mode, BatchNorm folded).
        path: the .onnx file to write (one file, weights included); its folder must exist and be writable
            (checked before the export). Written atomically: to a temporary file beside it, then renamed.
        batch: ``"dynamic"`` (a dimension named ``batch``, any N >= 1) or a fixed positive int.
        dtype: ``torch.float32`` or ``torch.float16``: weights, ``images`` and ``heatmaps``.
        opset: ONNX opset, from 18 to :func:`max_opset`.
        decode: None (heatmaps only), ``"argmax"`` or ``"quarter"``: add inputs ``center``, ``scale`` (N, 2)
            float32 and outputs ``coords`` (N, K, 2), ``maxvals`` (N, K, 1) float32.
        trt_plugins: emit each exchange unit's fused part as an ``hrnet_fast.FusedExchange`` node for a
            TensorRT plugin (:data:`PLUGIN_DOC`) instead of standard ops; onnxruntime cannot run the result.

    Returns the path written (str). Raises ``TypeError``/``ValueError`` for bad arguments (checked before
    anything runs), ``RuntimeError`` on torch < 2.6, ``ImportError`` without onnx/onnxscript.
    The graph's inputs and outputs: see the module docstring.
    """
    _check_torch()
    height, width = _check_args(model, path, batch, dtype, opset, decode, trt_plugins)
    _check_packages(need_onnxruntime=False)

    net = _export_copy(model, dtype)
    table = _use_plugins(net) if trt_plugins else None
    n = 2 if batch == "dynamic" else batch  # an example of 1 would specialise a dynamic batch to 1
    args: Tuple[torch.Tensor, ...] = (torch.zeros(n, 3, height, width, dtype=dtype),)
    if decode is None:
        module: nn.Module = _Heatmaps(net)
        inputs, outputs = ["images"], ["heatmaps"]
    else:
        module = _Decoded(net, decode)
        args += (torch.zeros(n, 2), torch.ones(n, 2))
        inputs, outputs = ["images", "center", "scale"], ["heatmaps", "coords", "maxvals"]
    dynamic_shapes = None
    if batch == "dynamic":
        dim = torch.export.Dim("batch", min=1)
        dynamic_shapes = {name: {0: dim} for name in inputs}
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            module.eval(), args, dynamo=True, input_names=inputs, output_names=outputs, opset_version=opset,
            dynamic_shapes=dynamic_shapes, custom_translation_table=table, verbose=False,
        )
    cfg = model.cfg
    program.model.metadata_props.update({
        "hrnet_fast.version": __version__,
        "hrnet_fast.image_size_hw": f"{height},{width}",
        "hrnet_fast.num_joints": str(cfg["NUM_JOINTS"]),
        "hrnet_fast.input": "RGB in [0, 1], (x - mean) / std",
        "hrnet_fast.input_mean": ",".join(map(str, INPUT_MEAN)),
        "hrnet_fast.input_std": ",".join(map(str, INPUT_STD)),
        "hrnet_fast.decode": decode or "none",
        "hrnet_fast.trt_plugins": str(int(trt_plugins)),
    })
    # atomically: a failed save (a full disk, a killed process) never leaves a truncated model, nor destroys
    # the previous file at that path
    with atomic_path(path) as tmp:
        program.save(tmp, external_data=False)
    return os.fspath(path)


def verify_onnx(
    path: Union[str, os.PathLike],
    model: nn.Module,
    batch_sizes: Sequence[int] = (1, 2),
    seed: int = 0,
) -> Dict[str, float]:
    """Run the ONNX file in onnxruntime (CPU) and ``model`` in torch on the same random inputs; return the
    worst errors over ``batch_sizes``: ``heatmaps_rel`` (max |onnx - torch| / max |torch|), and for a graph
    with decoding ``coords_px`` (max abs difference of the keypoints, pixels, against
    :func:`hrnet_fast.decode_heatmaps` of the torch heatmaps) and ``maxvals_rel``.

    The torch side runs ``model`` as given (in its dtype, on its device); the ONNX side gets the images in
    the graph's input dtype."""
    check_export_support(need_onnxruntime=True)
    import numpy as np
    import onnxruntime as ort

    from ._numerics import max_rel_err
    from .ops.decode_heatmaps import decode_heatmaps

    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    decode = meta.get("hrnet_fast.decode", "none")
    feeds = {i.name: i for i in sess.get_inputs()}
    np_dtype = np.float16 if feeds["images"].type == "tensor(float16)" else np.float32
    static_n = feeds["images"].shape[0]
    p = next(model.parameters())
    height, width = (int(v) for v in feeds["images"].shape[2:])
    gen = torch.Generator().manual_seed(seed)
    errors: Dict[str, float] = {}

    def worst(key, value):
        errors[key] = max(errors.get(key, 0.0), value)

    for n in ([static_n] if isinstance(static_n, int) else batch_sizes):
        images = torch.randn(n, 3, height, width, generator=gen)
        center = torch.rand(n, 2, generator=gen) * torch.tensor([2.0 * width, 2.0 * height])
        s = torch.rand(n, 1, generator=gen) + 0.5
        scale = torch.cat([s, s * height / width], dim=1)
        feed = {"images": images.numpy().astype(np_dtype)}
        if decode != "none":
            feed.update(center=center.numpy(), scale=scale.numpy())
        got = sess.run(None, feed)
        with torch.no_grad():
            x = images.to(device=p.device, dtype=p.dtype)
            want = model(x).float().cpu()
        worst("heatmaps_rel", max_rel_err(torch.from_numpy(got[0]).float(), want))
        if decode != "none":
            coords, maxvals = decode_heatmaps(want, center, scale, method=decode)
            worst("coords_px", float((torch.from_numpy(got[1]).double() - coords.double()).abs().max()))
            worst("maxvals_rel", max_rel_err(torch.from_numpy(got[2]), maxvals))
    return errors
