"""CPU inference engines behind the module contract of :func:`hrnet_fast.optimize`: OpenVINO and onnxruntime.

    fast = hrnet_fast.optimize(model, engine="openvino")   # (N, 3, H, W) -> (N, K, H/4, W/4), like optimize(model)
    fast = hrnet_fast.optimize(model, engine="auto")       # the first installed engine of AUTO_ORDER that is equivalent
    est = hrnet_fast.PoseEstimator("w32_256x192", weights=..., device="cpu", engine="openvino")

How an engine module is made (:func:`build`): the network is exported by hrnet_fast's own ONNX export
(:func:`hrnet_fast.export_onnx`: BatchNorm folded in float64, the exchange units as the official op sequence,
a dynamic batch, float32), and the ONNX graph is compiled once, for the CPU, with as many threads as torch
uses when the module is built:

* ``"openvino"``: ``core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
  "INFERENCE_PRECISION_HINT": "f32" | "bf16" | "f16", "PERFORMANCE_HINT": "LATENCY"})``. The precision hint is
  always set: OpenVINO's CPU plugin computes in bf16 by default on a CPU with bf16 support, and fp32 must be
  asked for. ``dtype=torch.bfloat16`` (``float16``) sets the hint to bf16 (f16) and needs a CPU that OpenVINO
  lists with that capability (``OPTIMIZATION_CAPABILITIES``);
* ``"onnxruntime"``: ``InferenceSession`` with the CPU execution provider, ``intra_op_num_threads=threads``,
  all graph optimisations; float32 only (its CPU provider has almost no bf16 kernels).

The module (:class:`EngineModule`) takes what the torch module of ``optimize()`` takes, a floating (N, 3, H, W)
tensor with (H, W) the config's IMAGE_SIZE, and returns (N, K, H/4, W/4) heatmaps in the requested ``dtype``
(float32 by default) on the input's device. The engine itself always runs on the CPU, on float32 inputs and
outputs. It has no parameters (the weights live in the compiled engine) and is inference-only.
``copy.deepcopy`` compiles the engine again from the kept ONNX graph; pickling (``torch.save``) raises a
``TypeError`` naming the engine: a compiled engine is a native object.

``"auto"`` (see :func:`build`): a fixed order, :data:`AUTO_ORDER` (OpenVINO, onnxruntime, then torch), not a
measurement at build time: on a shared machine a short measurement picks by noise, and a long one costs
seconds on every start. The first engine that is installed, supports the dtype here and gives heatmaps
equivalent to the torch model on a probe input is taken; torch (``optimize()``'s module) otherwise, and
always for a model on a GPU. The returned module's ``engine_notes`` say why each candidate was passed over.

The optional packages: ``pip install "hrnet_fast[openvino]"`` or ``"hrnet_fast[onnxruntime]"`` (the engine
and the ONNX export stack, onnx and onnxscript); the export also needs torch >= 2.6.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import importlib
import os
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["AUTO_ORDER", "ENGINES", "EngineModule", "build", "engine_versions", "onnx_bytes"]

#: The values of ``optimize(..., engine=...)``.
ENGINES = ("torch", "openvino", "onnxruntime", "auto")
#: ``"auto"``'s order of preference, fastest first on the issue-20 measurement (AMD EPYC, 2 threads, W32
#: 256x192, batch 1 / 8): OpenVINO fp32 32.9 / 252 ms, onnxruntime 35.0 / 282 ms, torch ``optimize()``
#: 42.6 / 286 ms; in bf16 OpenVINO 17.6 / 125 ms against torch's 33.0 / 176 ms.
AUTO_ORDER = ("openvino", "onnxruntime")
#: engine -> (the Python package it needs, the extra that installs it, its display name)
PACKAGES = {"openvino": ("openvino", "openvino", "OpenVINO"), "onnxruntime": ("onnxruntime", "onnxruntime", "onnxruntime")}
#: engine -> the compute dtypes it runs
DTYPES = {"openvino": (torch.float32, torch.bfloat16, torch.float16), "onnxruntime": (torch.float32,)}
_OV_PRECISION = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
_OV_CAPABILITY = {torch.bfloat16: "BF16", torch.float16: "FP16"}
#: ``"auto"``'s equivalence check in fp32: the max relative error of the engine's heatmaps against the model's
#: own (the tolerance of tests/test_model.py::test_optimize_w32_matches_eval). In bf16/fp16 the engine may err
#: at most twice as much as torch in that dtype.
AUTO_FP32_TOL = 1e-4
_E = "optimize"


# ----------------------------------------------------------------------------------------------------
# The calling thread's alternate signal stack


class _SignalStack(ctypes.Structure):  # stack_t of <signal.h> (Linux)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def _keep_signal_stack():
    """Restore the calling thread's alternate signal stack after the block.

    OpenVINO's CPU plugin (2026.4) installs its own alternate signal stack on the thread that compiles a model
    and puts back the one it found when that model is destroyed. With two models destroyed in another order
    than they were made, the thread is left with a freed stack, and the next signal with a handler that runs on
    it -- every Python signal handler (CPython sets SA_ONSTACK), e.g. the SIGCHLD handler of torch's DataLoader
    when a child process exits -- kills the process with SIGSEGV (found by the test suite: a subprocess after
    the engine tests and a multi-worker DataLoader). Keeping the thread's own stack makes every later
    put-back a no-op on memory that is still alive."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = _SignalStack()
    have = libc.sigaltstack(None, ctypes.byref(saved)) == 0
    try:
        yield
    finally:
        if have:
            libc.sigaltstack(ctypes.byref(saved), None)


