"""Export: torch.export of the optimized model (the custom ops stay, traced with their fake kernels, with a
dynamic batch), torch.compile(fullgraph=True) without a graph break or a recompile across batch sizes, ONNX
export run in onnxruntime against torch (tiny and W32; a fixed batch of 1 and a dynamic batch; decoding in
the graph), the TensorRT-plugin graph (its FusedExchange nodes evaluated by onnx's reference evaluator
with the documented semantics), argument errors and ``hrnet-fast export``.

The ONNX tests skip without onnx, onnxscript and onnxruntime (optional: pip install "hrnet_fast[export]");
the torch.export, compile and argument-error tests need none of them.
"""
from __future__ import annotations

import copy
import os
import sys

import numpy as np
import pytest
import torch

import hrnet_fast
from _golden import TINY_YAML, assert_close_rel
from _support import needs_ext
from hrnet_fast import cli
from hrnet_fast.cli import export as cli_export
from hrnet_fast import export as hx
from hrnet_fast._numerics import max_rel_err
from hrnet_fast.models.init import realistic_random_init
from hrnet_fast.ops.decode_heatmaps import decode_heatmaps

TINY_HW = (128, 96)
F32_EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def tiny():
    return realistic_random_init(hrnet_fast.pose_hrnet(TINY_YAML), image_hw=TINY_HW, seed=3)


@pytest.fixture(scope="module")
def w32():
    return realistic_random_init(hrnet_fast.pose_hrnet("w32_256x192"), image_hw=(256, 192), seed=4, batches=1,
                                 batch_size=2)


@pytest.fixture
def ort():
    """onnxruntime, skipping the test unless the whole optional export stack is installed."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


def _images(n, hw=TINY_HW, seed=1):
    return torch.randn(n, 3, *hw, generator=torch.Generator().manual_seed(seed))


def _boxes(n, hw=TINY_HW, seed=2):
    gen = torch.Generator().manual_seed(seed)
    center = torch.rand(n, 2, generator=gen) * torch.tensor([4.0 * hw[1], 4.0 * hw[0]])
    s = torch.rand(n, 1, generator=gen) * 2 + 0.5
    return center, torch.cat([s, s * hw[0] / hw[1]], dim=1)


def _session(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _io(path):
    """{name: [dim_param or dim_value]} of the graph's inputs and outputs."""
    import onnx

    m = onnx.load(str(path))
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(m.graph.input) + list(m.graph.output)}


