"""CPU engines behind optimize(model, engine=...): OpenVINO and onnxruntime running hrnet_fast's ONNX export.

Each engine's heatmaps against the official model in fp32 (the tolerance of tests/test_model.py's optimize
tests), a dynamic batch, deep copies that compile again, the pickling error, the missing-package message,
"auto"'s choice, PoseEstimator(engine=...) and ``hrnet-fast bench --engines``.

The ONNX export of the tiny network is done once (module fixture); the tests of the wiring around it
(optimize, auto, PoseEstimator, bench) reuse that graph through a monkeypatched ``engines.onnx_bytes``, and
one test exports through ``optimize(engine="auto")`` itself. Without the optional packages the engine tests
skip; with ``CI=true`` they run (the Makefile installs the extras) and fail on a missing package.
"""
from __future__ import annotations

import copy
import importlib
import io
import json
import os
import sys

import numpy as np
import pytest
import torch

import hrnet_fast
from _golden import TINY_YAML, assert_close_rel, randomize_bn
from hrnet_fast import cli, engines
from hrnet_fast._numerics import max_rel_err
from hrnet_fast.models.init import realistic_random_init

TINY_HW = (128, 96)
CI = os.environ.get("CI") == "true"
ENGINE_NAMES = ("openvino", "onnxruntime")


def _require(name: str):
    """The engine's package (and the export stack): skipped when absent, except with CI=true."""
    for pkg in (name, "onnx", "onnxscript"):
        if CI:
            importlib.import_module(pkg)  # CI installs the extras: a missing package is a failure
        else:
            pytest.importorskip(pkg, reason=f'optional: pip install "hrnet_fast[{name}]"')


