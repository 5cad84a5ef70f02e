"""hrnet_fast.checks (behind `hrnet-fast check`): fused_exchange results are compared with a float64
reference, the tolerance follows the torch reference's own error in the tested dtype, and the fp32
reference runs without TF32 unless the user enabled TF32 for matrix products."""
import pytest
import torch

from hrnet_fast import checks

real_fused_exchange = checks.fused_exchange


def _tf32(t):
    """Round an fp32 tensor's mantissa to TF32's 10 bits (what a TF32 convolution reads)."""
    return (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32) if t.dtype == torch.float32 else t


@pytest.fixture
def exchange_only(monkeypatch):
    monkeypatch.setattr(checks, "CHECKS", [("fused_exchange", checks.check_exchange)])
    monkeypatch.setattr(checks, "KERNEL_BACKENDS", ("cpp",))


def test_fp32_is_judged_against_float64_not_a_tf32_reference(monkeypatch, exchange_only):
    """The H200 run: the torch reference ran TF32 convolutions, the kernels IEEE fp32, and `check` failed
    the kernels. Here the fp32 torch reference reads TF32-rounded lows and weights; cpp stays exact."""
    def fake(base, lows, weights, biases, relu=True, backend="auto"):
        if backend == "torch" and base.dtype == torch.float32:
            lows = [_tf32(t) for t in lows]
            weights = [None if w is None else _tf32(w) for w in weights]
        return real_fused_exchange(base, lows, weights, biases, relu=relu, backend=backend)

    monkeypatch.setattr(checks, "fused_exchange", fake)
    lines = []
    summary = checks.run_checks(torch.device("cpu"), report=lines.append)
    assert summary.failures == [] and summary.compared == 2, lines
    fp32 = next(line for line in lines if "cpp     float32" in line)
    err, ref = float(fp32.split("max rel err ")[1].split()[0]), float(fp32.split("torch reference ")[1].split()[0])
    assert err < 1e-6 < 1e-4 < ref, fp32  # the kernel is IEEE-exact; the TF32-like reference is not


def test_a_backend_less_accurate_than_the_reference_fails(monkeypatch, exchange_only):
    def fake(base, lows, weights, biases, relu=True, backend="auto"):
        if backend == "cpp" and base.dtype == torch.float32:  # a kernel that used TF32 without being allowed to
            lows = [_tf32(t) for t in lows]
            weights = [None if w is None else _tf32(w) for w in weights]
        return real_fused_exchange(base, lows, weights, biases, relu=relu, backend=backend)

    monkeypatch.setattr(checks, "fused_exchange", fake)
    lines = []
    summary = checks.run_checks(torch.device("cpu"), report=lines.append)
    assert len(summary.failures) == 1 and summary.failures[0].startswith("fused_exchange/cpp/torch.float32"), lines


@pytest.mark.parametrize("user_tf32", [False, True])
def test_reference_tf32_follows_the_matmul_setting_and_flags_are_restored(monkeypatch, exchange_only, user_tf32):
    seen = []

    def spy(base, lows, weights, biases, relu=True, backend="auto"):
        if backend == "torch" and base.dtype == torch.float32:
            seen.append(torch.backends.cudnn.allow_tf32)
        return real_fused_exchange(base, lows, weights, biases, relu=relu, backend=backend)

    monkeypatch.setattr(checks, "fused_exchange", spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # PyTorch's default
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if user_tf32 else "highest")
    try:
        lines = []
        checks.run_checks(torch.device("cpu"), report=lines.append)
    finally:
        torch.set_float32_matmul_precision(precision)
    assert seen == [user_tf32], seen
    assert torch.backends.cudnn.allow_tf32 is True
    assert ("TF32 allowed (enabled by the user)" if user_tf32 else "IEEE fp32, TF32 off") in lines[0]


def test_tolerance_is_a_multiple_of_the_reference_error_with_a_floor():
    assert checks.tolerance("fused_exchange", torch.float32, 0.0) == checks.FLOOR[torch.float32]
    assert checks.tolerance("fused_exchange", torch.float16, 1e-3) == pytest.approx(checks.REF_FACTOR * 1e-3)
    assert checks.tolerance("decode_heatmaps", torch.float16, None) == checks.DECODE_TOL[torch.float16]
