"""hrnet_fast.training.loss against the official losses (hrnet_fast.baselines.official_loss, lib/core/loss.py as
written): values and gradients equal to within 1e-12 in float64, the compute dtype, the errors."""
from __future__ import annotations

import pytest
import torch

from hrnet_fast.baselines import official_loss
from hrnet_fast.training.loss import JointsMSELoss, JointsOHKMMSELoss

K, H, W = 17, 16, 12


def _batch(b, dtype=torch.float64, seed=0):
    """Heatmap-like predictions and targets (B, K, H, W) and 0/1 weights (B, K, 1) with some zeros."""
    g = torch.Generator().manual_seed(seed + 100 * b)
    output = torch.randn(b, K, H, W, generator=g, dtype=torch.float64) * 0.3
    target = torch.rand(b, K, H, W, generator=g, dtype=torch.float64) ** 4
    weight = (torch.rand(b, K, 1, generator=g, dtype=torch.float64) > 0.3).to(torch.float64)
    return output.to(dtype), target.to(dtype), weight.to(dtype)


def _value_and_grad(loss_fn, output, target, weight):
    out = output.clone().requires_grad_(True)
    value = loss_fn(out, target, weight)
    (grad,) = torch.autograd.grad(value, out)
    return value.detach(), grad


def _close(a, b, tol=1e-12):
    return (a - b).abs().max().item() <= tol * max(b.abs().max().item(), 1e-30)


@pytest.mark.parametrize("b", [1, 3, 8])
@pytest.mark.parametrize("use_weight", [True, False])
@pytest.mark.parametrize("kind", ["mse", "ohkm"])
def test_equal_to_official_float64(kind, use_weight, b):
    output, target, weight = _batch(b)
    if kind == "mse":
        ours, ref = JointsMSELoss(use_weight), official_loss.JointsMSELoss(use_weight)
    else:
        ours, ref = JointsOHKMMSELoss(use_weight), official_loss.JointsOHKMMSELoss(use_weight)
        if b == 1 and not use_weight:
            # The official .squeeze() leaves a 1-d tensor for a batch of one and fails without weights; with
            # weights all 1 it computes the same unweighted loss (x * 1 is exact).
            with pytest.raises(IndexError):
                ref(output, target, weight)
            ref = official_loss.JointsOHKMMSELoss(True)
            weight = torch.ones_like(weight)
    v, g = _value_and_grad(ours, output, target, weight)
    v_ref, g_ref = _value_and_grad(ref, output, target, weight)
    assert v.dtype == torch.float64 and v.shape == ()
    assert _close(v, v_ref), (v.item(), v_ref.item())
    assert _close(g, g_ref)


def test_weights_and_mining_change_the_value():
    # guards the comparison above against a loss that ignores its weights or its topk
    output, target, weight = _batch(3)
    plain = JointsMSELoss(False)(output, target, weight)
    assert not torch.isclose(JointsMSELoss(True)(output, target, weight), plain)
    ohkm = JointsOHKMMSELoss(False)(output, target, weight)
    assert ohkm > plain  # the mean of the 8 hardest joints is above the mean of all 17
    assert torch.isclose(JointsOHKMMSELoss(False, topk=K)(output, target, weight), plain, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [JointsMSELoss, JointsOHKMMSELoss])
def test_16bit_output_computes_in_float32(cls, dtype):
    output, target, weight = _batch(4)
    low = output.to(dtype)
    v, g = _value_and_grad(cls(True), low, target.float(), weight.float())
    want = cls(True)(low.float(), target.float(), weight.float())
    assert v.dtype == torch.float32 and torch.equal(v, want)
    assert g.dtype == dtype and torch.isfinite(g).all()


def test_float64_output_stays_float64_under_autocast():
    output, target, weight = _batch(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = JointsMSELoss(True)(output, target.float(), weight.float())
    assert v.dtype == torch.float64
    # the float32 target and weights are widened, not the output narrowed
    assert _close(v, official_loss.JointsMSELoss(True)(output, target.float().double(), weight))


def test_weights_may_be_none_without_use_target_weight():
    output, target, _ = _batch(2)
    assert torch.isfinite(JointsMSELoss(False)(output, target, None))
    assert torch.isfinite(JointsOHKMMSELoss(False)(output, target, None))


def test_bad_input_names_the_argument():
    output, target, weight = _batch(2)
    with pytest.raises(ValueError, match="target must have the output's shape"):
        JointsMSELoss(True)(output, target[:, :5], weight)
    with pytest.raises(ValueError, match=r"target_weight must have shape \(B, K, 1\)"):
        JointsMSELoss(True)(output, target, weight[:1])
    with pytest.raises(ValueError, match="target_weight must have shape"):
        JointsMSELoss(True)(output, target, None)
    with pytest.raises(TypeError, match="output must be a floating-point tensor"):
        JointsMSELoss(True)(output.long(), target, weight)
    with pytest.raises(ValueError, match="topk=8 needs at least that many joints"):
        JointsOHKMMSELoss(True)(output[:, :5], target[:, :5], weight[:, :5])
    with pytest.raises(ValueError, match="topk must be a positive int"):
        JointsOHKMMSELoss(True, topk=0)
