"""The one timing harness of hrnet_fast. Used by ``hrnet-fast bench`` (cli/bench.py), benchmarks/exchange_table.py
(and the copy baseline in benchmarks/exchange_cases.py) and benchmarks/decode_table.py. The pytest-benchmark
suites (benchmarks/bench_*.py) are timed by pytest-benchmark itself.

- CPU: ``time.perf_counter`` around each sample.
- CUDA: a pair of CUDA events recorded on the current stream around each sample, so a sample is the
  stream's time from its first launch to the end of its last kernel (launch gaps included: eager code
  that is launch-bound shows as such). With ``cuda_graph=True`` the callable is first captured into a
  CUDA graph (warm-up on a side stream, as the ``torch.cuda.graphs`` documentation shows) and the
  replays are timed: GPU time without the host's per-op overhead.

A sample is ``inner`` back-to-back calls, ``inner`` chosen so that a sample lasts at least
``sample_time`` seconds (timer resolution and per-sample synchronisation then stay small against it).
:func:`measure_rounds` measures several callables interleaved, round after round, so that load from other
processes hits them alike, and reports how much the rounds disagree.

Every result is a dict, times in milliseconds per call: ``ms`` (median over samples), ``p20_ms``,
``p80_ms``, ``runs`` (samples), ``calls`` (calls timed), ``spread`` ((p80 - p20) / median); from
:func:`measure_rounds` also ``rounds_ms`` (each round's median) and ``round_spread`` ((max - min) / min
of those).
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

DeviceLike = Union[str, torch.device]

#: ``round_spread`` above which ``hrnet-fast bench`` warns that its times are not to be trusted
ROUND_SPREAD_WARN = 0.15


def _device_type(device: DeviceLike) -> str:
    return torch.device(device).type


def synchronize(device: DeviceLike) -> None:
    if _device_type(device) == "cuda":
        torch.cuda.synchronize(device)


def _quantile(sorted_xs: List[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (no interpolation: a value that was measured)."""
    return sorted_xs[min(len(sorted_xs) - 1, int(q * (len(sorted_xs) - 1) + 0.5))]


def summarize(times_ms: List[float], calls: Optional[int] = None) -> Dict[str, Any]:
    """``ms`` (median), ``p20_ms``, ``p80_ms``, ``runs``, ``calls`` and ``spread`` of per-call times (ms)."""
    if not times_ms:
        raise ValueError("summarize: times_ms must hold at least one time")
    xs = sorted(times_ms)
    med = statistics.median(xs)
    p20, p80 = _quantile(xs, 0.2), _quantile(xs, 0.8)
    return {"ms": med, "p20_ms": p20, "p80_ms": p80, "runs": len(xs),
            "calls": len(xs) if calls is None else calls, "spread": (p80 - p20) / med if med > 0 else 0.0}


def capture_cuda_graph(fn: Callable[[], Any], calls: int = 1, warmup: int = 3) -> Tuple[Any, Any]:
    """Capture ``calls`` back-to-back calls of ``fn`` (no arguments) into one CUDA graph.

    ``fn`` first runs ``warmup`` times on a side stream: lazy initialisation, cuBLAS/cuDNN workspaces and
    Triton compilation must not happen during capture. Returns ``(graph, out)``: ``graph.replay()`` reruns
    the captured kernels on the same memory; ``out`` is what the last captured call returned (its tensors
    are overwritten by each replay). Raises what the capture raises (an op that synchronises with the
    host, a CPU tensor in the graph, ...); callers record that rather than fail a whole table.
    """
    if calls < 1:
        raise ValueError(f"capture_cuda_graph: calls must be >= 1, got {calls}")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    out = None
    with torch.cuda.graph(graph):
        for _ in range(calls):
            out = fn()
    graph.replay()  # the first replay uploads the graph: keep it out of the timings
    torch.cuda.synchronize()
    return graph, out


