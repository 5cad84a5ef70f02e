"""The fused exchange unit: upsample + 1x1 conv + sum (+ ReLU) of HRNet's multi-scale fusion as one op.

    out = relu(base + sum_j nearest_upsample(weights[j] @ lows[j] + biases[j], s_j))

Backends (see :mod:`hrnet_fast._backends`): ``torch`` (:func:`fused_exchange_reference`, the spec),
``cpp`` (CPU, float32/float64), ``cuda`` (float16/bfloat16/float32/float64) and ``triton`` (CUDA tensors,
or CPU tensors under ``TRITON_INTERPRET=1``; float16/bfloat16/float32, bfloat16 from sm_80 on and not in the
interpreter).

The compiled backends are ``torch.ops.hrnet_fast.fused_exchange`` (C++ schema, CPU and CUDA kernels) and
the Python custom op ``torch.ops.hrnet_fast.fused_exchange_triton``. Each has a separate backward op
(``*_backward``: the ReLU mask and the s x s block sums at full resolution) and an autograd formula
registered here, which does the low-resolution GEMMs of the backward with torch; fake (meta) kernels are
registered too, so ``torch.library.opcheck`` passes and ``torch.compile(fullgraph=True)`` traces them.
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .. import _backends

__all__ = ["SUPPORT", "PreparedExchange", "fused_exchange", "fused_exchange_reference", "prepare", "resolve_backend"]

_OP = "fused_exchange"

# What each backend runs: one table, from which hrnet_fast._backends.resolve decides. Both GPU backends do
# the 1x1 convolution at low resolution (cuBLAS / a tl.dot GEMM) and then one fused upsample + sum + ReLU
# pass. On CUDA, auto prefers the CUDA backend until a GPU measurement says otherwise: the kernel time of
# each under a CUDA graph (launch overhead gone), against a copy of the same bytes as the floor.


def _triton_reasons(device: torch.device, dtype: torch.dtype) -> List[str]:
    """Why the Triton kernels cannot run on this GPU ([] if they can): tl.dot has no bfloat16 tensor-core
    path before sm_80 (a T4 is sm_75), so auto takes the CUDA backend there."""
    if device.type == "cuda" and dtype == torch.bfloat16:
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return [f"triton's tl.dot has no bfloat16 before sm_80 (this GPU is sm_{major}{minor})"]
    return []


# What runs each backend: ``run(base, lows, ws, bs, relu)`` on checked arguments (lists; 2-d weights or
# None; biases or None; see _check_args). The compiled ops take empty tensors for None (see _placeholders).
def _run_torch(base, lows, ws, bs, relu):
    return _reference(base, lows, ws, bs, relu)


def _run_compiled(base, lows, ws, bs, relu):  # cpp and cuda: one op, registered for CPU and CUDA
    return torch.ops.hrnet_fast.fused_exchange.default(base, lows, _placeholders(base, ws), _placeholders(base, bs), relu)


def _run_triton(base, lows, ws, bs, relu):
    return _triton_forward(base, lows, _placeholders(base, ws), _placeholders(base, bs), relu)


SUPPORT = _backends.OpSupport(
    op=_OP,
    backends={
        "torch": _backends.BackendSupport(run=_run_torch),
        "cpp": _backends.BackendSupport(devices=("cpu",), dtypes=(torch.float32, torch.float64),
                                        compiled_op="fused_exchange", run=_run_compiled),
        "cuda": _backends.BackendSupport(devices=("cuda",),
                                         dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64),
                                         compiled_op="fused_exchange", run=_run_compiled),
        "triton": _backends.BackendSupport(devices=("cuda", "cpu"), dtypes=(torch.float16, torch.bfloat16, torch.float32),
                                           reasons=_triton_reasons, run=_run_triton),
    },
    # cuda first until a GPU measurement (kernel time under a graph against a copy of the same bytes) decides
    order={"cpu": ("cpp", "torch"), "cuda": ("cuda", "triton", "torch")},
)


Weights = Optional[Sequence[Optional[torch.Tensor]]]

_HALF = (torch.float16, torch.bfloat16)


def _param_dtype_ok(param: torch.dtype, base: torch.dtype) -> bool:
    """Weights and biases take base's dtype, or float32 beside float16/bfloat16 inputs: prepared once (the
    inference plan keeps float32 biases for the 16-bit cuda backend), they spare it a conversion per call.
    A float32 weight is used rounded to base's dtype by every backend (the GEMMs multiply 16-bit tiles); a
    float32 bias is rounded by the torch and triton backends and added as it is by the cuda backend, into
    its float32 accumulator."""
    return param == base or (param == torch.float32 and base in _HALF)


# ----------------------------------------------------------------------------------------------------
# Argument checks (shared by every backend, run before dispatch; the C++ op checks again)


def _check_args(
    base: torch.Tensor, lows: Sequence[torch.Tensor], weights: Weights, biases: Weights
) -> Tuple[List[torch.Tensor], List[Optional[torch.Tensor]], List[Optional[torch.Tensor]]]:
    """Validate the arguments; return lows, 2-d weights (C, C_j) or None, biases (C,) or None as lists."""
    if not isinstance(base, torch.Tensor):
        raise TypeError(f"{_OP}: base must be a torch.Tensor of shape (N, C, H, W), got {type(base).__name__}")
    if base.dim() != 4:
        raise ValueError(f"{_OP}: base must have shape (N, C, H, W), got shape {tuple(base.shape)}")
    if not base.is_floating_point():
        raise TypeError(f"{_OP}: base must be a floating-point tensor, got dtype {base.dtype}")
    if isinstance(lows, torch.Tensor) or not isinstance(lows, (list, tuple)):
        raise TypeError(f"{_OP}: lows must be a list or tuple of (N, C_j, H/s_j, W/s_j) tensors, got {type(lows).__name__}")
    n_low = len(lows)
    # the batch size stays a (possibly symbolic) size: int() of it would specialise a dynamic batch to the
    # example's under torch.export; channels and spatial sizes are static in every traced HRNet
    N = base.shape[0]
    C, H, W = (int(v) for v in base.shape[1:])

    def seq(name: str, value: Weights) -> List[Optional[torch.Tensor]]:
        if value is None:
            return [None] * n_low
        if isinstance(value, torch.Tensor) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{_OP}: {name} must be None or a list/tuple with one entry (tensor or None) per low input, "
                            f"got {type(value).__name__}")
        if len(value) != n_low:
            raise ValueError(f"{_OP}: {name} must have one entry (tensor or None) per low input: got {len(value)} for "
                             f"{n_low} lows")
        return list(value)

    ws, bs = seq("weights", weights), seq("biases", biases)

    def same_place(name: str, t: object, param: bool = False) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != base.device:
            raise RuntimeError(f"{_OP}: {name} is on {t.device} but base is on {base.device}: all inputs must be on one device")
        if t.dtype != base.dtype and not (param and _param_dtype_ok(t.dtype, base.dtype)):
            raise TypeError(f"{_OP}: {name} has dtype {t.dtype} but base has dtype {base.dtype}: all inputs must share a "
                            f"dtype (weights and biases may also be float32 beside float16/bfloat16)")
        return t

    out_w: List[Optional[torch.Tensor]] = []
    for j, low in enumerate(lows):
        same_place(f"lows[{j}]", low)
        if low.dim() != 4:
            raise ValueError(f"{_OP}: lows[{j}] must have shape (N, C_j, H/s, W/s), got shape {tuple(low.shape)}")
        n = low.shape[0]
        cj, h, w = (int(v) for v in low.shape[1:])
        if n != N:
            raise ValueError(f"{_OP}: lows[{j}] has batch size {n} but base has {N}")
        if h <= 0 or w <= 0 or H % h or W % w:
            raise ValueError(f"{_OP}: lows[{j}] spatial size {h}x{w} times its scale must equal the base size {H}x{W}")
        s, sw = H // h, W // w
        if s != sw:
            raise ValueError(f"{_OP}: lows[{j}] must be scaled by the same factor in height and width, got {s} and {sw} "
                             f"(base {H}x{W}, low {h}x{w})")
        if s < 2 or s & (s - 1):
            raise ValueError(f"{_OP}: lows[{j}] scale factor (base size / low size) must be a power of two >= 2, got {s}")
        wt = ws[j]
        if wt is None:
            if cj != C:
                raise ValueError(f"{_OP}: lows[{j}] has {cj} channels but base has {C} and weights[{j}] is None "
                                 f"(give a ({C}, {cj}) weight to project it)")
            out_w.append(None)
        else:
            same_place(f"weights[{j}]", wt, param=True)
            ok = tuple(wt.shape) in ((C, cj), (C, cj, 1, 1))
            if not ok:
                raise ValueError(f"{_OP}: weights[{j}] must have shape ({C}, {cj}) or ({C}, {cj}, 1, 1), got {tuple(wt.shape)}")
            out_w.append(wt.reshape(C, cj) if wt.dim() == 4 else wt)
        bt = bs[j]
        if bt is not None:
            same_place(f"biases[{j}]", bt, param=True)
            if tuple(bt.shape) != (C,):
                raise ValueError(f"{_OP}: biases[{j}] must have shape ({C},), got {tuple(bt.shape)}")
    return list(lows), out_w, bs


# ----------------------------------------------------------------------------------------------------
# The reference and backend selection


def fused_exchange_reference(
    base: torch.Tensor, lows: Sequence[torch.Tensor], weights: Weights = None, biases: Weights = None, relu: bool = True
) -> torch.Tensor:
    """The unfused torch computation (1x1 conv, nearest upsample, add, ReLU): the spec of every backend.
    Arguments as :func:`fused_exchange`'s (checked here)."""
    lows, ws, bs = _check_args(base, lows, weights, biases)
    return _reference(base, lows, ws, bs, bool(relu))