def _op_types(path):
    import onnx

    return {(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node}


def _rows_with_lows(model):
    """Output branches of all exchange units that take lower-resolution inputs (one FusedExchange each)."""
    return sum(1 for u in model.exchange_units() for i in range(len(u)) if i + 1 < u.num_inputs)


# ------------------------------------------------------------------------------------ torch.export, compile


@needs_ext
def test_torch_export_of_the_optimized_model_keeps_the_custom_op_with_a_dynamic_batch(tiny):
    fast = hrnet_fast.optimize(tiny)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        want = {n: fast(_images(n, seed=n)) for n in (1, 3)}
    ep = torch.export.export(fast, (_images(2),), dynamic_shapes={"x": {0: batch}})
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert sum(t == "hrnet_fast.fused_exchange.default" for t in targets) >= _rows_with_lows(tiny)
    assert not [t for t in targets if "mkldnn" in t or "cudnn" in t], "fused conv epilogues must not be traced"
    for n in (1, 3):  # one program for every batch size
        assert_close_rel(ep.module()(_images(n, seed=n)), want[n], 1e-5, f"exported program, batch {n}")
    with torch.no_grad():  # tracing left the model's prepared calls usable
        assert_close_rel(fast(_images(3, seed=3)), want[3], 0.0, "optimized model after torch.export")


@needs_ext
def test_torch_export_of_decoding_keeps_the_custom_op():
    class Decode(torch.nn.Module):
        def forward(self, heatmaps, center, scale):
            return hrnet_fast.decode_heatmaps(heatmaps, center, scale, method="quarter")

    batch = torch.export.Dim("batch", min=1)
    hm = torch.randn(2, 17, 32, 24)
    ep = torch.export.export(Decode(), (hm, *_boxes(2)),
                             dynamic_shapes={"heatmaps": {0: batch}, "center": {0: batch}, "scale": {0: batch}})
    assert "hrnet_fast.decode_heatmaps.default" in [str(n.target) for n in ep.graph.nodes]
    for n in (1, 4):
        hm = torch.randn(n, 17, 32, 24, generator=torch.Generator().manual_seed(n))
        got, want = ep.module()(hm, *_boxes(n)), decode_heatmaps(hm, *_boxes(n), method="quarter")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@needs_ext
def test_compile_fullgraph_traces_the_fused_op_once_for_several_batch_sizes(tiny):
    # the op's fake kernel keeps the batch symbolic: no graph break (fullgraph raises) and no recompile
    fast = hrnet_fast.optimize(tiny)
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    with torch.no_grad():
        fast(_images(2))  # prepare the plan's calls first: their cache is guarded on
        compiled = torch.compile(fast, fullgraph=True, backend=counting_backend, dynamic=True)
        for n in (2, 3, 5):
            assert_close_rel(compiled(_images(n, seed=n)), fast(_images(n, seed=n)), 1e-6, f"compiled, batch {n}")
    assert len(graphs) == 1
    assert any("fused_exchange" in str(node.target) for node in graphs[0].graph.nodes)


# ------------------------------------------------------------------------------------ ONNX: tiny


def test_onnx_tiny_dynamic_batch_matches_torch(tiny, ort, tmp_path):
    path = hx.export_onnx(tiny, tmp_path / "tiny.onnx")
    import onnx

    model = onnx.load(path)
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    assert _io(path) == {"images": ["batch", 3, 128, 96], "heatmaps": ["batch", 17, 32, 24]}
    # the exchange units as the official op sequence, BatchNorm folded into the convolutions
    assert _op_types(path) == {("", "Conv"), ("", "Resize"), ("", "Add"), ("", "Relu")}
    resize = [n for n in model.graph.node if n.op_type == "Resize"]
    assert len(resize) == sum(u.num_inputs - 1 - i for u in tiny.exchange_units() for i in range(len(u)))  # one per (i, j > i)
    assert all(onnx.helper.get_attribute_value(a) == b"nearest" for n in resize for a in n.attribute if a.name == "mode")
    sess = _session(ort, path)
    for n in (1, 3):
        x = _images(n, seed=n)
        got = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
        with torch.no_grad():
            want = tiny(x)
        print(f"tiny plain dynamic N={n}: max rel err {max_rel_err(got, want):.2e}")
        assert_close_rel(got, want, 1e-4, f"onnxruntime vs torch, tiny, batch {n}")


def test_onnx_tiny_optimized_batch_1_leaves_the_model_untouched(tiny, ort, tmp_path):
    fast = hrnet_fast.optimize(tiny)
    x = _images(1, seed=5)
    with torch.no_grad():
        before = fast(x)
    state = {k: v.clone() for k, v in fast.state_dict().items()}
    plan, config = fast.inference_plan(), fast.inference_config
    prepared = [(u, plan.exchange(u).prepared) for u in fast.exchange_units()]
    path = hx.export_onnx(fast, tmp_path / "fast.onnx", batch=1)
    assert _io(path) == {"images": [1, 3, 128, 96], "heatmaps": [1, 17, 32, 24]}
    got = torch.from_numpy(_session(ort, path).run(None, {"images": x.numpy()})[0])
    print(f"tiny optimized batch 1: max rel err {max_rel_err(got, before):.2e}")
    assert_close_rel(got, before, 1e-4, "onnxruntime vs optimize()d torch, tiny, batch 1")
    # the caller's model: same plan, caches, parameters, layout and output
    assert fast.inference_plan() is plan and fast.inference_config == config and plan.channels_last
    assert all(plan.exchange(u).prepared is p for u, p in prepared) and all(u.fused for u in fast.exchange_units())
    after = fast.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(fast(x), before)


@pytest.mark.parametrize("method", ["argmax", "quarter"])
def test_onnx_with_decoding_returns_the_same_keypoints(tiny, ort, tmp_path, method):
    path = hx.export_onnx(tiny, tmp_path / f"tiny_{method}.onnx", decode=method)
    assert _io(path) == {"images": ["batch", 3, 128, 96], "center": ["batch", 2], "scale": ["batch", 2],
                         "heatmaps": ["batch", 17, 32, 24], "coords": ["batch", 17, 2], "maxvals": ["batch", 17, 1]}
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(path)).graph
    values = list(graph.value_info) + list(graph.input) + list(graph.output)
    assert all(v.type.tensor_type.elem_type != onnx.TensorProto.DOUBLE for v in values), "no float64 (TensorRT has none)"
    sess = _session(ort, path)
    for n in (1, 4):
        x = _images(n, seed=10 + n)
        center, scale = _boxes(n, seed=n)
        heatmaps, coords, maxvals = (torch.from_numpy(a) for a in sess.run(
            None, {"images": x.numpy(), "center": center.numpy(), "scale": scale.numpy()}))
        # float32 back-transform against the float64 one: a few float32 ulps of the image coordinates
        tol = 8 * F32_EPS * float(center.abs().max() + 200 * scale.abs().max())
        # the graph's decoding of its own heatmaps is hrnet_fast.decode_heatmaps
        want_c, want_m = decode_heatmaps(heatmaps, center, scale, method=method)
        assert torch.equal(maxvals, want_m)
        assert (coords - want_c).abs().max() <= tol, (coords - want_c).abs().max()
        # and the keypoints are those of the torch model
        with torch.no_grad():
            ref = tiny(x)
        assert_close_rel(heatmaps, ref, 1e-4, f"heatmaps with decoding, batch {n}")
        ref_c, ref_m = decode_heatmaps(ref, center, scale, method=method)
        err = (coords - ref_c).abs().max().item()
        print(f"decode={method} batch {n}: coords vs torch {err:.2e} px (tol {tol:.1e}), "
              f"maxvals rel {max_rel_err(maxvals, ref_m):.1e}")
        assert err <= tol
        assert_close_rel(maxvals, ref_m, 1e-4, "maxvals vs torch")


