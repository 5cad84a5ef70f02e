"""The README's quick start runs as written (the checkpoint path pointed at a file saved here)."""
import os
import re

import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_quick_start_runs(tmp_path):
    import hrnet_fast

    block = re.search(r"```python\n(.*?)```", open(README).read(), re.S).group(1)
    ckpt = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(hrnet_fast.pose_hrnet("w32_256x192").state_dict(), ckpt)
    assert '"pose_hrnet_w32_256x192.pth"' in block
    scope = {}
    exec(compile(block.replace('"pose_hrnet_w32_256x192.pth"', repr(str(ckpt))), "README.md", "exec"), scope)
    assert scope["heatmaps"].shape == (8, 17, 64, 48)
    assert scope["coords"].shape == (8, 17, 2) and scope["maxvals"].shape == (8, 17, 1)
    assert torch.isfinite(scope["coords"]).all()


def _block(after: str) -> str:
    text = open(README).read()
    return re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)


def test_readme_quick_start_runs_as_written_on_a_fresh_clone(tmp_path, monkeypatch):
    """No weights file in the working directory: the checkpoint line is skipped, the rest runs."""
    monkeypatch.chdir(tmp_path)
    block = re.search(r"```python\n(.*?)```", open(README).read(), re.S).group(1)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["heatmaps"].shape == (8, 17, 64, 48) and torch.isfinite(scope["coords"]).all()


def test_readme_pipeline_example_runs(tmp_path):
    import numpy as np
    import pytest

    import hrnet_fast

    cv2 = pytest.importorskip("cv2", reason="the example reads its image with OpenCV")
    block = _block("## Pipeline: images and boxes to keypoints")
    ckpt = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(hrnet_fast.pose_hrnet("w32_256x192").state_dict(), ckpt)
    photo = tmp_path / "people.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    assert '"pose_hrnet_w32_256x192.pth"' in block and '"people.jpg"' in block
    code = block.replace('"pose_hrnet_w32_256x192.pth"', repr(str(ckpt))).replace('"people.jpg"', repr(str(photo)))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["result"].keypoints.shape == (2, 17, 3) and scope["kp"].shape == (2, 17, 3)
    assert scope["result"].scores.shape == (2,)


def test_readme_engines_example_runs(monkeypatch):
    """The "CPU engines" example, on the tiny network (one ONNX export shared by its two engine builds)."""
    import pytest

    from hrnet_fast import engines

    if os.environ.get("CI") != "true":
        for pkg in ("openvino", "onnxruntime", "onnx", "onnxscript"):
            pytest.importorskip(pkg, reason="optional: the engine extras")
    block = _block("## CPU engines (OpenVINO, onnxruntime)")
    tiny = os.path.join(os.path.dirname(README), "tests", "data", "tiny_hrnet.yaml")
    assert '"w32_256x192"' in block and "256, 192)" in block and "(2, 17, 64, 48)" in block
    code = block.replace('"w32_256x192"', repr(tiny)).replace("256, 192)", "128, 96)")
    export, cache = engines.onnx_bytes, {}
    monkeypatch.setattr(engines, "onnx_bytes", lambda m: cache.setdefault(id(m), export(m)))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["heatmaps"].shape == (2, 17, 32, 24) and scope["heatmaps"].dtype == torch.float32
    assert isinstance(scope["fast"], engines.EngineModule) and scope["fast"].engine == "openvino"
    assert scope["est"].model.engine == "openvino" and len(cache) == 1
