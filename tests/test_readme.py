"""Every Python snippet of the README runs exactly as written (no substitution) in an empty folder, as on a fresh
clone: without a checkpoint (the snippets guard it) and without a photo (the snippets that read one write a
stand-in first); and with the checkpoint the quick start names, saved there, it is loaded (issue 19, item 6)."""
import os
import re

import pytest
import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
CKPT = "pose_hrnet_w32_256x192.pth"


def _blocks():
    """``[(heading the block is under, code)]`` of every ```python block, in order."""
    text = open(README).read()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        prose = re.sub(r"```.*?```", "", text[:m.start()], flags=re.S)  # a "# comment" in a code block is no heading
        heading = re.findall(r"^#+ (.*)$", prose, re.M)[-1]
        out.append((heading, m.group(1)))
    return out


def _block(heading: str, index: int = 0) -> str:
    found = [code for h, code in _blocks() if h == heading]
    return found[index]


def _run(code: str) -> dict:
    scope = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


TESTED = {"Quick start": 1, "Pipeline: images and boxes to keypoints": 1, "Plugging in a person detector": 1,
          "Export (ONNX, torch.export)": 2, "CPU engines (OpenVINO, onnxruntime)": 1, "Training": 1}


def test_every_python_snippet_has_a_test():
    counts = {}
    for heading, _ in _blocks():
        counts[heading] = counts.get(heading, 0) + 1
    assert counts == TESTED, "a README python snippet without a test here: add it to this file"


def test_quick_start_runs_as_written_on_a_fresh_clone(tmp_path, monkeypatch):
    """No weights file in the working directory: the checkpoint line is skipped, the rest runs."""
    monkeypatch.chdir(tmp_path)
    scope = _run(_block("Quick start"))
    assert scope["heatmaps"].shape == (8, 17, 64, 48) and torch.isfinite(scope["coords"]).all()
    assert scope["coords"].shape == (8, 17, 2) and scope["maxvals"].shape == (8, 17, 1)


def test_quick_start_loads_the_checkpoint_it_names(tmp_path, monkeypatch):
    import hrnet_fast

    monkeypatch.chdir(tmp_path)
    block = _block("Quick start")
    assert f'"{CKPT}"' in block
    torch.save(hrnet_fast.pose_hrnet("w32_256x192").state_dict(), CKPT)
    loaded = []
    real = hrnet_fast.load_checkpoint
    monkeypatch.setattr(hrnet_fast, "load_checkpoint", lambda model, path, **k: loaded.append(path) or real(model, path, **k))
    scope = _run(block)
    assert loaded == [CKPT] and scope["heatmaps"].shape == (8, 17, 64, 48)


def test_pipeline_example_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("cv2", reason="the example reads its image with OpenCV")
    monkeypatch.chdir(tmp_path)
    block = _block("Pipeline: images and boxes to keypoints")
    scope = _run(block)
    assert os.path.exists("people.jpg")  # the snippet wrote its stand-in photo
    assert scope["result"].keypoints.shape == (2, 17, 3) and scope["kp"].shape == (2, 17, 3)
    assert scope["result"].scores.shape == (2,)
    # the comment of the call that passes one image says so (it used to speak of lists)
    call = next(line for line in block.splitlines() if line.startswith("result = estimator(image, boxes)"))
    assert "list of images" not in call and "one image" in call


def test_detector_example_runs_as_written(tmp_path, monkeypatch):
    """Needs torchvision and its Faster R-CNN weights (downloaded on first use): skipped where they are missing
    and no download is allowed (HRNET_FAST_TEST_NETWORK=1 allows it)."""
    pytest.importorskip("cv2")
    tv = pytest.importorskip("torchvision", reason="the example's detector is torchvision's")
    url = tv.models.detection.FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT.url
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.exists(cached) and os.environ.get("HRNET_FAST_TEST_NETWORK") != "1":
        pytest.skip("the detector weights are not cached and HRNET_FAST_TEST_NETWORK is not 1")
    monkeypatch.chdir(tmp_path)
    scope = _run(_block("Plugging in a person detector"))
    assert scope["result"].keypoints.shape[1:] == (17, 3)


@pytest.mark.slow
def test_export_examples_run_as_written(tmp_path, monkeypatch):
    """The export snippet, then the onnxruntime snippet on its file (W32: about 20 s on 2 cores)."""
    pytest.importorskip("onnxscript", reason="export needs onnx and onnxscript")
    pytest.importorskip("onnxruntime", reason="the second snippet runs the file in onnxruntime")
    from hrnet_fast.export import MIN_TORCH

    if tuple(int(v) for v in torch.__version__.split(".")[:2]) < MIN_TORCH:
        pytest.skip("export needs a newer torch")
    monkeypatch.chdir(tmp_path)
    _run(_block("Export (ONNX, torch.export)", 0))
    assert os.path.getsize("pose_hrnet_w32.onnx") > 10 * 2 ** 20
    scope = _run(_block("Export (ONNX, torch.export)", 1))
    assert scope["heatmaps"].shape == (2, 17, 64, 48)
    assert os.listdir(tmp_path) == ["pose_hrnet_w32.onnx"]  # no temporary file left beside it


@pytest.mark.slow
def test_readme_engines_example_runs_as_written():
    """The "CPU engines" example verbatim (W32: two exports, about a minute on 2 cores)."""
    from hrnet_fast import engines

    if os.environ.get("CI") != "true":
        for pkg in ("openvino", "onnxruntime", "onnx", "onnxscript"):
            pytest.importorskip(pkg, reason="optional: the engine extras")
    scope = _run(_block("CPU engines (OpenVINO, onnxruntime)"))
    assert scope["heatmaps"].shape == (2, 17, 64, 48) and scope["heatmaps"].dtype == torch.float32
    assert isinstance(scope["fast"], engines.EngineModule) and scope["fast"].engine == "openvino"
    assert scope["est"].model.engine == "openvino"


def test_training_example_runs_as_written(tmp_path, monkeypatch):
    """Without COCO in the working directory it does nothing; with the official layout there it calls fit() with
    the files of that layout (fit itself is replaced: training W32 is not a test)."""
    import hrnet_fast.training

    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(hrnet_fast.training, "fit", lambda *a, **k: calls.append((a, k)) or [])
    _run(_block("Training"))
    assert calls == [] and os.listdir(tmp_path) == []
    os.makedirs("data/coco/annotations")
    open("data/coco/annotations/person_keypoints_train2017.json", "w").close()
    scope = _run(_block("Training"))
    (args, kwargs), = calls
    assert args == ("w32_256x192", "data/coco/annotations/person_keypoints_train2017.json", "data/coco/images/train2017",
                    "runs/w32")
    assert kwargs["val_ann"] == "data/coco/annotations/person_keypoints_val2017.json" and scope["records"] == []
    from hrnet_fast.cli.train import coco_layout  # the layout the README names is the one --data reads

    assert coco_layout("data/coco")[0] == args[1] and coco_layout("data/coco")[3] == kwargs["val_images"]
