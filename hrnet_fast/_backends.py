"""Which compute backends exist on this machine, and how ``backend="auto"`` picks one.

Backends (the same names for every op):

``torch``   the unfused PyTorch reference; always available; the spec every other backend is tested
            against.
``cpp``     CPU kernels of the compiled extension ``hrnet_fast._C`` (``csrc/cpu``).
``cuda``    CUDA kernels of the compiled extension (``csrc/cuda``), present when the extension was built
            against a CUDA build of torch with a CUDA toolkit.
``triton``  Triton kernels (``kernels/``). On CUDA tensors when a GPU is present; on CPU tensors only
            under the Triton interpreter (``TRITON_INTERPRET=1`` set before ``hrnet_fast`` is imported),
            which is how CI tests them. ``auto`` never picks the interpreter: it is slow.

Each op declares an order of preference per device; ``auto`` takes the first backend whose
``not_supported_reasons`` is empty. An explicit request that cannot be met raises a ``RuntimeError``
listing every reason, including the extension's import error.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

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

    Installed packages ship ``kernels/`` as ``hrnet_fast.kernels``. In a source checkout used without
    installing (``python setup.py build_ext --inplace`` then ``PYTHONPATH=.``), the top-level ``kernels/``
    folder is mounted under that name here.
    """
    full = f"hrnet_fast.kernels.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if "hrnet_fast.kernels" not in sys.modules and importlib.util.find_spec("hrnet_fast.kernels") is None:
        src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernels")
        spec = importlib.util.spec_from_file_location(
            "hrnet_fast.kernels", os.path.join(src, "__init__.py"), submodule_search_locations=[src]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot find the Triton kernels: neither hrnet_fast.kernels nor {src} exists")
        module = importlib.util.module_from_spec(spec)
        sys.modules["hrnet_fast.kernels"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(full)


def backend_status() -> Dict[str, Dict[str, object]]:
    """Machine-level availability of each backend: ``{name: {"available": bool, "reason": str}}``."""
    cuda_gpu = torch.cuda.is_available()
    status: Dict[str, Dict[str, object]] = {
        "torch": {"available": True, "reason": "always available (the reference)"},
    }
    err = extension_error()
    status["cpp"] = {"available": err is None, "reason": err or "compiled extension loaded"}
    if err is not None:
        status["cuda"] = {"available": False, "reason": err}
    elif not extension_has_cuda():
        status["cuda"] = {
            "available": False,
            "reason": "the extension was built without CUDA (CPU torch or no CUDA toolkit at build time)",
        }
    elif not cuda_gpu:
        status["cuda"] = {"available": False, "reason": "no CUDA GPU is visible to torch"}
    else:
        status["cuda"] = {"available": True, "reason": "CUDA kernels built and a GPU is present"}
    terr = _triton_import_error()
    if terr is not None:
        status["triton"] = {"available": False, "reason": terr}
    elif cuda_gpu:
        status["triton"] = {"available": True, "reason": "triton importable and a CUDA GPU is present"}
    elif triton_interpreter():
        status["triton"] = {
            "available": True,
            "reason": "Triton interpreter (TRITON_INTERPRET=1) on CPU tensors: correct but slow; auto never picks it",
        }
    else:
        status["triton"] = {
            "available": False,
            "reason": "no CUDA GPU (set TRITON_INTERPRET=1 before importing hrnet_fast to run Triton kernels on CPU tensors)",
        }
    return status


def backends() -> Dict[str, Dict[str, object]]:
    """Public: which backends are available on this machine and why (or why not)."""
    return backend_status()


# A backend's check takes the op's tensors (already validated) and returns reasons it cannot run them.
SupportCheck = Callable[..., List[str]]


def device_reasons(backend: str, device: torch.device) -> List[str]:
    """Reasons ``backend`` cannot run on ``device`` at all (machine level, not op level)."""
    st = backend_status()[backend]
    if not st["available"]:
        return [str(st["reason"])]
    if backend == "cpp" and device.type != "cpu":
        return [f"cpp runs on CPU tensors, got {device.type}"]
    if backend == "cuda" and device.type != "cuda":
        return [f"cuda runs on CUDA tensors, got {device.type}"]
    if backend == "triton":
        if device.type == "cpu" and not triton_interpreter():
            return ["triton needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)"]
        if device.type not in ("cpu", "cuda"):
            return [f"triton runs on CUDA tensors, got {device.type}"]
    return []


def select_backend(
    op: str,
    requested: str,
    device: torch.device,
    order: Sequence[str],
    op_reasons: Callable[[str], List[str]],
) -> str:
    """Resolve ``requested`` ("auto" or a backend name) to a backend that can run this call.

    ``order`` is the op's preference for ``device`` under ``auto``; ``op_reasons(name)`` returns the
    op-specific reasons (dtype, shape) a backend cannot run these inputs.
    """
    if requested != "auto" and requested not in BACKENDS:
        raise ValueError(f"{op}: backend must be 'auto' or one of {list(BACKENDS)}, got {requested!r}")

    def reasons(name: str) -> List[str]:
        r = device_reasons(name, device)
        return r if r else op_reasons(name)

    if requested != "auto":
        r = reasons(requested)
        if r:
            raise RuntimeError(f"{op}: backend {requested!r} cannot run these inputs: " + "; ".join(r))
        return requested
    collected = {}
    for name in order:
        if name == "triton" and device.type == "cpu":
            continue  # the interpreter is for testing, not for speed
        r = reasons(name)
        if not r:
            return name
        collected[name] = r
    raise RuntimeError(
        f"{op}: no backend can run these inputs: "
        + " | ".join(f"{k}: {'; '.join(v)}" for k, v in collected.items())
    )
