"""Atomic writes (issue 19, item 1): every output hrnet_fast writes replaces the previous file only when the new
one is complete; a failed write leaves the previous file and no temporary file. The helper itself, then each
writer: predict --out under a file-size limit (a real failed write, in a subprocess), export_onnx whose save
fails half-way, bench/eval --json."""
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from hrnet_fast import _atomic

from _cli_support import listing, tiny_checkpoint
from _golden import TINY_YAML

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------- the helper
def test_write_json_replaces_only_a_complete_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text('{"good": 1}')
    with pytest.raises(RuntimeError, match="disk full"):
        with _atomic.atomic_open(target) as fh:
            fh.write('{"partial": ')
            raise RuntimeError("disk full")
    assert target.read_text() == '{"good": 1}' and listing(tmp_path) == ["out.json"]
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _atomic.write_json(target, {"x": float("nan")}, allow_nan=False)  # refused before anything is replaced
    assert target.read_text() == '{"good": 1}' and listing(tmp_path) == ["out.json"]
    _atomic.write_json(target, {"x": 2}, indent=2)
    assert json.loads(target.read_text()) == {"x": 2} and listing(tmp_path) == ["out.json"]


def test_atomic_path_keeps_the_extension_and_cleans_up(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        with _atomic.atomic_path(target) as tmp:
            assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".mp4") and os.path.basename(tmp).startswith(".")
            open(tmp, "wb").write(b"half a video")
            raise KeyboardInterrupt  # Ctrl-C: the temporary file goes too
    assert listing(tmp_path) == []
    with _atomic.atomic_path(target) as tmp:
        open(tmp, "wb").write(b"video")
    assert target.read_bytes() == b"video" and listing(tmp_path) == ["clip.mp4"]


def test_new_files_get_the_usual_mode(tmp_path):
    """mkstemp makes 0600 files: the written file gets 0666 & ~umask like open(path, "w") (an existing file keeps
    its own mode)."""
    _atomic.write_bytes(tmp_path / "a.bin", b"x")
    plain = tmp_path / "b.bin"
    plain.write_bytes(b"x")
    assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == os.stat(plain).st_mode & 0o777
    os.chmod(plain, 0o640)
    _atomic.write_bytes(plain, b"y")
    assert os.stat(plain).st_mode & 0o777 == 0o640 and plain.read_bytes() == b"y"


def test_writable_problem(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert _atomic.writable_problem(tmp_path / "ok.json") is None
    assert "is a directory" in _atomic.writable_problem(tmp_path)
    assert "does not exist" in _atomic.writable_problem(blocker / "x.json")
    assert listing(tmp_path) == ["a_file"]  # the probe left nothing


# ---------------------------------------------------------------------------------------------- the writers
def _limit_file_size(limit):
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def test_predict_out_under_a_file_size_limit_keeps_the_previous_file(tmp_path):
    """A real failed write: RLIMIT_FSIZE makes writing the results fail half-way. The previous results file
    stays whole, no temporary file is left, and the error is one line (exit 1)."""
    cv2 = pytest.importorskip("cv2")
    weights = tiny_checkpoint(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "out" / "kp.json"
    out.parent.mkdir()
    previous = json.dumps([{"image_id": "old", "keypoints": [0.0] * 51, "score": 1.0}])
    out.write_text(previous)
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([sys.executable, "-m", "hrnet_fast", "predict", "--config", TINY_YAML, "--weights", weights,
                          str(images), "--out", str(out), "--device", "cpu", "--no-progress"], cwd=str(tmp_path), env=env,
                         capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size(1500))
    assert out.read_text() == previous and listing(out.parent) == ["kp.json"], res.stderr[-3000:]
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and f"hrnet-fast predict: cannot write --out {out}: File too large" in res.stderr


def test_export_onnx_failing_half_way_keeps_the_previous_file(tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")
    import torch

    import hrnet_fast
    from hrnet_fast import export

    class HalfSaved:
        def __init__(self, program):
            self.model = program.model

        def save(self, path, external_data=False):
            with open(path, "wb") as fh:
                fh.write(b"\x08\x07 half a model")
            raise OSError(28, "No space left on device")

    real = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: HalfSaved(real(*a, **k)))
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous good model")
    with pytest.raises(OSError, match="No space left"):
        hrnet_fast.export_onnx(hrnet_fast.pose_hrnet(TINY_YAML).eval(), str(target))
    assert target.read_bytes() == b"the previous good model" and listing(tmp_path) == ["model.onnx"]
    monkeypatch.setattr(torch.onnx, "export", real)
    assert export.export_onnx(hrnet_fast.pose_hrnet(TINY_YAML).eval(), str(target)) == str(target)
    assert target.read_bytes() != b"the previous good model" and listing(tmp_path) == ["model.onnx"]


def test_export_onnx_checks_writability_before_the_export(monkeypatch, tmp_path):
    """An unwritable folder fails at once (issue 19, item 5), not after the whole export."""
    import torch

    import hrnet_fast

    folder = "/proc" if os.path.isdir("/proc") else None
    if folder is None or _atomic.writable_problem(os.path.join(folder, "m.onnx")) is None:
        pytest.skip("no unwritable folder to try here")
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(AssertionError("the export started")))
    with pytest.raises(ValueError, match=r"export_onnx: path '/proc/m.onnx': cannot write there"):
        hrnet_fast.export_onnx(hrnet_fast.pose_hrnet(TINY_YAML).eval(), "/proc/m.onnx")


def test_bench_json_write_failure_keeps_the_previous_file(tmp_path, capsys, monkeypatch):
    """bench --json through the atomic helper: a write that fails (simulated at the rename) replaces nothing,
    leaves no temporary file and is one line, exit 1."""
    from hrnet_fast import cli
    from hrnet_fast.cli import bench

    def fake_models(args, device, dtype):
        raise _Stop

    class _Stop(Exception):
        pass

    target = tmp_path / "bench.json"
    target.write_text('{"previous": true}')
    monkeypatch.setattr(bench, "_build_models", fake_models)
    with pytest.raises(_Stop):
        cli.main(["bench", "--quick", "--device", "cpu", "--config", TINY_YAML, "--json", str(target)])
    assert target.read_text() == '{"previous": true}' and listing(tmp_path) == ["bench.json"]
    # the write itself failing: the previous file survives, one line, exit 1
    monkeypatch.setattr(_atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(27, "File too large")))
    from hrnet_fast.cli import _common

    assert not _common.write_output("bench", "--json", str(target), {"x": 1})
    assert "hrnet-fast bench: cannot write --json" in capsys.readouterr().err
    assert target.read_text() == '{"previous": true}' and listing(tmp_path) == ["bench.json"]
