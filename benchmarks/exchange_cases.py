"""Shared setup of the exchange-unit benchmarks (bench_fused_exchange.py and exchange_table.py).

A workload is one distinct exchange unit of a model at a given input size: the branch channels and
sizes of each output branch i and its low inputs j > i, and how many units of the model share that
shape. Each output branch is one ``fused_exchange`` call: base (the x_i plus downsampled terms, given),
lows x_j (j > i) with the eval-mode folded 1x1 conv (weights, biases). The unfused reference is the torch
backend of the same op (1x1 conv with bias, nearest upsample, add, ReLU: the official ops with BN folded).
"""
from __future__ import annotations

import functools
import math
import os
import platform
import subprocess
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence, Tuple

import torch

import hrnet_fast
from hrnet_fast._timing import cpu_name, measure
from hrnet_fast.models.pose_hrnet import ExchangeUnit
from hrnet_fast.ops import fused_exchange, fused_exchange_reference

MODELS = ("w32_256x192", "w48_256x192")
IMAGE = (256, 192)


@dataclass
class Workload:
    """One distinct exchange unit: ``rows[i] = (C_i, H_i, W_i, [(C_j, s_j), ...])``; ``count`` units share it."""

    model: str
    stage: str  # e.g. "stage4[0,1]": the stage and the indices of its modules that share this shape
    count: int
    rows: List[Tuple[int, int, int, List[Tuple[int, int]]]] = field(default_factory=list)
    modules: List[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.model}/{self.stage}x{self.count}"


def workloads(model: str, image: Tuple[int, int] = IMAGE) -> List[Workload]:
    """Every exchange unit of ``model`` (a config name or YAML path) at ``image`` (H, W, multiples of 32),
    grouped by shape, in forward order."""
    if image[0] % 32 or image[1] % 32 or min(image) <= 0:
        raise ValueError(f"workloads: image must be (H, W), positive multiples of 32, got {image}")
    return [Workload(w.model, w.stage, w.count, list(w.rows), list(w.modules)) for w in _workloads(model, tuple(image))]


@functools.lru_cache(maxsize=None)
def _workloads(model: str, image: Tuple[int, int]) -> Tuple[Workload, ...]:
    # building a W48 network takes about a second on the CPU: once per (model, image) per process
    net = hrnet_fast.pose_hrnet(model)
    groups: "OrderedDict[tuple, Workload]" = OrderedDict()
    h0, w0 = image[0] // 4, image[1] // 4
    for name, unit in net.named_modules():
        if not isinstance(unit, ExchangeUnit):
            continue
        stage, module = name.split(".")[0], name.split(".")[1]
        chans = net._stage_channels(getattr(net, f"{stage}_cfg"))
        rows = []
        for i in range(len(unit)):
            lows = [(chans[j], 2 ** (j - i)) for j in range(i + 1, unit.num_inputs)]
            rows.append((chans[i], h0 >> i, w0 >> i, lows))
        key = (stage, repr(rows))
        if key in groups:
            groups[key].count += 1
            groups[key].modules.append(module)
        else:
            groups[key] = Workload(model, stage, 1, rows, [module])
    for wl in groups.values():
        wl.stage = f"{wl.stage}[{','.join(wl.modules)}]"
    return tuple(groups.values())


