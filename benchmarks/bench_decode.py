"""pytest-benchmark suite for heatmap decoding: official numpy (with its host copy) vs hrnet_fast.

    pytest benchmarks/bench_decode.py --benchmark-columns=median,iqr --benchmark-group-by=param:shape,param:batch
    HRNET_FAST_BENCH_QUICK=1 pytest benchmarks/bench_decode.py --benchmark-disable   # smoke run: tiny sizes, 2 rounds
"""
import os

import pytest
import torch

import _decode_setup
from _decode_setup import make_inputs, providers

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PROVIDERS = providers(DEVICE)
QUICK = os.environ.get("HRNET_FAST_BENCH_QUICK") == "1"
if QUICK:
    SHAPES, BATCHES, DTYPES = [(16, 12)], [2], {"fp32": torch.float32}
else:
    SHAPES, BATCHES, DTYPES = _decode_setup.SHAPES, _decode_setup.BATCHES, _decode_setup.DTYPES
DARK_SHAPE, DARK_BATCH = ((16, 12), 2) if QUICK else ((64, 48), 64)


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("method", ["quarter", "flip_quarter"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_decode_official(benchmark, provider, method, dtype, batch, shape):
    """The official decode (quarter), alone and with the flip-test merge."""
    x = make_inputs(batch, shape[0], shape[1], DTYPES[dtype], DEVICE)
    fn = PROVIDERS[provider]

    def run():
        out = fn(method, x)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    slow = provider in ("numpy_official", "torch") and batch >= 1024
    coords, maxvals = benchmark.pedantic(run, rounds=2 if QUICK else (3 if slow else 20), warmup_rounds=1)
    assert tuple(coords.shape) == (batch, 17, 2) and tuple(maxvals.shape) == (batch, 17, 1)


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "numpy_official"])
@pytest.mark.parametrize("method", ["dark", "udp"])
def test_decode_dark_udp(benchmark, provider, method):
    x = make_inputs(DARK_BATCH, DARK_SHAPE[0], DARK_SHAPE[1], torch.float32, DEVICE)
    fn = PROVIDERS[provider]

    def run():
        out = fn(method, x)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    coords, _ = benchmark.pedantic(run, rounds=2 if QUICK else 10, warmup_rounds=1)
    assert torch.isfinite(coords).all()
