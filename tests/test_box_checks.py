"""One rule for a valid box, named where it is given (issue 19, items 2 and 5): the public
boxes_to_center_scale validates as PoseEstimator does; a box beyond float32 is named as boxes[i], not as an
internal op's center; crop_boxes takes the usual negative-stride numpy view, and says what is wrong with
meta-device inputs and absurd output sizes before allocating. Each test fails on the code before the fix."""
import numpy as np
import pytest
import torch

import hrnet_fast
from hrnet_fast._boxes import first_bad_box
from hrnet_fast.estimator import PoseEstimator
from hrnet_fast.ops import boxes_to_center_scale, crop_boxes

from _synthetic import DotPoseModel

IMAGE_SIZE = (192, 256)


@pytest.mark.parametrize("boxes, fmt, expected", [
    ([[10, 10, 50, 60], [60, 10, 10, 80]], "xyxy",
     r"^boxes_to_center_scale: boxes\[1\] = \[60.0, 10.0, 10.0, 80.0\] has a negative width \(-50\) in xyxy \(corners swapped\?\)$"),
    ([[10, 10, 50, 60], [5, 5, -20, 30]], "xywh", r"boxes\[1\] = \[5.0, 5.0, -20.0, 30.0\] has a negative width \(-20\) in xywh"),
    ([[10, 10, 50, 60], [5, 5, 20, -30]], "xywh", r"boxes\[1\] .* has a negative height \(-30\)"),
    ([[np.nan, 10, 50, 60]], "xywh", r"boxes\[0\] = \[nan, 10.0, 50.0, 60.0\] is not finite \(NaN or inf\)"),
    ([[10, 10, 50, 60], [10, 10, 50, 60], [7, 8, 0, 0]], "xywh", r"boxes\[2\] = \[7.0, 8.0, 0.0, 0.0\] has zero width and height"),
    ([[7, 8, 7, 8]], "xyxy", r"boxes\[0\] .* has zero width and height"),
    ([[0, 0, 1e39, 10]], "xywh", r"boxes\[0\] .* does not fit float32"),
    ([[-3e38, 0, 3e38, 10]], "xyxy", r"boxes\[0\] .* does not fit float32"),  # its width, 6e38, does not
])
def test_boxes_to_center_scale_validates_like_the_estimator(boxes, fmt, expected):
    with pytest.raises(ValueError, match=expected):
        boxes_to_center_scale(np.array(boxes, dtype=np.float64), IMAGE_SIZE, box_format=fmt)
    with pytest.raises(ValueError, match=expected):
        boxes_to_center_scale(torch.tensor(boxes, dtype=torch.float64), IMAGE_SIZE, box_format=fmt)


def test_boxes_to_center_scale_keeps_valid_edge_cases():
    # a zero width *or* height is widened by the official aspect rule; boxes may lie outside any image
    center, scale = boxes_to_center_scale(np.array([[10, 10, 0, 40], [-500, -500, 20, 0]]), IMAGE_SIZE)
    assert torch.isfinite(center).all() and (scale > 0).all()
    assert first_bad_box(np.zeros((0, 4))) is None


def test_estimator_names_a_box_beyond_float32():
    est = PoseEstimator(DotPoseModel(), input_size=(192, 256), device="cpu", flip_test=False)
    img = np.zeros((64, 80, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^PoseEstimator: boxes\[1\] = \[0.0, 0.0, 1e\+39, 10.0\] does not fit float32"):
        est(img, np.array([[0, 0, 20, 30], [0, 0, 1e39, 10]]))
    with pytest.raises(ValueError, match=r"^PoseEstimator: boxes\[0\]\[0\] .* does not fit float32"):
        est([img], [np.array([[0, 0, 5e38, 5e38]])])


def test_crop_boxes_takes_a_negative_stride_view():
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    center, scale = torch.tensor([[25.0, 20.0]]), torch.tensor([[0.2, 0.25]])
    rgb_view = img[..., ::-1]  # BGR -> RGB, the usual way: negative strides
    got = crop_boxes([rgb_view], None, center, scale, (16, 12), color="rgb")
    want = crop_boxes([np.ascontiguousarray(rgb_view)], None, center, scale, (16, 12), color="rgb")
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got, crop_boxes([img], None, center, scale, (16, 12), color="bgr"), rtol=0, atol=0)


@pytest.mark.parametrize("which", ["images", "center", "image_index"])
def test_crop_boxes_names_a_meta_device_input(which):
    images = [torch.zeros(8, 8, 3, dtype=torch.uint8)]
    args = dict(images=images, image_index=torch.zeros(1, dtype=torch.int64), center=torch.tensor([[4.0, 4.0]]),
                scale=torch.tensor([[0.05, 0.05]]))
    if which == "images":
        args["images"] = [images[0].to("meta")]
    else:
        args[which] = args[which].to("meta")
    name = r"images\[0\]" if which == "images" else which
    with pytest.raises(ValueError, match=rf"^crop_boxes: {name} is on the meta device; crop_boxes runs on CPU and CUDA tensors"):
        crop_boxes(out_size=(8, 6), **args)


def test_crop_boxes_checks_the_output_size_before_allocating():
    img = torch.zeros(8, 8, 3, dtype=torch.uint8)
    center, scale = torch.tensor([[4.0, 4.0]] * 4), torch.tensor([[0.05, 0.05]] * 4)
    with pytest.raises(ValueError, match=r"^crop_boxes: out_size \(1000000, 1000000\) for 4 box\(es\) needs .* GiB of output, "
                                         r"more than the cpu memory"):
        crop_boxes([img], torch.zeros(4, dtype=torch.int64), center, scale, (10 ** 6, 10 ** 6))
    with pytest.raises(ValueError, match="needs .* GiB of output"):
        crop_boxes([img], torch.zeros(4, dtype=torch.int64), center, scale, (2 ** 40, 2 ** 40))  # past int64 elements
    assert crop_boxes([img], torch.zeros(0, dtype=torch.int64), center[:0], scale[:0], (10 ** 6, 10 ** 6)).shape[0] == 0


def test_public_name_is_the_validating_function():
    assert hrnet_fast.boxes_to_center_scale is boxes_to_center_scale
