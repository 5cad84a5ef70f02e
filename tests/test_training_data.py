"""hrnet_fast.training.data: CocoKeypoints' cleaning against the official one (the port in
hrnet_fast.baselines.official_dataset), strict image reading, collate, and bad input (issue 21, test 9)."""
import json
import math
import os

import numpy as np
import pytest
import torch

from _synthetic import make_coco
from _training_inputs import varied_coco
from hrnet_fast.baselines import official_dataset
from hrnet_fast.training import CocoKeypoints, collate

cv2 = pytest.importorskip("cv2", reason="the images are written and read with OpenCV")


def _port(ann, img_dir, image_hw=(256, 192)):
    return official_dataset.OfficialCocoKeypoints(ann, img_dir, image_size=[image_hw[1], image_hw[0]])


def _assert_same_records(ours, db):
    assert len(ours) == len(db)
    for i, rec in enumerate(db):
        assert str(ours.image_files[i]) == rec["image"]
        np.testing.assert_array_equal(ours.center[i], rec["center"])  # float32, bit for bit
        np.testing.assert_array_equal(ours.scale[i], rec["scale"])
        np.testing.assert_array_equal(ours.keypoints[i], rec["joints_3d"][:, :2].astype(np.float32))
        np.testing.assert_array_equal(ours.visible[i], rec["joints_3d_vis"][:, 0].astype(np.float32))
        assert rec["center"].dtype == np.float32 and ours.center.dtype == np.float32


@pytest.mark.parametrize("image_hw", [(256, 192), (384, 288), (256, 256)])
def test_cleaning_matches_official_on_make_coco(tmp_path, image_hw):
    ann, img_dir, _ = make_coco(str(tmp_path), n_images=4, seed=2)
    ours = CocoKeypoints(ann, img_dir, image_size=image_hw)
    port = _port(ann, img_dir, image_hw)
    assert len(ours) == 6
    _assert_same_records(ours, port.db)
    assert ours.stats == dict(annotations=6, crowd=0, invalid_box=0, not_person=0, no_keypoints=0, zero_size=0)


def test_cleaning_matches_official_on_hand_made_annotations(tmp_path):
    """Crowd, non-person, max(keypoints) == 0, outside the image and area 0 are dropped by both; a box clipped at
    the borders and a zero-width one are kept by both; the 0 x 0 clipped box (official scale 0) only by the port."""
    ann, img_dir, raw = varied_coco(str(tmp_path), extras=True)
    ours = CocoKeypoints(ann, img_dir)
    port = _port(ann, img_dir)
    zero = [i for i, rec in enumerate(port.db) if not rec["scale"].any()]
    assert len(zero) == 1 and len(port.db) == 9 + 2 + 1
    _assert_same_records(ours, [rec for i, rec in enumerate(port.db) if i not in zero])
    assert ours.stats == dict(annotations=len(raw["annotations"]), crowd=1, invalid_box=2, not_person=1,
                              no_keypoints=1, zero_size=1)
    # vis = min(v, 1): the file has v = 1 and 2; ours holds 0/1 only, and hidden joints stay at (0, 0)
    assert set(np.unique(ours.visible)) == {0.0, 1.0}
    assert (ours.keypoints[ours.visible == 0] == 0).all()


def test_getitem_and_collate(tmp_path):
    ann, img_dir, _ = make_coco(str(tmp_path), n_images=2, seed=4)
    ds = CocoKeypoints(ann, img_dir)
    s = ds[1]
    assert set(s) == {"index", "image", "center", "scale", "keypoints", "visible", "image_file"}
    ref = cv2.imread(s["image_file"], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert s["index"] == 1 and s["image"].dtype == np.uint8 and np.array_equal(s["image"], ref)  # BGR
    assert s["center"].dtype == s["scale"].dtype == s["keypoints"].dtype == s["visible"].dtype == np.float32
    assert s["keypoints"].shape == (17, 2) and s["visible"].shape == (17,)
    assert ds[-1]["index"] == len(ds) - 1
    with pytest.raises(IndexError, match="index 3 out of range for 3 samples"):
        ds[3]
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate)
    b = next(iter(loader))
    assert b["skipped"] == 0 and len(b["images"]) == 3 and b["images"][0].dtype == torch.uint8
    assert b["index"].tolist() == [0, 1, 2] and b["index"].dtype == torch.int64
    assert b["center"].shape == b["scale"].shape == (3, 2) and b["keypoints"].shape == (3, 17, 2)
    assert b["visible"].shape == (3, 17) and b["visible"].dtype == torch.float32
    assert b["image_width"].tolist() == [640, 640, 640] and b["image_file"][2] == ds[2]["image_file"]
    assert torch.equal(b["center"][1], torch.from_numpy(ds.center[1]))


def _jpeg_set(tmp_path):
    """make_coco's first two images re-encoded as JPEG (the annotation points at them)."""
    ann, img_dir, raw = make_coco(str(tmp_path), n_images=2, seed=5)
    for im in raw["images"]:
        img = cv2.imread(os.path.join(img_dir, im["file_name"]))
        im["file_name"] = im["file_name"].replace(".png", ".jpg")
        assert cv2.imwrite(os.path.join(img_dir, im["file_name"]), img)
    path = os.path.join(str(tmp_path), "jpeg.json")
    with open(path, "w") as fh:
        json.dump(raw, fh)
    return path, img_dir, raw