def _reference(base: torch.Tensor, lows: List[torch.Tensor], ws: List[Optional[torch.Tensor]],
               bs: List[Optional[torch.Tensor]], relu: bool) -> torch.Tensor:
    """The torch backend on checked arguments (lists; 2-d weights or None; biases or None)."""
    if base.numel() == 0:  # N or C is 0: an empty output (conv and interpolate reject empty tensors)
        return torch.relu(base) if relu else base.clone()
    y = base
    for low, w, b in zip(lows, ws, bs):
        if w is not None and low.shape[1] == 0:  # no input channels: the 1x1 conv contributes zeros
            z = low.new_zeros((low.shape[0], w.shape[0], low.shape[2], low.shape[3]))
        else:  # a float32 weight beside 16-bit inputs is rounded to their dtype (see _param_dtype_ok)
            z = low if w is None else F.conv2d(low, w.reshape(w.shape[0], w.shape[1], 1, 1).to(low.dtype))
        if b is not None:
            z = z + b.reshape(1, -1, 1, 1).to(z.dtype)
        y = y + F.interpolate(z, size=(base.shape[2], base.shape[3]), mode="nearest")
    return torch.relu(y) if relu else y


def resolve_backend(base: torch.Tensor, backend: str = "auto") -> _backends.BackendSupport:
    """The backend entry :func:`fused_exchange` uses for ``base``'s device and dtype (raises when an
    explicit ``backend`` cannot run it): ``.run(base, lows, ws, bs, relu)`` runs it on checked arguments,
    ``.name`` names it. Cached; under torch.compile it is a trace-time constant."""
    if torch.compiler.is_compiling():
        return SUPPORT.backends[_backends.resolve_traced(SUPPORT, backend, base.device, base.dtype)]
    return _backends.resolve(SUPPORT, backend, base.device, base.dtype)


