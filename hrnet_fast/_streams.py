"""Branch-parallel execution on CUDA: independent pieces of work on separate streams.

The branches of an HRNet stage are independent until the exchange unit, and so are the exchange unit's
output branches. At batch 1 each branch is a chain of small kernels that cannot fill a GPU; on separate
streams they overlap. Under CUDA-graph capture the fork/join below (events recorded on the capturing
stream, waited on by side streams, and back) is recorded as parallel branches of the graph, so a replay
runs them concurrently with no host work at all.

On the CPU, or with one piece of work, the callables simply run in order.
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Sequence, TypeVar

import torch

T = TypeVar("T")

_enabled = True
_lock = threading.Lock()
_side_streams: Dict[int, List["torch.cuda.Stream"]] = {}


def set_enabled(enabled: bool) -> None:
    """Turn branch-parallel streams on or off for the process (on by default; for benchmarks)."""
    global _enabled
    _enabled = bool(enabled)


def _streams_for(device: torch.device, count: int) -> List["torch.cuda.Stream"]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _lock:
        pool = _side_streams.setdefault(index, [])
        while len(pool) < count:
            pool.append(torch.cuda.Stream(device=index))
        return pool[:count]


def run_parallel(fns: Sequence[Callable[[], T]], like: torch.Tensor) -> List[T]:
    """``[fn() for fn in fns]``, the first on the current stream and the others on side streams when
    ``like`` is a CUDA tensor (results are ready on the current stream when this returns, as far as later
    stream-ordered work is concerned)."""
    if len(fns) < 2 or not _enabled or like.device.type != "cuda" or torch.compiler.is_compiling():
        return [fn() for fn in fns]
    main = torch.cuda.current_stream(like.device)
    side = _streams_for(like.device, len(fns) - 1)
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
