"""hrnet_fast.ops.fused_exchange: every backend against the torch reference, autograd, registration, errors.

CPU runs cover torch, cpp and triton (under TRITON_INTERPRET=1, set by conftest.py; small shapes, the
interpreter is slow). cuda and triton on CUDA tensors are gpu-marked and skipped without a GPU.
Outputs are poisoned with NaN before every compiled kernel runs (HRNET_FAST_POISON_OUTPUTS=1), so an
element a kernel fails to write fails the comparison. The contract every op keeps (opcheck of the forward
and backward ops, the poison hook itself, int64 offsets, the sm_90 compile of the Triton kernels) is tested
for all ops in test_op_contract.py.
"""
from __future__ import annotations

import pytest
import torch

from hrnet_fast import _backends
from hrnet_fast.ops import OPS, fused_exchange, fused_exchange_reference
from hrnet_fast.ops.fused_exchange import resolve_backend

from _golden import assert_close_rel
from _op_inputs import make_inputs, with_fp32_params
from _support import HAS_EXT, needs_ext, needs_interp

fe = OPS["fused_exchange"].module  # the op's module (hrnet_fast.ops.fused_exchange is the op)

# (dtype, relative tolerance on the max error / max magnitude)
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}


pytestmark = pytest.mark.usefixtures("poison_outputs")


def grads(fn, base, lows, weights, biases, relu, seed=1, upstream=None):
    """Output and the gradients of (out * R).sum() w.r.t. base, lows, weights, biases (leaves); R is seeded
    random (rounded to out's dtype), or ``upstream`` when given."""
    leaves = [t.detach().clone().requires_grad_(True) for t in [base, *lows]]
    ws = [None if t is None else t.detach().clone().requires_grad_(True) for t in weights]
    bs = [None if t is None else t.detach().clone().requires_grad_(True) for t in biases]
    out = fn(leaves[0], leaves[1:], ws, bs, relu)
    r = upstream
    if r is None:
        r = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(out)
    (out * r).sum().backward()
    named = [("base", leaves[0])] + [(f"lows[{j}]", t) for j, t in enumerate(leaves[1:])]
    named += [(f"weights[{j}]", t) for j, t in enumerate(ws) if t is not None]
    named += [(f"biases[{j}]", t) for j, t in enumerate(bs) if t is not None]
    return out.detach(), [(k, t.grad) for k, t in named]


# Cases: (N, C, H, W, specs). W48-like channel counts (48/96/192) for the fast backends; smaller ones for
# the interpreter. Odd counts (3, 5, 40) exercise the masks; s up to 8.
CASES_FULL = {
    "w48_branch0": (2, 48, 16, 12, [(96, 2, True), (192, 4, True), (None, 4, False)]),
    "odd_channels": (1, 5, 8, 16, [(3, 2, True), (None, 8, True)]),
    "no_bias_s8": (2, 16, 16, 8, [(40, 8, False)]),
}
CASES_SMALL = {
    "mixed": (2, 24, 8, 12, [(40, 2, True), (None, 4, False)]),
    "odd_channels": (1, 5, 8, 8, [(3, 2, True), (17, 8, False)]),
}


def _run(backend):
    return lambda b, l, w, bi, relu: fused_exchange(b, l, w, bi, relu=relu, backend=backend)


def _ref(b, l, w, bi, relu):
    return fused_exchange_reference(b, l, w, bi, relu=relu)


def _double(inputs):
    base, lows, weights, biases = inputs
    return [base.double(), [t.double() for t in lows], [None if t is None else t.double() for t in weights],
            [None if t is None else t.double() for t in biases]]


