"""hrnet-fast predict as a new user meets it (issue 19): no input is ever overwritten (item 1), no NaN is written
and skipped files and persons are counted (item 2), every bad file argument is one line and exit 2 before any
work (items 4, 5), no --weights needed (item 6), and progress that shows the work (item 7). Each test fails
on the code before the fix."""
import json
import os

import numpy as np
import pytest
import torch

from hrnet_fast import cli

from _cli_support import listing, tiny_checkpoint, usage_error
from _golden import TINY_YAML

cv2 = pytest.importorskip("cv2", reason="predict reads images with OpenCV (pip install opencv-python-headless)")
from hrnet_fast.cli import predict  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("weights"))


@pytest.fixture()
def photos(tmp_path):
    """A folder of 3 small photos (random pixels, seeded); their bytes, to show they are untouched."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.jpg"), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    return folder


def _bytes(folder):
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))}


def _predict(*argv):
    return ["predict", "--config", TINY_YAML, *argv, "--device", "cpu", "--no-progress"]


def _no_work(monkeypatch):
    monkeypatch.setattr(predict, "run_predict", lambda args: (_ for _ in ()).throw(AssertionError("the work started")))


# ---------------------------------------------------------------------------------------------- 1. data loss
def test_draw_into_the_input_folder_is_refused(photos, weights, tmp_path, capsys, monkeypatch):
    before = _bytes(photos)
    _no_work(monkeypatch)
    last = usage_error(capsys, _predict("--weights", weights, str(photos), "--out", str(tmp_path / "kp.json"),
                                        "--draw", str(photos)), f"--draw {photos}: its drawing")
    assert "would replace the input IMAGES_OR_DIR" in last
    # the same folder spelled another way (a symlink, a relative path with ..): resolved, refused alike
    link = tmp_path / "link"
    link.symlink_to(photos)
    usage_error(capsys, _predict("--weights", weights, str(photos / "p1.jpg"), "--out", str(tmp_path / "kp.json"),
                                 "--draw", str(link)), "would replace the input IMAGES_OR_DIR")
    usage_error(capsys, _predict("--weights", weights, str(photos), "--out", str(tmp_path / "kp.json"),
                                 "--draw", str(photos / ".." / "photos")), "would replace the input")
    assert _bytes(photos) == before and not (tmp_path / "kp.json").exists()


def test_out_onto_an_input_file_is_refused(photos, weights, tmp_path, capsys, monkeypatch):
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": "p0.jpg", "bbox": [10, 10, 50, 60], "score": 0.9}]))
    before = dets.read_text()
    _no_work(monkeypatch)
    usage_error(capsys, _predict("--weights", weights, str(photos), "--boxes", str(dets), "--out", str(dets)),
                f"--out {dets}: is the input --boxes {dets}")
    usage_error(capsys, _predict("--weights", weights, str(photos), "--out", str(photos / "p2.jpg")),
                "is the input IMAGES_OR_DIR")
    assert dets.read_text() == before


def _video(path, frames=5):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8))
    writer.release()
    return path


def test_draw_video_onto_the_video_is_refused(weights, tmp_path, capsys, monkeypatch):
    video = _video(tmp_path / "in.mp4")
    before = video.read_bytes()
    _no_work(monkeypatch)
    usage_error(capsys, _predict("--weights", weights, "--video", str(video), "--draw-video", str(video)),
                f"--draw-video {video}: is the input --video {video}")
    usage_error(capsys, _predict("--weights", weights, "--video", str(video), "--draw-video", str(tmp_path / "." / "in.mp4")),
                "is the input --video")
    assert video.read_bytes() == before


def test_draw_video_is_written_atomically(weights, tmp_path, monkeypatch):
    """A video that fails while it is written leaves the previous output file, and no temporary file."""
    from hrnet_fast import video as hvideo

    video = _video(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous drawing")
    real = hvideo.draw_pose
    calls = []

    def failing(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(hvideo, "draw_pose", failing)
    with pytest.raises(OSError, match="No space left"):
        cli.main(_predict("--weights", weights, "--video", str(video), "--draw-video", str(out)))
    assert out.read_bytes() == b"previous drawing" and listing(tmp_path) == ["in.mp4", "out.mp4"]


# ---------------------------------------------------------------------------------------------- 2. silently wrong results
def test_nan_keypoints_are_never_written(photos, tmp_path, capsys):
    """Weights with a NaN give NaN heatmaps: those persons are dropped (JSON has no NaN), and the summary says
    how many and why."""
    import hrnet_fast

    model = hrnet_fast.pose_hrnet(TINY_YAML)
    state = model.state_dict()
    state["final_layer.bias"][3] = float("nan")
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    out = tmp_path / "kp.json"
    assert cli.main(_predict("--weights", str(bad), str(photos), "--out", str(out))) == 0
    captured = capsys.readouterr()
    text = out.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the results file"))
    assert json.loads(text) == []
    assert "3 person(s) not written: their keypoints or score are not finite" in captured.err
    assert "wrote 0 person results" in captured.out


def test_to_coco_leaves_out_non_finite_persons():
    from hrnet_fast.coco import to_coco
    from hrnet_fast.estimator import PoseResult

    kp = np.random.default_rng(0).uniform(0, 50, (3, 17, 3))
    kp[1, 4, 0] = np.nan
    scores = np.array([0.5, 0.6, np.inf])
    rows = to_coco(7, PoseResult(kp, scores, np.zeros((3, 4)), np.ones(3)))
    assert len(rows) == 1 and rows[0]["keypoints"] == [float(v) for v in kp[0].reshape(-1)]
    assert to_coco(7, PoseResult(np.zeros((0, 17, 3)), np.zeros(0), np.zeros((0, 4)), np.zeros(0))) == []


def test_unreadable_files_are_counted_apart(photos, weights, tmp_path, capsys):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "kp.json"
    assert cli.main(_predict("--weights", weights, str(photos), "--out", str(out))) == 0
    err = capsys.readouterr().err
    assert "cannot read" in err and "broken.jpg" in err
    summary = next(line for line in err.splitlines() if " persons in " in line)
    assert summary.startswith("[hrnet-fast] 3 images, 3 persons in ") and summary.endswith("; 1 unreadable file(s) skipped")
    assert len(json.loads(out.read_text())) == 3


def test_boxes_matching_no_image_is_an_error_unless_allowed(photos, weights, tmp_path, capsys, monkeypatch):
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 12345, "bbox": [10, 10, 50, 60], "score": 0.9}]))
    out = tmp_path / "kp.json"
    built = []
    monkeypatch.setattr(predict, "_estimator", lambda args: built.append(1) or pytest.fail("the model was built"))
    assert cli.main(_predict("--weights", weights, str(photos), "--boxes", str(dets), "--out", str(out))) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"hrnet-fast predict: no person found to run: --boxes {dets} has no person box for any of "
                              f"the 3 image(s) (1 image id(s) of --boxes match no image file (e.g. 12345)")
    assert "--allow-empty" in err[-1] and not out.exists() and not built
    monkeypatch.undo()
    assert cli.main(_predict("--weights", weights, str(photos), "--boxes", str(dets), "--out", str(out), "--allow-empty")) == 0
    assert json.loads(out.read_text()) == []


# ---------------------------------------------------------------------------------------------- 4, 5. one line, exit 2
def test_truncated_and_foreign_weights_are_usage_errors(photos, weights, tmp_path, capsys):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(weights, "rb").read()[:2000])
    out = tmp_path / "kp.json"
    usage_error(capsys, _predict("--weights", str(truncated), str(photos), "--out", str(out)),
                f"--weights {truncated}: checkpoint:")
    # a checkpoint of another architecture: one line with the counts, not hundreds of keys
    import hrnet_fast

    other = hrnet_fast.pose_hrnet("w32_256x192").state_dict()
    foreign = tmp_path / "w32.pth"
    torch.save({k: v for i, (k, v) in enumerate(other.items()) if i < 40}, foreign)
    last = usage_error(capsys, _predict("--weights", str(foreign), str(photos), "--out", str(out)),
                       f"--weights {foreign}: does not fit --config {TINY_YAML} (nothing was loaded): ")
    assert "missing key(s), e.g. final_layer.bias" in last and len(last) < 400
    assert not out.exists()


@pytest.mark.parametrize("bbox, fmt, expected", [
    ([10, 10, float("nan"), 60], "xywh", "bbox [10.0, 10.0, nan, 60.0] (score 0.9) is not finite"),
    ([10, 10, -50, 60], "xywh", "bbox [10.0, 10.0, -50.0, 60.0] (score 0.9) has a negative width"),
    ([60, 10, 10, 70], "xyxy", "has a negative width (-50) in xyxy (corners swapped?)"),
    ([10, 10, 0, 0], "xywh", "has zero width and height"),
    ([10, 10, 1e39, 60], "xywh", "does not fit float32"),
    ([10, "ten", 50, 60], "xywh", "bbox [10, 'ten', 50, 60] / score 0.9: expected a number, got 'ten'"),
    ([10, 10, 50], "xywh", "bbox must be [x, y, w, h], got [10, 10, 50]"),
])
def test_bad_boxes_name_the_file_the_image_and_the_detection(photos, weights, tmp_path, capsys, monkeypatch, bbox, fmt, expected):
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": "p0.jpg", "bbox": [10, 10, 50, 60], "score": 0.8},
                                {"image_id": "p1.jpg", "bbox": bbox, "score": 0.9}]))
    _no_work(monkeypatch)
    last = usage_error(capsys, _predict("--weights", weights, str(photos), "--boxes", str(dets), "--box-format", fmt,
                                        "--out", str(tmp_path / "kp.json")), f"--boxes {dets}: detection 1 (image_id 'p1.jpg'): ")
    assert expected in last, last


def test_a_file_that_is_not_a_video_is_a_usage_error(weights, tmp_path, capfd, monkeypatch):
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video")
    _no_work(monkeypatch)
    with pytest.raises(SystemExit) as info:
        cli.main(_predict("--weights", weights, "--video", str(fake), "--out", str(tmp_path / "kp.json")))
    err = capfd.readouterr().err  # file descriptor 2: FFmpeg's own log line would show here
    assert info.value.code == 2 and "Traceback" not in err and "moov atom" not in err, err
    assert err.strip().splitlines()[-1] == (f"hrnet-fast predict: error: --video {fake}: OpenCV cannot read a frame of it "
                                            f"(not a video, or a codec this OpenCV build lacks)")


def test_malformed_ann_is_one_line(photos, weights, tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1}]}))
    usage_error(capsys, _predict("--weights", weights, str(photos), "--ann", str(ann), "--out", str(tmp_path / "kp.json")),
                f"--ann {ann}: images[0] (id 1) has no 'file_name'")


def test_video_frames_may_mix_boxes_with_and_without_score(weights, tmp_path):
    from hrnet_fast.coco import video_boxes

    frames = video_boxes({"0": [[10, 10, 40, 60], [5, 5, 30, 40, 0.7]], "2": []}, "xywh", "--boxes f.json")
    np.testing.assert_array_equal(frames[0], [[10, 10, 40, 60, 1.0], [5, 5, 30, 40, 0.7]])
    assert frames[2].shape == (0, 5)
    xyxy = video_boxes([{"image_id": 1, "bbox": [10, 10, 50, 70]}], "xyxy", "--boxes f.json")
    np.testing.assert_array_equal(xyxy[1], [[10, 10, 40, 60, 1.0]])  # a list of detections honours --box-format too
    with pytest.raises(ValueError, match=r"--boxes f.json: frame 0, box 1: bbox \[5.0, 5.0, -30.0, 40.0\] \(score 1\) has a negative width"):
        video_boxes({"0": [[10, 10, 40, 60], [5, 5, -30, 40]]}, "xywh", "--boxes f.json")
    video = _video(tmp_path / "in.mp4")
    boxes = tmp_path / "frames.json"
    boxes.write_text(json.dumps({"1": [[10, 10, 40, 60], [5, 5, 30, 40, 0.7]]}))
    out = tmp_path / "kp.json"
    assert cli.main(_predict("--weights", weights, "--video", str(video), "--boxes", str(boxes), "--out", str(out))) == 0
    assert [r["image_id"] for r in json.loads(out.read_text())] == [1, 1]


# ---------------------------------------------------------------------------------------------- 6. no weights needed
def test_predict_and_eval_run_without_weights(photos, tmp_path, capsys):
    out = tmp_path / "kp.json"
    assert cli.main(_predict(str(photos), "--out", str(out))) == 0
    err = capsys.readouterr().err
    assert "[hrnet-fast] warning: no --weights: predicting with RANDOM weights" in err and "the keypoints mean nothing" in err
    assert len(json.loads(out.read_text())) == 3


# ---------------------------------------------------------------------------------------------- 7. progress
def test_progress_shows_the_build_and_advances_per_call(photos, weights, tmp_path, capsys, monkeypatch):
    from hrnet_fast._console import ProgressBar

    steps = []
    real = ProgressBar.update
    monkeypatch.setattr(ProgressBar, "update", lambda self, images, *a, **k: (steps.append(images), real(self, images, *a, **k)))
    out = tmp_path / "kp.json"
    assert cli.main(["predict", "--config", TINY_YAML, "--weights", weights, str(photos), "--out", str(out),
                     "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert f"[hrnet-fast] building {TINY_YAML} ({weights}) on cpu" in err and "[hrnet-fast] model ready in " in err
    assert steps == [1, 1, 1]  # 3 persons: one per call, not all at once (max_batch 64 would hold them)


def test_call_size_gives_at_least_ten_steps_and_full_batches_for_large_runs():
    job = predict.Job
    few = [job(i, i, "x", np.zeros((2, 5))) for i in range(32)]  # 64 persons
    assert predict.call_size(few, 64) == 7 and len(predict._groups(few, 7)) == 11
    many = [job(i, i, "x", np.zeros((3, 5))) for i in range(1000)]
    assert predict.call_size(many, 64) == 64
    assert predict.call_size([job(0, 0, "x", None)], 64) == 1
