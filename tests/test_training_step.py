"""One training step of pose_hrnet with the fused exchange against the official op order (``fused=False``):
official init, the same batch, the official JointsMSELoss, Adam (issue 21, tests 4 and 8).

- float64: loss, gradients and BatchNorm buffers within 1e-10 of ``fused=False`` (measured ~3e-14), and the
  Adam update within 1e-7 of its step size.
- float32: per tensor, the fused model's error against the float64 step is within 4x the official fp32 error.
  Train-mode BatchNorm backward is ill-conditioned: the official fp32 gradients are up to ~1e-1 off float64
  (median ~2e-3), and how far off one tensor is depends on the rounding itself: moving the official step's input
  by one ulp changed single tensors' errors by up to 6563x (W32 64x64) and 120x (W32 256x192) in our runs. So
  "the official fp32 error" of a tensor is the larger of two official fp32 steps, on the input and on the
  input moved by one ulp (measured: the fused step's worst ratio to it 1.1-1.3; to the first step alone up to
  4.3 on the tiny model and 59 on W32 256x192, where the second official step reached 120).
- AMP: a CPU bf16 autocast step is finite and its loss within 2e-2 of fp32; fp16 + GradScaler on a GPU.

W32 runs at 64x64 (every branch keeps >= 2x2 pixels), batch 2, to stay within seconds on 2 cores.
"""
from __future__ import annotations

import os

import pytest
import torch

import hrnet_fast
from hrnet_fast._numerics import max_rel_err
from hrnet_fast.baselines.official_loss import JointsMSELoss as OfficialJointsMSELoss
from hrnet_fast.models.init import official_init
from hrnet_fast.training.loss import JointsMSELoss

from _support import DATA, needs_ext

TINY = os.path.join(DATA, "tiny_hrnet.yaml")
CASES = {"tiny": (TINY, (128, 96)), "w32": ("w32_256x192", (64, 64))}
BATCH = 2
LR = 1e-3
FP32_FLOOR = 2.0 ** -20  # an official error below this (a few fp32 ulps) counts as this


@pytest.fixture
def count_fused_calls(monkeypatch):
    """Counts the fused op's calls (every caller goes through a prepared call), so a test knows it ran."""
    fe = hrnet_fast.ops.OPS["fused_exchange"].module
    calls = {"n": 0}
    orig = fe.PreparedExchange.__call__

    def spy(*args, **kwargs):
        calls["n"] += 1
        return orig(*args, **kwargs)

    monkeypatch.setattr(fe.PreparedExchange, "__call__", spy)
    return calls


