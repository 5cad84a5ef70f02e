"""Equivalence checks behind ``hrnet-fast check``: every available backend of every op of
:data:`hrnet_fast.ops.OPS` against the op's reference, on the op's fresh seeded samples, in every dtype that
the op's support table gives an available backend on the device.

The comparison rule is the op's (:class:`hrnet_fast.ops.OpSpec`): ``max_rel_err`` is ``max|out - ref| /
max|ref|``, the largest over a sample's outputs and over the samples. ``fused_exchange`` (``exact_dtype``
float64): the inputs, rounded to the tested dtype, are cast to float64 and run through the reference: that
float64 result is ``ref``. The reference in the tested dtype is compared with it in the same run, which
measures what rounding to that dtype costs on this device; a backend passes when its own error is at most
``ref_factor`` times that, or the op's tolerance for the dtype (a floor), whichever is larger. Both errors
are reported. ``decode_heatmaps`` and ``crop_boxes`` compute in fp32 (or fp64) in every backend whatever
the dtype, so backends are compared with the torch backend directly, at the op's tolerances.

Precision of fp32: fp32 inputs mean IEEE fp32 in hrnet_fast's kernels, unless the user enables TF32 for
matrix products (``torch.backends.cuda.matmul.allow_tf32 = True`` or
``torch.set_float32_matmul_precision("high")``). PyTorch's own convolutions use TF32 by default on
Ampere and later (``torch.backends.cudnn.allow_tf32``), so the references run here with cuDNN's TF32
switched to match the matmul setting (off by default), and the flags are restored afterwards.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch

from ._backends import backends
from ._numerics import max_rel_err
from .ops import OPS, OpSpec, Sample

#: the backends compared with the references (the torch backend is the reference)
KERNEL_BACKENDS = ("cpp", "cuda", "triton")


@dataclasses.dataclass
class CheckSummary:
    """What ``run_checks`` did: ``compared`` (op/backend/dtype triples), ``skipped`` (report lines that
    say why something was not compared), ``failures``, and ``ops``: per op, per backend compared, the
    dtypes compared (an op with nothing compared has an empty dict)."""

    compared: int = 0
    skipped: int = 0
    failures: List[str] = dataclasses.field(default_factory=list)
    ops: Dict[str, Dict[str, List[str]]] = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        """Which ops and backends were compared, in which dtypes: ``"fused_exchange: cpp (float32,
        float64); crop_boxes: nothing compared"``."""
        parts = []
        for op, per_backend in self.ops.items():
            done = ", ".join(f"{b} ({', '.join(d)})" for b, d in per_backend.items())
            parts.append(f"{op}: {done or 'nothing compared'}")
        return "; ".join(parts)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def tf32_enabled_by_user() -> bool:
    """True when the user allowed TF32 for fp32 matrix products (then kernels may use it too)."""
    return bool(torch.backends.cuda.matmul.allow_tf32) or torch.get_float32_matmul_precision() != "highest"


@contextlib.contextmanager
def reference_precision() -> Iterator[bool]:
    """Run the torch reference at the project's fp32 precision: cuDNN's TF32 follows the matmul setting
    (off unless the user enabled it). Yields whether TF32 is allowed; restores the flags on exit."""
    saved = torch.backends.cudnn.allow_tf32
    tf32 = tf32_enabled_by_user()
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield tf32
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def _unsupported(exc: Exception) -> bool:
    return isinstance(exc, RuntimeError) and "cannot run these inputs" in str(exc)


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating-point tensor (also inside lists, tuples and dicts) converted to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def _error(out: Any, ref: Any) -> float:
    """The largest ``max_rel_err`` over the outputs of one call (a tensor, or a tuple of tensors)."""
    if isinstance(out, torch.Tensor):
        return max_rel_err(out, ref)
    if len(out) != len(ref):
        return float("inf")
    return max((max_rel_err(o, r) for o, r in zip(out, ref)), default=0.0)


def _spec(op) -> OpSpec:
    return OPS[op] if isinstance(op, str) else op