def _edge_heatmaps(n=6, k=5, h=16, w=12, seed=0):
    """Heatmaps with the cases decoding treats specially: NaN, all negative, peaks on the border and one
    pixel inside it, ties (the first maximum wins), equal neighbours (no quarter offset)."""
    hm = torch.randn(n, k, h, w, generator=torch.Generator().manual_seed(seed))
    hm[0, 0, 3, 4] = float("nan")
    hm[0, 1] = -hm[0, 1].abs() - 1.0
    hm[1, 0, 0, 5] = 50.0
    hm[1, 1, h - 1, w - 1] = 50.0
    hm[1, 2, 1, 1] = 50.0
    hm[1, 3, 2, 2] = 50.0
    hm[2, 0, 5, 5] = hm[2, 0, 9, 2] = 50.0
    hm[2, 1, 7, 6] = 50.0
    hm[2, 1, 7, 5] = hm[2, 1, 7, 7] = 3.0
    return hm


@pytest.mark.parametrize("method", ["argmax", "quarter"])
def test_float32_decoding_matches_the_float64_reference_on_edge_cases(method):
    from hrnet_fast.ops.decode_heatmaps import METHODS, decode_heatmaps_reference

    hm = _edge_heatmaps()
    center, scale = _boxes(hm.shape[0], hw=(64, 48))
    for c, s in ((None, None), (center, scale)):
        want = decode_heatmaps_reference(hm, None, None, c, s, METHODS[method], True, 11)
        got = decode_heatmaps_reference(hm, None, None, c, s, METHODS[method], True, 11, coord_dtype=torch.float32)
        assert torch.equal(got[1], want[1]) or torch.allclose(got[1], want[1], equal_nan=True)
        if c is None:  # heatmap coordinates: integers and quarters, exact in float32
            assert torch.equal(got[0], want[0])
        else:
            tol = 8 * F32_EPS * float(center.abs().max() + 200 * scale.abs().max())
            assert (got[0] - want[0]).abs().max() <= tol