# ----------------------------------------------------------------------------------------------------
# Autograd and fake kernels, shared by the C++ op and the Triton op


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    """The op's output layout: channels_last when ``t`` is strictly channels_last dense, else contiguous."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _fake_forward(base, lows, weights, biases, relu):
    # the same checks as the kernels, so tracing (torch.compile, meta tensors) rejects what they reject
    _check_args(base, list(lows), [None if _absent(w) else w for w in weights], [None if _absent(b) else b for b in biases])
    return torch.empty_like(base, memory_format=_memory_format(base))


def _fake_backward(grad_out, out, lows, relu):
    fmt = _memory_format(out)
    N, C = out.shape[0], out.shape[1]
    gb = torch.empty_like(out, memory_format=fmt)
    return gb, [
        torch.empty((N, C, low.shape[2], low.shape[3]), dtype=out.dtype, device=out.device, memory_format=fmt)
        for low in lows
    ]


def _absent(t: torch.Tensor) -> bool:
    """An empty 1-d tensor stands for None in the ops' weights/biases lists (see _placeholders)."""
    return t.dim() == 1 and t.numel() == 0


def _placeholders(base: torch.Tensor, ts: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
    """Replace None by an empty (0,) tensor. The ops take Tensor[] rather than Tensor?[]: torch.library's
    autograd registration treats a list holding None as a constant and would route no gradient into it.
    A list without None is returned as it is (no allocation per call)."""
    for t in ts:
        if t is None:
            empty = base.new_empty((0,))
            return [empty if t is None else t for t in ts]
    return list(ts) if isinstance(ts, tuple) else ts


def _setup_context(ctx, inputs, output):
    base, lows, weights, biases, relu = inputs
    ctx.relu = relu
    ctx.n_low = len(lows)
    ctx.has_w = [not _absent(w) for w in weights]
    ctx.has_b = [not _absent(b) for b in biases]
    ctx.b_dtypes = [b.dtype for b in biases]
    ctx.save_for_backward(output, *lows, *[w for w in weights if not _absent(w)])


def _conv1x1_grads(g: torch.Tensor, low: torch.Tensor, w: torch.Tensor):
    """Gradients of the 1x1 conv at low resolution: W^T G (N, C_j, h, w) and sum_n G_n low_n^T (C, C_j),
    as GEMMs on views of the tensors' own layout (no transposing copies). A float32 ``w`` beside 16-bit
    ``g`` is used in g's dtype, as the forward uses it; its gradient comes back as float32."""
    w_dtype, w = w.dtype, w.to(g.dtype)
    n, c, h, wd = g.shape
    cj = low.shape[1]
    if _memory_format(g) == torch.channels_last and _memory_format(low) == torch.channels_last:
        g_rows = g.permute(0, 2, 3, 1).reshape(n * h * wd, c)  # views of NHWC memory
        low_rows = low.permute(0, 2, 3, 1).reshape(n * h * wd, cj)
        return (g_rows @ w).view(n, h, wd, cj).permute(0, 3, 1, 2), (g_rows.t() @ low_rows).to(w_dtype)
    g3 = g.reshape(n, c, h * wd)
    low3 = low.reshape(n, cj, h * wd)
    return torch.matmul(w.t(), g3).view(n, cj, h, wd), torch.bmm(g3, low3.transpose(1, 2)).sum(0).to(w_dtype)


def _make_backward(backward_op):
    def _backward(ctx, grad):
        out, *rest = ctx.saved_tensors
        lows, ws = rest[: ctx.n_low], iter(rest[ctx.n_low:])
        grad_base, pooled = backward_op(grad, out, lows, ctx.relu)
        g_lows, g_ws, g_bs = [], [], []
        for low, g, has_w, has_b, b_dtype in zip(lows, pooled, ctx.has_w, ctx.has_b, ctx.b_dtypes):
            if has_w:
                g_low, g_w = _conv1x1_grads(g, low, next(ws))
                g_lows.append(g_low)
                g_ws.append(g_w)
            else:
                g_lows.append(g)
                g_ws.append(None)
            g_bs.append(g.sum(dim=(0, 2, 3), dtype=b_dtype) if has_b else None)
        return grad_base, g_lows, g_ws, g_bs, None

    return _backward


def _backward_setup_context(ctx, inputs, output):
    grad_out, out, lows, relu = inputs
    ctx.relu = relu
    ctx.n_low = len(lows)
    ctx.save_for_backward(out)


def _backward_backward(ctx, gg_base, gg_pooled):
    """Double backward: the backward op is linear in grad_out, ``grad_base = mask(out) * grad_out`` and
    ``pooled_j = blocksum_j(grad_base)``, so its adjoint is ``mask * (gg_base + sum_j upsample_j(gg_j))``.
    The mask is piecewise constant in ``out`` (zero derivative almost everywhere) and ``lows`` only give
    shapes: neither gets a gradient."""
    (out,) = ctx.saved_tensors
    total = torch.zeros_like(out) if gg_base is None else gg_base
    for g in gg_pooled:
        if g is not None:
            total = total + F.interpolate(g, size=(out.shape[2], out.shape[3]), mode="nearest")
    if ctx.relu:
        total = torch.where(out <= 0, torch.zeros_like(total), total)  # NaN passes, as in the backward
    return total, None, [None] * ctx.n_low, None


# The C++ op (CPU and CUDA kernels), when the extension is built.
if _backends.extension() is not None and hasattr(torch.ops.hrnet_fast, "fused_exchange"):
    torch.library.register_fake("hrnet_fast::fused_exchange")(_fake_forward)
    torch.library.register_fake("hrnet_fast::fused_exchange_backward")(_fake_backward)
    torch.library.register_autograd(
        "hrnet_fast::fused_exchange",
        _make_backward(lambda g, o, lows, relu: torch.ops.hrnet_fast.fused_exchange_backward(g, o, lows, relu)),
        setup_context=_setup_context,
    )
    torch.library.register_autograd(
        "hrnet_fast::fused_exchange_backward", _backward_backward, setup_context=_backward_setup_context
    )


# The Triton op. custom_op (not triton_op) because fake tracing of triton_op fails under the interpreter.
@torch.library.custom_op("hrnet_fast::fused_exchange_triton", mutates_args=())
def _triton_forward(
    base: torch.Tensor,
    lows: List[torch.Tensor],
    weights: List[torch.Tensor],
    biases: List[torch.Tensor],
    relu: bool,
) -> torch.Tensor:
    ws, bs = _triton_params(base, weights, biases)
    return _backends.triton_kernels("fused_exchange").forward(base, lows, ws, bs, relu)


def _triton_params(base: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]):
    """The op's placeholder lists as the Triton kernels take them: None for an absent entry, and every
    weight and bias in base's dtype (tl.dot multiplies two tiles of one dtype): a float32 one beside 16-bit
    inputs is rounded here, as the torch reference rounds it (see _param_dtype_ok)."""
    ws = [None if _absent(w) else w.to(base.dtype) for w in weights]
    bs = [None if _absent(b) else b.to(base.dtype) for b in biases]
    return ws, bs