def reference_grads_given_output(out, inputs, relu, seed=1):
    """The reference backward in float64 with the ReLU mask taken from ``out`` (the backend's own output):
    gradients of (out * R).sum() through the linear part of the unit, the same R as :func:`grads`.

    A 16-bit forward can land on the other side of zero where the exact output is within rounding of it,
    and the gradient there differs by the whole incoming value; that is the forward's rounding, which
    the forward check measures. Given the same output, the backward must match the reference closely."""
    leaves_in = _double(inputs)
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(out)
    g = r.double()
    if relu:
        g = torch.where(out.double() <= 0, torch.zeros_like(g), g)  # NaN passes, as torch's ReLU backward
    _, rg = grads(lambda b, l, w, bi, _relu: _ref(b, l, w, bi, False), *leaves_in, False, upstream=g)
    return rg


def check_against_reference(backend, device, dtype, channels_last, case, relu=True, fp32_params=False):
    n, c, h, w, specs = case
    inputs = make_inputs(n, c, h, w, specs, dtype=dtype, device=device, channels_last=channels_last)
    if fp32_params:
        inputs = with_fp32_params(inputs)
    out, g = grads(_run(backend), *inputs, relu)
    # The reference in float64 (same inputs): the spec, with no rounding of its own to blur the check.
    ref, _ = grads(_ref, *_double(inputs), relu)
    tol = TOL[dtype]
    assert out.dtype == dtype and out.device.type == torch.device(device).type
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last), "channels_last in, channels_last out"
    assert_close_rel(out, ref, tol, f"{backend} output")
    for (name, a), (_, b) in zip(g, reference_grads_given_output(out, inputs, relu)):
        assert_close_rel(a, b, tol * 4, f"{backend} grad {name}")  # backward sums s*s or C_j terms more


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", list(CASES_FULL), ids=list(CASES_FULL))
def test_cpp_matches_reference(dtype, channels_last, case):
    check_against_reference("cpp", "cpu", dtype, channels_last, CASES_FULL[case])


@needs_ext
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_cpp_without_relu(channels_last):
    check_against_reference("cpp", "cpu", torch.float32, channels_last, CASES_FULL["w48_branch0"], relu=False)


@needs_interp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", list(CASES_SMALL), ids=list(CASES_SMALL))
def test_triton_interpreter_matches_reference(dtype, channels_last, case):
    check_against_reference("triton", "cpu", dtype, channels_last, CASES_SMALL[case])


@needs_ext
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_cpp_more_lows_than_one_pass(channels_last, relu):
    # 5 lows > 3 (the kernels' single-pass limit): the extra ones are added before the ReLU
    case = (2, 8, 32, 32, [(16, 2, True), (None, 4, False), (12, 8, True), (None, 16, True), (4, 32, False)])
    check_against_reference("cpp", "cpu", torch.float32, channels_last, case, relu=relu)


@needs_interp
def test_triton_interpreter_more_lows_than_one_launch():
    # 4 lows > MAX_LOWS (3): launches chain, the ReLU only on the last
    case = (1, 16, 16, 16, [(16, 2, True), (None, 4, False), (32, 8, True), (None, 16, True)])
    check_against_reference("triton", "cpu", torch.float32, False, case)


@needs_interp
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("relu", [True, False])
def test_triton_interpreter_many_lows_odd_channels(dtype, channels_last, relu):
    # 5 lows: two chained upsample-and-sum passes (through the fp32 partial sum for fp16), odd channel
    # counts everywhere, lows with and without a weight or a bias, scales 2 to 16
    case = (1, 5, 16, 16, [(3, 2, True), (None, 4, False), (7, 8, True), (None, 16, True), (17, 2, False)])
    check_against_reference("triton", "cpu", dtype, channels_last, case, relu=relu)


