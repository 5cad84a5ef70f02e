"""hrnet_fast.checks (behind `hrnet-fast check`): every op of the registry is checked; fused_exchange results
are compared with a float64 reference, the tolerance follows the torch reference's own error in the tested dtype, and the fp32
reference runs without TF32 unless the user enabled TF32 for matrix products."""
import dataclasses

import pytest
import torch

from hrnet_fast import checks
from hrnet_fast.ops import OPS, Sample

EXCHANGE = OPS["fused_exchange"]
real_fused_exchange = EXCHANGE.public


def _tf32(t):
    """Round an fp32 tensor's mantissa to TF32's 10 bits (what a TF32 convolution reads)."""
    return (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32) if t.dtype == torch.float32 else t


def _exchange_only(monkeypatch, **replace):
    """Check only fused_exchange (its spec with ``replace``d fields) and only its cpp backend."""
    monkeypatch.setattr(checks, "KERNEL_BACKENDS", ("cpp",))
    return {"fused_exchange": dataclasses.replace(EXCHANGE, **replace)}


def test_fp32_is_judged_against_float64_not_a_tf32_reference(monkeypatch):
    """The H200 run: the torch reference ran TF32 convolutions, the kernels IEEE fp32, and `check` failed
    the kernels. Here the fp32 torch reference reads TF32-rounded lows and weights; cpp stays exact."""
    def fake(base, lows, weights, biases, relu=True):
        if base.dtype == torch.float32:
            lows = [_tf32(t) for t in lows]
            weights = [None if w is None else _tf32(w) for w in weights]
        return real_fused_exchange(base, lows, weights, biases, relu=relu, backend="torch")

    ops = _exchange_only(monkeypatch, reference=fake)
    lines = []
    summary = checks.run_checks(torch.device("cpu"), report=lines.append, ops=ops)
    assert summary.failures == [] and summary.compared == 2, lines
    fp32 = next(line for line in lines if "cpp     float32" in line)
    err, ref = float(fp32.split("max rel err ")[1].split()[0]), float(fp32.split("torch reference ")[1].split()[0])
    assert err < 1e-6 < 1e-4 < ref, fp32  # the kernel is IEEE-exact; the TF32-like reference is not


def test_a_backend_less_accurate_than_the_reference_fails(monkeypatch):
    def fake(base, lows, weights, biases, relu=True, backend="auto"):
        if backend == "cpp" and base.dtype == torch.float32:  # a kernel that used TF32 without being allowed to
            lows = [_tf32(t) for t in lows]
            weights = [None if w is None else _tf32(w) for w in weights]
        return real_fused_exchange(base, lows, weights, biases, relu=relu, backend=backend)

    ops = _exchange_only(monkeypatch, public=fake)
    lines = []
    summary = checks.run_checks(torch.device("cpu"), report=lines.append, ops=ops)
    assert len(summary.failures) == 1 and summary.failures[0].startswith("fused_exchange/cpp/torch.float32"), lines


@pytest.mark.parametrize("user_tf32", [False, True])
def test_reference_tf32_follows_the_matmul_setting_and_flags_are_restored(monkeypatch, user_tf32):
    seen = []

    def spy(base, lows, weights, biases, relu=True):
        if base.dtype == torch.float32:
            seen.append(torch.backends.cudnn.allow_tf32)
        return real_fused_exchange(base, lows, weights, biases, relu=relu, backend="torch")

    ops = _exchange_only(monkeypatch, reference=spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # PyTorch's default
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if user_tf32 else "highest")
    try:
        lines = []
        checks.run_checks(torch.device("cpu"), report=lines.append, ops=ops)
    finally:
        torch.set_float32_matmul_precision(precision)
    assert seen == [user_tf32], seen
    assert torch.backends.cudnn.allow_tf32 is True
    assert ("TF32 allowed (enabled by the user)" if user_tf32 else "IEEE fp32, TF32 off") in lines[0]


def test_tolerance_is_a_multiple_of_the_reference_error_with_a_floor():
    assert checks.tolerance("fused_exchange", torch.float32, 0.0) == EXCHANGE.tolerance[torch.float32]
    assert checks.tolerance("fused_exchange", torch.float16, 1e-3) == pytest.approx(EXCHANGE.ref_factor * 1e-3)
    decode = OPS["decode_heatmaps"]
    assert checks.tolerance(decode, torch.float16, None) == decode.tolerance[torch.float16]


def test_every_op_is_checked_and_the_summary_names_ops_and_backends():
    """`check` compared 2 of the 3 ops while saying every backend matched: it now runs every OPS entry, and
    its summary names what it compared (crop_boxes included)."""
    lines = []
    summary = checks.run_checks(torch.device("cpu"), report=lines.append)
    assert list(summary.ops) == list(OPS) and "crop_boxes" in summary.ops
    assert summary.failures == [], lines
    if checks.backends()["cpp"]["available"]:
        assert summary.ops["crop_boxes"]["cpp"] == ["float32", "float16", "bfloat16"]
        assert summary.ops["fused_exchange"]["cpp"] == ["float32", "float64"]  # the cpp table's dtypes
        assert "crop_boxes: cpp (float32, float16, bfloat16)" in summary.describe()
        assert any(line.startswith("  crop_boxes       cpp     float16   ok") for line in lines), lines


def test_an_op_added_to_the_registry_is_checked(monkeypatch):
    """A new OPS entry is checked without touching checks.py: a stand-in op whose cpp backend is off by 1%
    in float32 fails, float16 passes."""
    def samples(device, dtype):
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
        return [Sample("one", (x,), {})]

    def public(x, backend="auto"):
        return x * 1.01 if backend == "cpp" and x.dtype == torch.float32 else x.clone()

    toy = dataclasses.replace(OPS["crop_boxes"], name="toy", public=public, reference=lambda x: x.clone(),
                              samples=samples, tolerance={torch.float32: 1e-5, torch.float16: 1e-3})
    if not checks.backends()["cpp"]["available"]:
        pytest.skip("no cpp backend here")
    monkeypatch.setattr(checks, "KERNEL_BACKENDS", ("cpp",))
    lines = []
    summary = checks.run_checks(torch.device("cpu"), report=lines.append, ops={"toy": toy})
    assert summary.compared == 2 and summary.ops == {"toy": {"cpp": ["float32", "float16"]}}
    assert summary.failures == ["toy/cpp/torch.float32: max rel err 1.00e-02 > 1.0e-05"], lines
