"""CUDA graphs for an optimized model: capture once per input shape, replay afterwards.

In eager mode a GPU waits on Python: W32 at batch 1 is a chain of ~300 small kernels, each launched by
host code that costs more than the kernel (H200, commit c40ab01: 31.5 ms eager vs 3.07 ms replayed, see
``benchmarks/results/h200-2026-11-28-c40ab01/``). :class:`GraphCache` wraps a function of one tensor and,
per (shape, dtype, device, layout) of that tensor, captures it into a ``torch.cuda.CUDAGraph`` on first
use and replays it afterwards. An optimized model's cache belongs to its plan
(``model.inference_plan().graphs``, :class:`hrnet_fast._inference.InferencePlan`): moving, casting or
copying the model makes a new plan and with it a new, empty cache, so no graph outlives the weights and
device it was captured with.

How this differs from what torch offers, and why:

* ``torch.cuda.make_graphed_callables`` captures a callable for one fixed set of sample inputs and also
  graphs its backward; we need many shapes, no backward, and a fallback to eager. Its warm-up (a few
  eager iterations on a side stream before capture, so lazy initialisation -- cuDNN autotuning, Triton
  compilation, workspace allocation, the device constants of the ops -- happens outside the graph) is
  what we do too.
* ``torch.compile(mode="reduce-overhead")`` (cudagraph trees) hands out outputs that live in the graph's
  memory pool and are overwritten by a later replay, and warns or re-records when the caller keeps them.
  We copy outputs out of the graph's buffers instead (one device copy of the heatmaps, small next to the
  network), so callers may keep every result and replay order does not matter. That is also what lets
  all graphs of a cache share one memory pool per device: a graph's intermediates are dead once its
  outputs are copied, and replays are serialised, so no replay can overwrite memory another graph still
  needs.
* Inputs are copied into a static buffer per graph (as both do): the caller's tensor may be anywhere.
* The cache is bounded (least recently used evicted) because each graph pins its static buffers; a user
  that knows how many shapes it produces makes room with :meth:`GraphCache.reserve` (``PoseEstimator``
  does, for its padded batch sizes).
* A call that autograd would record (grad enabled and the input requires grad) runs eagerly, as does a
  call made while another capture is under way.

Capturing happens lazily, on the first call per shape, in the middle of serving, so it must not depend
on what the rest of the process does (:class:`CudaCapture`):

* on the input's device: torch's default capture stream belongs to whichever GPU was current when it
  was first used, so a model on ``cuda:1`` would capture nothing there. The capture runs inside
  ``torch.cuda.device(input.device)`` on a capture stream of that device (one per device and backend,
  reused: a shared memory pool wants the same stream for every capture).
* ``capture_error_mode="thread_local"``: in the default global mode a CUDA call that is unsafe during a
  capture (``cudaHostAlloc`` of a DataLoader pinning memory, a video reader, a second estimator) made by
  *another* thread invalidates the capture.
* its own side streams: the branch-parallel streams (:mod:`hrnet_fast._streams`) come from a pool the
  backend owns, active only in the capturing thread, so another model (or thread) running eagerly never
  puts work on a stream that is being captured.

The capture machinery is behind a small interface (:class:`CudaCapture`), so the cache logic is tested
on the CPU with a stand-in (tests/test_inference.py), and the capture's device, stream, mode and stream
pool with a stand-in for ``torch.cuda`` (tests/test_cuda_graphs.py, which also holds the gpu tests).
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

import torch

from . import _streams

__all__ = ["CudaCapture", "GraphCache"]


class CudaCapture:
    """The real capture backend: ``torch.cuda.CUDAGraph`` on the input's device, in thread-local capture
    mode, with a capture stream, a memory pool (shared by the cache's graphs) and side streams of its own
    per device (see the module docstring for why each)."""

    def __init__(self, warmup: int = 2):
        self.warmup = warmup
        self.pools: Dict[int, Any] = {}        # device index -> graph memory pool handle
        self.streams = _streams.StreamPool()  # the side streams of this backend's captures only
        self._capture_streams = _streams.StreamPool()  # one capture stream per device

    def applies(self, x: torch.Tensor) -> bool:
        return x.is_cuda and not torch.cuda.is_current_stream_capturing()

    def capture(self, fn: Callable[[torch.Tensor], torch.Tensor], static_input: torch.Tensor):
        """Warm up ``fn`` on the capture stream, capture it, and return (graph, static output).

        ``static_input`` is a CUDA tensor of any device; everything happens on that device."""
        device = static_input.device
        with torch.cuda.device(device), _streams.using(self.streams):
            index = torch.cuda.current_device()
            stream = self._capture_streams.get(torch.device("cuda", index), 1)[0]
            # eager iterations first, on the very streams the capture will use: lazy initialisation (cuDNN
            # plans, Triton compilation, the per-stream cuBLAS workspace, the choice of conv epilogues,
            # which needs a host sync) must happen outside the graph
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    fn(static_input)
            torch.cuda.current_stream(device).wait_stream(stream)
            pool = self.pools.get(index)
            if pool is None:
                pool = self.pools[index] = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=stream, capture_error_mode="thread_local"):
                static_output = fn(static_input)
        return graph, static_output

    def replay(self, graph) -> None:
        graph.replay()  # torch switches to the graph's device itself and launches on its current stream


class GraphCache:
    """``cache(x)`` = ``fn(x)``, captured per input key on first use and replayed afterwards.

    Args:
        fn: a function of one tensor returning one tensor; it must be capturable (no host sync, no
            data-dependent control flow, no CPU tensors created per call).
        max_graphs: how many input keys to keep (least recently used evicted).
        backend: the capture backend (:class:`CudaCapture` by default; tests pass a stand-in).

    Returns fresh output tensors (copies of the graph's static output), so results may be kept.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], max_graphs: int = 8, backend: Optional[Any] = None):
        if not isinstance(max_graphs, int) or isinstance(max_graphs, bool) or max_graphs < 1:
            raise ValueError(f"GraphCache: max_graphs must be a positive int, got {max_graphs!r}")
        self.fn = fn
        self.max_graphs = max_graphs
        self.backend = backend if backend is not None else CudaCapture()
        self._graphs: "collections.OrderedDict[Hashable, Tuple[Any, torch.Tensor, torch.Tensor]]" = collections.OrderedDict()
        self._lock = threading.Lock()  # static buffers are shared state: one replay at a time
        self.captures = 0
        self.replays = 0

    @staticmethod
    def key(x: torch.Tensor) -> Hashable:
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return (tuple(x.shape), x.dtype, x.device, channels_last)

    def applies(self, x: torch.Tensor) -> bool:
        """Whether a call with ``x`` goes through a graph (else ``fn`` runs eagerly)."""
        if torch.is_grad_enabled() and x.requires_grad:
            return False
        return bool(self.backend.applies(x)) and not torch.compiler.is_compiling()

    def __len__(self) -> int:
        return len(self._graphs)

    def reserve(self, count: int) -> None:
        """Make room for at least ``count`` graphs (never shrinks): for a caller that knows how many input
        shapes it produces, so a stream of them does not re-capture on every least-recently-used miss."""
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"GraphCache.reserve: count must be a positive int, got {count!r}")
        self.max_graphs = max(self.max_graphs, count)

    def clear(self) -> None:
        with self._lock:
            self._graphs.clear()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.applies(x):
            return self.fn(x)
        key = self.key(x)
        with self._lock, torch.no_grad():
            entry = self._graphs.get(key)
            if entry is None:
                static_input = torch.empty_like(x)
                static_input.copy_(x)
                graph, static_output = self.backend.capture(self.fn, static_input)
                self.captures += 1
                entry = (graph, static_input, static_output)
                self._graphs[key] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
                entry[1].copy_(x)
            graph, _, static_output = entry
            self.backend.replay(graph)
            self.replays += 1
            return static_output.clone()
