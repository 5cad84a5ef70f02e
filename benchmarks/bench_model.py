"""pytest-benchmark suite for the whole model: the official reference vs hrnet_fast.optimize().

    pytest benchmarks/bench_model.py --benchmark-columns=median,iqr --benchmark-group-by=param:batch
    HRNET_FAST_BENCH_QUICK=1 pytest benchmarks/bench_model.py --benchmark-disable   # smoke run: 64x64 input
"""
import os

import pytest
import torch

import hrnet_fast
from hrnet_fast.models.init import realistic_random_init

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
QUICK = os.environ.get("HRNET_FAST_BENCH_QUICK") == "1"
BATCHES = [1] if QUICK else ([1, 8] if DEVICE.type == "cpu" else [1, 64])
IMAGE = (64, 64) if QUICK else (256, 192)  # (H, W); the network takes any multiple of 32


@pytest.fixture(scope="module")
def models():
    model = realistic_random_init(hrnet_fast.pose_hrnet("w32_256x192"), image_hw=IMAGE, batches=1)
    for unit in model.exchange_units():
        unit.configure(fused=False)
    model = model.to(DEVICE)
    return {"reference": model, "hrnet_fast": hrnet_fast.optimize(model)}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("variant", ["reference", "hrnet_fast"])
def test_model_forward(benchmark, models, variant, batch):
    model = models[variant]
    x = torch.randn(batch, 3, *IMAGE, generator=torch.Generator().manual_seed(batch)).to(DEVICE)

    def run():
        with torch.no_grad():
            out = model(x)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(run, rounds=2 if QUICK else (3 if DEVICE.type == "cpu" else 20), warmup_rounds=1)
    assert out.shape == (batch, 17, IMAGE[0] // 4, IMAGE[1] // 4)