def check_fp32_weights_beside_16bit(device, dtype, channels_last):
    """The launcher takes float32 weights and biases (prepared once) beside 16-bit activations: each weight
    tile is cast to the activations' dtype for tl.dot, so the output is that of the weights converted
    beforehand, bit for bit; biases are added in fp32."""
    kern = _backends.triton_kernels("fused_exchange")
    n, c, h, w, specs = (2, 5, 8, 8, [(3, 2, True), (17, 4, True), (None, 8, True)])
    base, lows, ws, bs = make_inputs(n, c, h, w, specs, device=device, channels_last=channels_last, seed=5)
    base16, lows16 = base.to(dtype), [t.to(dtype) for t in lows]
    ws32 = [ws[0].view(c, 3, 1, 1), ws[1], None]  # (C, C_j, 1, 1) weights as the op accepts them too
    out = kern.forward(base16, lows16, ws32, bs, True)
    ws16 = [None if t is None else t.to(dtype) for t in ws]
    assert torch.equal(out, kern.forward(base16, lows16, ws16, bs, True))
    assert out.dtype == dtype and (not channels_last or out.is_contiguous(memory_format=torch.channels_last))
    ref = fused_exchange_reference(base16.double(), [t.double() for t in lows16],
                                   [None if t is None else t.double() for t in ws16], [t.double() for t in bs])
    assert_close_rel(out, ref, TOL[dtype], f"fp32 weights, {dtype} activations")


@needs_interp
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_triton_fp32_weights_beside_fp16_activations(channels_last):
    check_fp32_weights_beside_16bit("cpu", torch.float16, channels_last)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_gpu_triton_fp32_weights_beside_16bit_activations(dtype, channels_last):
    check_fp32_weights_beside_16bit("cuda", dtype, channels_last)


@needs_interp
def test_triton_fp32_dot_is_ieee_unless_tf32_is_allowed(monkeypatch):
    # tl.dot's input precision follows torch's TF32 matmul setting for float32 (the interpreter computes
    # in full precision either way, so the flag the GEMM launch gets is what is checked)
    mod = _backends.triton_kernels("fused_exchange")
    seen = []

    class _Recording:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            def run(*args, **kwargs):
                seen.append(kwargs["PRECISION"])
                return self.kernel[grid](*args, **kwargs)
            return run

    monkeypatch.setattr(mod, "_conv1x1_kernel", _Recording(mod._conv1x1_kernel))
    base, lows, ws, bs = make_inputs(1, 16, 4, 4, [(16, 2, True)])
    before = torch.get_float32_matmul_precision()
    try:
        for precision in ("highest", "high"):
            torch.set_float32_matmul_precision(precision)
            fused_exchange(base, lows, ws, bs, backend="triton")
        fused_exchange(*make_inputs(1, 16, 4, 4, [(16, 2, True)], dtype=torch.float16), backend="triton")
    finally:
        torch.set_float32_matmul_precision(before)
    assert seen == ["ieee", "tf32", "tf32"]  # 16-bit inputs multiply exactly either way


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=needs_interp)])
def test_low_without_input_channels(backend):
    # a weighted low with C_j = 0 contributes only its bias (no GEMM is launched on empty tensors)
    g = torch.Generator().manual_seed(7)
    base = torch.randn(2, 16, 4, 4, generator=g)
    low, w, b = torch.empty(2, 0, 2, 2), torch.empty(16, 0), torch.randn(16, generator=g)
    low2 = torch.randn(2, 16, 2, 2, generator=g)
    out = fused_exchange(base, [low, low], [w, w], [b, None], backend=backend)
    assert_close_rel(out, torch.relu(base + b.view(1, -1, 1, 1)), 1e-6, f"{backend} C_j = 0")
    out = fused_exchange(base, [low, low2], [w, None], [None, b], relu=False, backend=backend)
    up = low2.repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert_close_rel(out, base + up + b.view(1, -1, 1, 1), 1e-6, f"{backend} C_j = 0 beside a low")


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_torch_backend_is_the_reference(channels_last):
    n, c, h, w, specs = CASES_FULL["w48_branch0"]
    inputs = make_inputs(n, c, h, w, specs, channels_last=channels_last)
    assert torch.equal(fused_exchange(*inputs, backend="torch"), fused_exchange_reference(*inputs))
    check_against_reference("torch", "cpu", torch.float32, channels_last, CASES_FULL["w48_branch0"])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("case", list(CASES_FULL), ids=list(CASES_FULL))
