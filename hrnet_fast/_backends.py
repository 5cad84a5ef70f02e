"""Which compute backends exist on this machine, and the one place that decides which one runs a call.

Backends (the same names for every op):

``torch``   the unfused PyTorch reference; always available; the spec every other backend is tested
            against.
``cpp``     CPU kernels of the compiled extension ``hrnet_fast._C`` (``csrc/cpu``).
``cuda``    CUDA kernels of the compiled extension (``csrc/cuda``), present when the extension was built
            against a CUDA build of torch with a CUDA toolkit.
``triton``  Triton kernels (``kernels/``). On CUDA tensors when a GPU is present; on CPU tensors only
            under the Triton interpreter (``TRITON_INTERPRET=1`` set before ``hrnet_fast`` is imported),
            which is how CI tests them. ``auto`` never picks the interpreter: it is slow.

Each op declares one :class:`OpSupport` table: per backend an entry (:class:`BackendSupport`) with the
device types and dtypes it runs, the compiled op it needs, a function giving the reasons it cannot run a
particular call (sizes, methods), and the callable that runs it (``run``, one signature per op), plus
``auto``'s order of preference per device type. :func:`resolve` answers "which backend runs this call"
from that table and the machine's :func:`backends` status, once per key (op, requested backend, device,
dtype, the op's extra key), and caches the answer: a call pays one dictionary lookup. The answer is the
chosen entry itself, which the op then runs (``entry.run(...)``, as xformers' dispatch returns the operator
to call), so no caller turns a name back into a call; ``entry.name`` names it in messages. ``auto`` takes
the first backend in the device's order with no reasons; an explicit request that cannot be met raises a
``RuntimeError`` listing every reason, including the extension's import error.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

BACKENDS = ("torch", "cpp", "cuda", "triton")


@functools.lru_cache(maxsize=None)
def _load_extension():
    """Import ``hrnet_fast._C`` (which registers the ``torch.ops.hrnet_fast`` C++ ops)."""
    try:
        module = importlib.import_module("hrnet_fast._C")
    except Exception as exc:  # noqa: BLE001 - any failure means "not built here", and we quote it
        return None, f"the compiled extension hrnet_fast._C could not be imported ({type(exc).__name__}: {exc})"
    return module, None


def extension():
    """The compiled extension module, or ``None`` when it is not built or fails to import."""
    return _load_extension()[0]


def extension_error() -> Optional[str]:
    return _load_extension()[1]


def extension_has_cuda() -> bool:
    ext = extension()
    return bool(ext is not None and getattr(ext, "with_cuda", lambda: False)())


#: Test hook: with this environment variable set to "1", every backend (C++, CUDA, Triton) fills its freshly
#: allocated outputs with NaN before its kernels run, so an element a kernel fails to write shows. The C++
#: kernels read it in ``csrc/common.h``, the Triton launchers in ``kernels/_utils.py`` (kernels are leaves:
#: they keep their own copy of the name, which a test ties to this one).
POISON_ENV = "HRNET_FAST_POISON_OUTPUTS"


def triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_import_error() -> Optional[str]:
    try:
        import triton  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"triton is not importable ({type(exc).__name__}: {exc})"
    return None


def triton_kernels(name: str):
    """Import the Triton kernel module ``hrnet_fast.kernels.<name>``.

    Installed packages ship ``kernels/`` as ``hrnet_fast.kernels``. In a source checkout (this package sits
    next to ``kernels/`` and ``pyproject.toml``), that checkout's ``kernels/`` folder is mounted under that
    name here, even where another copy is installed: an editable install of one checkout (its finder
    maps ``hrnet_fast.kernels`` to its own folder) must not serve the kernels of another checkout or
    worktree run with ``PYTHONPATH=.``.
    """
    full = f"hrnet_fast.kernels.{name}"
    if full in sys.modules:
        return sys.modules[full]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "kernels")
    checkout = os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isfile(os.path.join(src, "__init__.py"))
    if "hrnet_fast.kernels" not in sys.modules and (checkout or importlib.util.find_spec("hrnet_fast.kernels") is None):
        spec = importlib.util.spec_from_file_location(
            "hrnet_fast.kernels", os.path.join(src, "__init__.py"), submodule_search_locations=[src]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot find the Triton kernels: neither hrnet_fast.kernels nor {src} exists")
        module = importlib.util.module_from_spec(spec)
        sys.modules["hrnet_fast.kernels"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(full)


@functools.lru_cache(maxsize=None)
def _machine_status() -> Tuple[Tuple[str, bool, str], ...]:
    """(name, available, reason) per backend; fixed for the life of the process (imports are cached)."""
    cuda_gpu = torch.cuda.is_available()
    rows = [("torch", True, "always available (the reference)")]
    err = extension_error()
    rows.append(("cpp", err is None, err or "compiled extension loaded"))
    if err is not None:
        rows.append(("cuda", False, err))
    elif not extension_has_cuda():
        rows.append(("cuda", False, "the extension was built without CUDA (CPU torch or no CUDA toolkit at build time)"))
    elif not cuda_gpu:
        rows.append(("cuda", False, "no CUDA GPU is visible to torch"))
    else:
        rows.append(("cuda", True, "CUDA kernels built and a GPU is present"))
    terr = _triton_import_error()
    if terr is not None:
        rows.append(("triton", False, terr))
    elif cuda_gpu:
        rows.append(("triton", True, "triton importable and a CUDA GPU is present"))
    elif triton_interpreter():
        rows.append(("triton", True, "Triton interpreter (TRITON_INTERPRET=1) on CPU tensors: correct but slow; auto never picks it"))
    else:
        rows.append(("triton", False, "no CUDA GPU (set TRITON_INTERPRET=1 before importing hrnet_fast to run Triton kernels on CPU tensors)"))
    return tuple(rows)


def backends() -> Dict[str, Dict[str, object]]:
    """Which backends are available on this machine and why (or why not):
    ``{name: {"available": bool, "reason": str}}``."""
    return {name: {"available": ok, "reason": why} for name, ok, why in _machine_status()}


# ----------------------------------------------------------------------------------------------------
# What each backend of an op supports

#: Every device type / every dtype.
ANY = None
ExtraReasons = Callable[..., List[str]]


@dataclasses.dataclass(frozen=True, eq=False)
class BackendSupport:
    """One backend of one op: what it can run, and the callable that runs it.

    ``devices``/``dtypes``: tuples of device types and dtypes, or :data:`ANY`. ``compiled_op``: the
    ``torch.ops.hrnet_fast`` op the backend calls (checked to be registered). ``reasons(device, dtype,
    *key)``: the reasons it cannot run a call with the op's extra key (sizes, methods); ``[]`` when it
    can. ``run``: runs the backend on arguments the op has checked, with the same signature for every
    backend of an op (each op's module documents it). ``name``: the backend's name, filled in from the
    table's key by :class:`OpSupport`.

    :func:`resolve` returns the entry itself: call ``entry.run(...)``.
    """

    devices: Optional[Tuple[str, ...]] = ANY
    dtypes: Optional[Tuple[torch.dtype, ...]] = ANY
    compiled_op: Optional[str] = None
    reasons: Optional[ExtraReasons] = None
    run: Optional[Callable[..., Any]] = None
    name: str = ""

    def __repr__(self) -> str:
        return f"<{self.name or '?'} backend>"

    def __deepcopy__(self, memo) -> "BackendSupport":
        return self  # a table entry is a constant: copies of what holds it (a prepared call) share it


@dataclasses.dataclass(frozen=True, eq=False)
class OpSupport:
    """One op's backend table: ``backends[name]`` (a :class:`BackendSupport`, whose ``name`` is set to its
    key here) and ``auto``'s preference per device type (``order``; device types not listed use
    ``("torch",)``)."""

    op: str
    backends: Mapping[str, BackendSupport]
    order: Mapping[str, Tuple[str, ...]]

    def __post_init__(self) -> None:
        named = {}
        for name, spec in self.backends.items():
            if name not in BACKENDS:
                raise ValueError(f"{self.op}: unknown backend {name!r} in the support table (one of {list(BACKENDS)})")
            if spec.name not in ("", name):
                raise ValueError(f"{self.op}: the table's entry {name!r} is named {spec.name!r}")
            named[name] = spec if spec.name == name else dataclasses.replace(spec, name=name)
        object.__setattr__(self, "backends", named)

    def __deepcopy__(self, memo) -> "OpSupport":
        return self  # a table is a constant: copies of what holds it (a prepared call) share it

    def not_supported_reasons(self, name: str, device: torch.device, dtype: torch.dtype, key: tuple = ()) -> List[str]:
        """Why backend ``name`` cannot run this op on ``device``/``dtype`` with ``key`` ([] if it can)."""
        status = backends()[name]
        if not status["available"]:
            return [str(status["reason"])]
        spec = self.backends.get(name)
        if spec is None:
            return [f"{self.op} has no {name} backend"]
        dev = device.type
        if name == "triton" and dev == "cpu":
            if not triton_interpreter():
                return ["triton needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"]
            if dtype == torch.bfloat16:
                return ["the Triton interpreter has no bfloat16"]
        if spec.devices is not ANY and dev not in spec.devices:
            return [f"{name} runs on {'/'.join(spec.devices)} tensors, got {dev}"]
        if spec.dtypes is not ANY and dtype not in spec.dtypes:
            return [f"{name} supports {', '.join(str(d).replace('torch.', '') for d in spec.dtypes)}, got "
                    f"{str(dtype).replace('torch.', '')}"]
        if spec.compiled_op is not None and not hasattr(torch.ops.hrnet_fast, spec.compiled_op):
            return [f"the compiled extension does not register hrnet_fast::{spec.compiled_op}"]
        return list(spec.reasons(device, dtype, *key)) if spec.reasons is not None else []


@functools.lru_cache(maxsize=4096)
def resolve(support: OpSupport, requested: str, device: torch.device, dtype: torch.dtype,
            key: tuple = ()) -> BackendSupport:
    """The backend entry that runs ``support.op`` for this (requested, device, dtype, key); cached.

    ``requested`` is ``"auto"`` or a backend name. Returns ``support.backends[name]``: run it with
    ``.run(...)``, name it with ``.name``. Raises ``ValueError`` for an unknown name and ``RuntimeError``
    (with every reason) when nothing, or not the requested backend, can run the call.
    """
    op = support.op
    if requested != "auto" and requested not in BACKENDS:
        raise ValueError(f"{op}: backend must be 'auto' or one of {list(BACKENDS)}, got {requested!r}")
    if requested != "auto":
        r = support.not_supported_reasons(requested, device, dtype, key)
        if r:
            raise RuntimeError(f"{op}: backend {requested!r} cannot run these inputs: " + "; ".join(r))
        return support.backends[requested]
    collected = {}
    # the Triton interpreter is never in a CPU order: it is for testing, not for speed
    for name in support.order.get(device.type, ("torch",)):
        r = support.not_supported_reasons(name, device, dtype, key)
        if not r:
            return support.backends[name]
        collected[name] = r
    raise RuntimeError(
        f"{op}: no backend can run these inputs: " + " | ".join(f"{k}: {'; '.join(v)}" for k, v in collected.items())
    )


# Under torch.compile the choice is made once, at trace time, and baked into the graph: Dynamo must not
# trace the resolver itself (it imports the extension and reads the environment). The trace-time constant
# is the backend's name (a string, which every torch >= 2.4 takes as a constant); the caller looks its
# entry up in the table.
@torch._dynamo.assume_constant_result
def resolve_traced(support: OpSupport, requested: str, device: torch.device, dtype: torch.dtype, key: tuple = ()) -> str:
    """The name of :func:`resolve`'s entry, as a trace-time constant (a plain function: Dynamo would trace
    into the cache)."""
    return resolve(support, requested, device, dtype, key).name


def clear_cache() -> None:
    """Forget every cached answer (tests that change the environment or the registered ops call this)."""
    resolve.cache_clear()
    _machine_status.cache_clear()