@pytest.mark.parametrize("method", ["argmax", "quarter"])
def test_onnx_decoding_graph_on_edge_cases(ort, tmp_path, method):
    # the decoding part of the exported graph alone (the network replaced by an identity), on heatmaps no
    # random network produces, against hrnet_fast.decode_heatmaps
    module = hx._Decoded(torch.nn.Identity(), method).eval()
    hm = _edge_heatmaps()
    batch = torch.export.Dim("batch", min=1)
    with hx._quiet_exporter():
        program = torch.onnx.export(module, (hm[:2], *_boxes(2, hw=(64, 48))), dynamo=True, verbose=False,
                                    input_names=["images", "center", "scale"], output_names=["heatmaps", "coords", "maxvals"],
                                    dynamic_shapes={k: {0: batch} for k in ("images", "center", "scale")})
    program.save(str(tmp_path / "decode.onnx"))
    center, scale = _boxes(hm.shape[0], hw=(64, 48))
    _, coords, maxvals = _session(ort, tmp_path / "decode.onnx").run(
        None, {"images": hm.numpy(), "center": center.numpy(), "scale": scale.numpy()})
    want_c, want_m = decode_heatmaps(hm, center, scale, method=method)
    assert torch.allclose(torch.from_numpy(maxvals), want_m, rtol=0, atol=0, equal_nan=True)
    tol = 8 * F32_EPS * float(center.abs().max() + 200 * scale.abs().max())
    assert (torch.from_numpy(coords) - want_c).abs().max() <= tol


def test_onnx_float16_and_the_highest_opset_run_in_onnxruntime(tiny, ort, tmp_path):
    import onnx

    path = hx.export_onnx(tiny, tmp_path / "tiny16.onnx", dtype=torch.float16, batch=2, opset=hx.max_opset())
    assert {o.domain: o.version for o in onnx.load(path).opset_import}[""] == hx.max_opset()
    sess = _session(ort, path)
    assert sess.get_inputs()[0].type == "tensor(float16)" and sess.get_outputs()[0].type == "tensor(float16)"
    x = _images(2, seed=7)
    got = torch.from_numpy(sess.run(None, {"images": x.half().numpy()})[0])
    with torch.no_grad():
        want = tiny(x)
    print(f"tiny float16: max rel err vs float32 torch {max_rel_err(got, want):.2e}")
    assert_close_rel(got.float(), want, 1e-2, "float16 onnxruntime vs float32 torch")


def test_trt_plugin_graph_has_one_fused_exchange_node_per_output_branch(tiny, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    fast = hrnet_fast.optimize(tiny)
    path = hx.export_onnx(fast, tmp_path / "trt.onnx", batch=1, trt_plugins=True)
    model = onnx.load(path)
    assert {o.domain: o.version for o in model.opset_import}[hx.PLUGIN_DOMAIN] == hx.PLUGIN_VERSION
    assert _op_types(path) == {("", "Conv"), ("", "Add"), ("", "Relu"), (hx.PLUGIN_DOMAIN, hx.PLUGIN_OP)}
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.domain == hx.PLUGIN_DOMAIN]
    assert len(nodes) == _rows_with_lows(tiny)
    for n in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        k = len(attrs["scales"])
        assert attrs["relu"] == 1 and all(s in (2, 4, 8) for s in attrs["scales"])
        assert len(n.input) == 1 + 3 * k
        ws, bs = n.input[1 + k:1 + 2 * k], n.input[1 + 2 * k:]
        assert all(len(inits[w]) == 2 for w in ws) and all(len(inits[b]) == 1 for b in bs), n

    # The node means what PLUGIN_DOC says: onnx's reference evaluator, given that definition in numpy,
    # reproduces the torch model.
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class FusedExchange(OpRun):
        op_domain = hx.PLUGIN_DOMAIN

        def _run(self, base, *inputs, scales=None, relu=None):
            k = len(scales)
            y = base.astype(np.float64)
            for low, w, b, s in zip(inputs[:k], inputs[k:2 * k], inputs[2 * k:], scales):
                z = np.einsum("ck,nkhw->nchw", w, low) + b[None, :, None, None]
                y = y + z.repeat(s, axis=2).repeat(s, axis=3)
            return ((np.maximum(y, 0) if relu else y).astype(base.dtype),)

    x = _images(1, seed=6)
    got = ReferenceEvaluator(path, new_ops=[FusedExchange]).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        want = tiny(x)
    print(f"tiny TensorRT-plugin graph in onnx's reference evaluator: max rel err {max_rel_err(torch.from_numpy(got), want):.2e}")
    assert_close_rel(torch.from_numpy(got), want, 1e-4, "plugin graph (reference evaluator) vs torch")