class _CudaTimer:
    def __enter__(self):
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.start.record()
        return self

    def __exit__(self, *exc):
        self.end.record()
        self.end.synchronize()
        self.ms = self.start.elapsed_time(self.end)


class _CpuTimer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ms = (time.perf_counter() - self.t0) * 1e3


class _Prepared:
    """A callable ready to time: ``fn`` itself, or the replay of a graph holding ``per_call`` calls of it."""

    def __init__(self, fn, device: DeviceLike, cuda_graph: bool, graph_calls: int, warmup: int):
        self.device = device
        self.cuda = _device_type(device) == "cuda"
        if cuda_graph and not self.cuda:
            raise ValueError(f"cuda_graph=True needs a CUDA device, got {device}")
        if cuda_graph:
            graph, _ = capture_cuda_graph(fn, calls=graph_calls, warmup=max(warmup, 1))
            self.fn, self.per_call, self.warmup = graph.replay, graph_calls, 1
        else:
            self.fn, self.per_call, self.warmup = fn, 1, warmup
        self.inner: Optional[int] = None

    def samples(self, min_time: float, min_runs: int, max_runs: int, sample_time: float, warmup: bool) -> List[float]:
        fn = self.fn
        for _ in range(self.warmup if warmup else 0):
            fn()
        synchronize(self.device)
        timer = _CudaTimer if self.cuda else _CpuTimer
        if self.inner is None:
            self.inner = 1
            if sample_time > 0:
                with timer() as t:
                    fn()
                self.inner = max(1, min(10_000, int(sample_time * 1e3 / max(t.ms, 1e-4))))
        times: List[float] = []
        start = time.perf_counter()
        while len(times) < max(1, min_runs) or (len(times) < max_runs and time.perf_counter() - start < min_time):
            with timer() as t:
                for _ in range(self.inner):
                    fn()
            times.append(t.ms / (self.inner * self.per_call))
        return times


def measure(fn: Callable[[], Any], device: DeviceLike, min_time: float = 0.5, min_runs: int = 3, max_runs: int = 200,
            warmup: int = 1, sample_time: float = 0.0, cuda_graph: bool = False, graph_calls: int = 1) -> Dict[str, Any]:
    """Time ``fn`` (no arguments) on ``device``: samples until ``min_time`` seconds and ``min_runs``
    samples have passed (at most ``max_runs``); milliseconds per call (keys: see the module docstring).

    ``sample_time``: seconds a sample should last at least (0: one call per sample). ``cuda_graph`` (CUDA
    only): capture ``graph_calls`` calls of ``fn`` into one graph and time its replays, per call.
    """
    p = _Prepared(fn, device, cuda_graph, graph_calls, warmup)
    times = p.samples(min_time, min_runs, max_runs, sample_time, warmup=True)
    return summarize(times, calls=len(times) * p.inner * p.per_call)


