"""hrnet-fast eval never scores an invalid entry (issue 19, item 2): every result entry is checked against the
annotation file (image id, category, exactly 51 finite keypoint values, a finite score), a malformed --ann or
--results is one line naming the file (item 4), --json is checked before the work, nothing is left behind,
and --config runs without --weights (item 6). Each test fails on the code before the fix (which scored NaN
keypoints as AP 1.000)."""
import json
import os
import tempfile

import numpy as np
import pytest

from hrnet_fast import cli

from _cli_support import listing, tiny_checkpoint, usage_error
from _golden import TINY_YAML

pytest.importorskip("cv2", reason="the synthetic set is drawn with OpenCV")
pytest.importorskip("pycocotools", reason="eval needs pycocotools")
from _synthetic import make_coco  # noqa: E402
from hrnet_fast import coco as hcoco  # noqa: E402
from hrnet_fast.cli import eval as eval_cmd  # noqa: E402
from hrnet_fast.cli import predict  # noqa: E402


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(str(tmp_path_factory.mktemp("coco")), n_images=2, seed=0)


def _perfect(ann):
    """The ground truth as results: AP 1.0 when evaluated."""
    return [{"image_id": a["image_id"], "category_id": 1, "keypoints": [float(v) for v in a["keypoints"]], "score": 1.0}
            for a in ann["annotations"]]


def _no_eval(monkeypatch):
    monkeypatch.setattr(hcoco, "evaluate", lambda *a, **k: pytest.fail("the evaluation started"))


@pytest.mark.parametrize("change, expected", [
    (lambda r: r[1]["keypoints"].__setitem__(4, float("nan")), "entry 1 (image_id 1): keypoints must be finite numbers"),
    (lambda r: r[2].__setitem__("keypoints", [1.0, 2.0, 0.9]), "entry 2 (image_id 2): keypoints has 3 values, expected 51"),
    (lambda r: r[0].__setitem__("image_id", 999), "entry 0 (image_id 999): the image id is not in the annotation file"),
    (lambda r: r[0].__setitem__("category_id", 2), "entry 0 (image_id 1): category_id 2 is not a category"),
    (lambda r: r[1].__setitem__("score", float("inf")), "entry 1 (image_id 1): score must be a finite number, got inf"),
    (lambda r: r[1].pop("keypoints"), "entry 1 (image_id 1): keypoints has no values"),
    (lambda r: r.clear(), "no keypoint results to evaluate (the results list is empty)"),
])
def test_invalid_result_entries_are_exit_2_naming_the_entry(coco, tmp_path, capsys, monkeypatch, change, expected):
    ann_path, _, ann = coco
    results = _perfect(ann)
    change(results)
    path = tmp_path / "kp.json"
    path.write_text(json.dumps(results))  # NaN written as the literal NaN, as predict used to
    _no_eval(monkeypatch)
    usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(path), "--json", str(tmp_path / "stats.json")],
                f"--results {path}: {expected}")
    assert listing(tmp_path) == ["kp.json"]


def test_evaluate_refuses_nan_keypoints_it_would_score_perfect(coco):
    """The library function checks too: pycocotools alone reports AP 1.000 for NaN keypoints."""
    ann_path, _, ann = coco
    results = _perfect(ann)
    assert hcoco.evaluate(ann_path, results, verbose=False)["AP"] == 1.0
    for r in results:
        r["keypoints"] = [float("nan")] * 51
    with pytest.raises(ValueError, match=r"entry 0 \(image_id 1\): keypoints must be finite"):
        hcoco.evaluate(ann_path, results, verbose=False)


