"""The model with fused exchange units: golden outputs, gradients, BN-fold caching, full W32/W48,
hrnet_fast.optimize(), torch.compile.

Fused units are the default; ``configure(fused=False)`` gives the official op-for-op path, which is the
oracle here (besides the golden data of the official model).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import hrnet_fast
from hrnet_fast.ops.fused_exchange import resolve_backend

from _support import DATA, HAS_EXT, needs_ext
from hrnet_fast._numerics import max_rel_err




@pytest.fixture(scope="module")
def golden():
    return np.load(os.path.join(DATA, "tiny_hrnet_golden.npz"))


def tiny(golden, fused=True, backend="auto"):
    m = hrnet_fast.pose_hrnet(os.path.join(DATA, "tiny_hrnet.yaml"))
    sd = {k[len("weight/"):]: torch.from_numpy(golden[k]) for k in golden.files if k.startswith("weight/")}
    m.load_state_dict(sd, strict=True)
    for u in m.exchange_units():
        u.configure(fused=fused, backend=backend)
    return m


@pytest.fixture
def count_fused_calls(monkeypatch):
    """Counts calls of the fused op (so a test knows the fused path really ran): every caller runs it through
    a prepared call (hrnet_fast.ops.fused_exchange.prepare)."""
    fe = hrnet_fast.ops.OPS["fused_exchange"].module  # the op's module (hrnet_fast.ops.fused_exchange is the op)

    calls = {"n": 0}
    orig = fe.PreparedExchange.__call__

    def spy(*args, **kwargs):
        calls["n"] += 1
        return orig(*args, **kwargs)

    monkeypatch.setattr(fe.PreparedExchange, "__call__", spy)
    return calls


def test_fused_is_the_default():
    m = hrnet_fast.pose_hrnet("w32_256x192")
    units = m.exchange_units()
    assert units and all(u.fused and u.backend == "auto" for u in units)
    x = torch.zeros(1, 3, 4, 4)
    assert resolve_backend(x).name == ("cpp" if HAS_EXT else "torch")


@needs_ext
def test_tiny_golden_eval_and_train_fused(golden, count_fused_calls):
    x = torch.from_numpy(golden["input"])
    m = tiny(golden).eval()
    with torch.no_grad():
        out = m(x)
    n_units = len(m.exchange_units())
    assert count_fused_calls["n"] >= n_units  # the fused op ran (one call per output branch)
    ref = torch.from_numpy(golden["eval_output"])
    assert max_rel_err(out, ref) < 2e-5
    unfused = tiny(golden, fused=False).eval()
    with torch.no_grad():
        assert max_rel_err(out, unfused(x)) < 2e-6  # the fused path is as close to the official one as rounding allows

    m.train()
    out = m(x)
    assert max_rel_err(out, torch.from_numpy(golden["train_output"])) < 2e-5
    sd = m.state_dict()
    for k in golden.files:
        if k.startswith("train_running/"):
            key = k[len("train_running/"):]
            want = torch.from_numpy(golden[k])
            if want.dtype.is_floating_point:
                assert max_rel_err(sd[key], want) < 1e-5, key
            else:
                assert torch.equal(sd[key], want), key


@needs_ext
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tiny_gradients_match_unfused_float64(golden, mode):
    # The golden fp32 gradients are ill-conditioned (oneDNN summation order); the meaningful check of the
    # fused path is against the same model unfused, both in float64.
    x = torch.from_numpy(golden["input"]).double().requires_grad_(True)
    r = torch.from_numpy(golden["loss_weights"]).double()
    results = []
    for fused in (True, False):
        m = tiny(golden, fused=fused).double()
        m.train(mode == "train")
        out = m(x)
        params = dict(m.named_parameters())
        g = torch.autograd.grad((out * r).sum(), [x, *params.values()])
        results.append((out.detach(), dict(zip(["input", *params], g))))
    (o1, g1), (o2, g2) = results
    assert max_rel_err(o1, o2) < 1e-12
    fuse_keys = [k for k in g1 if "fuse_layers" in k]
    assert fuse_keys
    for k in g1:
        assert max_rel_err(g1[k], g2[k]) < 1e-10, k


def test_state_dict_keys_unchanged(golden):
    m = tiny(golden)
    assert set(m.state_dict()) == {k[len("weight/"):] for k in golden.files if k.startswith("weight/")}
    x = torch.from_numpy(golden["input"])
    with torch.no_grad():
        m.eval()(x)  # fills the fold cache
    assert set(m.state_dict()) == {k[len("weight/"):] for k in golden.files if k.startswith("weight/")}


@needs_ext
def test_fold_cache_refreshes_when_parameters_change(golden):
    x = torch.from_numpy(golden["input"])
    m = tiny(golden).eval()
    ref = tiny(golden, fused=False).eval()
    with torch.no_grad():
        m(x)
        unit = m.exchange_units()[0]
        assert unit._fold_cache, "eval fused forward caches the folded weights"
        # in-place changes (as an optimizer step or load_state_dict makes) must refresh the fold
        for mod in (m, ref):
            fl = mod.stage2[0].fuse_layers[0][1]
            fl[1].running_var.mul_(3.0)
            fl[1].weight.add_(0.5)
            fl[0].weight.mul_(-1.0)
        assert max_rel_err(m(x), ref(x)) < 2e-6
        # replacing a parameter object too
        for mod in (m, ref):
            fl = mod.stage2[0].fuse_layers[0][1]
            fl[1].bias = torch.nn.Parameter(torch.randn_like(fl[1].bias, generator=torch.Generator().manual_seed(5)))
        assert max_rel_err(m(x), ref(x)) < 2e-6
        # .double() swaps each parameter's .data (no version bump): the fold must follow
        m.double()
        ref.double()
        assert max_rel_err(m(x.double()), ref(x.double())) < 1e-12


def test_configure_and_fallback(golden, count_fused_calls, monkeypatch):
    m = tiny(golden)
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        m.exchange_units()[0].configure(backend="fastest")
    unit = m.exchange_units()[0].configure(fused=True, backend="torch")
    assert not unit.fused  # backend="torch" is the reference path
    # float16 on the CPU: no fused backend runs it, auto falls back to the reference path
    reference_calls = []
    orig = hrnet_fast.ExchangeUnit.reference_forward
    monkeypatch.setattr(hrnet_fast.ExchangeUnit, "reference_forward",
                        lambda self, xs: reference_calls.append(1) or orig(self, xs))
    m16 = tiny(golden).eval().half()
    x = torch.from_numpy(golden["input"]).half()
    with torch.no_grad():
        out = m16(x)
    n_units = len(m16.exchange_units())
    assert len(reference_calls) == n_units and count_fused_calls["n"] == 0  # every unit took the fallback
    unfused = tiny(golden).eval().half()
    for u in unfused.exchange_units():
        u.configure(fused=False)
    with torch.no_grad():
        want = unfused(x)
    assert out.dtype == torch.float16 and torch.equal(out, want)  # the official op sequence, bit for bit


@needs_ext
@pytest.mark.slow
@pytest.mark.parametrize("name", ["w32_256x192", "w48_256x192"])
def test_full_models_fused_match_unfused(name):
    torch.manual_seed(0)
    m = hrnet_fast.pose_hrnet(name).eval()
    # realistic BN statistics so the folds are not identities
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    x = torch.randn(1, 3, 256, 192, generator=g)
    with torch.no_grad():
        fused = m(x)
        for u in m.exchange_units():
            u.configure(fused=False)
        unfused = m(x)
        assert max_rel_err(fused, unfused) < 1e-5
        fast = hrnet_fast.optimize(m)  # BN folded, channels_last, fused units (cpp on NHWC tensors)
        fast_ref = hrnet_fast.optimize(m, fused=False)
        assert all(u.fused for u in fast.exchange_units())
        a, b = fast(x), fast_ref(x)
        assert max_rel_err(a, b) < 1e-5
        assert max_rel_err(a, unfused) < 1e-4  # folding every BN changes rounding throughout the network


@needs_ext
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_compile_fused_tiny_model_fullgraph(golden, mode):
    x = torch.from_numpy(golden["input"])
    m = tiny(golden, backend="cpp")
    m.train(mode == "train")
    ref = tiny(golden, fused=False)
    ref.train(mode == "train")
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    out = compiled(x)
    want = ref(x)
    assert max_rel_err(out, want) < 2e-6
    if mode == "train":
        gx = torch.autograd.grad(out.sum(), [m.final_layer.weight])[0]
        gr = torch.autograd.grad(want.sum(), [ref.final_layer.weight])[0]
        assert max_rel_err(gx, gr) < 1e-4