# ----------------------------------------------------------------------------------------------------
# What is installed


def _module_version(name: str) -> Optional[str]:
    try:
        return str(importlib.import_module(name).__version__).split("-")[0]  # OpenVINO appends its build: 2026.4.1-22982-...
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None


def engine_versions() -> Dict[str, Optional[str]]:
    """``{"openvino": version or None, "onnxruntime": version or None}``: None when the package is not
    importable."""
    return {engine: _module_version(pkg) for engine, (pkg, _, _) in PACKAGES.items()}


def _missing(engine: str) -> List[str]:
    """The packages ``engine`` needs (the engine, onnx and onnxscript for the export) that do not import."""
    missing = []
    for name in (PACKAGES[engine][0], "onnx", "onnxscript"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _require(engine: str) -> None:
    """ImportError naming the missing package(s) and the extra that installs them."""
    missing = _missing(engine)
    if missing:
        pkg, extra, name = PACKAGES[engine]
        raise ImportError(f"{_E}(engine={engine!r}): the {name} engine needs the optional package(s) {', '.join(missing)}: "
                          f"pip install \"hrnet_fast[{extra}]\"")


def _ov_capabilities() -> Tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _dtype_problem(engine: str, dtype: torch.dtype) -> Optional[str]:
    """Why ``engine`` cannot compute in ``dtype`` here (None: it can). Needs the engine installed."""
    if dtype not in DTYPES[engine]:
        names = ", ".join(str(d).replace("torch.", "") for d in DTYPES[engine])
        return f"the {PACKAGES[engine][2]} engine runs {names}, not {str(dtype).replace('torch.', '')}"
    if engine == "openvino" and dtype in _OV_CAPABILITY:
        caps = _ov_capabilities()
        if _OV_CAPABILITY[dtype] not in caps:
            return (f"OpenVINO does not compute in {_OV_PRECISION[dtype]} on this CPU (its OPTIMIZATION_CAPABILITIES: "
                    f"{', '.join(caps)})")
    return None


# ----------------------------------------------------------------------------------------------------
# The ONNX graph


def onnx_bytes(model: nn.Module) -> bytes:
    """hrnet_fast's ONNX export of ``model`` (a PoseHighResolutionNet, plain or ``optimize()``d; not
    modified): float32, dynamic batch, heatmaps only, as bytes (about 4 bytes per parameter)."""
    from .export import export_onnx

    with tempfile.TemporaryDirectory(prefix="hrnet_fast_engine_") as tmp:
        path = export_onnx(model, os.path.join(tmp, "model.onnx"), batch="dynamic", dtype=torch.float32)
        with open(path, "rb") as fh:
            return fh.read()


# ----------------------------------------------------------------------------------------------------
# The module


class EngineModule(nn.Module):
    """An HRNet compiled by an inference engine, called like the torch module of ``optimize()``.

    Args:
        onnx: the ONNX graph (bytes) from :func:`onnx_bytes` (input ``images`` (N, 3, H, W) float32, output
            ``heatmaps``); kept, so that a deep copy compiles it again.
        engine: ``"openvino"`` or ``"onnxruntime"``.
        dtype: the compute dtype (the precision hint of OpenVINO) and the dtype of the heatmaps returned.
        threads: CPU threads of the engine (default: ``torch.get_num_threads()`` now).
        cfg: the model's config, kept as ``self.cfg`` for PoseEstimator (default: ``IMAGE_SIZE`` and
            ``NUM_JOINTS`` read from the graph's shapes).
        options: extra engine settings: OpenVINO properties (e.g. ``{"PERF_COUNT": True}``) added to the
            compile config, or onnxruntime session config entries.

    Attributes: ``engine``, ``dtype``, ``threads``, ``compile_s`` (seconds the last compilation took),
    ``input_hw`` (the graph's (H, W)), ``version`` (of the engine's package).
    """

    _NATIVE = ("_compiled", "_session", "_local")

    def __init__(self, onnx: bytes, engine: str, dtype: torch.dtype = torch.float32, threads: Optional[int] = None,
                 cfg: Optional[dict] = None, options: Optional[Dict[str, Any]] = None):
        super().__init__()
        if engine not in PACKAGES:
            raise ValueError(f"EngineModule: engine must be one of {list(PACKAGES)}, got {engine!r}")
        if not isinstance(onnx, (bytes, bytearray)) or not onnx:
            raise TypeError(f"EngineModule: onnx must be the ONNX graph as non-empty bytes, got {type(onnx).__name__}")
        threads = torch.get_num_threads() if threads is None else threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"EngineModule: threads must be a positive int, got {threads!r}")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"EngineModule: options must be a dict of engine settings, got {type(options).__name__}")
        _require(engine)
        problem = _dtype_problem(engine, dtype)
        if problem:
            raise ValueError(f"EngineModule: dtype {dtype}: {problem}")
        self.engine = engine
        self.dtype = dtype
        self.threads = threads
        self.cfg = copy.deepcopy(cfg)
        self.options = dict(options or {})
        self.version = _module_version(PACKAGES[engine][0])
        self._onnx = bytes(onnx)
        self.eval()
        self._compile()
        if self.cfg is None:  # what PoseEstimator reads, from the graph's shapes
            self.cfg = {"IMAGE_SIZE": [self.input_hw[1], self.input_hw[0]], "NUM_JOINTS": self._out_chw[0]}

    # ---------------------------------------------------------------- compilation
    def _compile(self) -> None:
        t0 = time.perf_counter()
        self._local = threading.local()  # OpenVINO: one infer request per calling thread (a request is not thread-safe)
        if self.engine == "openvino":
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": _OV_PRECISION[self.dtype],
                      "PERFORMANCE_HINT": "LATENCY", **self.options}
            with _keep_signal_stack():  # OpenVINO replaces this thread's signal stack (see _keep_signal_stack)
                self._compiled = core.compile_model(core.read_model(self._onnx), "CPU", config)
            self._session = None
            in_shape = self._compiled.input(0).get_partial_shape()
            out_shape = self._compiled.output(0).get_partial_shape()
            in_dims = [in_shape[i].get_length() for i in range(1, 4)]
            out_dims = [out_shape[i].get_length() for i in range(1, 4)]
        else:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            for key, value in self.options.items():
                so.add_session_config_entry(str(key), str(value))
            self._session = ort.InferenceSession(self._onnx, so, providers=["CPUExecutionProvider"])
            self._compiled = None
            in_dims = list(self._session.get_inputs()[0].shape[1:])
            out_dims = list(self._session.get_outputs()[0].shape[1:])
        self.input_hw = (int(in_dims[1]), int(in_dims[2]))
        self._out_chw = tuple(int(v) for v in out_dims)
        self.compile_s = time.perf_counter() - t0

    # ---------------------------------------------------------------- copies and pickling
    def __deepcopy__(self, memo):
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        state = {k: v for k, v in self.__dict__.items() if k not in self._NATIVE}
        new.__dict__.update(copy.deepcopy(state, memo))
        new._compile()  # a compiled engine is a native object: compile the kept graph again
        return new

    def __getstate__(self):
        name = PACKAGES[self.engine][2]
        raise TypeError(f"EngineModule: an {name} engine module cannot be pickled (torch.save, pickle, multiprocessing): "
                        f"it holds a compiled {name} model, a native object. Save the torch model's state_dict instead and "
                        f"build the engine after loading: hrnet_fast.optimize(model, engine={self.engine!r})")

    # ---------------------------------------------------------------- the call
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) floating tensor, (H, W) = ``input_hw`` -> (N, K, H/4, W/4) heatmaps in ``self.dtype`` on
        ``x``'s device. The engine runs on the CPU in float32 in and out."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self._name()}: x must be a tensor (N, 3, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{self._name()}: x must be a floating tensor, got dtype {x.dtype}")
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.input_hw:
            raise ValueError(f"{self._name()}: x must be (N, 3, {self.input_hw[0]}, {self.input_hw[1]}) (the exported graph's "
                             f"input size), got {tuple(x.shape)}")
        n = int(x.shape[0])
        if n == 0:
            return torch.zeros((0, *self._out_chw), dtype=self.dtype, device=x.device)
        a = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        out = torch.from_numpy(self._run(a))
        return out.to(device=x.device, dtype=self.dtype)

    def _run(self, a):
        if self._session is not None:
            return self._session.run(None, {"images": a})[0]
        req = getattr(self._local, "request", None)
        if req is None:
            with _keep_signal_stack():
                req = self._local.request = self._compiled.create_infer_request()
        req.infer({0: a}, share_inputs=True)
        return req.get_output_tensor(0).data.copy()  # the request's buffer is reused by the next call

    def profile(self) -> List[Dict[str, Any]]:
        """OpenVINO's per-layer counters of this thread's last call (build with ``options={"PERF_COUNT": True}``):
        one dict per executed node: ``name``, ``node_type``, ``exec_type`` (the kernel, e.g.
        ``jit_avx512_1x1_FP32``), ``real_us``, ``cpu_us``."""
        if self.engine != "openvino":
            raise RuntimeError(f"{self._name()}: per-layer counters are OpenVINO's (PERF_COUNT); this is {self.engine}")
        req = getattr(self._local, "request", None)
        if req is None:
            raise RuntimeError(f"{self._name()}: no call has run on this thread yet")
        return [{"name": p.node_name, "node_type": p.node_type, "exec_type": p.exec_type,
                 "real_us": p.real_time.total_seconds() * 1e6, "cpu_us": p.cpu_time.total_seconds() * 1e6}
                for p in req.get_profiling_info() if p.status == p.Status.EXECUTED]  # not NOT_RUN / OPTIMIZED_OUT

    def _name(self) -> str:
        return f"EngineModule({self.engine})"

    def extra_repr(self) -> str:
        return (f"engine={self.engine!r} {self.version}, dtype={self.dtype}, threads={self.threads}, "
                f"input_hw={self.input_hw}")


