"""``optimize(model, engine="inductor")`` (issue 20, item 3): the folded model compiled by TorchInductor with
freezing and the C++ wrapper, an opt-in torch module. One compilation of the tiny network (about 20-40 s on
2 cores): equivalence with the official model, the compile time reported, copies and pickles that keep the
model and drop the compiled graph."""
from __future__ import annotations

import copy
import io
import pickle
import shutil

import pytest
import torch

import hrnet_fast
from _golden import TINY_YAML
from hrnet_fast._inductor import InductorModule
from hrnet_fast._numerics import max_rel_err
from hrnet_fast.models.init import realistic_random_init

TINY_HW = (128, 96)


@pytest.fixture(scope="module")
def tiny():
    return realistic_random_init(hrnet_fast.pose_hrnet(TINY_YAML), image_hw=TINY_HW, seed=3)


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor's C++ wrapper needs a compiler")
def test_inductor_engine_matches_the_official_model_and_reports_its_compile_time(tiny):
    x = torch.randn(2, 3, *TINY_HW, generator=torch.Generator().manual_seed(5))
    fast = hrnet_fast.optimize(tiny, engine="inductor")
    assert isinstance(fast, InductorModule) and fast.engine == "inductor" and fast.compile_s == {}
    # the official state_dict names, BatchNorm folded (a torch module, unlike the export engines)
    assert set(fast.state_dict()) == {"model." + k for k in hrnet_fast.optimize(tiny).state_dict()}
    with torch.no_grad():
        ref = tiny(x)
        exact = copy.deepcopy(tiny).double()(x.double())
    got = fast(x)
    assert not got.requires_grad and got.shape == ref.shape and got.dtype == torch.float32
    # the tolerance of the other fp32 paths (tests/test_engines.py): 4x the official model's own fp32 error
    assert max_rel_err(got, exact) <= 4 * max_rel_err(ref, exact) + 1e-6
    assert list(fast.compile_s) == [tuple(x.shape)] and fast.compile_s[tuple(x.shape)] > 0
    torch.testing.assert_close(fast(x), got, rtol=0, atol=0)  # the compiled graph again: same result
    # a copy or a pickle keeps the model, not the compiled graph (compiled again on its first call)
    for other in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
        assert isinstance(other, InductorModule) and other._compiled is None and other.compile_s == {}
        torch.testing.assert_close(other.model(x), fast.model(x), rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(fast, buf)
    assert buf.tell() > 0


def test_inductor_engine_arguments(tiny):
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        InductorModule("w32")
    with pytest.raises(ValueError, match="'inductor'"):
        hrnet_fast.optimize(tiny, engine="inductr")
    fast = hrnet_fast.optimize(tiny, engine="inductor")
    with pytest.raises(TypeError, match="x must be a tensor"):
        fast([1, 2])