def measure_rounds(fns: Mapping[str, Callable[[], Any]], device: DeviceLike, rounds: int = 3, min_time: float = 0.5,
                   min_runs: int = 3, max_runs: int = 200, warmup: int = 1, sample_time: float = 0.0,
                   cuda_graph: bool = False, graph_calls: int = 1) -> Dict[str, Dict[str, Any]]:
    """Measure several callables interleaved: each of ``rounds`` rounds samples each callable in turn for
    ``min_time / rounds`` seconds (at least ``min_runs`` samples), so drifting load hits them alike.

    Returns ``{name: stats}``: the samples of all rounds pooled (``ms``, ``p20_ms``, ...), plus
    ``rounds_ms`` (each round's median) and ``round_spread``. Warm-up runs before the first round only;
    a ``cuda_graph`` capture happens once per callable.
    """
    if rounds < 1:
        raise ValueError(f"measure_rounds: rounds must be >= 1, got {rounds}")
    prepared = {name: _Prepared(fn, device, cuda_graph, graph_calls, warmup) for name, fn in fns.items()}
    pooled: Dict[str, List[float]] = {name: [] for name in fns}
    medians: Dict[str, List[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, p in prepared.items():
            times = p.samples(min_time / rounds, min_runs, max_runs, sample_time, warmup=r == 0)
            pooled[name] += times
            medians[name].append(statistics.median(times))
    out: Dict[str, Dict[str, Any]] = {}
    for name, p in prepared.items():
        st = summarize(pooled[name], calls=len(pooled[name]) * p.inner * p.per_call)
        lo = min(medians[name])
        st["rounds_ms"] = medians[name]
        st["round_spread"] = (max(medians[name]) - lo) / lo if lo > 0 else 0.0
        out[name] = st
    return out


# ---------------------------------------------------------------------------------------------------
# The machine the numbers come from


def cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> Optional[float]:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def load_warning(load: Optional[float] = None, ncores: Optional[int] = None) -> Optional[str]:
    """A warning when the 1-minute load average exceeds the cores (other processes share the CPU), else None."""
    load = load_average() if load is None else load
    ncores = cores() if ncores is None else ncores
    if load is not None and load > ncores:
        return f"load average {load:.1f} exceeds the {ncores} cores: other processes share the CPU"
    return None


class LoadMonitor:
    """The highest 1-minute load average seen while a run lasts, not only at its start: sampled by a daemon
    thread every ``interval`` seconds and whenever :meth:`sample` is called (``hrnet-fast bench`` samples
    between its sections too). A context manager (starts and stops the thread); ``start``/``end``/``peak``
    are None where the OS has no load average.

        with LoadMonitor() as load:
            ...                                   # the benchmark
        load.peak, load.as_dict()                 # {"start": ..., "end": ..., "max": ...}
    """

    def __init__(self, interval: float = 5.0):
        import threading

        self.interval = interval
        self.start: Optional[float] = None
        self.end: Optional[float] = None
        self.peak: Optional[float] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: Optional[Any] = None

    def sample(self) -> Optional[float]:
        """Read the load average now and fold it into the peak; returns it."""
        load = load_average()
        if load is not None:
            with self._lock:
                if self.start is None:
                    self.start = load
                self.peak = load if self.peak is None else max(self.peak, load)
        return load

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "LoadMonitor":
        import threading

        self.sample()
        self._thread = threading.Thread(target=self._loop, name="hrnet_fast-load-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.end = self.sample()

    def as_dict(self) -> Dict[str, Optional[float]]:
        return {"start": self.start, "end": self.end, "max": self.peak}


def spread_warnings(stats: Mapping[str, Mapping[str, Any]], threshold: float = ROUND_SPREAD_WARN) -> List[str]:
    """A warning for each entry of ``stats`` (``{label: stats with round_spread}``) whose repeated rounds
    disagree by more than ``threshold`` (a fraction of the fastest round)."""
    out = []
    for label, st in stats.items():
        rs = st.get("round_spread")
        if rs is not None and rs > threshold:
            out.append(f"{label}: repeated rounds differ by {100 * rs:.1f}% (limit {100 * threshold:.0f}%)")
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: DeviceLike) -> str:
    if _device_type(device) == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def environment(device: DeviceLike) -> Dict[str, Any]:
    """What a benchmark's JSON records about where it ran: device and its name, versions (torch, triton,
    OpenCV and numpy where importable), python, the git commit of this checkout, torch threads, cores,
    load average and the UTC date."""
    import datetime
    import importlib
    import os
    import platform
    import subprocess

    def version(module: str) -> Optional[str]:
        try:
            return importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001 - absent or broken: recorded as None
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = ""
    return {"device": _device_type(device) if not isinstance(device, str) else device, "device_name": device_name(device),
            "torch": torch.__version__, "triton": version("triton"), "opencv": version("cv2"), "numpy": version("numpy"),
            "python": platform.python_version(), "commit": commit, "threads": torch.get_num_threads(),
            "cores": cores(), "load_average": load_average(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
