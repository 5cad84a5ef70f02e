"""Branch-parallel execution on CUDA: independent pieces of work on separate streams.

The branches of an HRNet stage are independent until the exchange unit, and so are the exchange unit's
output branches. At batch 1 each branch is a chain of small kernels that cannot fill a GPU; on separate
streams they overlap. Under CUDA-graph capture the fork/join below (events recorded on the capturing
stream, waited on by side streams, and back) is recorded as parallel branches of the graph, so a replay
runs them concurrently with no host work at all.

Side streams come from a :class:`StreamPool`. Eager calls of every model and thread share the module's
default pool (sharing a stream between eager calls only serialises them). A CUDA-graph capture must not
share: while a stream is part of a capture, work another thread puts on it is recorded into that graph or
invalidates the capture. So each capture backend owns a pool (:class:`hrnet_fast.cuda_graphs.CudaCapture`)
and makes it the capturing thread's pool with :func:`using` for the duration of the capture; the streams
of every pool are also distinct from those of every other live pool (torch hands out streams round robin
from a fixed set of 32 per priority and device, see :func:`_new_stream`).

On the CPU, or with one piece of work, the callables simply run in order.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, TypeVar

import torch

__all__ = ["StreamPool", "active_pool", "run_parallel", "set_enabled", "using"]

T = TypeVar("T")

_enabled = True
_lock = threading.Lock()
# (device index -> cuda_stream handles) held by live pools, so that two pools never get the same stream
_owned: Dict[int, Set[int]] = {}
# torch's stream pools: 32 streams per priority; two priorities give 64 distinct streams per device
_PRIORITIES = (0, -1)
_STREAMS_PER_PRIORITY = 32


def set_enabled(enabled: bool) -> None:
    """Turn branch-parallel streams on or off for the process (on by default; for benchmarks)."""
    global _enabled
    _enabled = bool(enabled)


def _new_stream(index: int) -> "torch.cuda.Stream":
    """A stream of device ``index`` that no live :class:`StreamPool` holds.

    ``torch.cuda.Stream()`` does not create a stream: it hands out the next of a fixed set (32 per
    priority), so after enough draws two pools would share one. Draw until a stream no pool owns comes up;
    when every stream of both priorities is owned (more than 64 in use on one device), share the last one
    drawn: correct for eager work, only a concurrent capture could then be disturbed. Called with
    ``_lock`` held."""
    owned = _owned.setdefault(index, set())
    stream = None
    for priority in _PRIORITIES:
        for _ in range(_STREAMS_PER_PRIORITY):
            stream = torch.cuda.Stream(device=index, priority=priority)
            if stream.cuda_stream not in owned:
                owned.add(stream.cuda_stream)
                return stream
    return stream


def _release(handles: Dict[int, List[int]]) -> None:
    with _lock:
        for index, hs in handles.items():
            _owned.get(index, set()).difference_update(hs)


class StreamPool:
    """Side streams per CUDA device, created on first use and distinct from every other live pool's.

    Args:
        factory: ``factory(device_index) -> stream``; default :func:`_new_stream` (tests pass a stand-in).
    """

    def __init__(self, factory: Optional[Callable[[int], Any]] = None):
        self._factory = factory if factory is not None else _new_stream
        self._streams: Dict[int, List[Any]] = {}
        self._handles: Dict[int, List[int]] = {}
        # give the streams back to the others when the pool goes (a model or graph cache deleted)
        weakref.finalize(self, _release, self._handles)

    def get(self, device: torch.device, count: int) -> List[Any]:
        """The first ``count`` streams of ``device`` (the same ones on every call)."""
        index = device.index if device.index is not None else torch.cuda.current_device()
        with _lock:
            pool = self._streams.setdefault(index, [])
            while len(pool) < count:
                stream = self._factory(index)
                pool.append(stream)
                handle = getattr(stream, "cuda_stream", None)
                if isinstance(handle, int):
                    self._handles.setdefault(index, []).append(handle)
            return pool[:count]


_default = StreamPool()
_local = threading.local()


def active_pool() -> StreamPool:
    """The pool :func:`run_parallel` takes side streams from in this thread."""
    pool = getattr(_local, "pool", None)
    return _default if pool is None else pool


@contextlib.contextmanager
def using(pool: StreamPool) -> Iterator[StreamPool]:
    """Make ``pool`` this thread's pool (only this thread's: a capture runs in one thread) inside the block."""
    previous = getattr(_local, "pool", None)
    _local.pool = pool
    try:
        yield pool
    finally:
        _local.pool = previous


def run_parallel(fns: Sequence[Callable[[], T]], like: torch.Tensor) -> List[T]:
    """``[fn() for fn in fns]``, the first on the current stream and the others on side streams of the
    active pool (:func:`active_pool`) when ``like`` is a CUDA tensor (results are ready on the current
    stream when this returns, as far as later stream-ordered work is concerned)."""
    if len(fns) < 2 or not _enabled or like.device.type != "cuda" or torch.compiler.is_compiling():
        return [fn() for fn in fns]
    main = torch.cuda.current_stream(like.device)
    side = active_pool().get(like.device, len(fns) - 1)
    fork = torch.cuda.Event()
    fork.record(main)
    results: List[T] = [fns[0]()]
    joins = []
    capturing = torch.cuda.is_current_stream_capturing()
    for fn, stream in zip(fns[1:], side):
        stream.wait_event(fork)
        with torch.cuda.stream(stream):
            out = fn()
        done = torch.cuda.Event()
        done.record(stream)
        joins.append(done)
        if not capturing:
            # the result was allocated on a side stream and will be used (and freed) on the main one:
            # tell the caching allocator, or it could hand the memory to the side stream again too early
            for t in (out if isinstance(out, (list, tuple)) else [out]):
                if isinstance(t, torch.Tensor):
                    t.record_stream(main)
        results.append(out)
    for done in joins:
        main.wait_event(done)
    return results