def _batch(hw, dtype, batch=BATCH, device="cpu", seed=1):
    """Normalised-image-like input (B, 3, H, W), Gaussian-like targets (B, 17, H/4, W/4), 0/1 weights (B, 17, 1)."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    x = torch.randn(batch, 3, h, w, generator=g, dtype=torch.float64)
    target = torch.rand(batch, 17, h // 4, w // 4, generator=g, dtype=torch.float64) ** 8
    weight = (torch.rand(batch, 17, 1, generator=g) > 0.2).to(torch.float64)
    return [t.to(device, dtype) for t in (x, target, weight)]


def _model(config, dtype, fused, device="cpu"):
    model = official_init(hrnet_fast.pose_hrnet(config), generator=torch.Generator().manual_seed(0))
    model = model.to(device, dtype).train()
    for unit in model.exchange_units():
        unit.configure(fused=fused)
    return model


def _one_step(case, dtype, fused, nudge=False):
    """Forward, official loss, backward, Adam step: the loss, the gradients, the buffers and parameters after.
    ``nudge``: the input moved up by one ulp."""
    config, hw = CASES[case]
    model = _model(config, dtype, fused)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, target, weight = _batch(hw, dtype)
    if nudge:
        x = torch.nextafter(x, torch.full_like(x, float("inf")))
    loss = OfficialJointsMSELoss(True)(model(x), target, weight)
    opt.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    opt.step()
    return {"loss": loss.detach(), "grads": grads, "buffers": dict(model.named_buffers()),
            "params": {k: p.detach() for k, p in model.named_parameters()}}


def _compare(got, want, tol):
    """Names whose max_rel_err exceeds tol (integer buffers must be equal)."""
    bad = []
    for k, v in want.items():
        if v.is_floating_point():
            if not max_rel_err(got[k], v) <= tol:
                bad.append((k, max_rel_err(got[k], v)))
        elif not torch.equal(got[k], v):
            bad.append((k, "differs"))
    return bad


@needs_ext
@pytest.mark.parametrize("case", ["tiny", pytest.param("w32", marks=pytest.mark.slow)])
def test_one_step_fused_equals_official_order(case, count_fused_calls):
    ref64 = _one_step(case, torch.float64, fused=False)
    assert count_fused_calls["n"] == 0
    ours64 = _one_step(case, torch.float64, fused=True)
    assert count_fused_calls["n"] > 0  # the fused kernels ran (float64 has a cpp backend)

    # float64: the same computation up to summation order
    assert max_rel_err(ours64["loss"], ref64["loss"]) <= 1e-10
    assert not _compare(ours64["grads"], ref64["grads"], 1e-10)
    assert any("fuse_layers" in k for k in ref64["grads"]) and len(ref64["buffers"]) > 0
    assert not _compare(ours64["buffers"], ref64["buffers"], 1e-10)
    # Adam's first step is ~lr * sign(grad): compare the update against its size, not the weights
    step = max((ours64["params"][k] - ref64["params"][k]).abs().max().item() for k in ref64["params"])
    assert step <= 1e-7 * LR, step
    del ours64

    # float32: per tensor, no worse than 4x the official fp32 error against float64 (the larger of two official
    # steps: on the input and on the input moved by one ulp, see the module docstring)
    officials = [_one_step(case, torch.float32, fused=False, nudge=nudge) for nudge in (False, True)]
    ours32 = _one_step(case, torch.float32, fused=True)

    def official_err(part, k, truth):
        return max([max_rel_err(off[part][k], truth) for off in officials] + [FP32_FLOOR])

    for part in ("grads", "buffers"):
        for k, truth in ref64[part].items():
            if not truth.is_floating_point():
                assert torch.equal(ours32[part][k], truth), k
                continue
            bound = 4 * official_err(part, k, truth)
            assert max_rel_err(ours32[part][k], truth) <= bound, (part, k, bound / 4)
    loss_bound = 4 * max([max_rel_err(off["loss"], ref64["loss"]) for off in officials] + [FP32_FLOOR])
    assert max_rel_err(ours32["loss"], ref64["loss"]) <= loss_bound


def _amp_step(dtype, device, amp, scaler=None, batch=4):
    """A tiny-model step with PyTorch's default init (its heatmaps are large enough that the loss depends on
    them; with the official init the loss is almost 0.5 * mean(target^2)) and our JointsMSELoss."""
    torch.manual_seed(0)
    model = hrnet_fast.pose_hrnet(TINY).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, target, weight = _batch((128, 96), torch.float32, batch=batch, device=device)
    with torch.autocast(device, dtype=dtype, enabled=amp):
        out = model(x)
        loss = JointsMSELoss(True)(out, target, weight)
    opt.zero_grad()
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    return out, loss.detach(), grads, model


def _check_amp(low, full, dtype):
    out, loss, grads, model = low
    _, loss32, grads32, _ = full
    assert out.dtype == dtype and loss.dtype == torch.float32  # the loss of 16-bit heatmaps is computed in fp32
    assert torch.isfinite(loss) and abs(loss.item() - loss32.item()) <= 2e-2 * abs(loss32.item()), (loss, loss32)
    assert torch.isfinite(grads).all()
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())
    # train-mode BatchNorm backward is ill-conditioned: 16-bit gradients are noisy, but must point the same way
    cos = torch.nn.functional.cosine_similarity(grads.double(), grads32.double(), dim=0).item()
    assert cos > 0.5, cos


def test_bf16_autocast_step_cpu():
    _check_amp(_amp_step(torch.bfloat16, "cpu", amp=True), _amp_step(torch.bfloat16, "cpu", amp=False), torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_amp_step_gpu(dtype):
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    low = _amp_step(dtype, "cuda", amp=True, scaler=scaler)
    _check_amp(low, _amp_step(dtype, "cuda", amp=False), dtype)
    if scaler is not None:
        assert scaler.get_scale() > 0 and torch.isfinite(torch.tensor(scaler.get_scale()))


def test_autocast_takes_an_input_in_its_dtype():
    # a training step under autocast may make its crops in the autocast dtype (they meet fp32 weights as every
    # layer's input in the region does); outside the region, or in another dtype, the dtype check still names the fix
    model = hrnet_fast.pose_hrnet(TINY).train()
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
        with pytest.raises(TypeError, match="input has dtype torch.float16 but the model's weights are torch.float32"):
            model(x.half())
    with pytest.raises(TypeError, match="input has dtype torch.bfloat16 but the model's weights are torch.float32"):
        model(x)
