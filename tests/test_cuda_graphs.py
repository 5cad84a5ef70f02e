"""CUDA-graph capture (hrnet_fast.cuda_graphs.CudaCapture) and the side-stream pools (hrnet_fast._streams).

On the CPU: the capture's device, stream, capture mode, memory pool and stream pool with a stand-in for
``torch.cuda``; the pools' distinct streams with a stand-in for torch's round-robin stream pool. The
GraphCache logic itself is tested in test_inference.py. The gpu-marked tests show what only a GPU can:
a capture on ``cuda:1`` while ``cuda:0`` is current (two GPUs), a capture while another thread pins host
memory, and an eager model in another thread while one captures.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import threading

import pytest
import torch

import hrnet_fast
from _golden import TINY_YAML, assert_close_rel, randomize_bn
from hrnet_fast import _streams
from hrnet_fast.cuda_graphs import CudaCapture, GraphCache


# ------------------------------------------------------------------------------------ stand-ins


class FakeStream:
    """Stands in for torch.cuda.Stream: torch hands out a fixed set per priority, round robin."""

    counters = {}
    per_priority = 4

    def __init__(self, device=None, priority=0):
        k = FakeStream.counters.get(priority, 0)
        FakeStream.counters[priority] = k + 1
        # the same handle comes back after per_priority draws, as torch's pool does
        self.cuda_stream = 1000 * (1 - priority) + k % FakeStream.per_priority
        self.device = device
        self.waited = []

    def wait_stream(self, other):
        self.waited.append(other)

    def __repr__(self):
        return f"FakeStream({self.cuda_stream})"


@pytest.fixture
def fake_streams(monkeypatch):
    """torch.cuda.Stream replaced by a round robin of 4 handles per priority; a fresh ownership table."""
    FakeStream.counters = {}
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(_streams, "_STREAMS_PER_PRIORITY", FakeStream.per_priority)
    monkeypatch.setattr(_streams, "_owned", {})
    return FakeStream


class FakeCuda:
    """Records what CudaCapture asks of torch.cuda: the current device, the current stream, the capture."""

    def __init__(self, monkeypatch):
        self.device_stack = [0]
        self.stream = "main"
        self.capturing = False
        self.graph_calls = []
        self.pools = itertools.count(1)
        fake = self

        @contextlib.contextmanager
        def device(d):
            fake.device_stack.append(torch.device(d).index)
            try:
                yield
            finally:
                fake.device_stack.pop()

        @contextlib.contextmanager
        def stream(s):
            previous, fake.stream = fake.stream, s
            try:
                yield
            finally:
                fake.stream = previous

        @contextlib.contextmanager
        def graph(g, pool=None, stream=None, capture_error_mode="global"):
            fake.graph_calls.append(dict(graph=g, pool=pool, stream=stream, mode=capture_error_mode,
                                         device=fake.device_stack[-1]))
            previous, fake.stream = fake.stream, stream
            fake.capturing = True
            try:
                yield
            finally:
                fake.capturing = False
                fake.stream = previous

        class Main:
            def wait_stream(self, other):
                pass

        monkeypatch.setattr(torch.cuda, "device", device)
        monkeypatch.setattr(torch.cuda, "stream", stream)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: fake.device_stack[-1])
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Main())
        monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: ("pool", next(fake.pools)))
        monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())


class FakeInput:
    """A 'CUDA tensor' for the stand-in capture: only its device is read."""

    def __init__(self, index):
        self.device = torch.device("cuda", index)


# ------------------------------------------------------------------------------------ stream pools


def test_stream_pools_never_share_a_stream(fake_streams):
    a, b = _streams.StreamPool(), _streams.StreamPool()
    dev = torch.device("cuda", 0)
    sa, sb = a.get(dev, 3), b.get(dev, 3)
    handles = [s.cuda_stream for s in sa + sb]
    # torch's pool repeats after 4 draws: without the ownership table b would get a's streams back
    assert len(set(handles)) == 6
    assert a.get(dev, 3) == sa and a.get(dev, 2) == sa[:2]  # the same streams on every call
    assert {s.cuda_stream for s in sa} <= _streams._owned[0]


def test_stream_pools_share_only_when_every_stream_is_owned_and_release_on_deletion(fake_streams):
    dev = torch.device("cuda", 0)
    a, b = _streams.StreamPool(), _streams.StreamPool()
    a.get(dev, 4)
    b.get(dev, 4)  # all 8 streams (2 priorities x 4) are owned now
    c = _streams.StreamPool()
    (extra,) = c.get(dev, 1)  # nothing free: shares one (correct for eager work) rather than fail
    assert extra.cuda_stream in {s.cuda_stream for s in a.get(dev, 4) + b.get(dev, 4)}
    freed = {s.cuda_stream for s in a.get(dev, 4)}
    del a
    gc.collect()
    assert not (freed & _streams._owned[0])  # a's streams go back to the others
    d = _streams.StreamPool()
    assert {s.cuda_stream for s in d.get(dev, 4)} == freed


def test_using_sets_the_pool_of_this_thread_only():
    pool = _streams.StreamPool(factory=lambda index: object())
    seen = {}
    with _streams.using(pool):
        assert _streams.active_pool() is pool
        t = threading.Thread(target=lambda: seen.setdefault("other", _streams.active_pool()))
        t.start()
        t.join()
        with _streams.using(_streams.StreamPool(factory=lambda index: object())):
            assert _streams.active_pool() is not pool
        assert _streams.active_pool() is pool
    assert _streams.active_pool() is _streams._default and seen["other"] is _streams._default


# ------------------------------------------------------------------------------------ CudaCapture


def test_capture_runs_on_the_input_device_with_its_own_stream_and_thread_local_mode(monkeypatch, fake_streams):
    cuda = FakeCuda(monkeypatch)
    backend = CudaCapture(warmup=2)
    calls = []

    def fn(x):
        other = {}
        t = threading.Thread(target=lambda: other.setdefault("pool", _streams.active_pool()))
        t.start()
        t.join()
        calls.append(dict(device=cuda.device_stack[-1], stream=cuda.stream, capturing=cuda.capturing,
                          pool=_streams.active_pool(), other_thread_pool=other["pool"]))
        return "out"

    graph, out = backend.capture(fn, FakeInput(1))  # cuda:1 while cuda:0 is current
    assert out == "out" and cuda.device_stack == [0]
    (g,) = cuda.graph_calls
    assert g["device"] == 1 and g["mode"] == "thread_local" and g["graph"] is graph
    stream = g["stream"]
    assert isinstance(stream, FakeStream) and stream.device == 1
    assert g["pool"] == backend.pools[1]
    # two eager warm-up runs, then the capture: all on the capture stream of cuda:1, with the backend's
    # own side streams, which no other thread sees
    assert [c["capturing"] for c in calls] == [False, False, True]
    assert all(c["device"] == 1 and c["stream"] is stream for c in calls)
    assert all(c["pool"] is backend.streams and c["other_thread_pool"] is _streams._default for c in calls)
    assert _streams.active_pool() is _streams._default

    backend.capture(fn, FakeInput(1))  # same device: same capture stream and memory pool
    assert cuda.graph_calls[1]["stream"] is stream and cuda.graph_calls[1]["pool"] == g["pool"]
    backend.capture(fn, FakeInput(0))
    g0 = cuda.graph_calls[2]
    assert g0["device"] == 0 and g0["stream"] is not stream and g0["stream"].device == 0 and g0["pool"] != g["pool"]


def test_graph_cache_reserve_grows_only():
    cache = GraphCache(lambda x: x)
    cache.reserve(12)
    assert cache.max_graphs == 12
    cache.reserve(3)
    assert cache.max_graphs == 12
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="count must be a positive int"):
            cache.reserve(bad)


# ------------------------------------------------------------------------------------ on a GPU


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(hrnet_fast.pose_hrnet(TINY_YAML)).eval()


def _image(n=2, seed=1):
    return torch.randn(n, 3, 128, 96, generator=torch.Generator().manual_seed(seed))


@pytest.mark.gpu
def test_capture_on_the_second_gpu_while_the_first_is_current(tiny):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    torch.cuda.set_device(0)
    dev = torch.device("cuda", 1)
    fast = hrnet_fast.optimize(tiny, dtype=torch.float16).to(dev)
    eager = hrnet_fast.optimize(tiny, dtype=torch.float16, cuda_graphs=False).to(dev)
    x = _image(seed=21).to(dev)
    with torch.no_grad():
        a, b = fast(x), fast(x * 0.5)  # a stale (empty) graph would give b == a
        ea, eb = eager(x), eager(x * 0.5)
    torch.cuda.synchronize(dev)
    assert torch.cuda.current_device() == 0 and a.device == dev
    assert fast.inference_plan().graphs.captures == 1 and fast.inference_plan().graphs.replays == 2
    assert_close_rel(a, ea, 2e-3, "cuda:1 graph vs eager")
    assert_close_rel(b, eb, 2e-3, "cuda:1 graph vs eager, second input")


@pytest.mark.gpu
def test_capture_while_another_thread_pins_host_memory(tiny):
    # in global capture mode a cudaHostAlloc by any thread invalidates the capture
    fast = hrnet_fast.optimize(tiny.cuda(), dtype=torch.float16)
    eager = hrnet_fast.optimize(tiny.cuda(), dtype=torch.float16, cuda_graphs=False)
    stop, started = threading.Event(), threading.Event()
    pinned = []

    def pin():
        while not stop.is_set() and len(pinned) < 400:
            pinned.append(torch.empty(1 << 20, dtype=torch.uint8, pin_memory=True))  # new blocks: cudaHostAlloc
            started.set()

    t = threading.Thread(target=pin)
    t.start()
    try:
        started.wait(30)
        outs = []
        with torch.no_grad():
            for n in (1, 2, 3):
                x = _image(n, seed=30 + n).cuda()
                outs.append((fast(x), eager(x)))
    finally:
        stop.set()
        t.join()
    assert fast.inference_plan().graphs.captures == 3 and len(pinned) > 0
    for k, (got, want) in enumerate(outs):
        assert_close_rel(got, want, 2e-3, f"capture {k} with a pinning thread")


@pytest.mark.gpu
def test_eager_model_in_another_thread_while_one_captures(tiny):
    fast = hrnet_fast.optimize(tiny.cuda(), dtype=torch.float16)
    other = hrnet_fast.optimize(tiny.cuda(), dtype=torch.float16, cuda_graphs=False)
    dev = torch.device("cuda", torch.cuda.current_device())
    xo = _image(2, seed=40).cuda()
    with torch.no_grad():
        want_other = other(xo)
    stop = threading.Event()
    results, errors = [], []

    # a stream from a pool of ours: torch.cuda.Stream() could hand out one of the capture's streams again
    serve_stream = _streams.StreamPool().get(dev, 1)[0]

    def serve():
        try:
            with torch.no_grad(), torch.cuda.stream(serve_stream):
                while not stop.is_set() and len(results) < 200:
                    results.append(other(xo))
                torch.cuda.current_stream().synchronize()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with torch.no_grad():
            got = [(fast(x), fast.inference_plan().run(x.contiguous(memory_format=torch.channels_last).half()))
                   for x in (_image(n, seed=41 + n).cuda() for n in (1, 2, 4))]
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert fast.inference_plan().graphs.captures == 3
    capture_streams = {s.cuda_stream for s in fast.inference_plan().graphs.backend.streams.get(dev, 3)}
    assert not capture_streams & {s.cuda_stream for s in _streams._default.get(dev, 3)}
    for k, (a, b) in enumerate(got):
        assert_close_rel(a, b, 2e-3, f"graph {k} vs eager plan")
    torch.cuda.synchronize()
    for r in results:
        assert_close_rel(r, want_other, 2e-3, "the eager model of the other thread")