def _images(n, hw=TINY_HW, seed=1):
    return torch.randn(n, 3, *hw, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny():
    return realistic_random_init(hrnet_fast.pose_hrnet(TINY_YAML), image_hw=TINY_HW, seed=3)


@pytest.fixture(scope="module")
def graph(tiny):
    """The ONNX graph of ``tiny`` (one export for the module)."""
    for pkg in ("onnx", "onnxscript"):
        importlib.import_module(pkg) if CI else pytest.importorskip(pkg, reason='optional: pip install "hrnet_fast[export]"')
    return engines.onnx_bytes(tiny)


@pytest.fixture
def cached_export(monkeypatch, graph, tiny):
    """engines.onnx_bytes returns the module's graph of ``tiny`` (no second export); counts the calls."""
    calls = []

    def fake(model):
        assert model.cfg == tiny.cfg
        calls.append(model)
        return graph

    monkeypatch.setattr(engines, "onnx_bytes", fake)
    return calls


@pytest.fixture(scope="module", params=ENGINE_NAMES)
def engine_module(request, graph, tiny):
    _require(request.param)
    return engines.EngineModule(graph, request.param, cfg=tiny.cfg)


def _reference_errors(tiny, x):
    """(official fp32 heatmaps, their error against float64): the tolerance base of test_model.py."""
    with torch.no_grad():
        ref = tiny(x)
        exact = copy.deepcopy(tiny).double()(x.double())
    return ref, exact, max_rel_err(ref, exact)


# ---------------------------------------------------------------------------------------------- equivalence


def test_engine_matches_the_official_model_in_fp32_with_a_dynamic_batch(engine_module, tiny):
    assert engine_module.input_hw == TINY_HW and engine_module.dtype == torch.float32
    for n in (1, 3):  # one compiled graph, several batch sizes
        x = _images(n, seed=10 + n)
        ref, exact, ref_err = _reference_errors(tiny, x)
        out = engine_module(x)
        assert out.shape == (n, 17, 32, 24) and out.dtype == torch.float32 and out.device == x.device
        print(f"{engine_module.engine} batch {n}: vs float64 {max_rel_err(out, exact):.2e} (official fp32: {ref_err:.2e})")
        # as test_optimize_matches_unfolded_eval_and_leaves_model_untouched: within 4x the official fp32 error
        assert 0 < ref_err < 1e-4
        assert_close_rel(out, exact, 4 * ref_err, f"{engine_module.engine} vs the float64 model, batch {n}")
    assert engine_module(torch.zeros(0, 3, *TINY_HW)).shape == (0, 17, 32, 24)
    with torch.no_grad():  # a float64 input is run in float32, as optimize()'s module casts its input
        assert_close_rel(engine_module(_images(2).double()), engine_module(_images(2)), 0.0, "float64 input")


def test_engine_outputs_are_fresh_tensors(engine_module):
    a = engine_module(_images(1, seed=4))
    keep = a.clone()
    engine_module(_images(1, seed=5))  # OpenVINO reuses its output buffer: the first result must not change
    assert torch.equal(a, keep)


def test_engine_rejects_bad_inputs(engine_module):
    with pytest.raises(ValueError, match=r"x must be \(N, 3, 128, 96\).*got \(1, 3, 64, 48\)"):
        engine_module(torch.zeros(1, 3, 64, 48))
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        engine_module(torch.zeros(1, 3, *TINY_HW, dtype=torch.uint8))
    with pytest.raises(TypeError, match="x must be a tensor"):
        engine_module(np.zeros((1, 3, *TINY_HW), np.float32))


def test_deepcopy_compiles_again_and_pickling_names_the_engine(engine_module):
    x = _images(2, seed=7)
    twin = copy.deepcopy(engine_module)
    native = "_compiled" if engine_module.engine == "openvino" else "_session"
    assert getattr(twin, native) is not None and getattr(twin, native) is not getattr(engine_module, native)
    assert_close_rel(twin(x), engine_module(x), 0.0, "deep copy")
    name = engines.PACKAGES[engine_module.engine][2]
    with pytest.raises(TypeError, match=f"an {name} engine module cannot be pickled.*engine='{engine_module.engine}'"):
        torch.save(engine_module, io.BytesIO())


def test_openvino_bf16_sets_the_precision_hint(graph, tiny):
    _require("openvino")
    if "BF16" not in engines._ov_capabilities():
        with pytest.raises(ValueError, match="does not compute in bf16 on this CPU"):
            engines.EngineModule(graph, "openvino", dtype=torch.bfloat16, cfg=tiny.cfg)
        return
    m = engines.EngineModule(graph, "openvino", dtype=torch.bfloat16, cfg=tiny.cfg)
    assert str(m._compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'bfloat16'>", "bf16")
    x = _images(1, seed=8)
    with torch.no_grad():
        ref = tiny(x)
    out = m(x)
    assert out.dtype == torch.bfloat16
    err = max_rel_err(out.float(), ref)
    with torch.no_grad():
        torch_err = max_rel_err(hrnet_fast.optimize(tiny, dtype=torch.bfloat16)(x).float(), ref)
    print(f"bf16 max rel err vs fp32: OpenVINO {err:.2e}, hrnet_fast {torch_err:.2e}")
    # bf16 really ran (not fp32), and errs like torch in bf16 (auto's criterion: at most twice as much)
    assert 1e-4 < err <= 2 * torch_err
    f32 = engines.EngineModule(graph, "openvino", cfg=tiny.cfg)  # and fp32 is asked for explicitly
    assert "float32" in str(f32._compiled.get_property("INFERENCE_PRECISION_HINT")) or \
        str(f32._compiled.get_property("INFERENCE_PRECISION_HINT")) == "f32"


def test_openvino_per_layer_counters(graph, tiny):
    _require("openvino")
    m = engines.EngineModule(graph, "openvino", cfg=tiny.cfg, options={"PERF_COUNT": True})
    with pytest.raises(RuntimeError, match="no call has run"):
        m.profile()
    m(_images(1))
    prof = m.profile()
    convs = [p for p in prof if p["node_type"] == "Convolution"]
    assert len(convs) >= 10 and all(p["real_us"] >= 0 and p["exec_type"] for p in prof)


@pytest.mark.slow
def test_w32_batch_1_openvino():
    """The real network in the default engine of "auto": one export of W32 (about 20 s on 2 cores), batch 1,
    within test_optimize_w32_matches_eval's tolerance of the official model (onnxruntime runs the same W32
    graph in tests/test_export.py)."""
    _require("openvino")
    torch.manual_seed(0)
    model = randomize_bn(hrnet_fast.pose_hrnet("w32_256x192")).eval()
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    out = engines.EngineModule(engines.onnx_bytes(model), "openvino", cfg=model.cfg)(x)
    print(f"W32 OpenVINO batch 1: max rel err {max_rel_err(out, ref):.2e}")
    assert_close_rel(out, ref, 1e-4, "W32 OpenVINO batch 1")


# ---------------------------------------------------------------------------------------------- arguments


def test_missing_package_names_the_package_and_the_extra(monkeypatch, tiny):
    real = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("openvino", "onnxruntime"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(engines.importlib, "import_module", fake_import)
    for name in ENGINE_NAMES:
        with pytest.raises(ImportError, match=rf'needs the optional package\(s\) {name}.*pip install "hrnet_fast\[{name}\]"'):
            hrnet_fast.optimize(tiny, engine=name)
    assert engines.engine_versions() == {"openvino": None, "onnxruntime": None}
    # "auto" then is torch's module, and says why
    fast = hrnet_fast.optimize(tiny, engine="auto")
    assert isinstance(fast, hrnet_fast.PoseHighResolutionNet) and fast.inference_plan() is not None
    assert [e for e, _ in fast.engine_notes] == ["openvino", "onnxruntime", "torch"]
    assert 'pip install "hrnet_fast[openvino]"' in fast.engine_notes[0][1]


def test_engine_argument_errors(tiny):
    with pytest.raises(ValueError, match="engine must be 'torch', 'openvino', 'onnxruntime', 'auto' or 'inductor', got 'tensorrt'"):
        hrnet_fast.optimize(tiny, engine="tensorrt")
    with pytest.raises(ValueError, match="engine must be 'torch', 'openvino', 'onnxruntime', 'auto' or 'inductor'"):
        hrnet_fast.PoseEstimator(tiny, device="cpu", engine="ov")
    with pytest.raises(TypeError, match="got Linear"):
        hrnet_fast.optimize(torch.nn.Linear(2, 2), engine="onnxruntime")


def test_engine_dtype_and_module_argument_errors(tiny, graph):
    _require("onnxruntime")
    with pytest.raises(ValueError, match=r"engine='onnxruntime'\): dtype torch.bfloat16: .* runs float32, not bfloat16"):
        hrnet_fast.optimize(tiny, dtype=torch.bfloat16, engine="onnxruntime")
    with pytest.raises(ValueError, match="threads must be a positive int"):
        engines.EngineModule(graph, "onnxruntime", threads=0)
    with pytest.raises(TypeError, match="onnx must be the ONNX graph"):
        engines.EngineModule("model.onnx", "onnxruntime")


# ---------------------------------------------------------------------------------------------- optimize, auto


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_optimize_engine_returns_the_engine_module(name, tiny, cached_export):
    _require(name)
    fast = hrnet_fast.optimize(tiny, engine=name)
    assert isinstance(fast, engines.EngineModule) and fast.engine == name and len(cached_export) == 1
    assert fast.threads == torch.get_num_threads() and not list(fast.parameters())
    x = _images(2, seed=3)
    _, exact, ref_err = _reference_errors(tiny, x)
    assert_close_rel(fast(x), exact, 4 * ref_err, f"optimize(engine={name!r})")


def test_auto_exports_and_takes_the_first_equivalent_engine(tiny):
    _require("onnxruntime")
    fast = hrnet_fast.optimize(tiny, engine="auto")  # the real export, once
    installed = [e for e in engines.AUTO_ORDER if not engines._missing(e)]
    assert isinstance(fast, engines.EngineModule) and fast.engine == installed[0]
    assert fast.engine_notes[-1][0] == installed[0] and fast.engine_notes[-1][1].startswith("chosen")
    x = _images(1, seed=9)
    _, exact, ref_err = _reference_errors(tiny, x)
    assert_close_rel(fast(x), exact, 4 * ref_err, "optimize(engine='auto')")


def test_auto_passes_over_an_engine_that_is_not_equivalent(tiny, cached_export, monkeypatch):
    _require("onnxruntime")
    monkeypatch.setattr(engines, "AUTO_FP32_TOL", 0.0)  # no fp32 engine matches torch bit for bit
    fast = hrnet_fast.optimize(tiny, engine="auto")
    assert isinstance(fast, hrnet_fast.PoseHighResolutionNet)
    notes = dict(fast.engine_notes)
    assert notes["onnxruntime"].startswith("not equivalent: probe error") and notes["torch"] == "chosen"


def test_auto_keeps_torch_for_a_model_that_is_not_an_hrnet():
    fast = hrnet_fast.optimize(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)), engine="auto")
    assert isinstance(fast, torch.nn.Sequential) and fast.engine_notes[0][1].startswith("the model is a Sequential")


# ---------------------------------------------------------------------------------------------- PoseEstimator


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_pose_estimator_with_an_engine_gives_the_torch_keypoints(name, tiny, cached_export):
    _require(name)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 60, 100, 0.9], [70, 20, 50, 90, 0.8]], np.float32)
    est = hrnet_fast.PoseEstimator(tiny, device="cpu", engine=name)
    assert isinstance(est.model, engines.EngineModule) and est.model.engine == name and est.dtype == torch.float32
    ref = hrnet_fast.PoseEstimator(tiny, device="cpu")
    got, want = est(image, boxes).numpy(), ref(image, boxes).numpy()
    assert got.keypoints.shape == (2, 17, 3)
    # the same heatmaps to fp32 rounding: the same argmax almost everywhere, scores within rounding
    assert np.abs(got.keypoints[..., 2] - want.keypoints[..., 2]).max() < 1e-4
    assert (np.abs(got.keypoints[..., :2] - want.keypoints[..., :2]).max(-1) < 1e-2).mean() >= 0.9
    # an optimize()d model is exported as well
    est2 = hrnet_fast.PoseEstimator(hrnet_fast.optimize(tiny), device="cpu", engine=name)
    assert isinstance(est2.model, engines.EngineModule)


