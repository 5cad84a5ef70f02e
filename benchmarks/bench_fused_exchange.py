"""pytest-benchmark suite: all exchange units of W32 and W48 at 256x192, fused vs the unfused reference.

    PYTHONPATH=. python -m pytest benchmarks/bench_fused_exchange.py --benchmark-only
    HRNET_FAST_BENCH_QUICK=1 PYTHONPATH=. python -m pytest benchmarks/bench_fused_exchange.py --benchmark-disable
                                                      # smoke run: W32 at 64x64, batch 1, fp32, each case once

One benchmark = every exchange unit of a model (each distinct unit run as many times as the model has
it), per batch (CPU 1, 8; GPU 1, 8, 64), layout, mode (fwd, fwdbwd) and provider (torch = unfused
reference; cpp on CPU; cuda, triton and torch.compile of the reference on a GPU). See exchange_table.py
for the side-by-side table with ratios and bandwidth.
"""
from __future__ import annotations

import os

import pytest
import torch

import exchange_cases
from exchange_cases import available, make_args, provider_fn, run_all, sync, workloads

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
QUICK = os.environ.get("HRNET_FAST_BENCH_QUICK") == "1"
if QUICK:
    MODELS, IMAGE, BATCHES, DTYPES = exchange_cases.MODELS[:1], (64, 64), (1,), (torch.float32,)
else:
    MODELS, IMAGE = exchange_cases.MODELS, exchange_cases.IMAGE
    BATCHES = (1, 8, 64) if GPU else (1, 8)
    DTYPES = (torch.float16, torch.float32) if GPU else (torch.float32,)
PROVIDERS = ("torch", "cuda", "triton", "compile") if GPU else ("torch", "cpp")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d).split(".")[-1] for d in DTYPES])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", MODELS)
def test_exchange_units(benchmark, model, batch, dtype, layout, mode, provider):
    why = available(provider, DEVICE, dtype)
    if why:
        pytest.skip(why)
    fns = []
    for wl in workloads(model, IMAGE):
        args = make_args(wl, batch, dtype=dtype, device=DEVICE, channels_last=layout == "nhwc",
                         requires_grad=mode == "fwdbwd")
        fns.append((provider_fn(provider, args, mode), wl.count))
    run = run_all(fns)
    benchmark.group = f"{model} batch {batch} {str(dtype).split('.')[-1]} {layout} {mode}"

    def timed():
        run()
        sync(DEVICE)

    benchmark.pedantic(timed, warmup_rounds=1 if QUICK else 2, rounds=2 if QUICK else (10 if batch < 64 else 20))
