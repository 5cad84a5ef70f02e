"""hrnet_fast.PoseEstimator: the forms of input and output, batching (chunks, padding for CUDA graphs), the flip
test in one forward, rescoring, OKS-NMS, and every kind of bad input (a clear error or a documented result).
The CUDA path (no host sync, fp16, device boxes) is in the gpu-marked tests at the end."""
import copy
import types
import warnings

import numpy as np
import pytest
import torch

import hrnet_fast
from hrnet_fast.cuda_graphs import GraphCache
from hrnet_fast.estimator import COCO_SIGMAS, PoseEstimator, PoseResult, _padded_sizes, oks_iou, oks_nms, padded_batch_size
from hrnet_fast.models.init import realistic_random_init

from _golden import TINY_YAML

W_IN, H_IN = 96, 128  # the tiny config's IMAGE_SIZE


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    realistic_random_init(model, image_hw=(H_IN, W_IN), seed=0, batches=1, batch_size=2)
    return model.eval()


@pytest.fixture(scope="module")
def est(tiny_model):
    return PoseEstimator(tiny_model, device="cpu")


def _image(h=120, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


BOXES = np.array([[10, 10, 50, 80, 0.9], [90, 20, 40, 60, 0.5], [40, 30, 30, 30, 1.0]])


def _close(a: PoseResult, b: PoseResult, atol=1e-4):
    assert len(a) == len(b)
    for x, y in zip(a._fields(), b._fields()):
        torch.testing.assert_close(torch.as_tensor(x).float().cpu(), torch.as_tensor(y).float().cpu(), atol=atol, rtol=1e-4,
                                   equal_nan=True)


# ---------------------------------------------------------------------------------------------- forms
def test_one_image_gives_one_result(est):
    r = est(_image(), BOXES)
    assert isinstance(r, PoseResult) and len(r) == 3
    assert r.keypoints.shape == (3, 17, 3) and r.keypoints.dtype == torch.float32 and r.keypoints.device.type == "cpu"
    assert r.scores.shape == (3,) and r.boxes.shape == (3, 4) and r.box_scores.shape == (3,)
    torch.testing.assert_close(r.boxes, torch.tensor(BOXES[:, :4], dtype=torch.float32))
    torch.testing.assert_close(r.box_scores, torch.tensor(BOXES[:, 4], dtype=torch.float32))
    assert torch.isfinite(r.keypoints).all()
    n = r.numpy()
    assert isinstance(n.keypoints, np.ndarray) and n.keypoints.shape == (3, 17, 3) and isinstance(r.cpu().scores, torch.Tensor)
    assert "3 persons, 17 keypoints" in repr(r)


def test_list_batch_tensor_and_numpy_forms_agree(est):
    a, b = _image(seed=1), _image(seed=2)
    boxes = [BOXES, BOXES[:2]]
    lst = est([a, b], boxes)
    assert isinstance(lst, list) and [len(r) for r in lst] == [3, 2]
    batch = est(torch.from_numpy(np.stack([a, b])), boxes)
    tensors = est([torch.from_numpy(a), torch.from_numpy(b)], boxes)
    one = est(a, BOXES)
    for x, y in zip(lst, batch):
        _close(x, y)
    for x, y in zip(lst, tensors):
        _close(x, y)
    _close(lst[0], one)


def test_rgb_input_with_color_rgb_equals_bgr(tiny_model, est):
    img = _image()
    rgb = PoseEstimator(tiny_model, device="cpu", color="rgb")
    _close(rgb(np.ascontiguousarray(img[:, :, ::-1]), BOXES), est(img, BOXES))
    _close(rgb(img[:, :, ::-1], BOXES), est(img, BOXES))  # a negative-stride view is accepted too


def test_xyxy_boxes_equal_xywh(tiny_model, est):
    xyxy = BOXES.copy()
    xyxy[:, 2:4] += xyxy[:, 0:2]
    r = PoseEstimator(tiny_model, device="cpu", box_format="xyxy")(_image(), xyxy)
    ref = est(_image(), BOXES)
    torch.testing.assert_close(r.keypoints, ref.keypoints)
    torch.testing.assert_close(r.boxes, torch.tensor(xyxy[:, :4], dtype=torch.float32))  # boxes come back as given


def test_images_of_different_sizes_in_chunks_equal_one_call(tiny_model):
    imgs = [_image(120, 160, 3), _image(64, 200, 4), _image(300, 90, 5)]
    boxes = [BOXES, np.zeros((0, 4)), BOXES[1:]]
    big = PoseEstimator(tiny_model, device="cpu", max_batch=64)(imgs, boxes)
    small = PoseEstimator(tiny_model, device="cpu", max_batch=2)(imgs, boxes)  # chunks cross image borders
    singles = [PoseEstimator(tiny_model, device="cpu")(im, b) for im, b in zip(imgs, boxes)]
    for x, y, z in zip(big, small, singles):
        _close(x, y, atol=2e-3)  # a different batch may change the last bits of oneDNN's convolutions
        _close(x, z, atol=2e-3)
    assert [len(r) for r in big] == [3, 0, 2]


def test_whole_image_when_boxes_is_none(est):
    img = _image(100, 150)
    r = est(img)
    torch.testing.assert_close(r.boxes, torch.tensor([[0.0, 0.0, 150.0, 100.0]]))
    torch.testing.assert_close(r.box_scores, torch.tensor([1.0]))
    _close(r, est(img, np.array([[0, 0, 150, 100]])))
    rs = est([img, img], None)
    assert len(rs) == 2 and all(len(x) == 1 for x in rs)
    rs = est([img, img], [None, BOXES])
    assert [len(x) for x in rs] == [1, 3]


def test_rescoring_is_the_official_one(est):
    r = est(_image(), BOXES)
    s = r.keypoints[:, :, 2].double()
    for i in range(3):
        above = s[i][s[i] > 0.2]
        expect = (above.mean().item() if len(above) else 0.0) * BOXES[i, 4]
        assert r.scores[i].item() == pytest.approx(expect, rel=1e-5, abs=1e-7)


def test_flip_test_runs_in_one_forward_and_equals_two(tiny_model):
    """The 2M crops go through one forward; the result equals the flip merge of two separate forwards."""
    est = PoseEstimator(tiny_model, device="cpu")
    seen = []
    hook = est.model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].shape[0]))
    try:
        r = est(_image(), BOXES)
    finally:
        hook.remove()
    assert seen == [6]
    plan = est._plan([(120, 160)], [BOXES], True)
    crops = est._crop([torch.from_numpy(_image())], plan, 0, 3)
    with torch.no_grad():
        h, f = est.model(crops), est.model(crops.flip(3))
    coords, maxvals = hrnet_fast.decode_heatmaps(h, plan.center, plan.scale, flipped=f, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
    torch.testing.assert_close(r.keypoints, torch.cat([coords, maxvals], 2), atol=2e-3, rtol=1e-4)
    no_flip = PoseEstimator(tiny_model, device="cpu", flip_test=False)(_image(), BOXES)
    c1, m1 = hrnet_fast.decode_heatmaps(h, plan.center, plan.scale)
    torch.testing.assert_close(no_flip.keypoints, torch.cat([c1, m1], 2), atol=2e-3, rtol=1e-4)


@pytest.mark.parametrize("decode", ["argmax", "dark", "udp"])
def test_other_decodings_run(tiny_model, decode):
    r = PoseEstimator(tiny_model, device="cpu", decode=decode)(_image(), BOXES)
    assert r.keypoints.shape == (3, 17, 3) and torch.isfinite(r.keypoints).all()


# ---------------------------------------------------------------------------------------------- models and weights
def test_config_plain_and_optimized_models_agree(tiny_model, tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_model.state_dict(), path)
    before = copy.deepcopy(tiny_model.state_dict())
    from_config = PoseEstimator(TINY_YAML, weights=str(path), device="cpu")
    from_plain = PoseEstimator(tiny_model, device="cpu")
    from_opt = PoseEstimator(hrnet_fast.optimize(tiny_model), device="cpu")
    img = _image()
    _close(from_config(img, BOXES), from_plain(img, BOXES))
    _close(from_opt(img, BOXES), from_plain(img, BOXES))
    assert from_plain.dtype == torch.float32 and from_plain.device.type == "cpu" and from_plain.input_size == (96, 128)
    # the caller's plain model is neither optimized nor changed (not even its train/eval mode)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_model.modules())
    trained = copy.deepcopy(tiny_model).train()
    PoseEstimator(trained, device="cpu")
    assert trained.training
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # weights given with a model are loaded into a copy before optimizing
    other = hrnet_fast.pose_hrnet(TINY_YAML)
    _close(PoseEstimator(other, weights=str(path), device="cpu")(img, BOXES), from_plain(img, BOXES))
    with pytest.raises(ValueError, match="load them into the plain model before optimize"):
        PoseEstimator(hrnet_fast.optimize(tiny_model), weights=str(path), device="cpu")


def test_config_without_weights_warns():
    with pytest.warns(UserWarning, match="no weights given: the network has random weights"):
        PoseEstimator(TINY_YAML, device="cpu")


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(decode="median"), ValueError, "decode must be one of"),
    (dict(color="bgra"), ValueError, "color must be 'bgr' or 'rgb'"),
    (dict(box_format="cxcywh"), ValueError, "box_format must be 'xywh' or 'xyxy'"),
    (dict(max_batch=0), ValueError, "max_batch must be a positive int"),
    (dict(max_batch=2.5), ValueError, "max_batch must be a positive int"),
    (dict(oks_nms=1.5), ValueError, r"oks_nms must be None or a threshold in \(0, 1\]"),
    (dict(dtype=torch.int8), ValueError, "dtype must be None"),
    (dict(device="mps"), ValueError, "device must be 'auto', 'cpu'"),
])
def test_bad_arguments(tiny_model, kwargs, err, match):
    with pytest.raises(err, match=match):
        PoseEstimator(tiny_model, **{"device": "cpu", **kwargs})


