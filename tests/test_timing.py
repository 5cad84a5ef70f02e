"""The timing harness (hrnet_fast._timing): statistics, interleaved rounds, and its CUDA paths (events,
graph capture with side-stream warm-up) run on the CPU against a stand-in for torch.cuda, so that a
NameError or a wrong call order in code that only runs on a GPU shows here."""
import contextlib
import time

import pytest
import torch

from hrnet_fast import _timing


def test_summarize_quantiles_and_spread():
    st = _timing.summarize([5.0, 1.0, 2.0, 3.0, 4.0])
    assert st["ms"] == 3.0 and st["p20_ms"] == 2.0 and st["p80_ms"] == 4.0 and st["runs"] == 5
    assert st["spread"] == pytest.approx((4.0 - 2.0) / 3.0)
    with pytest.raises(ValueError, match="at least one"):
        _timing.summarize([])


def test_measure_cpu_counts_calls_and_times_them():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    st = _timing.measure(fn, "cpu", min_time=0.0, min_runs=4, warmup=2)
    assert st["runs"] == 4 and st["calls"] == 4 and len(calls) == 2 + 4
    assert 1.5 <= st["p20_ms"] <= st["ms"] <= st["p80_ms"] < 200


def test_measure_sample_time_groups_calls():
    st = _timing.measure(lambda: time.sleep(0.001), "cpu", min_time=0.0, min_runs=2, warmup=0, sample_time=0.01)
    assert st["calls"] >= 2 * st["runs"], st  # ~1 ms calls grouped into samples of >= 10 ms
    assert st["ms"] < 50


def test_measure_rounds_interleaves_and_reports_round_spread():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    res = _timing.measure_rounds(fns, "cpu", rounds=3, min_time=0.0, min_runs=1, warmup=0)
    assert order == ["a", "b"] * 3  # one sample each, round after round
    for st in res.values():
        assert len(st["rounds_ms"]) == 3 and st["round_spread"] >= 0 and st["runs"] == 3


def test_load_and_spread_warnings():
    assert _timing.load_warning(load=0.5, ncores=2) is None
    assert _timing.load_warning(load=3.5, ncores=2) == "load average 3.5 exceeds the 2 cores: other processes share the CPU"
    assert _timing.spread_warnings({"x": {"round_spread": 0.05}, "y": {"ms": 1.0}}) == []
    assert _timing.spread_warnings({"x": {"round_spread": 0.4}}, threshold=0.15) == [
        "x: repeated rounds differ by 40.0% (limit 15%)"]


def test_cuda_graph_needs_a_cuda_device():
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        _timing.measure(lambda: None, "cpu", cuda_graph=True)


class _FakeCuda:
    """What _timing uses of torch.cuda, recording the calls; graph replays re-run the captured callable."""

    def __init__(self):
        self.log = []
        self.capturing = None
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t = None

            def record(self, stream=None):
                self.t = time.perf_counter()

            def synchronize(self):
                pass

            def elapsed_time(self, other):
                return (other.t - self.t) * 1e3

        class Stream:
            def wait_stream(self, other):
                fake.log.append("wait")

        class CUDAGraph:
            def __init__(self):
                self.fns = []

            def replay(self):
                fake.log.append("replay")
                for f in self.fns:
                    f()

        @contextlib.contextmanager
        def stream(s):
            fake.log.append("side")
            yield
            fake.log.append("main")

        @contextlib.contextmanager
        def graph(g):
            fake.capturing = g
            yield
            fake.capturing = None

        self.Event, self.Stream, self.CUDAGraph, self.stream, self.graph = Event, Stream, CUDAGraph, stream, graph
        self.current_stream = Stream
        self.synchronize = lambda device=None: None


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = _FakeCuda()
    for name in ("Event", "Stream", "CUDAGraph", "stream", "graph", "current_stream", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    return fake


def _counting(fake):
    counts = {"eager": 0, "captured": 0}

    def fn():
        if fake.capturing is not None:
            counts["captured"] += 1
            fake.capturing.fns.append(lambda: counts.__setitem__("eager", counts["eager"] + 1))
        else:
            counts["eager"] += 1
        return "out"

    return fn, counts


def test_capture_cuda_graph_warms_up_on_a_side_stream(fake_cuda):
    fn, counts = _counting(fake_cuda)
    graph, out = _timing.capture_cuda_graph(fn, calls=4, warmup=3)
    assert out == "out" and counts["captured"] == 4
    assert counts["eager"] == 3 + 4  # warm-up, then the upload replay runs the 4 captured calls
    assert fake_cuda.log[:4] == ["wait", "side", "main", "wait"] and fake_cuda.log[-1] == "replay"


def test_measure_cuda_events_and_graph(fake_cuda):
    fn, counts = _counting(fake_cuda)
    st = _timing.measure(fn, "cuda", min_time=0.0, min_runs=3, warmup=1)
    assert st["runs"] == 3 and counts["captured"] == 0
    st = _timing.measure(fn, "cuda", min_time=0.0, min_runs=3, cuda_graph=True, graph_calls=5)
    assert counts["captured"] == 5 and st["calls"] == 3 * 5
    res = _timing.measure_rounds({"a": fn, "b": fn}, "cuda", rounds=2, min_time=0.0, min_runs=2, cuda_graph=True,
                                 graph_calls=2)
    assert set(res) == {"a", "b"} and all(len(r["rounds_ms"]) == 2 for r in res.values())
