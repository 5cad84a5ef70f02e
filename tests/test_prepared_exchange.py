"""hrnet_fast.ops.fused_exchange.prepare: the one prepared call of the exchange op (the model's fused units, the
inference plan and the ONNX plugin export run it). It gives fused_exchange's result, binds the backend and the
converted weights once per (device, dtype), checks its arguments once per shape signature, stays
differentiable and traceable, and rejects bad arguments with errors that name them."""
from __future__ import annotations

import sys

import pytest
import torch

import hrnet_fast  # noqa: F401 - registers the ops
from _golden import assert_close_rel
from _support import needs_ext, needs_interp
from hrnet_fast.ops.fused_exchange import PreparedExchange, fused_exchange, prepare

fe = sys.modules["hrnet_fast.ops.fused_exchange"]  # the package attribute of that name is the function


def _inputs(n=2, dtype=torch.float32, seed=0, channels_last=False):
    """base (n, 8, 8, 12), lows at scales 2 and 4 (6 and 8 channels), weights (one 4-d), one bias."""
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    base = torch.randn(n, 8, 8, 12, generator=g).to(dtype).contiguous(memory_format=fmt)
    lows = [torch.randn(n, 6, 4, 6, generator=g).to(dtype).contiguous(memory_format=fmt),
            torch.randn(n, 8, 2, 3, generator=g).to(dtype).contiguous(memory_format=fmt)]
    weights = [torch.randn(8, 6, 1, 1, generator=g) / 3, torch.randn(8, 8, generator=g) / 3]
    biases = [torch.randn(8, generator=g), None]
    return base, lows, weights, biases