# ---------------------------------------------------------------------------------------------- hrnet-fast bench


def test_bench_engine_rows(tmp_path, capsys):
    for name in ENGINE_NAMES:
        _require(name)
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--device", "cpu", "--config", TINY_YAML, "--engines", "openvino,onnxruntime",
                     "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = {r["variant"]: r for r in doc["results"] if r["section"] == "model"}
    ov = [r for v, r in rows.items() if v.startswith("OpenVINO")]
    ort = [r for v, r in rows.items() if v.startswith("onnxruntime")]
    assert len(ov) == 1 and len(ort) == 1
    for r in ov + ort:
        assert r["ms"] > 0 and r["max_rel_err"] < 1e-4 and r["export_s"] >= 0 and r["compile_s"] > 0 and r["version"], r
    assert "OpenVINO" in capsys.readouterr().out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack through ctypes: Linux")
def test_openvino_leaves_the_threads_signal_stack_alone(graph, tiny):
    # OpenVINO's CPU plugin swaps the compiling thread's alternate signal stack; engines made and destroyed
    # out of order left a freed one there, and the next Python signal handler (a DataLoader's SIGCHLD after
    # a subprocess) crashed the process with SIGSEGV. The thread keeps its own stack now.
    import ctypes
    import gc

    _require("openvino")
    libc = ctypes.CDLL(None, use_errno=True)

    def current():
        s = engines._SignalStack()
        assert libc.sigaltstack(None, ctypes.byref(s)) == 0
        return (s.ss_sp, s.ss_flags, s.ss_size)

    before = current()
    a = engines.EngineModule(graph, "openvino", cfg=tiny.cfg)
    b = engines.EngineModule(graph, "openvino", cfg=tiny.cfg)
    a(_images(1)), b(_images(1))
    assert current() == before
    del a
    gc.collect()
    assert current() == before
    del b
    gc.collect()
    assert current() == before