def test_truncated_and_undecodable_images_are_skipped_with_a_warning(tmp_path):
    ann, img_dir, raw = _jpeg_set(tmp_path)
    ds = CocoKeypoints(ann, img_dir)  # samples 0, 1: image 1; sample 2: image 2
    good = os.path.join(img_dir, raw["images"][1]["file_name"])
    bad = os.path.join(img_dir, raw["images"][0]["file_name"])
    data = open(bad, "rb").read()
    assert data[-2:] == b"\xff\xd9"
    with open(bad, "wb") as fh:
        fh.write(data[: len(data) * 2 // 3])  # cut inside the scan
    with pytest.warns(UserWarning, match=rf"CocoKeypoints: {bad} is a truncated JPEG \(no end-of-image marker FFD9"):
        s0 = ds[0]
    assert s0["image"] is None
    with open(good, "ab") as fh:
        fh.write(b"\x00" * 16)  # bytes after the end marker (some cameras write them): still a complete image
    assert ds[2]["image"] is not None
    samples = [s0, ds[2]]
    b = collate(samples)
    assert b["skipped"] == 1 and len(b["images"]) == 1 and b["index"].tolist() == [2]
    assert b["keypoints"].shape == (1, 17, 2)
    with open(bad, "wb") as fh:
        fh.write(b"\xff\xd8 this is not a JPEG \xff\xda\xff\xd9")
    with pytest.warns(UserWarning, match=rf"{bad} does not decode as an image"):
        assert ds[1]["image"] is None
    os.remove(bad)
    with pytest.warns(UserWarning, match=rf"cannot read {bad}"):
        assert ds[0]["image"] is None
    with pytest.warns(UserWarning):
        all_bad = collate([ds[0], ds[1]])
    assert all_bad["skipped"] == 2 and all_bad["images"] == [] and all_bad["keypoints"].shape == (0, 17, 2)
    assert all_bad["index"].shape == (0,) and all_bad["center"].shape == (0, 2)


def test_truncated_png_is_skipped(tmp_path):
    ann, img_dir, raw = make_coco(str(tmp_path), n_images=1, seed=6)
    path = os.path.join(img_dir, raw["images"][0]["file_name"])
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=rf"{path} is a truncated PNG"):
        assert CocoKeypoints(ann, img_dir)[0]["image"] is None


def _write(tmp_path, raw, name="bad.json"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as fh:
        json.dump(raw, fh)
    return path


def test_nan_keypoint_is_rejected(tmp_path):
    ann, img_dir, raw = make_coco(str(tmp_path), n_images=2, seed=7)
    raw["annotations"][1]["keypoints"][3 * 4 + 1] = math.nan  # json writes NaN
    path = _write(tmp_path, raw)
    with pytest.raises(ValueError, match=r"bad.json: annotation 2 \(image 1, 000001.png\) has a NaN keypoint \(joint 4"):
        CocoKeypoints(path, img_dir)


def test_no_persons_is_an_error(tmp_path):
    ann, img_dir, raw = make_coco(str(tmp_path), n_images=2, seed=8)
    for a in raw["annotations"]:
        a["keypoints"] = [0.0] * 51
    with pytest.raises(ValueError, match=r"no\.json has no person annotation with keypoints .*'no_keypoints': 3"):
        CocoKeypoints(_write(tmp_path, raw, "no.json"), img_dir)
    raw["annotations"] = []
    with pytest.raises(ValueError, match="has no person annotation with keypoints"):
        CocoKeypoints(_write(tmp_path, raw, "none.json"), img_dir)


def test_bad_files_and_fields(tmp_path):
    ann, img_dir, raw = make_coco(str(tmp_path), n_images=1, seed=9)
    with pytest.raises(FileNotFoundError, match="ann_file 'nope.json' is not a file"):
        CocoKeypoints("nope.json", img_dir)
    with pytest.raises(FileNotFoundError, match="image_dir .* is not a folder"):
        CocoKeypoints(ann, os.path.join(img_dir, "nope"))
    with pytest.raises(ValueError, match=r"image_size must be positive \(H, W\)"):
        CocoKeypoints(ann, img_dir, image_size=(0, 192))
    open(os.path.join(str(tmp_path), "broken.json"), "w").write("{")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        CocoKeypoints(os.path.join(str(tmp_path), "broken.json"), img_dir)
    bad = json.loads(json.dumps(raw))
    del bad["annotations"][0]["area"]
    with pytest.raises(ValueError, match=r"annotation 1 \(image 1, 000001.png\) has no 'area' field"):
        CocoKeypoints(_write(tmp_path, bad), img_dir)
    bad = json.loads(json.dumps(raw))
    bad["annotations"][1]["category_id"] = 9
    with pytest.raises(ValueError, match="annotation 2 .* has category_id 9, not in the file's categories"):
        CocoKeypoints(_write(tmp_path, bad), img_dir)
    bad = json.loads(json.dumps(raw))
    bad["annotations"][0]["keypoints"] = bad["annotations"][0]["keypoints"][:30]
    with pytest.raises(ValueError, match="has 30 keypoint values, expected 51"):
        CocoKeypoints(_write(tmp_path, bad), img_dir)
    with pytest.raises(ValueError, match="collate: samples is empty"):
        collate([])