# ------------------------------------------------------------------------------------ ONNX: W32


@pytest.mark.slow
@pytest.mark.parametrize("variant, batch", [("plain", "dynamic"), ("optimized", 1)])
def test_onnx_w32_matches_torch(w32, ort, tmp_path, variant, batch):
    import time

    model = w32 if variant == "plain" else hrnet_fast.optimize(w32)
    t0 = time.perf_counter()
    path = hx.export_onnx(model, tmp_path / "w32.onnx", batch=batch)
    print(f"W32 {variant} batch={batch}: exported in {time.perf_counter() - t0:.1f} s")
    sess = _session(ort, path)
    for n in ((1, 2) if batch == "dynamic" else (batch,)):
        x = _images(n, hw=(256, 192), seed=20 + n)
        got = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
        with torch.no_grad():
            want = model(x)
        print(f"W32 {variant} batch={batch} N={n}: max rel err {max_rel_err(got, want):.2e}")
        assert_close_rel(got, want, 1e-4, f"onnxruntime vs torch, W32 {variant}, N={n}")


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(opset=17), ValueError, r"opset must be an int from 18 to \d+"),
    (dict(opset=99), ValueError, r"opset must be an int from 18 to \d+ .*got 99"),
    (dict(opset="18"), ValueError, "opset must be an int"),
    (dict(dtype=torch.bfloat16), ValueError, "dtype must be torch.float32 or torch.float16, got torch.bfloat16"),
    (dict(dtype=torch.float64), ValueError, "dtype must be torch.float32 or torch.float16, got torch.float64"),
    (dict(batch=0), ValueError, "batch must be 'dynamic' or a positive int, got 0"),
    (dict(batch="dyn"), ValueError, "batch must be 'dynamic' or a positive int"),
    (dict(batch=True), ValueError, "batch must be 'dynamic' or a positive int"),
    (dict(decode="dark"), ValueError, "decode must be None, 'argmax' or 'quarter', got 'dark'"),
    (dict(trt_plugins="yes"), TypeError, "trt_plugins must be a bool"),
])
def test_bad_arguments_raise_before_anything_runs(tiny, tmp_path, monkeypatch, kwargs, error, match):
    monkeypatch.setattr(hx, "_export_copy", lambda *a: pytest.fail("the export started"))
    with pytest.raises(error, match=match):
        hx.export_onnx(tiny, tmp_path / "m.onnx", **kwargs)
    assert not os.listdir(tmp_path)


