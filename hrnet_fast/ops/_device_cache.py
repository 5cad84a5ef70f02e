"""Small constant tensors built once per device and shared by every call, stream and thread: the decoder's
blur weights and flip permutations, the crop's image tables (offset, height, width per image).

A plain dict filled with ``torch.tensor(values).to(device, non_blocking=True)`` on first use has three
faults on a GPU, which :class:`DeviceCache` removes:

* **Stream order.** The upload is queued on whatever stream is current at first use; a kernel on another
  stream (another thread, a branch-parallel side stream) may read the entry before the copy has landed.
  Here the values are copied from pinned memory on the current stream (no host sync) and an event is
  recorded after the copy; the first use on any other stream makes that stream wait on the event (once
  per stream: everything it queues later is ordered after that wait).
* **Capture.** Built inside a CUDA-graph capture, the copy becomes a node of that graph (reading a host
  buffer that is gone by the next replay) and the entry lives in the graph's private memory. A miss while
  the current stream is capturing raises a ``RuntimeError`` naming the cache: build before capturing (an
  eager call first, as :class:`hrnet_fast.cuda_graphs.GraphCache` does with its warm-up;
  :class:`hrnet_fast.PoseEstimator` builds its decoder constants at construction). An entry *used* in a
  capture is pinned: the graph reads its memory at every replay, so it is never evicted.
* **Lifetime.** Clearing the dict wholesale when it is full drops entries that kernels queued on other
  streams still read; once freed, the caching allocator may hand their memory out again on the stream
  that allocated them, unordered with those kernels. Here the cache is a least-recently-used one that
  evicts one entry at a time, and every stream an entry is used on is told to the allocator
  (``record_stream``): an evicted entry's memory is reused only after the work queued on those streams
  up to its release has finished. (A caller holds its own reference until its kernel is queued, so
  eviction between lookup and launch cannot free it either.)

On the CPU it is a plain bounded LRU. The CUDA calls are methods (:meth:`DeviceCache._upload`,
``_capturing``, ``_current_stream``, ``_share``) so tests drive the logic on the CPU with stand-ins.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Hashable, Set

import torch

__all__ = ["DeviceCache"]


class _Entry:
    __slots__ = ("tensor", "stream", "event", "streams", "pinned")

    def __init__(self, tensor: torch.Tensor, stream: Any = None, event: Any = None):
        self.tensor = tensor
        self.stream = stream            # the stream the upload was queued on (None on the CPU)
        self.event = event              # recorded after the upload on that stream
        self.streams: Set[Any] = set()  # other streams already ordered after the upload and recorded
        self.pinned = False             # read by a captured graph: never evicted


class DeviceCache:
    """``cache.get(key, device, build)``: the tensor ``build()`` (a CPU tensor) on ``device``, built once.

    Args:
        name: what the cache holds, for error messages (e.g. ``"decode_heatmaps: flip permutation"``).
        limit: entries kept (least recently used evicted, one at a time; pinned entries are never evicted).
    """

    def __init__(self, name: str, limit: int = 64):
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"DeviceCache: limit must be a positive int, got {limit!r}")
        self.name = name
        self.limit = limit
        self._entries: "collections.OrderedDict[Hashable, _Entry]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key_device) -> bool:
        key, device = key_device
        return (key, _normal(device)) in self._entries

    def get(self, key: Hashable, device: torch.device, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached tensor of ``key`` on ``device``; ``build()`` gives its values as a CPU tensor on a miss.

        Ready for use on the current stream when this returns, without a host synchronisation."""
        device = _normal(device)
        full = (key, device)
        cuda = device.type == "cuda"
        capturing = cuda and self._capturing(device)
        with self._lock:
            entry = self._entries.get(full)
            if entry is None:
                if capturing:
                    raise RuntimeError(
                        f"{self.name}: first use on {device} inside a CUDA graph capture; its constants are "
                        f"uploaded from the host, which a graph cannot replay. Make one eager call with the same "
                        f"arguments before capturing (GraphCache's warm-up does; PoseEstimator builds them at "
                        f"construction)")
                host = build()
                entry = _Entry(*self._upload(host, device)) if cuda else _Entry(host)
                self._entries[full] = entry
                self._evict()
            else:
                self._entries.move_to_end(full)
            if capturing:
                # the graph reads this memory at every replay. No event wait here: waiting on an event
                # recorded outside the capture is not capturable, and torch.cuda.graph synchronises the
                # device when the capture begins, so the upload has landed
                entry.pinned = True
            elif cuda:
                stream = self._current_stream(device)
                if stream != entry.stream and stream not in entry.streams:
                    self._share(entry, stream)
                    entry.streams.add(stream)
            return entry.tensor

    def clear(self) -> None:
        """Drop every entry that is not pinned (for tests and to free memory; same lifetime rules)."""
        with self._lock:
            for full in [k for k, e in self._entries.items() if not e.pinned]:
                del self._entries[full]

    # ------------------------------------------------------------------------------------------------
    def _evict(self) -> None:
        over = len(self._entries) - self.limit
        if over <= 0:
            return
        for full in [k for k, e in self._entries.items() if not e.pinned][:over]:
            del self._entries[full]  # record_stream (``_share``) delays reuse past the other streams' work

    # The CUDA calls (tests replace them with stand-ins)
    def _capturing(self, device: torch.device) -> bool:
        if device.index == torch.cuda.current_device():
            return torch.cuda.is_current_stream_capturing()
        with torch.cuda.device(device):  # the current stream of the tensors' device, not of the current one
            return torch.cuda.is_current_stream_capturing()

    def _current_stream(self, device: torch.device):
        return torch.cuda.current_stream(device)

    def _upload(self, host: torch.Tensor, device: torch.device):
        """(device tensor, stream, event): a non-blocking copy from pinned memory on the current stream (the
        pinned buffer is kept by the host allocator until the copy is done), and an event after it."""
        stream = torch.cuda.current_stream(device)
        tensor = host.pin_memory().to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(stream)
        return tensor, stream, event

    def _share(self, entry: _Entry, stream) -> None:
        """Order ``stream`` after the upload, and tell the allocator the entry is used there."""
        stream.wait_event(entry.event)
        entry.tensor.record_stream(stream)


def _normal(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:<current>`` so one device has one key."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device