def test_gpu_matches_reference(backend, dtype, channels_last, case):
    check_against_reference(backend, "cuda", dtype, channels_last, CASES_FULL[case])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_many_lows_and_relu_off(backend):
    case = (2, 32, 32, 64, [(16, 2, True), (None, 4, False), (64, 8, True), (None, 16, True), (8, 32, False)])
    check_against_reference(backend, "cuda", torch.float32, False, case, relu=False)
    check_against_reference(backend, "cuda", torch.float16, True, case)


@pytest.mark.parametrize("backend", [
    "torch",
    pytest.param("cpp", marks=needs_ext),
    pytest.param("triton", marks=needs_interp),
])
def test_edge_shapes(backend):
    # empty batch, no lows at all, non-dense strides (a transposed-then-sliced view)
    base, lows, ws, bs = make_inputs(0, 8, 8, 8, [(16, 2, True)])
    out = fused_exchange(base, lows, ws, bs, backend=backend)
    assert out.shape == (0, 8, 8, 8)
    base = torch.randn(2, 8, 4, 4)
    assert torch.equal(fused_exchange(base, [], backend=backend), torch.relu(base))
    assert torch.equal(fused_exchange(base, [], relu=False, backend=backend), base)
    big, lows, ws, bs = make_inputs(2, 8, 16, 16, [(16, 2, True)], seed=3)
    strided = big.transpose(2, 3)[:, :, :, :]  # neither NCHW- nor NHWC-dense
    low_strided = lows[0].transpose(2, 3)
    got = fused_exchange(strided, [low_strided], ws, bs, backend=backend)
    want = fused_exchange_reference(strided, [low_strided], ws, bs)
    assert_close_rel(got, want, 1e-5, f"{backend} strided")


@needs_ext
def test_cpp_gradcheck_float64():
    base, lows, ws, bs = make_inputs(1, 3, 4, 8, [(5, 2, True), (None, 4, True)], dtype=torch.float64)
    # keep the ReLU kinks away from the finite-difference steps
    base = base + torch.where(base >= 0, 0.5, -0.5).double()
    leaves = [base, *lows, ws[0], bs[0], bs[1]]
    for t in leaves:
        t.requires_grad_(True)

    def fn(b, l0, l1, w0, b0, b1):
        return fused_exchange(b, [l0, l1], [w0, None], [b0, b1], backend="cpp")

    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-8)
    # and the channels_last path
    cl = [t.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True) if t.dim() == 4
          else t.detach().requires_grad_(True) for t in leaves]
    assert torch.autograd.gradcheck(fn, tuple(cl), eps=1e-6, atol=1e-8)


def test_torch_gradcheck_float64():
    base, lows, ws, bs = make_inputs(1, 3, 4, 4, [(5, 2, True)], dtype=torch.float64)
    base = base + torch.where(base >= 0, 0.5, -0.5).double()
    leaves = [t.requires_grad_(True) for t in (base, lows[0], ws[0], bs[0])]
    assert torch.autograd.gradcheck(
        lambda b, l, w, bi: fused_exchange(b, [l], [w], [bi], backend="torch"), tuple(leaves), eps=1e-6, atol=1e-8)


@needs_ext
def test_compile_op_fullgraph():
    base, lows, ws, bs = make_inputs(2, 8, 8, 8, [(16, 2, True), (None, 4, False)])
    leaves = [base.requires_grad_(True), lows[0].requires_grad_(True), ws[0].requires_grad_(True)]
    fn = torch.compile(lambda b, l0, l1, w: fused_exchange(b, [l0, l1], [w, None], bs, backend="cpp"),
                       fullgraph=True, backend="aot_eager")
    out = fn(base, lows[0], lows[1], ws[0])
    ref = fused_exchange_reference(base, lows, ws, bs)
    assert_close_rel(out, ref, 1e-5, "compiled output")
    g = torch.autograd.grad(out.sum(), leaves)
    rg = torch.autograd.grad(ref.sum(), leaves)
    for a, b in zip(g, rg):
        assert_close_rel(a, b, 1e-5, "compiled grad")