# ----------------------------------------------------------------------------------------------------
# build: what optimize(engine=...) returns


def _probe_error(module: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    from ._numerics import max_rel_err

    with torch.no_grad():
        return max_rel_err(module(x).float(), reference(x))


def build(model: nn.Module, engine: str = "auto", dtype: Optional[torch.dtype] = None, threads: Optional[int] = None,
          options: Optional[Dict[str, Any]] = None,
          torch_build: Optional[Callable[[Optional[torch.dtype]], nn.Module]] = None) -> nn.Module:
    """The module ``optimize(model, dtype=dtype, engine=engine)`` returns.

    Args:
        model: a PoseHighResolutionNet, plain or ``optimize()``d (not modified).
        engine: ``"openvino"``, ``"onnxruntime"``, ``"auto"`` or ``"torch"`` (``optimize()`` itself).
        dtype: None (float32) or the compute dtype (see :data:`DTYPES`); the heatmaps come out in it.
        threads: engine threads (default: ``torch.get_num_threads()``).
        options: extra engine settings (:class:`EngineModule`).
        torch_build: ``torch_build(dtype)`` makes torch's module (``optimize()`` passes its own torch path, so this
            module never imports ``optimize``): used for ``engine="torch"``, as ``"auto"``'s fallback and for its
            bf16/fp16 error yardstick.

    ``"auto"`` tries :data:`AUTO_ORDER`: an engine is taken when its package is installed, it runs ``dtype`` on
    this CPU and its heatmaps on a seeded probe input (batch 1) are equivalent to the model's: within
    :data:`AUTO_FP32_TOL` in float32, at most twice torch's own error in bf16/fp16 (both against the model in
    float32). Otherwise, or for a model that is not on the CPU or not an HRNet, ``optimize()``'s torch module.
    The returned module has ``engine_notes``: ``[(engine, "chosen" or why not)]``. Raises ``ValueError``
    for a bad engine or dtype, ``ImportError`` naming the package and extra when an explicit engine is not
    installed, ``TypeError`` when an explicit engine gets a model that is not an HRNet.
    """
    from .export import _check_torch, _export_copy
    from .models.pose_hrnet import PoseHighResolutionNet
    if engine not in ENGINES:
        raise ValueError(f"{_E}: engine must be one of {list(ENGINES)}, got {engine!r}")

    def optimize(model, dtype, engine):  # noqa: ARG001 - torch's module, as optimize(model, dtype, engine="torch")
        if torch_build is None:
            raise ValueError(f"{_E}: engine={engine!r} may need torch's module: pass torch_build (optimize() does)")
        return torch_build(dtype)

    want = torch.float32 if dtype is None else dtype
    if engine == "torch":
        return optimize(model, dtype=dtype, engine="torch")
    if engine != "auto":
        if not isinstance(model, PoseHighResolutionNet):
            raise TypeError(f"{_E}(engine={engine!r}): the engines run hrnet_fast's ONNX export of a PoseHighResolutionNet "
                            f"(plain or optimize()d), got {type(model).__name__}")
        _require(engine)
        problem = _dtype_problem(engine, want)
        if problem:
            raise ValueError(f"{_E}(engine={engine!r}): dtype {want}: {problem}")
        _check_torch()
        return EngineModule(onnx_bytes(model), engine, want, threads, model.cfg, options)

    notes: List[Tuple[str, str]] = []
    p = next(iter(model.parameters()), None)
    candidates: List[str] = []
    if not isinstance(model, PoseHighResolutionNet):
        notes.append(("engines", f"the model is a {type(model).__name__}, not an HRNet"))
    elif p is not None and p.device.type != "cpu":
        notes.append(("engines", f"the model is on {p.device}: the engines run on the CPU"))
    elif torch.torch_version.TorchVersion(torch.__version__) < (2, 6):
        notes.append(("engines", f"the ONNX export needs torch >= 2.6, this is {torch.__version__}"))
    else:
        for name in AUTO_ORDER:
            missing = _missing(name)
            problem = (f"not installed ({', '.join(missing)}): pip install \"hrnet_fast[{PACKAGES[name][1]}]\"" if missing
                       else _dtype_problem(name, want))
            if problem:
                notes.append((name, problem))
            else:
                candidates.append(name)
    fallback: Optional[nn.Module] = None
    if candidates:
        reference = _export_copy(model, torch.float32)  # the model's computation, fp32, BatchNorm folded, on the CPU
        h, w = (int(v) for v in reversed(model.cfg["IMAGE_SIZE"]))
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        tol = AUTO_FP32_TOL
        if want != torch.float32:
            fallback = optimize(model, dtype=dtype, engine="torch")
            tol = 2 * _probe_error(fallback, reference, x.to(want))
        graph = onnx_bytes(model)
        for name in candidates:
            try:
                module = EngineModule(graph, name, want, threads, model.cfg, options)
                err = _probe_error(module, reference, x)
            except Exception as exc:  # noqa: BLE001 - an engine that fails here is passed over, with the reason
                notes.append((name, f"failed: {type(exc).__name__}: {exc}"[:300]))
                continue
            if err <= tol:
                module.engine_notes = notes + [(name, f"chosen (probe error {err:.1e} <= {tol:.1e})")]
                return module
            notes.append((name, f"not equivalent: probe error {err:.1e} > {tol:.1e}"))
    out = fallback if fallback is not None else optimize(model, dtype=dtype, engine="torch")
    out.engine_notes = notes + [("torch", "chosen")]
    return out
