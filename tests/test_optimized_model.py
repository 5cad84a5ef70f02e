"""An optimized model behaves like a module: every way of copying, saving, re-optimizing, moving or rebuilding
``hrnet_fast.optimize(model)`` -- before and after its first call (the call prepares packed oneDNN weights,
choices and bound exchange calls) -- gives a working model with unchanged heatmaps, and the frozen state
lives in one derived InferencePlan, never on the model's modules (issue 18 item 2, issue 19 item 3).
"""
from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import hrnet_fast
from _golden import TINY_YAML, assert_close_rel, randomize_bn
from hrnet_fast._inference import InferenceConfig, InferencePlan
from hrnet_fast.estimator import PoseEstimator

BOXES = np.array([[10, 10, 50, 80, 0.9], [90, 20, 40, 60, 0.5]])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(hrnet_fast.pose_hrnet(TINY_YAML)).eval()


def _x(n=2, seed=1, dtype=torch.float32):
    return torch.randn(n, 3, 128, 96, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)


def _run(model, x):
    with torch.no_grad():
        return model(x)


def _torch_save_load(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


ENTRY_POINTS = {
    "deepcopy": copy.deepcopy,
    "torch.save/load": _torch_save_load,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "optimize again": hrnet_fast.optimize,
}


@pytest.mark.parametrize("called_first", [False, True], ids=["before first call", "after first call"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_copies_saves_and_reoptimizations_give_the_same_heatmaps(tiny, entry, called_first):
    x = _x()
    want = _run(hrnet_fast.optimize(tiny), x)  # a twin that never went through the entry point
    fast = hrnet_fast.optimize(tiny)
    if called_first:
        assert torch.equal(_run(fast, x), want)
    other = ENTRY_POINTS[entry](fast)
    assert other is not fast and other.inference_config == fast.inference_config
    assert isinstance(other.inference_plan(), InferencePlan) and other.inference_plan() is not fast.inference_plan()
    assert torch.equal(_run(other, x), want)
    assert torch.equal(_run(other, _x(n=3, seed=2)), _run(hrnet_fast.optimize(tiny), _x(n=3, seed=2)))
    assert torch.equal(_run(fast, x), want)  # the original is untouched


def test_optimize_again_keeps_what_the_first_call_chose(tiny):
    x = _x(seed=3)
    once = hrnet_fast.optimize(tiny, dtype=torch.float64, channels_last=False)
    twice = hrnet_fast.optimize(once)
    assert twice.inference_config.dtype == torch.float64 and not twice.inference_config.channels_last
    out = _run(twice, x)  # a float32 input is still cast
    assert out.dtype == torch.float64 and torch.equal(out, _run(once, x))
    assert twice.conv1.weight.is_contiguous()


def test_the_frozen_state_has_one_owner(tiny):
    fast = hrnet_fast.optimize(tiny)
    before = {name: type(m) for name, m in fast.named_modules()}
    _run(fast, _x())
    plan = fast.inference_plan()
    assert isinstance(plan, InferencePlan) and plan.frozen and plan.summary()
    # nothing written onto the model or its modules: same module types, no prepared attributes
    assert {name: type(m) for name, m in fast.named_modules()} == before
    assert all(type(m) is torch.nn.Conv2d for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    for attr in ("_plan", "_graphs", "input_dtype", "input_channels_last"):
        assert attr not in vars(fast), attr
    for unit in fast.exchange_units():
        assert "_bound" not in vars(unit) and unit._fold_cache == {}  # the plan folds for itself
    # the configuration is plain data, the plan is left out of the module's state
    config = fast.inference_config
    assert isinstance(config, InferenceConfig) and pickle.loads(pickle.dumps(config)) == config
    assert "_inference_plan" not in fast.__getstate__() and "_inference_plan" in vars(fast)


@pytest.mark.parametrize("called_first", [False, True], ids=["before first call", "after first call"])
def test_estimator_rebuilds_an_optimized_model_for_another_dtype(tiny, called_first):
    fast = hrnet_fast.optimize(tiny)
    if called_first:
        _run(fast, _x())
    est = PoseEstimator(fast, device="cpu", dtype=torch.bfloat16)
    assert est.dtype == torch.bfloat16 and est.model is not fast
    assert est.model.conv1.weight.dtype == torch.bfloat16 and fast.conv1.weight.dtype == torch.float32
    got = est(_image(), BOXES)
    want = PoseEstimator(tiny, device="cpu", dtype=torch.bfloat16)(_image(), BOXES)  # optimize(tiny, dtype=bf16)
    for a, b in zip(got._fields(), want._fields()):
        assert torch.equal(a, b)
    # the caller's optimized model still runs in float32
    assert_close_rel(_run(fast, _x()), _run(hrnet_fast.optimize(tiny), _x()), 0.0, "caller's model")


@pytest.mark.gpu
def test_estimator_moves_an_optimized_cpu_model_to_cuda(tiny):
    fast = hrnet_fast.optimize(tiny)
    _run(fast, _x())  # prepared on the CPU first (packed oneDNN weights)
    est = PoseEstimator(fast, device="cuda")
    assert est.model.conv1.weight.is_cuda and est.dtype == torch.float32  # an optimized model keeps its dtype
    plan = est.model.inference_plan()
    assert plan is not fast.inference_plan() and plan.graphs is not None
    r = est(_image(), BOXES)
    assert r.keypoints.is_cuda and r.keypoints.shape == (2, 17, 3) and torch.isfinite(r.keypoints).all()
    x = _x()
    # cuDNN may use TF32 for float32 convolutions: compare the heatmaps at that precision
    assert_close_rel(_run(est.model, x.cuda()).cpu(), _run(fast, x), 2e-2, "CUDA copy vs CPU model")
    assert not fast.conv1.weight.is_cuda


@pytest.mark.parametrize("called_first", [False, True], ids=["before first call", "after first call"])
def test_to_another_dtype_rebuilds_the_plan(tiny, called_first):
    x = _x(seed=4)
    fast = hrnet_fast.optimize(tiny, dtype=torch.float32, channels_last=False)  # casts its input
    if called_first:
        _run(fast, x)
    plan = fast.inference_plan()
    fast.to(torch.float64)
    assert fast.inference_plan() is not plan and fast.inference_plan().input_dtype == torch.float64
    out = _run(fast, x)  # a float32 input, cast to the weights' new dtype
    want = _run(hrnet_fast.optimize(tiny, channels_last=False, fused=False).double(), x.double())
    assert out.dtype == torch.float64
    assert_close_rel(out, want, 1e-12, "float64 plan after .to(torch.float64)")
    fast.to(torch.bfloat16)
    out16 = _run(fast, x)
    assert out16.dtype == torch.bfloat16
    assert_close_rel(out16.float(), want, 5e-2, "bfloat16 plan after .to(torch.bfloat16)")


def test_load_state_dict_rebuilds_the_plan(tiny):
    x = _x(seed=5)
    fast = hrnet_fast.optimize(tiny)
    _run(fast, x)  # packs the oneDNN weights of this shape
    gen = torch.Generator().manual_seed(6)
    new = {k: v * (1 + 0.1 * torch.rand(v.shape, generator=gen)) for k, v in fast.state_dict().items()}
    fast.load_state_dict(new)
    folded = hrnet_fast.optimize(tiny, fused=False)
    folded.load_state_dict(new)
    # a stale plan would still compute with the old packed weights
    assert_close_rel(_run(fast, x), _run(folded, x), 1e-5, "plan after load_state_dict")


def test_a_data_parallel_replica_builds_its_own_plan(tiny):
    # nn.DataParallel's replicas are shallow copies given their own modules: the original's plan would run
    # the original's weights
    fast = hrnet_fast.optimize(tiny)
    replica = fast._replicate_for_data_parallel()
    assert replica._inference_plan is None and fast.inference_plan() is not None
    assert torch.equal(_run(replica, _x()), _run(fast, _x()))
    assert replica.inference_plan() is not fast.inference_plan()


def test_compile_of_a_copied_optimized_model(tiny):
    # the copy builds its plan when it is made, not inside the first (traced) call
    x = _x(n=1, seed=7)
    fast = hrnet_fast.optimize(tiny)
    _run(fast, x)
    compiled = torch.compile(copy.deepcopy(fast), fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert_close_rel(compiled(x), fast(x), 1e-5, "compiled copy")


@pytest.mark.parametrize("strict", [True, False])
def test_load_checkpoint_into_an_optimized_model_says_to_load_before_optimize(tiny, strict):
    fast = hrnet_fast.optimize(tiny)
    before = {k: v.clone() for k, v in fast.state_dict().items()}
    with pytest.raises(hrnet_fast.CheckpointMismatchError, match=r"load the checkpoint before optimize\(\)") as info:
        hrnet_fast.load_checkpoint(fast, tiny.state_dict(), strict=strict)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg  # one line, not hundreds of keys
    assert info.value.missing and info.value.unexpected  # the lists are still there for code
    assert all(torch.equal(v, before[k]) for k, v in fast.state_dict().items())  # nothing was loaded
    # a model folded by hand is told the same
    folded = copy.deepcopy(tiny)
    hrnet_fast.fold_batchnorm(folded)
    with pytest.raises(hrnet_fast.CheckpointMismatchError, match=r"load the checkpoint before optimize\(\)"):
        hrnet_fast.load_checkpoint(folded, tiny.state_dict(), strict=strict)


def test_an_optimized_state_dict_loads_into_an_optimized_model(tiny):
    x = _x(seed=8)
    fast = hrnet_fast.optimize(tiny)
    other = hrnet_fast.optimize(hrnet_fast.pose_hrnet(TINY_YAML).eval())
    hrnet_fast.load_checkpoint(other, fast.state_dict())
    assert torch.equal(_run(other, x), _run(fast, x))
