"""The frozen inference path of hrnet_fast.optimize(): fused convolution epilogues, the plan, branch-parallel
streams and the CUDA-graph cache (its logic on the CPU with a stand-in capture backend)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import hrnet_fast
from _golden import TINY_YAML, assert_close_rel, randomize_bn
from _support import needs_ext
from hrnet_fast import _inference, _streams
from hrnet_fast._numerics import max_rel_err
from hrnet_fast.cuda_graphs import GraphCache


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomize_bn(hrnet_fast.pose_hrnet(TINY_YAML)).eval()


def _image(n=2, seed=1):
    return torch.randn(n, 3, 128, 96, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ FusedConv


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("epilogue", ["none", "relu", "add", "add_relu"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_conv_matches_plain_ops(stride, epilogue, channels_last, monkeypatch):
    monkeypatch.setattr(_inference.FusedConv, "_MIN_ONEDNN_MACS", 0)  # a small test conv takes the fused path
    g = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(8, 16, 3, stride, 1).eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=fmt)
    fused = _inference.FusedConv(conv)
    assert fused.weight is conv.weight and fused.bias is conv.bias  # shared parameters, no copy
    x = torch.randn(2, 8, 12, 10, generator=g).contiguous(memory_format=fmt)
    with torch.no_grad():
        y = conv(x)
        res = torch.randn(y.shape, generator=g).contiguous(memory_format=fmt) if "add" in epilogue else None
        relu = "relu" in epilogue
        want = torch.relu(y + res) if relu and res is not None else torch.relu(y) if relu else (y + res if res is not None else y)
        for _ in range(2):  # the first call chooses the implementation, the second uses it
            got = fused(x, res, relu)
            assert_close_rel(got, want, 1e-5, f"FusedConv {epilogue}")
    impl = fused._impl[fused._key(x, res, relu)]
    assert fused._key(x, res, relu)[2]  # the big class (the threshold is 0 here)
    assert impl == ("mkldnn" if torch.backends.mkldnn.is_available() else "plain")


def test_fused_conv_keeps_tiny_convolutions_on_the_plain_ops():
    # oneDNN's fused call costs a fixed ~20 us: below a few million multiply-adds the plain ops are faster
    conv = _inference.FusedConv(nn.Conv2d(32, 32, 3, 1, 1).eval())
    g = torch.Generator().manual_seed(12)
    tiny, big = torch.randn(1, 32, 8, 8, generator=g), torch.randn(1, 32, 64, 64, generator=g)
    with torch.no_grad():
        assert_close_rel(conv(tiny, None, True), conv._plain(tiny, None, True), 1e-6, "tiny")
        assert_close_rel(conv(big, None, True), conv._plain(big, None, True), 1e-5, "big")
    cpu = torch.device("cpu")
    assert conv._key(tiny, None, True)[:3] == (cpu, torch.float32, False)
    assert conv._key(big, None, True)[:3] == (cpu, torch.float32, True)
    assert conv._impl[conv._key(tiny, None, True)] == "plain"
    assert conv._impl[conv._key(big, None, True)] == ("mkldnn" if torch.backends.mkldnn.is_available() else "plain")


def test_fused_conv_falls_back_when_the_library_call_fails(monkeypatch):
    conv = _inference.FusedConv(nn.Conv2d(4, 4, 3, 1, 1).eval())

    def broken(*args, **kwargs):
        raise RuntimeError("oneDNN refused this layout")

    monkeypatch.setattr(_inference.FusedConv, "_mkldnn", broken)
    monkeypatch.setattr(_inference.FusedConv, "_MIN_ONEDNN_MACS", 0)
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = conv(x, None, True)
    assert conv._impl[conv._key(x, None, True)] == "plain"
    assert torch.equal(out, torch.relu(nn.functional.conv2d(x, conv.weight, conv.bias, 1, 1)))


def test_fused_conv_rejects_a_disagreeing_library_result(monkeypatch):
    # the implementation is only kept if it agrees with the plain ops on the first input it sees
    conv = _inference.FusedConv(nn.Conv2d(4, 4, 3, 1, 1).eval())
    monkeypatch.setattr(_inference.FusedConv, "_MIN_ONEDNN_MACS", 0)
    monkeypatch.setattr(_inference.FusedConv, "_mkldnn", lambda self, x, r, relu: self._plain(x, r, relu) + 1.0)
    with torch.no_grad():
        conv(torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(4)), None, True)
    assert set(conv._impl.values()) == {"plain"}


def test_fused_conv_decides_per_shape_class(monkeypatch):
    # whether a library has a fused engine depends on the shape: a class it refuses must not take the
    # others down with it, nor be taken down by them (the choice was once made on the first input only)
    conv = _inference.FusedConv(nn.Conv2d(4, 4, 3, 1, 1).eval())
    monkeypatch.setattr(_inference.FusedConv, "_MIN_ONEDNN_MACS", 0)
    monkeypatch.setattr(_inference.FusedConv, "_candidate", lambda self, x, big, relu: "mkldnn")
    calls = []

    def picky(self, x, residual, relu):  # a library without an engine for 10-pixel-high inputs
        calls.append(tuple(x.shape))
        if x.shape[2] == 10:
            raise RuntimeError("no engine for this shape")
        return self._plain(x, residual, relu)

    monkeypatch.setattr(_inference.FusedConv, "_mkldnn", picky)
    g = torch.Generator().manual_seed(6)
    shapes = [(1, 4, 6, 6), (1, 4, 10, 8), (3, 4, 6, 6), (2, 4, 6, 6), (1, 4, 6, 6)]
    with torch.no_grad():
        for shape in shapes:
            x = torch.randn(shape, generator=g)
            assert torch.equal(conv(x, None, True), conv._plain(x, None, True))
    keys = {conv._key(torch.zeros(s), None, True): s for s in shapes}
    assert len(keys) == 3  # batch classes: 1 | 2-3; and a second spatial size
    assert {keys[k]: v for k, v in conv._impl.items()} == {(1, 4, 6, 6): "mkldnn", (1, 4, 10, 8): "plain",
                                                           (2, 4, 6, 6): "mkldnn"}
    assert calls.count((1, 4, 10, 8)) == 1  # refused once, then the plain ops without asking again
    x = torch.randn(1, 4, 6, 6, generator=g)
    assert conv._key(x, None, False) != conv._key(x, None, True) != conv._key(x, x, True)  # the epilogue too
    assert conv._key(x.contiguous(memory_format=torch.channels_last), None, True) != conv._key(x, None, True)


def test_fused_conv_falls_back_when_a_later_call_fails(monkeypatch):
    # the class was decided (the fused call ran and agreed), then the library refuses a call of it
    conv = _inference.FusedConv(nn.Conv2d(4, 4, 3, 1, 1).eval())
    monkeypatch.setattr(_inference.FusedConv, "_MIN_ONEDNN_MACS", 0)
    monkeypatch.setattr(_inference.FusedConv, "_candidate", lambda self, x, big, relu: "cudnn")
    monkeypatch.setattr(_inference.FusedConv, "_cudnn", lambda self, x, residual: self._plain(x, residual, True))
    g = torch.Generator().manual_seed(7)
    x, r = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 6, 6, generator=g)
    with torch.no_grad():
        conv(x, r, True)
        key = conv._key(x, r, True)
        assert conv._impl[key] == "cudnn"

        def refuse(self, x, residual):
            raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")

        monkeypatch.setattr(_inference.FusedConv, "_cudnn", refuse)
        out = conv(x * 2, r, True)
    assert torch.equal(out, torch.relu(nn.functional.conv2d(x * 2, conv.weight, conv.bias, 1, 1) + r))
    assert conv._impl[key] == "plain"


def test_fused_conv_decides_nothing_during_a_capture(monkeypatch):
    # the agreement check syncs with the host, which a CUDA-graph capture forbids: an undecided class runs
    # the plain ops during a capture and is decided by the next eager call
    conv = _inference.FusedConv(nn.Conv2d(4, 4, 3, 1, 1).eval())
    monkeypatch.setattr(_inference.FusedConv, "_candidate", lambda self, x, big, relu: "cudnn")
    fused_calls = []
    monkeypatch.setattr(_inference.FusedConv, "_cudnn",
                        lambda self, x, residual: fused_calls.append(1) or self._plain(x, residual, True))
    capturing = [True]
    monkeypatch.setattr(_inference, "_capturing", lambda x: capturing[0])
    item = torch.Tensor.item

    def no_sync(self):
        assert not capturing[0], ".item() (a host sync) during a capture"
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", no_sync)
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert torch.equal(conv(x, None, True), conv._plain(x, None, True))
        assert conv._impl == {} and fused_calls == []
        capturing[0] = False
        conv(x, None, True)
    assert list(conv._impl.values()) == ["cudnn"] and len(fused_calls) == 1


def test_fused_conv_bounds_its_choices(monkeypatch):
    conv = _inference.FusedConv(nn.Conv2d(2, 2, 1).eval())
    monkeypatch.setattr(_inference.FusedConv, "_MAX_CHOICES", 3)
    with torch.no_grad():
        for w in range(1, 6):
            conv(torch.zeros(1, 2, 1, w), None, False)
    assert len(conv._impl) == 3 and [k[4] for k in conv._impl] == [3, 4, 5]


def test_fused_conv_uses_plain_ops_when_autograd_records():
    conv = _inference.FusedConv(nn.Conv2d(4, 4, 3, 1, 1))
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(5), requires_grad=True)
    conv(x, None, True).sum().backward()
    assert x.grad is not None and conv._impl == {}  # nothing chosen, nothing prepacked


# ------------------------------------------------------------------------------------ the plan


def test_optimized_model_uses_the_plan_and_matches_float64(tiny):
    fast = hrnet_fast.optimize(tiny)
    assert fast.inference_plan() is not None and fast.inference_plan().frozen
    x = _image()
    with torch.no_grad():
        ref = tiny(x)
        out = fast(x)
        exact = copy.deepcopy(tiny).double()(x.double())
    # the unfolded fp32 model's own error against float64 sets the scale (see test_model.py)
    assert_close_rel(out, exact, 4 * max_rel_err(ref, exact), "frozen plan vs float64")


def test_plan_matches_the_folded_module_forward(tiny):
    fast = hrnet_fast.optimize(tiny)
    folded = hrnet_fast.optimize(tiny, fused=False)
    assert not folded.inference_plan().frozen  # input dtype and layout only: the module forward runs
    assert list(fast.state_dict()) == list(folded.state_dict())  # same names: the convs were swapped, not renamed
    x = _image(seed=6)
    with torch.no_grad():
        assert_close_rel(fast(x), folded(x), 1e-5, "plan vs folded forward")


@needs_ext
def test_plan_runs_the_fused_op_and_the_fused_convs(tiny, monkeypatch):
    fe = hrnet_fast.ops.OPS["fused_exchange"].module
    fast = hrnet_fast.optimize(tiny)
    calls = []
    real = torch.ops.hrnet_fast.fused_exchange.default

    class Spy:
        def __call__(self, *args):
            calls.append(1)
            return real(*args)

    monkeypatch.setattr(torch.ops.hrnet_fast.fused_exchange, "default", Spy())
    checks = []
    check = fe._check_args
    monkeypatch.setattr(fe, "_check_args", lambda *a: checks.append(1) or check(*a))
    with torch.no_grad():
        fast(_image(n=1))
        n_rows = sum(len(u) for u in fast.exchange_units())
        assert len(calls) == n_rows and len(checks) == n_rows  # one fused call per output branch, checked once
        fast(_image(n=1, seed=2))
    assert len(calls) == 2 * n_rows and len(checks) == n_rows  # no argument check per call
    chosen = _inference.backend_summary(fast)
    impls = {v for vals in chosen.values() for v in vals.split(",")}
    # the big convolutions (the stem's, the high-resolution branch's) on oneDNN, the tiny ones plain
    assert impls == ({"mkldnn", "plain"} if torch.backends.mkldnn.is_available() else {"plain"})
    assert chosen["conv1"] == ("mkldnn" if torch.backends.mkldnn.is_available() else "plain")


def test_plan_follows_a_model_moved_after_optimize(tiny):
    fast = hrnet_fast.optimize(tiny, channels_last=False).double()
    x = _image(seed=7).double()
    # the same folded (fp32-rounded) weights moved to float64, through the plain module forward
    folded = hrnet_fast.optimize(tiny, channels_last=False, fused=False).double()
    with torch.no_grad():
        out = fast(x)
        want = folded(x)
    assert out.dtype == torch.float64
    assert_close_rel(out, want, 1e-12, "float64 plan")


def test_configure_after_optimize_takes_the_reference_path(tiny):
    fast = hrnet_fast.optimize(tiny)
    x = _image(seed=8)
    with torch.no_grad():
        before = fast(x)
        for u in fast.exchange_units():
            u.configure(fused=False)
        after = fast(x)
    assert_close_rel(after, before, 1e-5, "reference exchange in a frozen model")


def test_compile_of_the_optimized_model_has_no_graph_break(tiny):
    fast = hrnet_fast.optimize(tiny)
    x = _image(n=1, seed=9)
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        assert_close_rel(compiled(x), fast(x), 1e-5, "compiled optimized model")


def test_optimize_argument_errors(tiny):
    with pytest.raises(TypeError, match="cuda_graphs must be None"):
        hrnet_fast.optimize(tiny, cuda_graphs="yes")
    with pytest.raises(ValueError, match="cuda_graphs=True needs fused=True"):
        hrnet_fast.optimize(tiny, fused=False, cuda_graphs=True)
    with pytest.raises(ValueError, match="max_graphs must be a positive int"):
        hrnet_fast.optimize(tiny, max_graphs=0)


# ------------------------------------------------------------------------------------ streams


def test_run_parallel_on_the_cpu_runs_in_order():
    order = []
    out = _streams.run_parallel([lambda i=i: order.append(i) or i * 10 for i in range(4)], torch.zeros(1))
    assert out == [0, 10, 20, 30] and order == [0, 1, 2, 3]


@pytest.mark.gpu
def test_run_parallel_on_cuda_matches_sequential():
    x = torch.randn(64, 64, device="cuda", generator=None)
    fns = [lambda k=k: (x @ x + k).relu() for k in range(4)]
    par = _streams.run_parallel(fns, x)
    torch.cuda.synchronize()
    assert all(torch.equal(a, f()) for a, f in zip(par, fns))


# ------------------------------------------------------------------------------------ CUDA graphs


class FakeCapture:
    """Stand-in for CudaCapture: 'capturing' remembers the function and its static buffers, 'replaying'
    runs it again on them in place (as a graph rewrites its static output)."""

    def __init__(self):
        self.log = []

    def applies(self, x):
        return True

    def capture(self, fn, static_input):
        self.log.append(("capture", tuple(static_input.shape)))
        static_output = fn(static_input)
        return (fn, static_input, static_output), static_output

    def replay(self, graph):
        fn, static_input, static_output = graph
        self.log.append(("replay", tuple(static_input.shape)))
        static_output.copy_(fn(static_input))


def test_graph_cache_captures_once_per_shape_and_replays():
    backend = FakeCapture()
    cache = GraphCache(lambda x: x * 2 + 1, max_graphs=4, backend=backend)
    a, b = torch.ones(2, 3), torch.full((2, 3), 5.0)
    assert torch.equal(cache(a), a * 2 + 1)
    assert torch.equal(cache(b), b * 2 + 1)  # same shape: replayed with the new input copied in
    assert cache.captures == 1 and cache.replays == 2
    assert torch.equal(cache(torch.ones(4, 3)), torch.full((4, 3), 3.0))
    assert cache.captures == 2 and len(cache) == 2


def test_graph_cache_outputs_are_copies_callers_may_keep():
    cache = GraphCache(lambda x: x + 1, backend=FakeCapture())
    first = cache(torch.zeros(3))
    second = cache(torch.ones(3))
    assert torch.equal(first, torch.ones(3)) and torch.equal(second, torch.full((3,), 2.0))


def test_graph_cache_evicts_the_least_recently_used():
    cache = GraphCache(lambda x: x, max_graphs=2, backend=FakeCapture())
    for n in (1, 2, 1, 3):  # 1 is used again before 3 arrives: 2 is the one evicted
        cache(torch.zeros(n))
    keys = [k[0] for k in cache._graphs]
    assert keys == [(1,), (3,)] and cache.captures == 3


def test_graph_cache_keys_on_dtype_and_layout():
    cache = GraphCache(lambda x: x.clone(), backend=FakeCapture())
    x = torch.zeros(1, 3, 4, 4)
    cache(x)
    cache(x.double())
    assert cache.captures == 2
    cache(x.contiguous(memory_format=torch.channels_last))  # same shape and dtype, other layout
    assert cache.captures == 3
    y = torch.zeros(2, 3, 1, 1)  # 1x1 maps: contiguous and channels_last at once, one key
    cache(y)
    cache(y.contiguous(memory_format=torch.channels_last))
    assert cache.captures == 4


def test_graph_cache_runs_eagerly_when_autograd_records():
    backend = FakeCapture()
    cache = GraphCache(lambda x: x * 3, backend=backend)
    x = torch.ones(2, requires_grad=True)
    y = cache(x)
    y.sum().backward()
    assert backend.log == [] and torch.equal(x.grad, torch.full((2,), 3.0))
    with torch.no_grad():
        cache(x)
    assert cache.captures == 1


def test_optimized_model_routes_through_its_graph_cache(tiny):
    fast = hrnet_fast.optimize(tiny)
    backend = FakeCapture()
    plan = fast.inference_plan()
    plan.graphs = GraphCache(plan.run, max_graphs=2, backend=backend)
    x = _image(n=1, seed=10)
    with torch.no_grad():
        want = plan.run(x.contiguous(memory_format=torch.channels_last))
        out1 = fast(x)
        out2 = fast(x)
    assert [e[0] for e in backend.log] == ["capture", "replay", "replay"]
    assert torch.equal(out1, out2) and torch.equal(out1, want)
    assert hrnet_fast.optimize(tiny, cuda_graphs=False).inference_plan().graphs is None


@pytest.mark.gpu
def test_cuda_graphs_on_gpu_match_eager(tiny):
    fast = hrnet_fast.optimize(tiny.cuda(), dtype=torch.float16)
    eager = hrnet_fast.optimize(tiny.cuda(), dtype=torch.float16, cuda_graphs=False)
    x = _image(n=2, seed=11).cuda()
    with torch.no_grad():
        a, b = fast(x), fast(x * 0.5)
        ea, eb = eager(x), eager(x * 0.5)
    graphs = fast.inference_plan().graphs
    assert graphs.captures == 1 and graphs.replays == 2
    assert_close_rel(a, ea, 2e-3, "graph vs eager")
    assert_close_rel(b, eb, 2e-3, "graph vs eager, second input")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_fused_conv_on_gpu_per_shape_class_matches_plain_ops(dtype):
    # odd sizes, batch classes, both layouts, with and without a residual: whatever cuDNN's fused engines
    # accept or refuse per class, every call must give the plain ops' result
    torch.manual_seed(13)
    conv = _inference.FusedConv(nn.Conv2d(16, 16, 3, 1, 1).eval().cuda().to(dtype))
    tol = 1e-3 if dtype == torch.float32 else 1e-2
    with torch.no_grad():
        for n, h, w in ((1, 32, 24), (3, 17, 13), (8, 64, 48), (1, 1, 1), (5, 9, 31)):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(n, 16, h, w, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
                r = torch.randn(n, 16, h, w, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
                for res in (None, r):
                    for _ in range(2):  # the deciding call, then the decided one
                        assert_close_rel(conv(x, res, True), conv._plain(x, res, True), tol, f"{n}x{h}x{w} {fmt}")
    assert set(conv._impl.values()) <= {"cudnn", "plain"}


@pytest.mark.gpu
def test_fused_conv_on_gpu_falls_back_for_a_refused_shape(monkeypatch):
    conv = _inference.FusedConv(nn.Conv2d(16, 16, 3, 1, 1).eval().cuda().half())
    real = _inference.FusedConv._cudnn

    def picky(self, x, residual):  # a cuDNN without a fused engine for 17-pixel-high inputs
        if x.shape[2] == 17:
            raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")
        return real(self, x, residual)

    monkeypatch.setattr(_inference.FusedConv, "_cudnn", picky)
    torch.manual_seed(14)
    with torch.no_grad():
        a = torch.randn(2, 16, 32, 24, device="cuda", dtype=torch.float16)
        b = torch.randn(2, 16, 17, 13, device="cuda", dtype=torch.float16)
        for x in (a, b, a, b):
            assert_close_rel(conv(x, None, True), conv._plain(x, None, True), 1e-2, f"{tuple(x.shape)}")
    assert conv._impl[conv._key(b, None, True)] == "plain"
    assert conv._impl[conv._key(a, None, True)] in ("cudnn", "plain")  # cuDNN's own verdict for the other


@pytest.mark.gpu
def test_capture_of_an_undecided_fused_conv_runs_the_plain_ops():
    # deciding needs a host sync, which would break the capture: the plain ops are captured instead
    conv = _inference.FusedConv(nn.Conv2d(16, 16, 3, 1, 1).eval().cuda().half())
    torch.manual_seed(15)
    static = torch.randn(2, 16, 32, 24, device="cuda", dtype=torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        conv._plain(static, None, True)  # warm up the plain path (cuDNN handle, plan) outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = conv(static, None, True)
    assert conv._impl == {}  # undecided still: the next eager call decides
    static.copy_(torch.randn(2, 16, 32, 24, device="cuda", dtype=torch.float16))
    graph.replay()
    with torch.no_grad():
        assert_close_rel(out, conv._plain(static, None, True), 1e-3, "captured plain ops")
        conv(static, None, True)
    assert len(conv._impl) == 1


@pytest.mark.skipif(not torch.backends.mkldnn.is_available() or not _inference._onednn_bf16(),
                    reason="oneDNN without native bf16 on this CPU")
@pytest.mark.parametrize("epilogue", ["relu", "add_relu"])
def test_fused_conv_runs_bf16_through_onednn(epilogue):
    # issue 20: bf16 on the CPU took aten's unfused convolution + ReLU + add; oneDNN's fused call is faster
    g = torch.Generator().manual_seed(21)
    conv = nn.Conv2d(32, 32, 3, 1, 1).eval().to(torch.bfloat16, memory_format=torch.channels_last)
    fused = _inference.FusedConv(conv)
    x = torch.randn(1, 32, 64, 48, generator=g).to(torch.bfloat16, memory_format=torch.channels_last)
    res = torch.randn(1, 32, 64, 48, generator=g).to(torch.bfloat16, memory_format=torch.channels_last) if "add" in epilogue else None
    with torch.no_grad():
        want = torch.relu(conv(x.double().to(torch.bfloat16)) + (res if res is not None else 0))
        ref64 = torch.relu(F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), 1, 1)
                           + (res.double() if res is not None else 0))
        for _ in range(2):  # the first call chooses, the second runs the choice
            got = fused(x, res, True)
            # bf16 keeps 8 bits: the fused call's error against float64 stays within the plain ops' error bound
            bound = 4 * (want.double() - ref64).abs().max().item() + 1e-2 * ref64.abs().max().item()
            assert (got.double() - ref64).abs().max().item() <= bound
    assert fused._impl[fused._key(x, res, True)] == "mkldnn"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch build")
def test_fused_conv_hot_path_binds_the_onednn_call_and_falls_back_when_it_fails(monkeypatch):
    monkeypatch.setattr(_inference.FusedConv, "_MIN_ONEDNN_MACS", 0)
    g = torch.Generator().manual_seed(31)
    conv = nn.Conv2d(8, 8, 3, 1, 1).eval().to(memory_format=torch.channels_last)
    fused = _inference.FusedConv(conv)
    x = torch.randn(2, 8, 12, 10, generator=g).contiguous(memory_format=torch.channels_last)
    res = torch.randn(2, 8, 12, 10, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = torch.relu(conv(x) + res)
        first = fused(x, res, True)  # chooses (oneDNN), binds nothing yet
        second = fused(x, res, True)  # the full path: runs oneDNN and binds the exact call
        assert len(fused._bound) == 1
        third = fused(x, res, True)  # the bound call
        for got in (first, second, third):
            assert_close_rel(got, want, 1e-5, "FusedConv hot path")
        assert torch.equal(second, third)
        # a bound call that fails: dropped, and the full path answers (oneDNN again here, then bound again)
        calls = []

        def broken(x, residual):
            calls.append(1)
            raise RuntimeError("engine gone")

        fused._bound = {k: broken for k in fused._bound}
        assert_close_rel(fused(x, res, True), want, 1e-5, "after a failed bound call")
        assert calls == [1] and list(fused._bound.values()) != [broken]
        # another exact input (other strides) is not served by the bound call of the first
        xc = x.contiguous()
        assert_close_rel(fused(xc, res, True), want, 1e-5, "contiguous input")