def test_auto_backend_selection():
    x32 = torch.randn(1, 4, 4, 4)
    assert resolve_backend(x32, "auto").name == ("cpp" if HAS_EXT else "torch")
    assert resolve_backend(x32.half(), "auto").name == "torch"  # no CPU fp16 kernel: the reference
    if HAS_EXT:
        with pytest.raises(RuntimeError, match="cpp.*float16"):
            fused_exchange(x32.half(), [], backend="cpp")
    with pytest.raises(RuntimeError, match="cuda runs on CUDA tensors|built without CUDA|not be imported"):
        fused_exchange(x32, [], backend="cuda")
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        fused_exchange(x32, [], backend="fast")


@pytest.fixture
def _fresh_resolver():
    """Forget cached backend choices before and after a test that fakes the machine."""
    _backends.clear_cache()
    yield
    _backends.clear_cache()


def test_triton_bfloat16_needs_sm80(monkeypatch):
    # tl.dot has no bfloat16 tensor-core path before sm_80: the table says so for a fake T4 (sm_75)
    reasons = fe.SUPPORT.backends["triton"].reasons
    asked = []

    def capability(device=None):
        asked.append(device)
        return caps[0]

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    gpu = torch.device("cuda", 1)
    caps = [(7, 5)]
    (why,) = reasons(gpu, torch.bfloat16)
    assert "bfloat16" in why and "sm_80" in why and "sm_75" in why
    assert asked == [gpu]  # the tensors' GPU, not the current one
    assert reasons(gpu, torch.float16) == [] and reasons(gpu, torch.float32) == []
    for caps[0] in [(8, 0), (9, 0), (10, 0)]:
        assert reasons(gpu, torch.bfloat16) == []
    assert reasons(torch.device("cpu"), torch.bfloat16) == []  # the interpreter's own rule is elsewhere
    assert len(asked) == 4  # float16/float32 and CPU tensors never query a GPU


@needs_ext
def test_auto_takes_cuda_then_triton_and_no_triton_bfloat16_on_a_t4(monkeypatch, _fresh_resolver):
    # A fake CUDA machine (every backend available, sm_75): auto takes cuda first (until a GPU
    # measurement says otherwise); with cuda gone it takes triton for float16 but not for bfloat16.
    status = {name: {"available": True, "reason": "fake"} for name in _backends.BACKENDS}
    monkeypatch.setattr(_backends, "backends", lambda: status)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    gpu = torch.device("cuda", 0)
    assert fe.SUPPORT.order["cuda"] == ("cuda", "triton", "torch")
    assert _backends.resolve(fe.SUPPORT, "auto", gpu, torch.bfloat16).name == "cuda"
    assert _backends.resolve(fe.SUPPORT, "auto", gpu, torch.float16).name == "cuda"
    with pytest.raises(RuntimeError, match=r"backend 'triton' cannot run these inputs: .*bfloat16 before sm_80"):
        _backends.resolve(fe.SUPPORT, "triton", gpu, torch.bfloat16)
    status["cuda"] = {"available": False, "reason": "fake: no CUDA kernels"}
    _backends.clear_cache()
    assert _backends.resolve(fe.SUPPORT, "auto", gpu, torch.float16).name == "triton"
    assert _backends.resolve(fe.SUPPORT, "auto", gpu, torch.bfloat16).name == "torch"