def test_a_model_without_cfg_needs_input_size_and_other_joint_counts_need_flip_pairs():
    class Heat(torch.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k
            self.cfg = {"NUM_JOINTS": k}

        def forward(self, x):
            return x.new_zeros(x.shape[0], self.k, x.shape[2] // 4, x.shape[3] // 4)

    with pytest.raises(ValueError, match=r"input_size=\(W, H\) is needed"):
        PoseEstimator(Heat(17), device="cpu")
    with pytest.raises(ValueError, match="the flip test needs flip_pairs for a model with 5 joints"):
        PoseEstimator(Heat(5), device="cpu", input_size=(64, 64))
    r = PoseEstimator(Heat(5), device="cpu", input_size=(64, 64), flip_pairs=[(1, 2)])(_image(), BOXES)
    assert r.keypoints.shape == (3, 5, 3)
    with pytest.raises(ValueError, match="oks_nms uses the 17 COCO keypoint sigmas"):
        PoseEstimator(Heat(5), device="cpu", input_size=(64, 64), flip_test=False, oks_nms=0.9)


def test_a_model_returning_the_wrong_batch_is_reported():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return x.new_zeros(1, 17, 8, 8)

    with pytest.raises(RuntimeError, match=r"the model must return \(N, K, H, W\) heatmaps for N = 6 crops"):
        PoseEstimator(Bad(), device="cpu", input_size=(32, 32))(_image(), BOXES)


# ---------------------------------------------------------------------------------------------- batching for CUDA graphs
def test_padded_batch_size():
    assert [padded_batch_size(n, 128) for n in (0, 1, 2, 3, 4, 5, 9, 64, 65, 100, 128)] == [0, 1, 2, 4, 4, 8, 16, 64, 128, 128, 128]
    assert padded_batch_size(65, 96) == 96 and padded_batch_size(33, 96) == 64
    # a handful of shapes covers every call: log2(limit) + 1 of them
    assert {padded_batch_size(n, 128) for n in range(1, 129)} == {1, 2, 4, 8, 16, 32, 64, 128}
    assert {padded_batch_size(n, 96) for n in range(1, 97)} == {1, 2, 4, 8, 16, 32, 64, 96}
    with pytest.raises(ValueError):
        padded_batch_size(-1, 8)


def test_padding_changes_the_batch_not_the_results(tiny_model):
    """What the estimator does on CUDA, checked on the CPU: the forward batch is padded with zero crops up to
    padded_batch_size(2M) and the padding is dropped."""
    padded = PoseEstimator(tiny_model, device="cpu", pad_batches=True, max_batch=8)
    plain = PoseEstimator(tiny_model, device="cpu", pad_batches=False, max_batch=8)
    assert not plain.pad_batches and PoseEstimator(tiny_model, device="cpu").pad_batches is False  # CPU default
    seen = []
    hook = padded.model.register_forward_pre_hook(lambda mod, inp: seen.append(tuple(inp[0].shape)))
    try:
        img = _image()
        boxes = np.concatenate([BOXES, BOXES[:2] + 5])  # 5 persons -> 10 crops -> 16
        r_pad = padded(img, boxes)
        r_pad_noflip = PoseEstimator(tiny_model, device="cpu", pad_batches=True, flip_test=False)
        r_pad_noflip.model = padded.model
        r_pad_noflip(img, boxes[:3])  # 3 crops -> 4
    finally:
        hook.remove()
    assert [s[0] for s in seen] == [16, 4]
    _close(r_pad, plain(img, boxes), atol=2e-3)


class _CountingCapture:
    """Stand-in for CudaCapture (runs on the CPU): a 'graph' is the function and its static buffers."""

    def applies(self, x):
        return True

    def capture(self, fn, static_input):
        return (fn, static_input), fn(static_input)

    def replay(self, graph):
        pass  # the heatmaps of the stand-in model do not depend on the input


class _GraphedStandIn(torch.nn.Module):
    """A model as optimize() returns it, as far as the estimator sees: forward through its plan's GraphCache
    (``inference_plan().graphs``, the default 8 graphs), here with cheap zero heatmaps and a stand-in capture
    backend."""

    def __init__(self):
        super().__init__()
        self.cfg = {"IMAGE_SIZE": [32, 32], "NUM_JOINTS": 17}
        self._graphs = GraphCache(lambda x: x.new_zeros(x.shape[0], 17, 8, 8), backend=_CountingCapture())

    def inference_plan(self):
        return types.SimpleNamespace(graphs=self._graphs)

    def forward(self, x):
        return self._graphs(x)


def test_padded_sizes_are_what_the_estimator_produces():
    assert _padded_sizes(64, True) == [2, 4, 8, 16, 32, 64, 128]
    assert _padded_sizes(96, False) == [1, 2, 4, 8, 16, 32, 64, 96]
    assert _padded_sizes(130, True) == [2, 4, 8, 16, 32, 64, 128, 256, 260]
    assert _padded_sizes(1, True) == [2]
    for max_batch, flip in ((5, True), (7, False), (33, True)):
        k = 2 if flip else 1
        want = {padded_batch_size(k * m, k * max_batch) for m in range(1, max_batch + 1)}
        assert set(_padded_sizes(max_batch, flip)) == want


def test_graph_cache_holds_every_padded_batch_size():
    # flip test and max_batch > 128: 9 forward batch sizes, one more than optimize()'s default 8 graphs; a
    # stream of person counts that cycles through them re-captured on every call (least recently used miss)
    model = _GraphedStandIn()
    est = PoseEstimator(model, device="cpu", pad_batches=True, max_batch=130)
    sizes = _padded_sizes(130, True)
    assert len(sizes) == 9 and model._graphs.max_graphs >= 9
    img = np.zeros((40, 40, 3), np.uint8)
    counts = [s // 2 for s in sizes] * 3  # persons giving each padded size in turn, three times
    rng = np.random.default_rng(5)
    counts += [int(c) for c in rng.integers(1, 131, 20)]
    for m in counts:
        r = est(img, np.tile([[5.0, 5.0, 20.0, 20.0, 1.0]], (m, 1)))
        assert len(r) == m
    assert model._graphs.captures == 9 and len(model._graphs) == 9
    # a shared model's cache only grows; without padding the cache is left alone
    PoseEstimator(model, device="cpu", pad_batches=True, max_batch=4)
    assert model._graphs.max_graphs >= 9
    other = _GraphedStandIn()
    PoseEstimator(other, device="cpu", pad_batches=False, max_batch=130)
    assert other._graphs.max_graphs == 8


# ---------------------------------------------------------------------------------------------- OKS-NMS
def test_oks_nms_is_the_official_greedy_suppression():
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.uniform(0, 100, (17, 2)), rng.uniform(0.5, 1, (17, 1))], 1)
    far = base + [300, 0, 0]
    near = base + [0.5, 0.5, 0]
    kpts = np.stack([near, base, far])
    scores = np.array([0.8, 0.9, 0.7])
    areas = np.array([5000.0, 5000.0, 5000.0])
    assert oks_nms(kpts, scores, areas, 0.9) == [1, 2]  # near duplicate of the best dropped, score order
    assert oks_nms(kpts, scores, areas, 1.0) == [1, 0, 2]  # nothing is above 1
    assert oks_nms(kpts[:0], scores[:0], areas[:0], 0.9) == []
    # oks_iou against a hand computation of the official formula
    var = (COCO_SIGMAS * 2) ** 2
    e = ((near[:, 0] - base[:, 0]) ** 2 + (near[:, 1] - base[:, 1]) ** 2) / var / (5000.0 + np.spacing(1)) / 2
    assert oks_iou(base.reshape(-1), near.reshape(1, -1), 5000.0, areas[:1])[0] == pytest.approx(np.exp(-e).mean())


def test_estimator_oks_nms_drops_duplicate_persons(tiny_model):
    img = _image()
    boxes = np.array([[10, 10, 50, 80, 0.9], [10, 10, 50, 80, 0.5], [90, 20, 40, 60, 0.7]])
    est = PoseEstimator(tiny_model, device="cpu", oks_nms=0.9)
    r = est(img, boxes)
    full = PoseEstimator(tiny_model, device="cpu")(img, boxes)
    assert len(r) == 2
    order = torch.argsort(full.scores[[0, 2]], descending=True)
    expect = full.keypoints[[0, 2]][order]
    torch.testing.assert_close(r.keypoints, expect)
    assert r.scores[0] >= r.scores[1]
    rs = est([img, img], [boxes, np.zeros((0, 4))])
    assert [len(x) for x in rs] == [2, 0]


# ---------------------------------------------------------------------------------------------- bad input
def test_boxes_partly_or_wholly_outside_the_image(est):
    img = _image(100, 100)
    r = est(img, np.array([[-30, -40, 80, 90], [70, 60, 100, 100], [500, 500, 40, 80], [-200, 10, 50, 50]]))
    assert len(r) == 4 and torch.isfinite(r.keypoints).all() and torch.isfinite(r.scores).all()
    # a wholly outside box is a black crop (as cv2.warpAffine's constant border): the same as cropping a black image
    black = est(np.zeros((100, 100, 3), np.uint8), np.array([[500, 500, 40, 80]]))
    torch.testing.assert_close(r.keypoints[2], black.keypoints[0])


def test_tiny_and_one_sided_boxes(est):
    # a 1x1 box is a (very blurred) crop; a zero width or height is widened by the official aspect rule
    r = est(_image(), np.array([[50, 50, 1, 1], [50, 50, 0, 20], [50, 50, 20, 0]]))
    assert len(r) == 3 and torch.isfinite(r.keypoints).all()


@pytest.mark.parametrize("boxes, match", [
    (np.array([[10, 10, 0, 0]]), r"boxes\[0\] = \[10.0, 10.0, 0.0, 0.0\] has zero width and height"),
    (np.array([[10, 10, 20, 20], [10, 10, -5, 20]]), r"boxes\[1\] .* has a negative width \(-5\)"),
    (np.array([[10, 10, 20, -1]]), "has a negative height"),
    (np.array([[10, np.nan, 20, 20]]), r"boxes\[0\] = \[10.0, nan, 20.0, 20.0, 1.0\] is not finite"),
    (np.array([[10, 10, 20, 20, np.inf]]), "is not finite"),
    (np.array([[1, 2, 3]]), r"must have shape \(M, 4\) or \(M, 5\)"),
    (np.array([1, 2, 3, 4]), r"one box: \[\[x, y, w, h\]\]"),
])
def test_bad_boxes_are_clear_errors(est, boxes, match):
    with pytest.raises(ValueError, match=match):
        est(_image(), boxes)


def test_swapped_xyxy_corners_are_an_error(tiny_model):
    with pytest.raises(ValueError, match=r"negative width .* in xyxy \(corners swapped\?\)"):
        PoseEstimator(tiny_model, device="cpu", box_format="xyxy")(_image(), np.array([[50, 10, 20, 40]]))


def test_bad_box_in_a_list_names_the_image(est):
    with pytest.raises(ValueError, match=r"boxes\[1\]\[0\]"):
        est([_image(), _image()], [BOXES, np.array([[1, 1, 0, 0]])])
    with pytest.raises(TypeError, match=r"boxes\[0\] must be an array"):
        est([_image()], [object()])


def test_empty_box_lists(est):
    r = est(_image(), np.zeros((0, 4)))
    assert len(r) == 0 and r.keypoints.shape == (0, 17, 3) and r.scores.shape == (0,) and r.boxes.shape == (0, 4)
    assert len(est(_image(), [])) == 0
    rs = est([_image(), _image()], [[], np.zeros((0, 5))])
    assert [len(x) for x in rs] == [0, 0]
    assert est([], []) == []


def test_box_list_that_does_not_match_the_images(est):
    with pytest.raises(ValueError, match="got 2 images but 3 box arrays"):
        est([_image(), _image()], [BOXES, BOXES, BOXES])
    with pytest.raises(TypeError, match="boxes must be a list with one"):
        est([_image(), _image()], BOXES)


def test_grayscale_and_alpha_images(est):
    gray = _image()[:, :, 0]
    as_bgr = np.repeat(gray[:, :, None], 3, axis=2)
    ref = est(as_bgr, BOXES)
    _close(est(gray, BOXES), ref)
    _close(est(gray[:, :, None], BOXES), ref)
    img = _image()
    bgra = np.concatenate([img, np.full(img.shape[:2] + (1,), 7, np.uint8)], 2)
    _close(est(bgra, BOXES), est(img, BOXES))
    _close(est([bgra], [BOXES])[0], est(img, BOXES))
    _close(est(torch.from_numpy(np.stack([bgra, bgra])), [BOXES, BOXES])[1], est(img, BOXES))


@pytest.mark.parametrize("image, err, match", [
    (np.zeros((50, 50, 3), np.float32), TypeError, "must be uint8 .* got dtype float32"),
    (np.zeros((50, 50, 3), np.uint16), TypeError, "must be uint8"),
    (torch.zeros(50, 50, 3), TypeError, "must be a uint8 tensor"),
    (np.zeros((3, 50, 60), np.uint8), ValueError, r"channels first\? use .permute\(1, 2, 0\)"),
    (np.zeros((50, 60, 2), np.uint8), ValueError, "must have 3 channels"),
    (np.zeros((0, 60, 3), np.uint8), ValueError, "is empty"),
    (np.zeros((2, 2, 50, 60, 3), np.uint8), ValueError, r"must be an image \(H, W, 3\)"),
    ("image.jpg", TypeError, "images must be an"),
])
def test_bad_images_are_clear_errors(est, image, err, match):
    with pytest.raises(err, match=match):
        est(image, BOXES)


def test_bad_image_in_a_list_names_it(est):
    with pytest.raises(TypeError, match=r"images\[1\] must be uint8"):
        est([_image(), _image().astype(np.float64)], [BOXES, BOXES])
    with pytest.raises(TypeError, match="the image batch must be uint8"):
        est(np.zeros((2, 50, 50, 3), np.float32), [BOXES, BOXES])


def test_nothing_warns_on_good_input(est):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est([_image(), _image(60, 70)], [BOXES, None])


# ---------------------------------------------------------------------------------------------- CUDA (gpu-marked)
@pytest.mark.gpu
def test_cuda_call_has_no_host_sync(tiny_model):
    est = PoseEstimator(tiny_model, device="cuda")
    assert est.dtype == torch.float16 and est.pad_batches
    imgs = [_image(120, 160, 1), _image(90, 200, 2)]
    boxes = [BOXES, BOXES[:2]]
    est(imgs, boxes)  # warm-up: CUDA graphs, cuDNN plans, cached constants, the pinned-memory pool
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = est(imgs, boxes)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out[0].keypoints.device.type == "cuda" and out[0].keypoints.dtype == torch.float32
    assert [len(r) for r in out] == [3, 2] and all(torch.isfinite(r.keypoints).all() for r in out)


@pytest.mark.gpu
def test_cuda_fp32_matches_the_cpu(tiny_model):
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # IEEE fp32 convolutions: the random network amplifies TF32's error
    try:
        imgs = [_image(120, 160, 1), _image(90, 200, 2)]
        boxes = [BOXES, BOXES[:2]]
        gpu = PoseEstimator(tiny_model, device="cuda", dtype=torch.float32)(imgs, boxes)
        cpu = PoseEstimator(tiny_model, device="cpu")(imgs, boxes)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    for g, c in zip(gpu, cpu):
        g = g.cpu()
        torch.testing.assert_close(g.keypoints[..., 2], c.keypoints[..., 2], atol=1e-3, rtol=1e-3)
        same = ((g.keypoints[..., :2] - c.keypoints[..., :2]).abs().amax(-1) < 1e-2).float().mean().item()
        assert same >= 0.9, same  # a near-tie of two heatmap peaks may resolve the other way


@pytest.mark.gpu
def test_cuda_batch_on_device_and_device_boxes(tiny_model):
    est = PoseEstimator(tiny_model, device="cuda", dtype=torch.float32)
    img = torch.from_numpy(_image()).cuda()
    batch = img[None].expand(2, -1, -1, -1).contiguous()
    boxes = torch.tensor([[10, 10, 50, 80, 0.9], [float("nan"), 0, 10, 10, 1.0], [5, 5, -3, 10, 1.0]], device="cuda")
    rs = est(batch, [boxes, boxes[:1]])
    r = rs[0].cpu()
    # boxes on the device are not checked on the host (that would sync): invalid ones give NaN keypoints, score 0
    assert torch.isfinite(r.keypoints[0]).all() and torch.isnan(r.keypoints[1:]).all()
    assert r.scores[1:].eq(0).all() and torch.isfinite(rs[1].scores).all()
    torch.testing.assert_close(rs[1].keypoints, rs[0].keypoints[:1], atol=1e-3, rtol=1e-3)
