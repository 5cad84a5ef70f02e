"""hrnet-fast predict / eval end to end: a synthetic COCO set evaluated with pycocotools (AP >= 0.99 with a
stand-in model that finds the keypoints in the crops: crop geometry, flip merge, decoding, back-transform, the
results format and the evaluation agree), the command line on files, directories and a video, torchrun with
two CPU processes (gloo) against one, and the argument errors. Tests needing OpenCV or pycocotools skip
without them."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hrnet_fast import cli
from hrnet_fast.estimator import PoseEstimator

from _golden import TINY_YAML

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cv2 = pytest.importorskip("cv2", reason="predict reads images with OpenCV (pip install opencv-python-headless)")
from _synthetic import DotPoseModel, make_coco  # noqa: E402
from hrnet_fast import coco as hcoco  # noqa: E402
from hrnet_fast import draw  # noqa: E402
from hrnet_fast.cli import predict  # noqa: E402

needs_coco = pytest.mark.skipif(
    __import__("importlib").util.find_spec("pycocotools") is None, reason="eval needs pycocotools (pip install pycocotools)")


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(str(tmp_path_factory.mktemp("coco")), n_images=6, seed=0)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    import hrnet_fast
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(TINY_YAML)
    realistic_random_init(model, image_hw=(128, 96), seed=0, batches=1, batch_size=2)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(model.state_dict(), path)
    return str(path)


def _run_jobs(est, jobs):
    out, _ = predict.predict_jobs(est, jobs, progress=False)
    return [r for _, rs in sorted(out, key=lambda t: t[0]) for r in rs]


def _dot_estimator(**kw):
    return PoseEstimator(DotPoseModel(), input_size=(192, 256), device="cpu", max_batch=3, **kw)


# ---------------------------------------------------------------------------------------------- synthetic COCO evaluation
@needs_coco
@pytest.mark.parametrize("decode", ["quarter", "dark"])
def test_synthetic_coco_eval_reports_ap_1(coco, tmp_path, capsys, decode):
    ann_path, img_dir, ann = coco
    jobs, notes = predict.image_jobs([img_dir], ann, None)  # the ground-truth boxes, cleaned as the official code does
    assert not notes and sum(len(j.boxes) for j in jobs) == len(ann["annotations"]) == 9
    results = _run_jobs(_dot_estimator(decode=decode), jobs)
    assert len(results) == 9
    res_path = tmp_path / "keypoints.json"
    res_path.write_text(json.dumps(results))
    stats_path = tmp_path / "stats.json"
    assert cli.main(["eval", "--ann", ann_path, "--results", str(res_path), "--json", str(stats_path)]) == 0
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ]" in out  # pycocotools' table
    assert "| AP | AP .5 | AP .75 | AP (M) | AP (L) | AR |" in out
    stats = json.loads(stats_path.read_text())["stats"]
    assert stats["AP"] >= 0.99 and stats["AR"] >= 0.99, stats
    # the keypoints land within 2.5 px of the truth (quarter decoding: 0.25 heatmap px = 1.3 image px per axis)
    truth = {}
    for a in ann["annotations"]:
        truth.setdefault(a["image_id"], []).append(np.array(a["keypoints"]).reshape(17, 3)[:, :2])
    for r in results:
        kp = np.array(r["keypoints"]).reshape(17, 3)
        assert min(np.abs(kp[:, :2] - t).max() for t in truth[r["image_id"]]) < 2.5
        assert (kp[:, 2] > 0.5).all()


@needs_coco
def test_synthetic_coco_eval_with_detections_and_a_false_positive(coco):
    ann_path, img_dir, ann = coco
    rng = np.random.default_rng(1)
    dets = []
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        dets.append({"image_id": a["image_id"], "category_id": 1, "score": float(rng.uniform(0.6, 1.0)),
                     "bbox": [x + rng.uniform(-6, 6), y + rng.uniform(-6, 6), w * rng.uniform(0.95, 1.05), h * rng.uniform(0.95, 1.05)]})
    dets.append({"image_id": 2, "category_id": 1, "score": 0.3, "bbox": [5, 5, 40, 60]})  # empty background
    dets.append({"image_id": 2, "category_id": 1, "score": 0.01, "bbox": [5, 5, 40, 60]})  # below --min-box-score
    dets.append({"image_id": 3, "category_id": 2, "score": 0.9, "bbox": [5, 5, 40, 60]})  # not a person
    boxes = hcoco.detection_boxes(dets, 0.05, "dets")
    jobs, _ = predict.image_jobs([img_dir], ann, boxes)
    assert sum(len(j.boxes) for j in jobs) == 10
    results = _run_jobs(_dot_estimator(), jobs)
    empty = [r for r in results if r["image_id"] == 2 and r["score"] == 0.0]
    assert len(empty) == 1  # no keypoint found: every keypoint score 0, rescored to 0
    stats = hcoco.evaluate(ann_path, results, verbose=False)
    assert stats["AP"] >= 0.99, stats


@needs_coco
def test_synthetic_eval_catches_a_wrong_flip_merge(coco):
    """The negative control: the same run with the flip pairs left unswapped puts left and right on top of
    each other; the evaluation must see it."""
    ann_path, img_dir, ann = coco
    jobs, _ = predict.image_jobs([img_dir], ann, None)
    stats = hcoco.evaluate(ann_path, _run_jobs(_dot_estimator(flip_pairs=()), jobs), verbose=False)
    assert stats["AP"] < 0.5, stats


# ---------------------------------------------------------------------------------------------- the command line
def _usage_error(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err and err.startswith("usage: hrnet-fast")
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hrnet-fast {argv[0]}: error: ") and expected in last, last


def test_predict_files_with_ann_draw_and_eval(coco, tiny_weights, tmp_path, capsys):
    ann_path, img_dir, ann = coco
    out, draw = tmp_path / "kp.json", tmp_path / "drawn"
    assert cli.main(["predict", "--config", TINY_YAML, "--weights", tiny_weights, img_dir, "--ann", ann_path, "--out", str(out),
                     "--draw", str(draw), "--device", "cpu", "--no-progress", "--max-batch", "2"]) == 0
    assert f"wrote 9 person results to {out}" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert len(results) == 9 and [r["image_id"] for r in results] == sorted(r["image_id"] for r in results)
    for r in results:
        assert set(r) == {"image_id", "category_id", "keypoints", "score"} and r["category_id"] == 1
        assert len(r["keypoints"]) == 51 and all(isinstance(v, float) for v in r["keypoints"])
    assert sorted(os.listdir(draw)) == sorted(im["file_name"] for im in ann["images"])
    if predict.importlib.util.find_spec("pycocotools") is not None:
        assert cli.main(["eval", "--config", TINY_YAML, "--weights", tiny_weights, "--ann", ann_path, "--images", img_dir,
                         "--device", "cpu", "--no-progress"]) == 0
        assert "| AP | AP .5 |" in capsys.readouterr().out


def test_predict_directory_without_ann_and_with_boxes_by_file_name(coco, tiny_weights, tmp_path, capsys):
    _, img_dir, ann = coco
    out = tmp_path / "kp.json"
    # neither --ann nor --boxes: each whole image is one person, image ids are the file names
    assert cli.main(["predict", "--config", TINY_YAML, "--weights", tiny_weights, img_dir, "--out", str(out), "--device", "cpu",
                     "--no-progress", "--no-flip", "--decode", "dark"]) == 0
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == sorted(im["file_name"] for im in ann["images"])
    # --boxes keyed by file name (with or without the extension); xyxy boxes; one file given twice is an error
    dets = [{"image_id": "000001.png", "bbox": [10, 10, 100, 200], "score": 0.9, "category_id": 1},
            {"image_id": "000002", "bbox": [20, 20, 120, 220], "score": 0.8},
            {"image_id": "nope.png", "bbox": [20, 20, 120, 220], "score": 0.8}]
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps(dets))
    files = [os.path.join(img_dir, "000001.png"), os.path.join(img_dir, "000002.png"), os.path.join(img_dir, "000003.png")]
    assert cli.main(["predict", "--config", TINY_YAML, "--weights", tiny_weights, *files, "--boxes", str(boxes),
                     "--box-format", "xyxy", "--out", str(out), "--device", "cpu", "--no-progress", "--oks-nms", "0.9"]) == 0
    err = capsys.readouterr().err
    assert "1 image id(s) of --boxes match no image file (e.g. 'nope.png')" in err
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == ["000001.png", "000002.png"]


def test_predict_video(tiny_weights, tmp_path, capsys):
    video = str(tmp_path / "in.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    rng = np.random.default_rng(0)
    for _ in range(7):
        writer.write(rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8))
    writer.release()
    boxes = tmp_path / "frames.json"
    boxes.write_text(json.dumps({"0": [[10, 10, 40, 60]], "3": [[5, 5, 30, 40, 0.7], [60, 10, 40, 70, 0.9]]}))
    out_video, out = tmp_path / "out.mp4", tmp_path / "kp.json"
    assert cli.main(["predict", "--config", TINY_YAML, "--weights", tiny_weights, "--video", video, "--boxes", str(boxes),
                     "--draw-video", str(out_video), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == [0, 3, 3]
    cap = cv2.VideoCapture(str(out_video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 7
    # without --boxes: the whole frame, one person per frame
    assert cli.main(["predict", "--config", TINY_YAML, "--weights", tiny_weights, "--video", video, "--out", str(out),
                     "--device", "cpu", "--no-progress"]) == 0
    assert [r["image_id"] for r in json.loads(out.read_text())] == list(range(7))


def test_torchrun_two_cpu_processes_equal_one(coco, tiny_weights, tmp_path):
    """torchrun --nproc_per_node 2 (gloo on the CPU): the images are sharded over the ranks and rank 0 writes one
    file, equal to a single-process run within fp32 tolerance (other batches may change the last bits)."""
    ann_path, img_dir, _ = coco
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    args = ["predict", "--config", TINY_YAML, "--weights", tiny_weights, img_dir, "--ann", ann_path, "--device", "cpu",
            "--no-progress", "--max-batch", "4"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "hrnet_fast", *args, "--out", str(single)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "hrnet_fast", *args, "--out", str(multi)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "on rank 0; 2 ranks" in res.stderr
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    assert [r["image_id"] for r in a] == [r["image_id"] for r in b] and len(a) == 9
    np.testing.assert_allclose([r["keypoints"] for r in b], [r["keypoints"] for r in a], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose([r["score"] for r in b], [r["score"] for r in a], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("argv, expected", [
    (["predict", "x.jpg", "--out", "o.json"], "the following arguments are required: --config"),
    (["predict", "--config", "nope", "--weights", "W", "x.jpg"], "--config nope: unknown config name 'nope'"),
    (["predict", "--config", TINY_YAML, "--weights", "/nonexistent.pth", "x.jpg"], "--weights /nonexistent.pth: no such file"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "/nonexistent.jpg", "--out", "o.json"], "/nonexistent.jpg: no such file or directory"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "--out", "o.json"], "nothing to do: give IMAGES_OR_DIR or --video"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}", "--video", "{w}"], "give images (IMAGES_OR_DIR) or --video, not both"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}"], "--out keypoints.json is required for images"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}", "--out", "o.json", "--ann", "{w}"], "--ann {w}: not a JSON"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}", "--out", "o.json", "--boxes", "{dir}/ann.json"],
     "expected a list of detections"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{dir}", "--out", "o.json", "--ann", "{dir}/ann.json"],
     "image(s) of --ann not found, e.g."),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}", "--out", "o.json", "--oks-nms", "2"], "--oks-nms 2.0: expected a threshold"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}", "--out", "o.json", "--max-batch", "0"],
     "argument --max-batch: expected a positive integer, got '0'"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "--video", "{w}", "--out", "o.json", "--ann", "{dir}/ann.json"],
     "--ann applies to images, not to --video"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "--video", "{w}"], "--video needs --draw-video OUT.mp4 and/or --out"),
    (["predict", "--config", TINY_YAML, "--weights", "{w}", "{img}", "--out", "{dir}"], "is a directory"),
    (["eval", "--ann", "/nonexistent.json", "--results", "r.json"], "--ann /nonexistent.json: no such file"),
    (["eval", "--ann", "{dir}/ann.json"], "give --results keypoints.json, or --config (and --weights) and --images"),
    (["eval", "--ann", "{dir}/ann.json", "--results", "{w}", "--config", TINY_YAML], "not both"),
    (["eval", "--ann", "{dir}/ann.json", "--config", TINY_YAML, "--weights", "{w}"], "--config needs --images DIR"),
])
def test_bad_arguments_exit_2_with_a_one_line_error(tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    w = tmp_path / "w.pth"
    w.write_bytes(b"not read before the checks pass")
    img = tmp_path / "a.jpg"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "ann.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "missing.jpg"}]}))
    fill = dict(w=str(w), img=str(img), dir=str(tmp_path))
    if argv[0] == "eval" and predict.importlib.util.find_spec("pycocotools") is None:
        expected = "eval needs pycocotools"
    monkeypatch.setattr(predict, "run_predict", lambda args: (_ for _ in ()).throw(AssertionError("the work started")))
    _usage_error(capsys, [a.format(**fill) for a in argv], expected.format(**fill))


def test_missing_optional_packages_are_usage_errors(tmp_path, capsys, monkeypatch):
    real = predict.importlib.util.find_spec
    monkeypatch.setattr(predict.importlib.util, "find_spec", lambda name, *a: None if name in ("cv2", "pycocotools") else real(name, *a))
    _usage_error(capsys, ["predict", "--config", TINY_YAML, "--weights", "w", "x.jpg"],
                 "predict needs opencv-python-headless, which is not installed: pip install 'hrnet_fast[pipeline]'")
    _usage_error(capsys, ["eval", "--ann", "a.json", "--results", "r.json"], "eval needs pycocotools, which is not installed")


@needs_coco
def test_eval_of_results_that_do_not_fit(coco, tmp_path, capsys):
    """Results that do not fit --ann are a user error now (issue 19): exit 2, one line naming the file and the
    entry (tests/test_eval_checks.py has every kind)."""
    ann_path, _, _ = coco
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    _usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(empty)], "no keypoint results to evaluate")
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"image_id": 999, "category_id": 1, "keypoints": [0.0] * 51, "score": 1.0}]))
    _usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(other)],
                 f"--results {other}: entry 0 (image_id 999): the image id is not in the annotation file")


@pytest.mark.parametrize("argv", [["predict", "--help"], ["eval", "--help"]])
def test_help_does_not_import_torch(argv):
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hrnet_fast", *argv], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert res.returncode == 0 and f"usage: hrnet-fast {argv[0]}" in res.stdout, res.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "numpy", "cv2", "pycocotools", "yaml"))
    assert not heavy, heavy[:10]


# ---------------------------------------------------------------------------------------------- helpers
def test_gt_boxes_are_cleaned_as_the_official_dataset_does():
    ann = {"images": [{"id": 1, "width": 100, "height": 80}],
           "annotations": [
               {"image_id": 1, "bbox": [-5, 10, 50, 100], "area": 10, "keypoints": [1, 1, 2], "category_id": 1},
               {"image_id": 1, "bbox": [10, 10, 50, 50], "area": 10, "keypoints": [0, 0, 0], "category_id": 1},
               {"image_id": 1, "bbox": [10, 10, 50, 50], "area": 10, "keypoints": [1, 1, 2], "iscrowd": 1, "category_id": 1},
               {"image_id": 1, "bbox": [10, 10, 50, 50], "area": 0, "keypoints": [1, 1, 2], "category_id": 1}]}
    boxes = hcoco.gt_person_boxes(ann)
    # x1 = max(0, x); x2 = min(W - 1, x1 + max(0, w - 1)); the same for y; box = [x1, y1, x2 - x1, y2 - y1]
    np.testing.assert_allclose(boxes[1], [[0, 10, 49, 69, 1.0]])


def test_draw_pose_draws_and_skips_missing_keypoints():
    img = np.zeros((60, 80, 3), np.uint8)
    kp = np.zeros((2, 17, 3))
    kp[0, :, :2] = np.random.default_rng(0).uniform(5, 55, (17, 2))
    kp[0, :, 2] = 0.9
    kp[1] = np.nan
    drawn = draw.draw_pose(img, kp, np.array([[5, 5, 50, 50], [np.nan] * 4]))
    assert drawn.shape == img.shape and drawn.any() and not img.any()
    assert draw.draw_pose(img[:, :, 0], kp[:1]).shape == (60, 80, 3)