@pytest.mark.parametrize("backend", ["auto", "torch", pytest.param("cpp", marks=needs_ext),
                                     pytest.param("triton", marks=needs_interp)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_prepared_matches_fused_exchange(backend, channels_last):
    base, lows, weights, biases = _inputs(channels_last=channels_last)
    prepared = prepare(weights, biases, relu=True, backend=backend)
    for seed in (0, 1):  # the binding call, then a bound one
        base, lows, _, _ = _inputs(seed=seed, channels_last=channels_last)
        want = fused_exchange(base, lows, weights, biases, relu=True, backend=backend)
        got = prepared(base, lows)
        assert_close_rel(got, want, 0.0, f"prepared {backend}")
        assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert not prepare(weights, biases, relu=False, backend=backend)(base, lows).ge(0).all()  # relu=False kept


def test_binds_once_per_device_and_dtype_and_converts_the_weights():
    base, lows, weights, biases = _inputs()
    prepared = prepare([w.double() for w in weights], [None if b is None else b.double() for b in biases])
    assert_close_rel(prepared(base, lows), fused_exchange(base, lows, weights, biases), 1e-6, "float64 weights, float32 inputs")
    b64, l64 = base.double(), [t.double() for t in lows]
    assert_close_rel(prepared(b64, l64), fused_exchange(b64, l64, [w.double() for w in weights],
                                                        [None if b is None else b.double() for b in biases]), 0.0, "float64")
    assert sorted(str(k[1]) for k in prepared._bound) == ["torch.float32", "torch.float64"]
    bound = prepared._bound[(base.device, torch.float32)]
    assert all(w.dtype == torch.float32 and w.dim() == 2 and w.is_contiguous() for w in bound.weights)
    prepared(*_inputs(seed=3)[:2])
    assert prepared._bound[(base.device, torch.float32)] is bound  # not bound again


def test_sixteen_bit_cuda_binding_keeps_float32_biases(monkeypatch):
    # the cuda backend adds float32 biases into its float32 accumulator; the others take the inputs' dtype
    # (binding only: the kernels are not called here)
    base, _, weights, biases = _inputs(dtype=torch.float16)
    for name, want in (("cuda", torch.float32), ("triton", torch.float16), ("torch", torch.float16)):
        monkeypatch.setattr(fe, "resolve_backend", lambda b, backend="auto", name=name: fe.SUPPORT.backends[name])
        bound = prepare(weights, biases)._bind(base)
        assert bound.biases[0].dtype == want and bound.weights[0].dtype == torch.float16, name


def test_the_prepared_call_runs_the_resolved_backend_entry(monkeypatch):
    # the resolver returns a backend entry; the bound call is that entry's run, with the converted weights
    base, lows, weights, biases = _inputs()
    want = fused_exchange(base, lows, weights, biases, backend="torch")
    ran = []
    torch_entry = fe.SUPPORT.backends["torch"]
    entry = fe._backends.BackendSupport(run=lambda *a: ran.append(a) or torch_entry.run(*a), name="torch")
    monkeypatch.setattr(fe, "resolve_backend", lambda b, backend="auto": entry)
    prepared = prepare(weights, biases)
    assert_close_rel(prepared(base, lows), want, 0.0, "entry")
    prepared(base, lows)
    assert len(ran) == 2 and ran[0][0] is base and ran[0][4] is True


def test_arguments_are_checked_once_per_signature(monkeypatch):
    checks = []
    check = fe._check_args
    monkeypatch.setattr(fe, "_check_args", lambda *a: checks.append(1) or check(*a))
    base, lows, weights, biases = _inputs()
    prepared = prepare(weights, biases)
    prepared(base, lows)
    prepared(*_inputs(seed=1)[:2])
    assert len(checks) == 1
    prepared(*_inputs(n=3)[:2])  # another batch size: a new signature, checked once
    prepared(*_inputs(n=3, seed=1)[:2])
    assert len(checks) == 2
    # a low of another dtype with a shape seen before is still caught
    with pytest.raises(TypeError, match=r"lows\[1\] has dtype torch.float64"):
        prepared(base, [lows[0], lows[1].double()])


def test_bad_arguments_name_themselves():
    base, lows, weights, biases = _inputs()
    with pytest.raises(TypeError, match="weights must be a list/tuple"):
        prepare(weights[0])
    with pytest.raises(TypeError, match=r"weights\[1\] must be a floating-point tensor or None"):
        prepare([weights[0], "w"])
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(C, C_j\) or \(C, C_j, 1, 1\)"):
        prepare([torch.zeros(8, 6, 3, 3)])
    with pytest.raises(ValueError, match="biases must have one entry per weight: got 1 for 2"):
        prepare(weights, biases[:1])
    with pytest.raises(ValueError, match=r"disagree on the output channels C: \[7, 8\]"):
        prepare(weights, [torch.zeros(7), None])
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        prepare(weights, biases, backend="fastest")
    prepared = prepare(weights, biases)
    with pytest.raises(TypeError, match="base must be a torch.Tensor"):
        prepared("base", lows)
    with pytest.raises(TypeError, match="lows must be a list or tuple"):
        prepared(base, lows[0])
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(8, 5\)"):
        prepared(base, [lows[0][:, :5], lows[1]])
    with pytest.raises(ValueError, match="must have one entry"):
        prepared(base, lows[:1])
    assert_close_rel(prepared(base, lows), fused_exchange(base, lows, weights, biases), 0.0, "after the errors")


@needs_ext
def test_prepared_is_differentiable():
    base, lows, weights, biases = _inputs(dtype=torch.float64)
    weights = [w.double() for w in weights]
    biases = [None if b is None else b.double() for b in biases]

    def grads(run):
        leaves = [t.clone().requires_grad_(True) for t in [base, *lows, *weights, biases[0]]]
        out = run(leaves[0], leaves[1:3], leaves[3:5], [leaves[5], None])
        out.square().sum().backward()
        return [t.grad for t in leaves]

    want = grads(lambda b, l, w, bi: fused_exchange(b, l, w, bi))
    got = grads(lambda b, l, w, bi: prepare(w, bi)(b, l))
    for a, b in zip(got, want):
        assert_close_rel(a, b, 1e-12, "gradient")


@needs_ext
def test_prepared_traces_without_a_graph_break():
    base, lows, weights, biases = _inputs()
    prepared = prepare(weights, biases)
    compiled = torch.compile(lambda b, l: prepared(b, l), fullgraph=True, backend="aot_eager")
    assert_close_rel(compiled(base, lows), fused_exchange(base, lows, weights, biases), 1e-6, "compiled")
    assert prepared._bound == {} and prepared._checked == set()  # nothing cached while tracing


def test_prepared_exchange_is_what_prepare_returns():
    assert isinstance(prepare([None]), PreparedExchange)