@pytest.mark.parametrize("doc, expected", [
    ("not json", "not a JSON COCO annotation file"),
    ({"annotations": []}, "not a COCO annotation file (no 'images' list)"),
    ({"images": [{"id": 1}], "annotations": []}, "not a COCO annotation file (no 'categories' list"),
    ({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1}]},
     "annotations[0] (image_id 1): no 'bbox' (pycocotools' keypoint evaluation needs it)"),
    ({"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "num_keypoints": 1, "keypoints": [1, 1, 2]}]},
     "annotations[0] (image_id 1): keypoints has 3 values, expected 51"),
])
def test_malformed_ann_is_one_line_naming_the_file(coco, tmp_path, capsys, monkeypatch, doc, expected):
    _, _, ann = coco
    path = tmp_path / "ann.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    results = tmp_path / "kp.json"
    results.write_text(json.dumps(_perfect(ann)))
    _no_eval(monkeypatch)
    usage_error(capsys, ["eval", "--ann", str(path), "--results", str(results)], f"--ann {path}")
    usage_error(capsys, ["eval", "--ann", str(path), "--results", str(results)], expected)


@pytest.mark.parametrize("text, expected", [
    ("{broken", "not a JSON keypoint results file"),
    ('{"image_id": 1}', "expected a list of keypoint results (COCO results format), got dict"),
    ('[{"category_id": 1}]', "entry 0 has no image_id"),
])
def test_malformed_results_is_one_line_naming_the_file(coco, tmp_path, capsys, monkeypatch, text, expected):
    ann_path, _, _ = coco
    path = tmp_path / "kp.json"
    path.write_text(text)
    _no_eval(monkeypatch)
    usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(path)], f"--results {path}")
    usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(path)], expected)


def test_json_is_checked_before_the_work_and_nothing_is_left(coco, tmp_path, capsys, monkeypatch):
    ann_path, img_dir, ann = coco
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    results = tmp_path / "kp.json"
    results.write_text(json.dumps(_perfect(ann)))
    _no_eval(monkeypatch)
    usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(results), "--json", str(blocker / "stats.json")],
                f"--json {blocker / 'stats.json'}: cannot write there")
    usage_error(capsys, ["eval", "--ann", ann_path, "--results", str(results), "--json", str(results)],
                f"--json {results}: is the input --results {results}")
    # predict first: a validation failure leaves no temporary results file (eval used to create one first)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr(predict, "run_predict", lambda args: pytest.fail("the work started"))
    usage_error(capsys, ["eval", "--ann", ann_path, "--config", TINY_YAML, "--images", img_dir, "--device", "cpu",
                         "--json", str(blocker / "stats.json")], "cannot write there")
    usage_error(capsys, ["eval", "--ann", ann_path, "--config", TINY_YAML, "--images", img_dir, "--max-batch", "2",
                         "--boxes", "/nonexistent.json"], "--boxes /nonexistent.json: no such file")
    assert os.listdir(temp) == [] and sorted(os.listdir(tmp_path)) == ["a_file", "kp.json", "tmp"]


def test_eval_config_without_weights(coco, tmp_path, capsys):
    ann_path, img_dir, _ = coco
    stats = tmp_path / "stats.json"
    assert cli.main(["eval", "--ann", ann_path, "--config", TINY_YAML, "--images", img_dir, "--device", "cpu",
                     "--no-progress", "--json", str(stats)]) == 0
    captured = capsys.readouterr()
    assert "warning: no --weights: predicting with RANDOM weights" in captured.err and "| AP | AP .5 |" in captured.out
    assert set(json.loads(stats.read_text())["stats"]) >= {"AP", "AR"}


def test_eval_with_weights_predicts_in_memory(coco, tmp_path, capsys):
    ann_path, img_dir, _ = coco
    weights = tiny_checkpoint(tmp_path)
    out = tmp_path / "kp.json"
    assert cli.main(["eval", "--ann", ann_path, "--config", TINY_YAML, "--weights", weights, "--images", img_dir,
                     "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 3 and all(np.isfinite(r["keypoints"]).all() for r in rows)
    assert eval_cmd.validate is not None and "| AP |" in capsys.readouterr().out