def make_args(wl: Workload, batch: int, dtype=torch.float32, device="cpu", channels_last=False,
              requires_grad=False, seed=0):
    """Per output branch: (base, lows, weights, biases) with fresh random values."""
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def rnd(*shape, scale=1.0):
        t = (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)
        return t.contiguous(memory_format=fmt) if t.dim() == 4 else t

    out = []
    for c, h, w, lows in wl.rows:
        base = rnd(batch, c, h, w)
        ls = [rnd(batch, cj, h // s, w // s) for cj, s in lows]
        ws = [rnd(c, cj, scale=1 / math.sqrt(cj)) for cj, _ in lows]
        bs = [rnd(c) for _ in lows]
        if requires_grad:
            for t in [base, *ls, *ws, *bs]:
                t.requires_grad_(True)
        out.append((base, ls, ws, bs))
    return out


def forward_bytes(args) -> int:
    """Bytes a forward must move at least: read base, lows, weights, biases; write out (= base)."""
    total = 0
    for base, ls, ws, bs in args:
        total += 2 * base.numel() * base.element_size()
        total += sum(t.numel() * t.element_size() for t in [*ls, *ws, *bs])
    return total


def available(provider: str, device: str, dtype: torch.dtype) -> str:
    """'' when ``provider`` runs ``dtype`` on ``device``, else why not (from a tiny call of the public op)."""
    if provider in ("torch", "compile"):
        return ""
    base = torch.zeros(1, 2, 2, 2, device=device, dtype=dtype)
    low = torch.zeros(1, 4, 1, 1, device=device, dtype=dtype)
    try:
        fused_exchange(base, [low], [torch.zeros(2, 4, device=device, dtype=dtype)], [None], backend=provider)
        return ""
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def provider_fn(provider: str, args, mode: str) -> Callable[[], None]:
    """A no-argument callable running every branch of one unit: ``provider`` in torch (the unfused
    reference), cpp / cuda / triton (fused), compile (torch.compile of the reference); ``mode`` fwd or fwdbwd."""
    if provider == "compile":
        # One compiled graph per unit shape, dtype, layout and mode: raise Dynamo's recompile limit (8 by
        # default), past which it would silently run the reference eagerly and label it "compile".
        # (Imported under another name: a plain `import torch._dynamo` here would make `torch` a local
        # of this function, unbound in every other provider's closure.)
        import torch._dynamo as dynamo

        cfg = dynamo.config
        cfg.cache_size_limit = max(cfg.cache_size_limit, 512)
        if hasattr(cfg, "accumulated_cache_size_limit"):
            cfg.accumulated_cache_size_limit = max(cfg.accumulated_cache_size_limit, 4096)
        if hasattr(cfg, "fail_on_cache_limit_hit"):
            cfg.fail_on_cache_limit_hit = True  # a fallback to eager must not pass for a compiled time
        op = torch.compile(lambda b, l, w, bi: fused_exchange_reference(b, l, w, bi), dynamic=False)
    else:
        def op(b, l, w, bi):
            return fused_exchange(b, l, w, bi, backend=provider)
    grads = None
    if mode == "fwdbwd":
        grads = [torch.randn_like(a[0]) for a in args]

    def run():
        if mode == "fwd":
            with torch.no_grad():
                for a in args:
                    op(*a)
        else:
            outs = [op(*a) for a in args]
            torch.autograd.backward(outs, grads)

    return run


def run_all(fns: Sequence[Tuple[Callable[[], None], int]]) -> Callable[[], None]:
    """One callable running each unit function ``count`` times: a whole model's exchange units."""
    def run():
        for fn, count in fns:
            for _ in range(count):
                fn()

    return run


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def copy_time(nbytes: int, device: str, dtype=torch.float16) -> float:
    """Median seconds of a device-to-device copy that moves ``nbytes`` (reads and writes nbytes/2 each)."""
    n = max(1, nbytes // 2 // torch.tensor([], dtype=dtype).element_size())
    src = torch.empty(n, dtype=dtype, device=device).uniform_()
    dst = torch.empty_like(src)
    # on a GPU the copy is timed as graph replays too, like the kernels it is the yardstick for (no host
    # launch cost in either)
    return measure(lambda: dst.copy_(src), device, min_time=0.1, min_runs=5, warmup=2, sample_time=1e-3,
                   cuda_graph=device == "cuda", graph_calls=20 if device == "cuda" else 1)["ms"] / 1e3


def device_info(device: str) -> Dict[str, str]:
    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": str(torch.get_num_threads())}
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        pass
    if device == "cuda":
        info["device"] = torch.cuda.get_device_name()
    else:
        info["device"] = f"{cpu_name()}, {torch.get_num_threads()} threads"
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                        text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        info["commit"] = "unknown"
    return info