@torch.library.custom_op("hrnet_fast::fused_exchange_triton_backward", mutates_args=())
def _triton_backward(
    grad_out: torch.Tensor, out: torch.Tensor, lows: List[torch.Tensor], relu: bool
) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    return _backends.triton_kernels("fused_exchange").backward(grad_out, out, [tuple(low.shape) for low in lows], relu)


_triton_forward.register_fake(_fake_forward)
_triton_backward.register_fake(_fake_backward)
_triton_forward.register_autograd(_make_backward(_triton_backward), setup_context=_setup_context)
_triton_backward.register_autograd(_backward_backward, setup_context=_backward_setup_context)


# ----------------------------------------------------------------------------------------------------
# The public function


def fused_exchange(
    base: torch.Tensor,
    lows: Sequence[torch.Tensor],
    weights: Weights = None,
    biases: Weights = None,
    relu: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """``relu(base + sum_j nearest_upsample(weights[j] @ lows[j] + biases[j], s_j))``, fused.

    Args:
        base: (N, C, H, W), floating point; NCHW-contiguous or channels_last (other strides are copied).
        lows: sequence of (N, C_j, H/s_j, W/s_j) tensors; s_j, derived from the shapes, is a power of two
            >= 2, the same for height and width.
        weights: None, or one entry per low: a (C, C_j) or (C, C_j, 1, 1) tensor (the 1x1 conv), or None
            when that low already has C channels.
        biases: None, or one entry per low: a (C,) tensor or None.
        relu: apply the ReLU at the end.
        backend: ``"auto"`` (the first available for the device: cpp on CPU, cuda then triton on
            CUDA, else torch), ``"torch"``, ``"cpp"``, ``"cuda"`` or ``"triton"``.

    All tensors share base's device and dtype, except that weights and biases may be float32 beside
    float16/bfloat16 inputs (kept so once, they spare the cuda backend a conversion per call; see
    ``_param_dtype_ok`` for how each backend uses them). Returns (N, C, H, W) in base's dtype, channels_last
    when base is channels_last. Differentiable with respect to base, lows, weights and biases.
    """
    lows, ws, bs = _check_args(base, lows, weights, biases)
    return resolve_backend(base, backend).run(base, lows, ws, bs, bool(relu))


def _backend_call(backend, base: torch.Tensor, ws: List[Optional[torch.Tensor]], bs: List[Optional[torch.Tensor]],
                  relu: bool):
    """``call(base, lows)`` running ``backend`` (an entry of :data:`SUPPORT` as resolved, or an op overload to
    trace) on these weights and biases. An op overload (given to ``PreparedExchange(op=...)`` for export) gets
    the compiled ops' placeholder lists, made once; only its fake kernel runs."""
    if isinstance(backend, _backends.BackendSupport):
        run = backend.run
        return lambda b, lows: run(b, lows, ws, bs, relu)
    wp, bp = _placeholders(base, ws), _placeholders(base, bs)
    return lambda b, lows: backend(b, lows, wp, bp, relu)


# ----------------------------------------------------------------------------------------------------
# The prepared call: weights fixed, the backend bound once per (device, dtype) of the inputs


def _tracing() -> bool:
    """True while torch.compile / torch.export / torch.jit / ONNX export trace (shapes may be symbolic)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and getattr(onnx, "is_in_onnx_export", lambda: False)())


def _signature(base: torch.Tensor, lows: Sequence[torch.Tensor]) -> tuple:
    """What a checked call fixes about its arguments: device, dtype and shape of base and of every low."""
    return (base.device, base.dtype, base.shape, tuple((low.shape, low.dtype, low.device) for low in lows))


# one (device, dtype) binding: the call and the weights and biases converted for it
_Bound = NamedTuple("_Bound", [("call", Callable), ("weights", list), ("biases", list)])


class PreparedExchange:
    """``prepared(base, lows)``: :func:`fused_exchange` with its weights, biases, ``relu`` and ``backend``
    fixed (made by :func:`prepare`).

    Per (device, dtype) of ``base``, the first call binds once what every later call would otherwise redo:
    the backend (resolved for that device and dtype), the weights converted to it (2-d, contiguous; the
    biases in float32 for the 16-bit cuda backend, which adds them into its float32 accumulator) and the
    compiled ops' placeholder lists. The arguments are checked in full on the first call of each shape
    signature (shapes, dtypes and devices of base and lows); later calls of a signature run the kernel
    directly. While torch.compile / torch.export trace, every call is checked and nothing is cached.

    Weights that require grad stay differentiable (a conversion is recorded once, at binding): for
    training, prepare per step or call :func:`fused_exchange`. ``op`` (for export): an op overload called
    instead of a resolved backend, traced by its fake kernel whatever this machine can run.
    """

    _MAX_SIGNATURES = 64  # shape signatures remembered as checked (a model sees a few; bounded anyway)

    def __init__(self, weights: Weights, biases: Weights = None, relu: bool = True, backend: str = "auto", op=None):
        if backend != "auto" and backend not in _backends.BACKENDS:
            raise ValueError(f"{_OP}.prepare: backend must be 'auto' or one of {list(_backends.BACKENDS)}, got {backend!r}")
        self.weights, self.biases = _check_params(weights, biases)
        self.relu = bool(relu)
        self.backend = backend
        self._op = op
        self._bound: Dict[Tuple[torch.device, torch.dtype], _Bound] = {}
        self._checked: set = set()

    def __call__(self, base: torch.Tensor, lows: Sequence[torch.Tensor]) -> torch.Tensor:
        if _tracing():
            bound = self._bind(base)
            lows, _, _ = _check_args(base, lows, bound.weights, bound.biases)
            return bound.call(base, lows)
        try:  # the common case: a signature seen (and checked) before
            if _signature(base, lows) in self._checked:
                return self._bound[(base.device, base.dtype)].call(base, lows)
        except (AttributeError, KeyError, TypeError):  # unbound, or not tensors (the checks below say so)
            pass
        return self._first_call(base, lows)

    def _first_call(self, base, lows):
        """Bind for base's device and dtype if needed, check every argument, remember the signature."""
        if not isinstance(base, torch.Tensor):
            _check_args(base, lows, None, None)  # raises the op's TypeError naming base
        key = (base.device, base.dtype)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bound[key] = self._bind(base)
        lows, _, _ = _check_args(base, lows, bound.weights, bound.biases)
        if len(self._checked) >= self._MAX_SIGNATURES:
            self._checked.clear()
        self._checked.add(_signature(base, lows))
        return bound.call(base, lows)

    def _bind(self, base: torch.Tensor) -> _Bound:
        if self._op is not None:
            name, backend = None, self._op
        else:
            backend = resolve_backend(base, self.backend)
            name = backend.name
        b_dtype = torch.float32 if name == "cuda" and base.dtype in _HALF else base.dtype
        ws = [None if w is None else _converted(w, base.device, base.dtype) for w in self.weights]
        bs = [None if b is None else _converted(b, base.device, b_dtype) for b in self.biases]
        return _Bound(_backend_call(backend, base, ws, bs, self.relu), ws, bs)

    def __repr__(self) -> str:
        return (f"PreparedExchange({len(self.weights)} lows, relu={self.relu}, backend={self.backend!r}, "
                f"bound for {sorted(str(k) for k in self._bound)})")


def _converted(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``t`` on ``device`` in ``dtype``, contiguous: ``t`` itself when it already is (no op dispatched)."""
    if t.device != device or t.dtype != dtype:
        t = t.to(device=device, dtype=dtype)
    return t if t.is_contiguous() else t.contiguous()


def _check_params(weights: Weights, biases: Weights) -> Tuple[List[Optional[torch.Tensor]], List[Optional[torch.Tensor]]]:
    """Validate prepare()'s weights and biases on their own (the inputs' shapes come with the first call):
    one entry per low, a (C, C_j) or (C, C_j, 1, 1) weight or None, a (C,) bias or None, one C for all.
    Returns lists, weights 2-d."""
    where = f"{_OP}.prepare"
    for arg, value in (("weights", weights), ("biases", [] if biases is None else biases)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: {arg} must be a list/tuple with one entry (tensor or None) per low input, "
                            f"got {type(value).__name__}")
        for j, t in enumerate(value):
            if t is not None and not (isinstance(t, torch.Tensor) and t.is_floating_point()):
                raise TypeError(f"{where}: {arg}[{j}] must be a floating-point tensor or None, got "
                                f"{getattr(t, 'dtype', type(t).__name__)}")
    n = len(weights)
    bs = [None] * n if biases is None else list(biases)
    if len(bs) != n:
        raise ValueError(f"{where}: biases must have one entry per weight: got {len(bs)} for {n} weights")
    for j, w in enumerate(weights):
        if w is not None and not (w.dim() == 2 or (w.dim() == 4 and tuple(w.shape[2:]) == (1, 1))):
            raise ValueError(f"{where}: weights[{j}] must have shape (C, C_j) or (C, C_j, 1, 1), got {tuple(w.shape)}")
        if bs[j] is not None and bs[j].dim() != 1:
            raise ValueError(f"{where}: biases[{j}] must have shape (C,), got {tuple(bs[j].shape)}")
    channels = {int(t.shape[0]) for t in list(weights) + bs if t is not None}
    if len(channels) > 1:
        raise ValueError(f"{where}: weights and biases disagree on the output channels C: {sorted(channels)}")
    return [w.reshape(w.shape[0], w.shape[1]) if w is not None and w.dim() == 4 else w for w in weights], bs


def prepare(weights: Weights, biases: Weights = None, relu: bool = True, backend: str = "auto") -> PreparedExchange:
    """:func:`fused_exchange` with fixed weights and biases, as a callable ``prepared(base, lows)``.

    ``weights``: one entry per low input, a (C, C_j) or (C, C_j, 1, 1) tensor or None (that low already has
    C channels); ``biases``: None or one (C,) tensor or None per low; ``relu`` and ``backend`` as in
    :func:`fused_exchange`. The weights may sit on any device and in any floating dtype: each (device,
    dtype) of the inputs gets its own converted copy, made on its first call (see
    :class:`PreparedExchange`). ``prepared(base, lows)`` returns what
    ``fused_exchange(base, lows, weights, biases, relu, backend)`` returns for the converted weights.

    This is the one call of the exchange op for code that runs it repeatedly: the model's fused exchange
    units, the frozen inference plan of :func:`hrnet_fast.optimize` and the ONNX plugin export.
    """
    return PreparedExchange(weights, biases, relu, backend)
