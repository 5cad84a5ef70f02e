"""Side-by-side timing helpers shared by the CLI and the benchmark scripts."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], device: torch.device, min_time: float = 0.5, min_runs: int = 3,
            max_runs: int = 200, warmup: int = 1) -> Dict[str, float]:
    """Run ``fn`` until ``min_time`` seconds and ``min_runs`` runs have passed; times in milliseconds.

    Returns median, p20, p80 and the run count. On CUDA each run is bracketed by synchronisation, so
    the time includes the whole launch sequence (use CUDA graphs to measure without launch overhead).
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    return {"ms": statistics.median(times), "p20_ms": q(0.2), "p80_ms": q(0.8), "runs": len(times)}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"