def test_bad_model_and_path(tiny, tmp_path):
    with pytest.raises(TypeError, match="model must be an hrnet_fast PoseHighResolutionNet"):
        hx.export_onnx(torch.nn.Conv2d(3, 3, 1), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="is a directory"):
        hx.export_onnx(tiny, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        hx.export_onnx(tiny, tmp_path / "missing" / "m.onnx")


def test_old_torch_and_missing_packages_are_clear_errors(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(RuntimeError, match=r"needs torch >= 2\.6 .*this is torch 2\.5\.1"):
        hx.export_onnx(tiny, tmp_path / "m.onnx")
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"onnxscript are not installed: pip install \"hrnet_fast\[export\]\""):
        hx.export_onnx(tiny, tmp_path / "m.onnx")


def test_export_onnx_is_a_lazy_public_name():
    assert hrnet_fast.export_onnx is hx.export_onnx and "export_onnx" in hrnet_fast.__all__


# ------------------------------------------------------------------------------------ CLI


def _usage_error(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("[hrnet-fast] ")]
    assert "Traceback" not in err and lines[0].startswith("usage: hrnet-fast")
    assert lines[-1].startswith("hrnet-fast export: error: ") and expected in lines[-1], lines[-1]


@pytest.mark.parametrize("args, expected", [
    (["--batch", "0"], "argument --batch: expected 'dynamic' or a positive integer, got '0'"),
    (["--batch", "many"], "argument --batch: expected 'dynamic' or a positive integer, got 'many'"),
    (["--opset", "17"], "--opset 17: expected 18 to"),
    (["--dtype", "bf16"], "argument --dtype: invalid choice: 'bf16'"),
    (["--decode", "dark"], "argument --decode: invalid choice: 'dark'"),
    (["--trt-plugins", "--check"], "--check runs the graph in onnxruntime, which cannot run the --trt-plugins nodes"),
    (["--weights", "/nonexistent/ckpt.pth"], "--weights /nonexistent/ckpt.pth: no such file"),
    (["--config", "nope"], "--config nope: unknown config name 'nope'"),
])
def test_cli_export_bad_arguments_exit_2(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.setattr(cli_export, "run", lambda a: pytest.fail("the export started"))
    _usage_error(capsys, ["export", "--out", str(tmp_path / "m.onnx"), *args], expected)
    assert not os.listdir(tmp_path)


def test_cli_export_out_must_be_a_writable_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_export, "run", lambda a: pytest.fail("the export started"))
    _usage_error(capsys, ["export", "--out", str(tmp_path), "--config", TINY_YAML], f"--out {tmp_path}: is a directory")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    _usage_error(capsys, ["export", "--out", str(blocker / "m.onnx")], f"--out {blocker / 'm.onnx'}: cannot write there")


def test_cli_export_without_onnxruntime_for_check_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    _usage_error(capsys, ["export", "--config", TINY_YAML, "--out", str(tmp_path / "m.onnx"), "--check"],
                 'onnxruntime are not installed: pip install "hrnet_fast[export]"')


def test_cli_export_writes_and_checks_the_model(tmp_path, capsys, ort):
    out = tmp_path / "tiny.onnx"
    assert cli.main(["export", "--config", TINY_YAML, "--out", str(out), "--batch", "2", "--decode", "argmax",
                     "--optimize", "--check"]) == 0
    captured = capsys.readouterr()
    assert "no --weights: exporting RANDOM weights" in captured.err
    assert f"wrote {out}" in captured.out and "images, center, scale -> heatmaps, coords, maxvals" in captured.out
    assert "onnxruntime vs torch: heatmaps_rel" in captured.out and "coords_px" in captured.out
    assert _io(out)["images"] == [2, 3, 128, 96]


def test_verify_onnx_reports_the_errors(tiny, ort, tmp_path):
    path = hx.export_onnx(tiny, tmp_path / "tiny.onnx", decode="quarter")
    errors = hx.verify_onnx(path, tiny, batch_sizes=(1, 3))
    assert set(errors) == {"heatmaps_rel", "coords_px", "maxvals_rel"}
    assert errors["heatmaps_rel"] < 1e-4 and errors["maxvals_rel"] < 1e-4 and errors["coords_px"] < 1e-3, errors
    broken = copy.deepcopy(tiny)
    with torch.no_grad():
        broken.final_layer.bias.add_(1.0)  # a model that no longer matches the file
    assert hx.verify_onnx(path, broken, batch_sizes=(1,))["heatmaps_rel"] > 1e-2