# ----------------------------------------------------------------------------------------------------
# float32 weights and biases beside 16-bit inputs (the inference plan prepares float32 biases for the
# 16-bit cuda backend, which then converts nothing per call)

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_fp32_params_are_the_rounded_ones(dtype):
    # The reference uses a float32 weight or bias rounded to the inputs' dtype: widened 16-bit parameters
    # give exactly the 16-bit result and gradients (the parameters' gradients come back as float32).
    inputs = make_inputs(2, 8, 8, 8, [(4, 2, True), (None, 4, True)], dtype=dtype, seed=5)
    out16, g16 = grads(_run("torch"), *inputs, True)
    out32, g32 = grads(_run("torch"), *with_fp32_params(inputs), True)
    assert out32.dtype == dtype and torch.equal(out32, out16)
    for (name, a), (_, b) in zip(g32, g16):
        want = torch.float32 if name.startswith(("weights", "biases")) else dtype
        assert a.dtype == want, name
        assert torch.equal(a, b.to(want)), name


def test_fp32_params_only_beside_16_bit_inputs():
    inputs = make_inputs(2, 8, 8, 8, [(4, 2, True)], dtype=torch.float16)
    base, lows, ws, bs = inputs
    with pytest.raises(TypeError, match=r"weights\[0\] has dtype torch.float64 but base has dtype torch.float16"):
        fused_exchange(base, lows, [ws[0].double()], bs, backend="torch")
    with pytest.raises(TypeError, match=r"biases\[0\] has dtype torch.bfloat16 but base has dtype torch.float16"):
        fused_exchange(base, lows, ws, [bs[0].bfloat16()], backend="torch")
    b64, l64, w64, bb64 = _double(inputs)
    with pytest.raises(TypeError, match=r"weights\[0\] has dtype torch.float32 but base has dtype torch.float64"):
        fused_exchange(b64, l64, [w64[0].float()], bb64, backend="torch")
    with pytest.raises(TypeError, match=r"lows\[0\] has dtype torch.float32"):  # activations stay one dtype
        fused_exchange(base, [lows[0].float()], ws, bs, backend="torch")


@needs_ext
def test_cpp_checks_accept_fp32_params_beside_16_bit_inputs():
    base, lows, ws, bs = make_inputs(2, 8, 8, 8, [(4, 2, True)], dtype=torch.float16)
    w32, b32 = ws[0].float(), bs[0].float()
    # The op's argument checks pass; what stops the CPU op is its own kernel's dtype (no 16-bit CPU kernel).
    with pytest.raises(RuntimeError, match=r"cpp backend\): base must be float32 or float64, got Half"):
        torch.ops.hrnet_fast.fused_exchange(base, lows, [w32], [b32], True)
    with pytest.raises(RuntimeError, match=r"weights\[0\] has dtype Float but base has dtype Double"):
        torch.ops.hrnet_fast.fused_exchange(base.double(), [lows[0].double()], [w32], [b32.double()], True)
    with pytest.raises(RuntimeError, match=r"biases\[0\] has dtype Half but base has dtype BFloat16"):
        torch.ops.hrnet_fast.fused_exchange(base.bfloat16(), [lows[0].bfloat16()], [w32], [bs[0]], True)
    # the fake (meta) kernel accepts what the op accepts
    meta = [t.to("meta") for t in (base, lows[0], w32, b32)]
    out = torch.ops.hrnet_fast.fused_exchange(meta[0], [meta[1]], [meta[2]], [meta[3]], True)
    assert out.shape == base.shape and out.dtype == torch.float16 and out.device.type == "meta"


