"""Per convolution shape, hrnet_fast's oneDNN calls beside OpenVINO's convolution nodes (issue 20, item 1:
where the remaining time goes). Used by ``bench_engines.py``.

Both run oneDNN's brgemm convolutions, so the comparison is per problem: a key ``(ic, oc, ih, iw, oh, ow,
kernel)`` with ``kernel`` "1x1" or "kxk" (the stride follows from the sizes), for each side the number of
calls per forward, the time and the kernel (implementation) name.

- hrnet_fast: oneDNN's own verbose log (``torch.backends.mkldnn.verbose``), written by the C++ library to the
  process's stdout: file descriptor 1 is pointed at a temporary file for one forward. Its times are oneDNN's
  execution times of each primitive; convolutions that run as aten's plain ops (the smallest ones, below the
  oneDNN threshold of ``hrnet_fast._inference.FusedConv``) appear there too when aten calls oneDNN.
- OpenVINO: the compiled model's runtime graph (``get_runtime_model()``) with ``PERF_COUNT``: per node its
  layer type, the primitive (kernel) and ``execTimeMcs``, with the node's input and output shapes.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any, Dict, List, Tuple

import torch

Key = Tuple[int, int, int, int, int, int, str]
_DESC = re.compile(r"mb(\d+)_ic(\d+)oc(\d+)_ih(\d+)oh(\d+)kh(\d+)sh\d+\w*?_iw(\d+)ow(\d+)kw(\d+)")


def _key_str(k: Key) -> str:
    ic, oc, ih, iw, oh, ow, kern = k
    return f"{ic}->{oc} {ih}x{iw}->{oh}x{ow} {kern}"


def torch_conv_shapes(module, x: torch.Tensor) -> Dict[Key, Dict[str, Any]]:
    """oneDNN's verbose log of one forward of ``module`` (after one warm-up forward), per convolution shape."""
    with torch.no_grad():
        module(x)
        sys.stdout.flush()
        saved = os.dup(1)
        with tempfile.TemporaryFile(mode="w+") as log:
            os.dup2(log.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    module(x)
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)
            log.seek(0)
            lines = log.read().splitlines()
    out: Dict[Key, Dict[str, Any]] = {}
    for line in lines:
        if not line.startswith("onednn_verbose") or ",exec," not in line or ",convolution," not in line:
            continue
        parts = line.split(",")
        m = _DESC.search(parts[-2])
        if not m:
            continue
        ic, oc, ih, oh, kh, iw, ow, kw = (int(v) for v in m.groups()[1:])
        key = (ic, oc, ih, iw, oh, ow, "1x1" if kh == 1 and kw == 1 else "kxk")
        row = out.setdefault(key, {"calls": 0, "ms": 0.0, "kernel": parts[parts.index("exec") + 3]})
        row["calls"] += 1
        row["ms"] += float(parts[-1])
    return out


def openvino_conv_shapes(compiled) -> Dict[Key, Dict[str, Any]]:
    """Per convolution shape from an OpenVINO compiled model built with ``PERF_COUNT`` after at least one
    inference: the runtime graph's Convolution nodes (fused post-ops included in their time)."""
    out: Dict[Key, Dict[str, Any]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) != "Convolution":
            continue
        t = info["execTimeMcs"].astype(str) if "execTimeMcs" in info else "0"
        us = float(t) if t.replace(".", "", 1).isdigit() else 0.0
        kernel = info["primitiveType"].astype(str) if "primitiveType" in info else ""
        i = [int(d.get_length()) for d in op.input(0).get_partial_shape()[1:]]
        o = [int(d.get_length()) for d in op.output(0).get_partial_shape()[1:]]
        key = (i[0], o[0], i[1], i[2], o[1], o[2], "1x1" if "1x1" in kernel else "kxk")
        row = out.setdefault(key, {"calls": 0, "ms": 0.0, "kernel": kernel})
        row["calls"] += 1
        row["ms"] += us / 1e3
    return out


def compare(ours: Dict[Key, Dict[str, Any]], theirs: Dict[Key, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per shape, the largest time difference first; totals in the last row."""
    rows = []
    for key in set(ours) | set(theirs):
        a, b = ours.get(key, {}), theirs.get(key, {})
        rows.append({"shape": _key_str(key), "calls": a.get("calls", 0), "ms": a.get("ms", 0.0),
                     "kernel": a.get("kernel", ""), "openvino_calls": b.get("calls", 0),
                     "openvino_ms": b.get("ms", 0.0), "openvino_kernel": b.get("kernel", "")})
    rows.sort(key=lambda r: -(r["ms"] - r["openvino_ms"]))
    rows.append({"shape": "total", "calls": sum(r["calls"] for r in rows), "ms": sum(r["ms"] for r in rows), "kernel": "",
                 "openvino_calls": sum(r["openvino_calls"] for r in rows),
                 "openvino_ms": sum(r["openvino_ms"] for r in rows), "openvino_kernel": ""})
    return rows


def print_rows(rows: List[Dict[str, Any]], top: int) -> None:
    head = f"{'convolution (ic->oc in->out kernel)':36s} {'calls':>5s} {'ms':>7s} {'OV calls':>8s} {'OV ms':>7s} {'diff ms':>8s}  kernels"
    print(head)
    for r in rows[:top] + rows[-1:]:
        print(f"{r['shape'][:36]:36s} {r['calls']:5d} {r['ms']:7.2f} {r['openvino_calls']:8d} {r['openvino_ms']:7.2f} "
              f"{r['ms'] - r['openvino_ms']:8.2f}  {r['kernel']} / {r['openvino_kernel']}")