def tolerance(op, dtype: torch.dtype, ref_err: Optional[float]) -> float:
    """The largest error a backend of ``op`` (a name or an :class:`~hrnet_fast.ops.OpSpec`) may have in
    ``dtype``: the op's tolerance, or ``ref_factor`` times the reference's own error in that dtype when the op
    is judged against an exact reference (``ref_err`` is then not None), whichever is larger."""
    spec = _spec(op)
    if ref_err is None:
        return spec.tolerance[dtype]
    return max(spec.tolerance[dtype], spec.ref_factor * ref_err)


def _references(spec: OpSpec, samples: List[Sample]) -> Tuple[List[Any], Optional[float]]:
    """What each sample's outputs are compared with, and the reference's own error in the tested dtype
    (None when the op is compared with its reference directly)."""
    with reference_precision():
        ref = [spec.reference(*s.args, **s.kwargs) for s in samples]
        if spec.exact_dtype is None:
            return ref, None
        exact = [spec.reference(*_cast(s.args, spec.exact_dtype), **_cast(s.kwargs, spec.exact_dtype)) for s in samples]
    return exact, max(_error(r, e) for r, e in zip(ref, exact))


def run_checks(device: torch.device, report: Callable[[str], None] = print,
               ops: Optional[Mapping[str, OpSpec]] = None) -> CheckSummary:
    """Run every available backend of every op (``ops``, default :data:`~hrnet_fast.ops.OPS`) on
    ``device``, reporting one line each; returns what was compared and the failures (a mismatch or an
    error). A backend that cannot run on this machine or these inputs is skipped, with its reason."""
    ops = OPS if ops is None else ops
    status = backends()
    summary = CheckSummary()
    rules = [f"{n} errors against a {_dtype_name(s.exact_dtype)} reference, tol = max(floor, {s.ref_factor:g} x the torch "
             f"reference's error)" for n, s in ops.items() if s.exact_dtype is not None]
    report(f"fp32 reference: {'TF32 allowed (enabled by the user)' if tf32_enabled_by_user() else 'IEEE fp32, TF32 off'}; "
           + "; ".join(rules + ["the other ops against their torch backend"]))
    for name, spec in ops.items():
        compared = summary.ops.setdefault(name, {})
        available = []
        for backend in KERNEL_BACKENDS:
            st = status.get(backend, {})
            if st.get("available", False):
                available.append(backend)
            else:
                summary.skipped += 1
                report(f"  {name:16s} {backend:7s} {'(any)':9s} skipped: {str(st.get('reason', 'unknown backend'))[:110]}")
        for dtype in spec.dtypes(device.type, tuple(available)):
            samples = spec.samples(device, dtype)
            refs, ref_err = _references(spec, samples)
            for backend in available:
                tag = f"{name:16s} {backend:7s} {_dtype_name(dtype):9s}"
                try:
                    err = max(_error(spec.public(*s.args, backend=backend, **s.kwargs), r) for s, r in zip(samples, refs))
                except Exception as exc:  # noqa: BLE001 - every error is reported, the other checks still run
                    if _unsupported(exc):
                        summary.skipped += 1
                        report(f"  {tag} skipped: {str(exc).split(': ', 2)[-1][:110]}")
                        continue
                    summary.failures.append(f"{name}/{backend}/{dtype}: {type(exc).__name__}: {exc}")
                    report(f"  {tag} ERROR {type(exc).__name__}: {exc}")
                    continue
                summary.compared += 1
                compared.setdefault(backend, []).append(_dtype_name(dtype))
                tol = tolerance(spec, dtype, ref_err)
                ok = err <= tol  # False for NaN
                against = f"vs {_dtype_name(spec.exact_dtype)}" if ref_err is not None else "vs torch backend"
                ref_s = f", torch reference {ref_err:.2e}" if ref_err is not None else ""
                report(f"  {tag} {'ok   ' if ok else 'FAIL '} max rel err {err:.2e} {against}{ref_s} (tol {tol:.1e})")
                if not ok:
                    summary.failures.append(f"{name}/{backend}/{dtype}: max rel err {err:.2e} > {tol:.1e}")
    return summary