@needs_interp
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_triton_interpreter_fp32_params_beside_fp16(channels_last):
    check_against_reference("triton", "cpu", torch.float16, channels_last, CASES_SMALL["mixed"], fp32_params=True)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_gpu_fp32_params_match_reference(backend, dtype, channels_last):
    check_against_reference(backend, "cuda", dtype, channels_last, CASES_FULL["w48_branch0"], fp32_params=True)
    check_against_reference(backend, "cuda", dtype, channels_last, CASES_FULL["odd_channels"], fp32_params=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_gpu_cuda_prepared_call_converts_nothing(monkeypatch, dtype, channels_last):
    # 16-bit activations and weights, float32 biases (what the inference plan prepares): the cuda backend
    # runs one cuBLAS GEMM per low (16-bit in, float32 out) and its forward kernel; no ATen kernel
    # (conversion, copy, fill, bias add) launches per call.
    monkeypatch.delenv("HRNET_FAST_POISON_OUTPUTS")  # the poison fill is an ATen kernel of its own
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    base, lows, ws, bs = make_inputs(4, 48, 32, 24, [(96, 2, True), (192, 4, True), (384, 8, False)], dtype=dtype,
                                     device="cuda", channels_last=channels_last)
    bs = [None if b is None else b.float() for b in bs]
    fused_exchange(base, lows, ws, bs, backend="cuda")  # warm up (cuBLAS handle and workspace)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        out = fused_exchange(base, lows, ws, bs, backend="cuda")
        torch.cuda.synchronize()
    kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert sum("exchange_forward_kernel" in k for k in kernels) == 1, kernels
    assert not [k for k in kernels if "at::native" in k], kernels
    ref = fused_exchange_reference(*_double((base, lows, ws, bs)))
    assert_close_rel(out, ref, TOL[dtype], "prepared cuda call")


# ----------------------------------------------------------------------------------------------------
# Bad input: the Python checks (every backend), then the C++ checks reached directly.

def _bad_cases():
    def inputs(**kw):
        base = torch.randn(2, 8, 8, 8)
        low = torch.randn(2, 4, 4, 4)
        w = torch.randn(8, 4)
        b = torch.randn(8)
        d = dict(base=base, lows=[low], weights=[w], biases=[b])
        d.update(kw)
        return d

    return {
        "batch": (inputs(lows=[torch.randn(3, 4, 4, 4)]), ValueError, r"lows\[0\] has batch size 3 but base has 2"),
        "channels_no_weight": (inputs(weights=[None]), ValueError, r"lows\[0\] has 4 channels but base has 8"),
        "not_multiple": (inputs(lows=[torch.randn(2, 4, 3, 3)]), ValueError, r"lows\[0\] spatial size 3x3"),
        "not_pow2": (inputs(base=torch.randn(2, 8, 12, 12), lows=[torch.randn(2, 4, 4, 4)]), ValueError,
                     r"power of two >= 2, got 3"),
        "scale_1": (inputs(lows=[torch.randn(2, 4, 8, 8)]), ValueError, r"power of two >= 2, got 1"),
        "anisotropic": (inputs(lows=[torch.randn(2, 4, 4, 2)]), ValueError, r"same factor in height and width"),
        "dtype": (inputs(lows=[torch.randn(2, 4, 4, 4, dtype=torch.float64)]), TypeError,
                  r"lows\[0\] has dtype torch.float64 but base has dtype torch.float32"),
        "device": (inputs(lows=[torch.randn(2, 4, 4, 4, device="meta")]), RuntimeError, r"lows\[0\] is on meta"),
        "weight_shape": (inputs(weights=[torch.randn(8, 5)]), ValueError,
                         r"weights\[0\] must have shape \(8, 4\) or \(8, 4, 1, 1\), got \(8, 5\)"),
        "weight_dtype": (inputs(weights=[torch.randn(8, 4, dtype=torch.float64)]), TypeError, r"weights\[0\] has dtype"),
        "bias_shape": (inputs(biases=[torch.randn(4)]), ValueError, r"biases\[0\] must have shape \(8,\)"),
        "weights_count": (inputs(weights=[None, None]), ValueError, r"weights must have one entry .* got 2 for 1"),
        "base_rank": (inputs(base=torch.randn(8, 8, 8)), ValueError, r"base must have shape \(N, C, H, W\)"),
        "lows_tensor": (inputs(lows=torch.randn(2, 4, 4, 4)), TypeError, r"lows must be a list or tuple"),
        "base_int": (inputs(base=torch.ones(2, 8, 8, 8, dtype=torch.int64)), TypeError, r"floating-point"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("backend", [
    "torch",
    pytest.param("cpp", marks=needs_ext),
    pytest.param("triton", marks=needs_interp),
])
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_python(backend, case):
    kwargs, exc, match = BAD[case]
    with pytest.raises(exc, match=match):
        fused_exchange(**kwargs, backend=backend)


# What the C++ op itself says (TORCH_CHECK prints sizes as [8, 5] and dtypes as Float/Double). The "device"
# case reaches the fake (meta) kernel, which the dispatcher picks for the meta tensor: the Python message.
CPP_MESSAGES = {
    "batch": r"lows\[0\] has batch size 3 but base has 2",
    "channels_no_weight": r"lows\[0\] has 4 channels but base has 8",
    "not_multiple": r"lows\[0\] spatial size 3x3",
    "not_pow2": r"power of two >= 2, got 3",
    "scale_1": r"power of two >= 2, got 1",
    "anisotropic": r"same factor in height and width",
    "dtype": r"lows\[0\] has dtype Double but base has dtype Float",
    "device": r"lows\[0\] is on meta",
    "weight_shape": r"weights\[0\] must have shape \(8, 4\) or \(8, 4, 1, 1\), got \[8, 5\]",
    "weight_dtype": r"weights\[0\] has dtype Double",
    "bias_shape": r"biases\[0\] must have shape \(8\), got \[4\]",
    "base_rank": r"base must have shape \(N, C, H, W\)",
    "base_int": r"base must be a floating-point tensor, got Long",
}


@needs_ext
@pytest.mark.parametrize("case", list(CPP_MESSAGES), ids=list(CPP_MESSAGES))
def test_bad_input_cpp_checks(case):
    # The op checks again when called directly, bypassing the Python wrapper.
    kwargs, _, _ = BAD[case]
    base = kwargs["base"]
    empty = base.new_empty((0,))
    ws = [empty if w is None else w for w in kwargs["weights"]]
    bs = [empty if b is None else b for b in kwargs["biases"]]
    exc = RuntimeError if case != "device" else (RuntimeError, TypeError, ValueError)
    with pytest.raises(exc, match=CPP_MESSAGES[case]):
        torch.ops.hrnet_fast.fused_exchange(base, kwargs["lows"], ws, bs, True)


@needs_ext
def test_bad_input_cpp_backward_and_dtype():
    out = torch.randn(2, 8, 8, 8)
    with pytest.raises(RuntimeError, match="grad_out has shape"):
        torch.ops.hrnet_fast.fused_exchange_backward(torch.randn(2, 8, 8, 4), out, [torch.randn(2, 8, 4, 4)], True)
    with pytest.raises(RuntimeError, match="power of two"):
        torch.ops.hrnet_fast.fused_exchange_backward(torch.randn_like(out), out, [torch.randn(2, 8, 8, 8)], True)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.hrnet_fast.fused_exchange(out.half(), [], [], [], True)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("case", ["batch", "not_pow2", "dtype", "weight_shape", "bias_shape", "anisotropic"])
def test_bad_input_gpu(backend, case):
    kwargs, exc, match = BAD[case]
    moved = {k: (v.cuda() if isinstance(v, torch.Tensor) else [None if t is None else t.cuda() for t in v])
             for k, v in kwargs.items()}
    with pytest.raises(exc, match=match):
        fused_exchange(**moved, backend=backend)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_mixed_devices_gpu(backend):
    base = torch.randn(2, 8, 8, 8, device="cuda")
    with pytest.raises(RuntimeError, match=r"lows\[0\] is on cpu but base is on cuda"):
        fused_exchange(base, [torch.randn(2, 8, 4, 4)], backend=backend)
    with pytest.raises(RuntimeError, match=r"weights\[0\] is on cpu"):
        fused_exchange(base, [torch.randn(2, 4, 4, 4, device="cuda")], [torch.randn(8, 4)], backend=backend)


