"""crop_boxes / boxes_to_center_scale / crop_affine against the official code, OpenCV and each other.

What is tested:
* ``boxes_to_center_scale`` is the official ``_xywh2cs`` bit for bit (float64 boxes), xyxy included.
* ``crop_affine`` is the official ``get_affine_transform`` (and mmpose's UDP ``get_warp_matrix``).
* Every CPU backend (torch, cpp, triton under the interpreter) against an independent float64 numpy
  bilinear sampler (BORDER_CONSTANT semantics written out), and the compiled backends against the torch
  reference: the same float operations in the same order, so cpp and the Triton interpreter are
  bit-identical to it.
* ``cv2.warpAffine`` with the official transform on photographs (``skimage.data``), within a per-pixel
  bound derived from how OpenCV interpolates 8-bit images (see ``_opencv_bound``), and exactly where
  OpenCV is exact (integer and half-pixel sample positions).
* Outputs are poisoned with NaN before each kernel runs (HRNET_FAST_POISON_OUTPUTS=1): an element a kernel
  does not write shows as NaN (every valid crop below is checked to be finite).
* the error messages, and (marked ``gpu``) the CUDA and Triton kernels on a GPU without host
  synchronisation.
The contract every op keeps (opcheck of both custom ops, the poison hook itself, offsets beyond 2^31, the
sm_90 compile of the Triton kernel) is tested for all ops in test_op_contract.py.
"""
import math

import numpy as np
import pytest
import torch

import hrnet_fast
from _op_inputs import random_boxes, random_images
from _support import needs_ext
from hrnet_fast.baselines import official_pipeline

C = hrnet_fast.ops.OPS["crop_boxes"].module  # the op's module (hrnet_fast.ops.crop_boxes is the op)
MEAN = np.array(C.IMAGENET_MEAN)
STD = np.array(C.IMAGENET_STD)
HAS_CPP = C.SUPPORT.not_supported_reasons("cpp", torch.device("cpu"), torch.float32) == []

CPU_BACKENDS = ["torch", pytest.param("cpp", marks=needs_ext), "triton"]


pytestmark = pytest.mark.usefixtures("poison_outputs")  # conftest.py: NaN-filled outputs before every kernel


def _skip_unavailable(backend, device="cpu", dtype=torch.float32):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    reasons = C.SUPPORT.not_supported_reasons(backend, torch.device(device), dtype)
    if reasons:
        pytest.skip("; ".join(reasons))


def _size(backend, h, w):
    """The Triton interpreter runs numpy per program: a quarter of the size keeps it to seconds."""
    return (h // 4, w // 4) if backend == "triton" else (h, w)


# ----------------------------------------------------------------------------------------------------
# The official code (HRNet lib/dataset/coco.py, lib/utils/transforms.py; mmpose's UDP warp matrix)
# ----------------------------------------------------------------------------------------------------
official_xywh2cs = official_pipeline.xywh2cs  # the official COCODataset._xywh2cs, kept in the baselines


def official_affine(center, scale, rot, output_size):
    """get_affine_transform with cv2.getAffineTransform when OpenCV is there, else the baseline's port."""
    try:
        import cv2
    except ImportError:
        from hrnet_fast.baselines.official_numpy import get_affine_transform
        return get_affine_transform(center, scale, rot, output_size)
    from hrnet_fast.baselines.official_numpy import get_3rd_point, get_dir
    scale_tmp = scale * 200.0
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size
    rot_rad = np.pi * rot / 180
    src_dir = get_dir([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2:, :] = get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = get_3rd_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def mmpose_udp_matrix(center, scale, rot, image_size):
    """mmpose TopDownAffine(use_udp=True): get_warp_matrix(r, c * 2.0, image_size - 1.0, s * 200.0)."""
    theta = np.deg2rad(rot)
    size_input, size_dst, size_target = center * 2.0, np.array(image_size) - 1.0, scale * 200.0
    matrix = np.zeros((2, 3), dtype=np.float32)
    scale_x = size_dst[0] / size_target[0]
    scale_y = size_dst[1] / size_target[1]
    matrix[0, 0] = math.cos(theta) * scale_x
    matrix[0, 1] = -math.sin(theta) * scale_x
    matrix[0, 2] = scale_x * (-0.5 * size_input[0] * math.cos(theta) + 0.5 * size_input[1] * math.sin(theta)
                              + 0.5 * size_target[0])
    matrix[1, 0] = math.sin(theta) * scale_y
    matrix[1, 1] = math.cos(theta) * scale_y
    matrix[1, 2] = scale_y * (-0.5 * size_input[0] * math.sin(theta) - 0.5 * size_input[1] * math.cos(theta)
                              + 0.5 * size_target[1])
    return matrix


def invert_affine(t):
    a = np.vstack([np.asarray(t, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


# ----------------------------------------------------------------------------------------------------
# An independent float64 oracle: bilinear with BORDER_CONSTANT = 0, written out in numpy
# ----------------------------------------------------------------------------------------------------
def oracle_crop(img, inv, out_h, out_w, swap=True, mean=MEAN, std=STD):
    """(3, out_h, out_w) float64: img (h, w, 3) uint8 sampled at inv @ (x, y, 1), normalised RGB."""
    h, w = img.shape[:2]
    pad = np.zeros((h + 2, w + 2, 3))
    pad[1:-1, 1:-1] = img
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    # index into the zero-padded image; a point far outside lands on the zero border (its taps are all 0)
    xi = np.clip(x0.astype(np.int64) + 1, 0, w + 1)
    xj = np.clip(x0.astype(np.int64) + 2, 0, w + 1)
    yi = np.clip(y0.astype(np.int64) + 1, 0, h + 1)
    yj = np.clip(y0.astype(np.int64) + 2, 0, h + 1)
    v = ((1 - fx) * (1 - fy) * pad[yi, xi] + fx * (1 - fy) * pad[yi, xj]
         + (1 - fx) * fy * pad[yj, xi] + fx * fy * pad[yj, xj])
    if swap:
        v = v[..., ::-1]
    return ((v / 255.0 - mean) / std).transpose(2, 0, 1)


# ----------------------------------------------------------------------------------------------------
# boxes_to_center_scale and crop_affine against the official code
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image_size", [(192, 256), (288, 384), (256, 256)])
def test_boxes_to_center_scale_is_official(image_size):
    g = np.random.default_rng(1)
    boxes = np.concatenate([g.uniform(0, 600, (50, 2)), g.uniform(1, 400, (50, 2))], 1)
    boxes[:3, 2:] = [[192.0, 256.0], [100.0, 50.0], [50.0, 100.0]]  # exact aspect, wide, tall
    center, scale = hrnet_fast.ops.boxes_to_center_scale(torch.from_numpy(boxes), image_size)
    assert center.dtype == scale.dtype == torch.float32 and center.shape == scale.shape == (50, 2)
    for i, (x, y, w, h) in enumerate(boxes.tolist()):
        c, s = official_xywh2cs(x, y, w, h, *image_size)
        np.testing.assert_array_equal(center[i].numpy(), c)
        np.testing.assert_array_equal(scale[i].numpy(), s)
    xyxy = boxes.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    c2, s2 = hrnet_fast.ops.boxes_to_center_scale(xyxy, image_size, box_format="xyxy")  # numpy in, CPU tensors out
    np.testing.assert_allclose(c2.numpy(), center.numpy(), rtol=1e-6)
    np.testing.assert_allclose(s2.numpy(), scale.numpy(), rtol=1e-5)
    _, s3 = hrnet_fast.ops.boxes_to_center_scale(boxes, image_size, padding=1.0)
    np.testing.assert_allclose(s3.numpy() * 1.25, scale.numpy(), rtol=1e-6)


def test_boxes_to_center_scale_errors():
    f = hrnet_fast.ops.boxes_to_center_scale
    with pytest.raises(ValueError, match=r"boxes must have shape \(M, 4\), got \(2, 3\)"):
        f(torch.zeros(2, 3), (192, 256))
    with pytest.raises(ValueError, match="box_format must be 'xywh' or 'xyxy'"):
        f(torch.zeros(2, 4), (192, 256), box_format="cxcywh")
    with pytest.raises(ValueError, match="image_size must be positive"):
        f(torch.zeros(2, 4), (0, 256))
    with pytest.raises(ValueError, match="padding must be a positive number"):
        f(torch.zeros(2, 4), (192, 256), padding=-1)
    c, s = f(torch.zeros(0, 4), (192, 256))
    assert c.shape == s.shape == (0, 2)


@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0, 90.0])
def test_crop_affine_is_official(rot):
    centers = np.array([[320.0, 240.0], [10.5, -20.25], [600.0, 33.0]], np.float32)
    scales = np.array([[1.2, 1.6], [0.05, 0.0667], [4.0, 5.3333]], np.float32)
    rots = torch.full((3,), rot, dtype=torch.float64)
    fwd = hrnet_fast.ops.crop_affine(torch.from_numpy(centers), torch.from_numpy(scales), (256, 192), rots)
    inv = hrnet_fast.ops.crop_affine(centers, scales, (256, 192), rots, inverse=True)
    assert fwd.dtype == inv.dtype == torch.float64 and fwd.shape == (3, 2, 3)
    for i in range(3):
        off = official_affine(centers[i], scales[i], rot, (192, 256))
        # the official points are float32: agreement to float32 precision, relative to the matrix's size
        np.testing.assert_allclose(fwd[i].numpy(), off, rtol=0, atol=3e-6 * np.abs(off).max())
        np.testing.assert_allclose(inv[i].numpy(), invert_affine(off), rtol=0, atol=3e-6 * np.abs(invert_affine(off)).max())
        udp = mmpose_udp_matrix(centers[i].astype(np.float64), scales[i].astype(np.float64), rot, (192, 256))
        ours_udp = hrnet_fast.ops.crop_affine(centers[i:i + 1], scales[i:i + 1], (256, 192), rots[i:i + 1], udp=True)[0]
        np.testing.assert_allclose(ours_udp.numpy(), udp, rtol=0, atol=1e-6 * np.abs(udp).max())


def test_udp_matches_decode_back_transform():
    """UDP crop pixel (x, y) is the image point decode_heatmaps(method="udp") gives for it (rotation 0)."""
    center, scale = torch.tensor([[200.0, 150.0]]), torch.tensor([[1.1, 1.4]])
    inv = hrnet_fast.ops.crop_affine(center, scale, (64, 48), udp=True, inverse=True)[0].double()
    for x, y in [(0, 0), (47, 63), (13, 40)]:
        px = x / 47 * 200 * 1.1 + 200 - 100 * 1.1
        py = y / 63 * 200 * 1.4 + 150 - 100 * 1.4
        got = inv @ torch.tensor([x, y, 1.0], dtype=torch.float64)
        np.testing.assert_allclose(got.numpy(), [px, py], rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# Backends against the float64 oracle and against each other
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("udp", [False, True])
def test_vs_float64_oracle(backend, udp):
    _skip_unavailable(backend)
    imgs = random_images(2)
    shapes = [tuple(im.shape[:2]) for im in imgs]
    out_hw = (24, 20) if backend == "triton" else (48, 40)
    idx, center, scale, rot = random_boxes(3, 16, shapes, out_hw)
    out = hrnet_fast.ops.crop_boxes(imgs, idx, center, scale, out_hw, rotation=rot, udp=udp, backend=backend)
    assert out.shape == (16, 3, *out_hw) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.isfinite(out).all(), "every element written (outputs are NaN-poisoned before the kernel)"
    inv = hrnet_fast.ops.crop_affine(center, scale, out_hw, rot, udp=udp, inverse=True).numpy()
    for i in range(16):
        ref = oracle_crop(imgs[int(idx[i])].numpy(), inv[i], *out_hw)
        # fp32 weights and blend of values up to 255: a few ulp of 255, /255/std -> ~1e-6
        np.testing.assert_allclose(out[i].double().numpy(), ref, rtol=0, atol=1e-5)
    outside = -MEAN / STD  # box 1 lies outside the image: every pixel is a normalised 0
    np.testing.assert_allclose(out[1].numpy(), np.broadcast_to(outside[:, None, None], out[1].shape), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_ext), "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("color", ["bgr", "rgb"])
def test_vs_reference(backend, dtype, channels_last, color):
    _skip_unavailable(backend, dtype=dtype)
    imgs = random_images(4)
    shapes = [tuple(im.shape[:2]) for im in imgs]
    out_hw = (16, 12) if backend == "triton" else (40, 28)
    idx, center, scale, rot = random_boxes(5, 12, shapes, out_hw)
    kw = dict(rotation=rot, dtype=dtype, channels_last=channels_last, color=color)
    ours = hrnet_fast.ops.crop_boxes(imgs, idx, center, scale, out_hw, backend=backend, **kw)
    ref = hrnet_fast.ops.crop_boxes(imgs, idx, center, scale, out_hw, backend="torch", **kw)
    assert ours.dtype == dtype and ours.shape == ref.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert ours.is_contiguous(memory_format=fmt) and ours.stride() == ref.stride()
    # the same float operations in the same order (SSE2 has no FMA, the interpreter runs numpy): identical
    assert torch.equal(ours, ref), (ours.float() - ref.float()).abs().max()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_batched_tensor_list_numpy_agree(backend):
    _skip_unavailable(backend)
    imgs = random_images(6, shapes=((30, 40),) * 3)
    idx = torch.tensor([2, 0, 1, 2])
    center = torch.tensor([[20.0, 15.0], [0.0, 0.0], [39.0, 29.0], [5.0, 25.0]])
    scale = torch.tensor([[0.1, 0.13], [0.2, 0.27], [0.15, 0.2], [0.05, 0.07]])
    a = hrnet_fast.ops.crop_boxes(torch.stack(imgs), idx, center, scale, (16, 12), backend=backend)
    b = hrnet_fast.ops.crop_boxes(imgs, idx, center, scale, (16, 12), backend=backend)
    c = hrnet_fast.ops.crop_boxes([im.numpy() for im in imgs], idx.numpy(), center.numpy(), scale.numpy(), (16, 12),
                                  backend=backend)
    assert torch.equal(a, b) and torch.equal(a, c)
    one = hrnet_fast.ops.crop_boxes([imgs[2]], None, center[:1], scale[:1], (16, 12), backend=backend)
    assert torch.equal(one[0], a[0])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty(backend):
    _skip_unavailable(backend)
    imgs = random_images(7, shapes=((10, 10),))
    for cl in (False, True):
        out = hrnet_fast.ops.crop_boxes(imgs, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 2), torch.zeros(0, 2),
                                        (16, 12), channels_last=cl, backend=backend)
        assert out.shape == (0, 3, 16, 12) and out.dtype == torch.float32


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_nan_box_and_bad_index_through_the_op(backend):
    """Values that are not checked on a GPU: a NaN matrix gives NaN pixels, and an index out of range an
    all-NaN crop, in every backend (the cpp op checks the index on CPU tensors and raises instead)."""
    _skip_unavailable(backend)
    imgs = random_images(8, shapes=((20, 30),))
    flat, meta = C._pack_images(imgs)
    inv = hrnet_fast.ops.crop_affine(torch.tensor([[15.0, 10.0]] * 2), torch.tensor([[0.1, 0.13]] * 2), (8, 6),
                                     inverse=True).contiguous()
    inv[1, 0, 2] = math.nan
    args = (flat, meta, torch.tensor([0, 0]), inv, 8, 6, list(C.IMAGENET_MEAN), list(C.IMAGENET_STD), True,
            torch.float32, False)
    run = C.SUPPORT.backends[backend].run  # the packed-argument call each backend runs
    out = run(*args)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()
    bad = (flat, meta, torch.tensor([0, 3]), *args[3:])
    if backend == "cpp":
        with pytest.raises(RuntimeError, match=r"image_index\[1\] = 3 is out of range for 1 image"):
            run(*bad)
    else:
        out = run(*bad)
        assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()


# ----------------------------------------------------------------------------------------------------
# Against OpenCV on photographs
# ----------------------------------------------------------------------------------------------------
def _photos():
    data = pytest.importorskip("skimage.data", reason="the photographs come from scikit-image")
    # cv2.imread order: BGR
    return {name: np.ascontiguousarray(getattr(data, name)()[..., ::-1]) for name in ("astronaut", "coffee")}


# (x, y, w, h, rotation) per photo: inside, crossing the border, larger than the image, tiny, rotated
PHOTO_BOXES = {
    "astronaut": [(150, 20, 220, 480, 0), (-60, 300, 200, 260, 0), (-100, -80, 700, 650, 0), (230, 100, 6, 9, 0),
                  (150, 20, 220, 480, 30), (400, -30, 150, 160, -60)],
    "coffee": [(100, 50, 400, 300, 0), (450, 250, 300, 250, 0), (280, 180, 5, 4, 0), (100, 50, 400, 300, 45)],
}


def _opencv_bound(img_rgb, inv, out_h, out_w):
    """Per-pixel bound on |ours - cv2.warpAffine| in grey levels, channels RGB, shape (3, out_h, out_w).

    OpenCV 4.x interpolates 8-bit images in fixed point: it rounds the source position to 1/32 pixel
    (INTER_BITS = 5; the position is first rounded to 1/1024, AB_BITS = 10, so it moves by at most
    1/64 + 1/512 per axis), takes 15-bit weights (INTER_REMAP_COEF_BITS; error <= 4 * 255 / 2^16 = 0.016
    levels) and rounds to uint8 (0.5 levels). OpenCV 5 interpolates in float and only rounds. Moving the
    sample point by d changes a bilinear interpolant by at most |dx| * (largest horizontal neighbour
    difference) + |dy| * (largest vertical one) over the cells the move can cross: the 4 x 4 pixels around
    the point (zero outside the image). Hence 0.5 + (1/64 + 1/512) * (Dx + Dy) + 0.05 levels, 0.05 also
    covering the float32 points of the official get_affine_transform (~1e-5 pixels here).
    """
    h, w = img_rgb.shape[:2]
    pad = np.zeros((h + 6, w + 6, 3))
    pad[3:-3, 3:-3] = img_rgb
    dx = np.abs(np.diff(pad, axis=1))  # (h+6, w+5): pair (c, c+1) of padded columns
    dy = np.abs(np.diff(pad, axis=0))  # (h+5, w+6)
    win = np.lib.stride_tricks.sliding_window_view
    wdx = win(dx, (4, 3), axis=(0, 1)).max(axis=(-2, -1))  # rows y0-1..y0+2, pairs from x0-1..x0+1
    wdy = win(dy, (3, 4), axis=(0, 1)).max(axis=(-2, -1))  # pairs from y0-1..y0+1, columns x0-1..x0+2
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = np.clip(inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2], -2, w)
    sy = np.clip(inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2], -2, h)
    r = np.floor(sy).astype(np.int64) + 2  # padded index of y0 - 1
    c = np.floor(sx).astype(np.int64) + 2
    return (0.5 + (1 / 64 + 1 / 512) * (wdx[r, c] + wdy[r, c]) + 0.05).transpose(2, 0, 1)


# The largest |ours - cv2| measured on PHOTO_BOXES, in grey levels (official and UDP transforms, 256x192 and
# 64x48 crops; divide by 255 * std, ~57, for normalised units):
#   OpenCV 5.0.0 (float interpolation, rounded to uint8): 0.508 (0.0089 normalised)
#   OpenCV 4.10.0 and 4.14.0 (fixed point, 1/32-pixel positions): 3.75 (0.066 normalised), at sharp edges
#   where neighbours differ by ~200 levels: 200 * (1/64 + 1/512) = 3.5 from the position rounding alone.
# Mean 0.15-0.17 for both (the uint8 rounding alone gives 0.25 where the image is, 0 outside it). The
# per-pixel bound held with at least 0.064 levels to spare. The caps below are those maxima plus ~10%.
CV2_MAX_LEVELS = {5: 0.55, 4: 4.1}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("photo", ["astronaut", "coffee"])
def test_vs_opencv_photos(backend, photo):
    cv2 = pytest.importorskip("cv2", reason="the comparison is with cv2.warpAffine")
    _skip_unavailable(backend)
    img = _photos()[photo]
    out_h, out_w = _size(backend, 256, 192)
    boxes = PHOTO_BOXES[photo]
    center, scale = hrnet_fast.ops.boxes_to_center_scale(torch.tensor([b[:4] for b in boxes], dtype=torch.float64),
                                                         (out_w, out_h))
    rot = torch.tensor([b[4] for b in boxes], dtype=torch.float64)
    ours = hrnet_fast.ops.crop_boxes([torch.from_numpy(img)], torch.zeros(len(boxes), dtype=torch.int64), center, scale,
                                     (out_h, out_w), rotation=rot, backend=backend)
    assert torch.isfinite(ours).all()
    worst, total = 0.0, []
    for i in range(len(boxes)):
        trans = official_affine(center[i].numpy(), scale[i].numpy(), float(rot[i]), (out_w, out_h))
        crop = cv2.warpAffine(img, trans, (out_w, out_h), flags=cv2.INTER_LINEAR)  # border constant 0
        ref = (crop[..., ::-1].astype(np.float64) / 255 - MEAN) / STD  # cvtColor BGR2RGB, ToTensor, Normalize
        diff = np.abs(ours[i].double().numpy() - ref.transpose(2, 0, 1)) * (255 * STD[:, None, None])  # in levels
        bound = _opencv_bound(img[..., ::-1], invert_affine(trans), out_h, out_w)
        assert (diff <= bound).all(), f"box {i}: {int((diff > bound).sum())} pixels over the bound, max {diff.max():.3f}"
        worst = max(worst, diff.max())
        total.append(diff.mean())
    major = int(cv2.__version__.split(".")[0])
    assert worst <= CV2_MAX_LEVELS[5 if major >= 5 else 4], (cv2.__version__, worst)
    assert np.mean(total) <= 0.2


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("step", [1.0, 0.5])
def test_exact_where_opencv_is_exact(backend, step):
    """Sample points on integer (step 1) or half-integer (step 0.5) positions: OpenCV's 1/32-pixel grid holds
    them exactly, so the only difference is its rounding to uint8 (none at step 1). Boxes cross every border."""
    cv2 = pytest.importorskip("cv2", reason="the comparison is with cv2.warpAffine")
    _skip_unavailable(backend)
    img = random_images(9, shapes=((37, 45),))[0].numpy()
    out_h, out_w = (16, 12) if backend == "triton" else (64, 48)
    s0 = step * out_w / 200.0  # 200 * s0 / W = step source pixels per output pixel
    centers = torch.tensor([[20.0, 18.0], [2.0, 3.0], [44.0, 36.0], [-3.0, 40.0]], dtype=torch.float64)
    scale = torch.tensor([[s0, s0 * out_h / out_w]] * 4, dtype=torch.float64)
    ours = hrnet_fast.ops.crop_boxes([torch.from_numpy(img)], torch.zeros(4, dtype=torch.int64), centers, scale,
                                     (out_h, out_w), backend=backend)
    for i in range(4):
        trans = official_affine(centers[i].numpy().astype(np.float32), scale[i].numpy().astype(np.float32), 0,
                                (out_w, out_h))
        crop = cv2.warpAffine(img, trans, (out_w, out_h), flags=cv2.INTER_LINEAR)
        ref = ((crop[..., ::-1].astype(np.float64) / 255 - MEAN) / STD).transpose(2, 0, 1)
        levels = np.abs(ours[i].double().numpy() - ref) * (255 * STD[:, None, None])
        assert levels.max() <= (1e-4 if step == 1.0 else 0.5 + 1e-4), levels.max()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_udp_vs_opencv(backend):
    cv2 = pytest.importorskip("cv2", reason="the comparison is with cv2.warpAffine")
    _skip_unavailable(backend)
    img = _photos()["astronaut"]
    out_h, out_w = _size(backend, 256, 192)
    boxes = torch.tensor([b[:4] for b in PHOTO_BOXES["astronaut"]], dtype=torch.float64)
    rot = torch.tensor([b[4] for b in PHOTO_BOXES["astronaut"]], dtype=torch.float64)
    center, scale = hrnet_fast.ops.boxes_to_center_scale(boxes, (out_w, out_h))
    ours = hrnet_fast.ops.crop_boxes([torch.from_numpy(img)], torch.zeros(len(boxes), dtype=torch.int64), center, scale,
                                     (out_h, out_w), rotation=rot, udp=True, backend=backend)
    major = int(cv2.__version__.split(".")[0])
    for i in range(len(boxes)):
        trans = mmpose_udp_matrix(center[i].numpy(), scale[i].numpy(), float(rot[i]), (out_w, out_h))
        crop = cv2.warpAffine(img, trans, (out_w, out_h), flags=cv2.INTER_LINEAR)
        ref = ((crop[..., ::-1].astype(np.float64) / 255 - MEAN) / STD).transpose(2, 0, 1)
        diff = np.abs(ours[i].double().numpy() - ref) * (255 * STD[:, None, None])
        # mmpose's matrix is float32: its position error (~1e-4 px here) joins the bound's 0.05 slack
        assert (diff <= _opencv_bound(img[..., ::-1], invert_affine(trans), out_h, out_w)).all()
        assert diff.max() <= CV2_MAX_LEVELS[5 if major >= 5 else 4]


# ----------------------------------------------------------------------------------------------------
# Errors, opcheck, backend selection
# ----------------------------------------------------------------------------------------------------
def test_bad_input_errors():
    f = hrnet_fast.ops.crop_boxes
    im = torch.zeros(20, 30, 3, dtype=torch.uint8)
    idx, c, s = torch.tensor([0]), torch.tensor([[10.0, 10.0]]), torch.tensor([[0.1, 0.13]])
    with pytest.raises(TypeError, match=r"images\[0\] must be uint8 \(0..255"):
        f([im.float()], idx, c, s, (16, 12))
    with pytest.raises(ValueError, match=r"images\[0\] must have shape \(H, W, 3\), got \(20, 30\): a grayscale image"):
        f([im[..., 0]], idx, c, s, (16, 12))
    with pytest.raises(ValueError, match=r"got \(20, 30, 4\): 4 channels \(BGRA/RGBA\): drop the alpha channel"):
        f([torch.zeros(20, 30, 4, dtype=torch.uint8)], idx, c, s, (16, 12))
    with pytest.raises(ValueError, match=r"channels first \(3, H, W\)"):
        f(torch.zeros(1, 3, 20, 30, dtype=torch.uint8), idx, c, s, (16, 12))
    with pytest.raises(ValueError, match=r"got one image of shape \(20, 30, 3\): pass images\[None\] or \[image\]"):
        f(im, idx, c, s, (16, 12))
    with pytest.raises(ValueError, match="images is an empty list"):
        f([], idx, c, s, (16, 12))
    with pytest.raises(ValueError, match="must have at least one pixel"):
        f([torch.zeros(0, 30, 3, dtype=torch.uint8)], idx, c, s, (16, 12))
    with pytest.raises(TypeError, match=r"image_index must be an integer tensor \(int64\), got torch.float32"):
        f([im], idx.float(), c, s, (16, 12))
    with pytest.raises(ValueError, match=r"image_index holds 1, out of range for 1 image"):
        f([im], torch.tensor([1]), c, s, (16, 12))
    with pytest.raises(ValueError, match=r"image_index holds -1, out of range"):
        f([im], torch.tensor([-1]), c, s, (16, 12))
    with pytest.raises(ValueError, match=r"image_index must have shape \(M,\)"):
        f([im], idx.view(1, 1), c, s, (16, 12))
    with pytest.raises(ValueError, match=r"center must have shape \(M, 2\) = \(1, 2\), got \(1, 3\)"):
        f([im], idx, torch.zeros(1, 3), s, (16, 12))
    with pytest.raises(ValueError, match=r"scale must have shape \(M, 2\) = \(1, 2\), got \(2, 2\)"):
        f([im], idx, c, s.repeat(2, 1), (16, 12))
    for bad in (math.nan, 0.0, -0.1, math.inf):
        with pytest.raises(ValueError, match=r"scale must be finite and positive, got .* \(box 0\)"):
            f([im], idx, c, torch.tensor([[bad, 0.1]]), (16, 12))
    with pytest.raises(ValueError, match="center must be finite"):
        f([im], idx, torch.tensor([[math.nan, 1.0]]), s, (16, 12))
    with pytest.raises(ValueError, match="rotation must be finite"):
        f([im], idx, c, s, (16, 12), rotation=torch.tensor([math.inf]))
    with pytest.raises(ValueError, match=r"rotation must have shape \(M,\) = \(1,\)"):
        f([im], idx, c, s, (16, 12), rotation=torch.zeros(2))
    with pytest.raises(ValueError, match="out_size must be positive"):
        f([im], idx, c, s, (0, 12))
    with pytest.raises(TypeError, match="out_size must be a pair of ints"):
        f([im], idx, c, s, (16.0, 12))
    with pytest.raises(ValueError, match=r"udp needs out_size >= \(2, 2\)"):
        f([im], idx, c, s, (1, 12), udp=True)
    with pytest.raises(ValueError, match="color must be 'bgr' or 'rgb', got 'hsv'"):
        f([im], idx, c, s, (16, 12), color="hsv")
    with pytest.raises(ValueError, match=r"mean must have 3 values \(R, G, B\), got 1"):
        f([im], idx, c, s, (16, 12), mean=(0.5,))
    with pytest.raises(ValueError, match="std must be finite and non-zero"):
        f([im], idx, c, s, (16, 12), std=(0.2, 0.0, 0.2))
    with pytest.raises(TypeError, match="dtype must be torch.float32, torch.float16 or torch.bfloat16"):
        f([im], idx, c, s, (16, 12), dtype=torch.float64)
    with pytest.raises(TypeError, match="channels_last must be a bool"):
        f([im], idx, c, s, (16, 12), channels_last=1)
    with pytest.raises(ValueError, match="image_index may be None only with one image, got 2"):
        f([im, im], None, c, s, (16, 12))
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        f([im], idx, c, s, (16, 12), backend="opencv")


@needs_ext
def test_cpp_checks():
    op = torch.ops.hrnet_fast.crop_boxes
    imgs = random_images(10, shapes=((10, 12),))
    flat, meta = C._pack_images(imgs)
    inv = hrnet_fast.ops.crop_affine(torch.tensor([[5.0, 5.0]]), torch.tensor([[0.05, 0.06]]), (8, 6), inverse=True)
    ok = [flat, meta, torch.tensor([0]), inv.contiguous(), 8, 6, [0.5] * 3, [0.25] * 3, True, torch.float32, False]

    def call(i, v):
        args = list(ok)
        args[i] = v
        return op(*args)

    assert torch.isfinite(op(*ok)).all()
    with pytest.raises(RuntimeError, match="images must be a contiguous 1-D uint8 tensor"):
        call(0, flat.float())
    with pytest.raises(RuntimeError, match=r"image_meta must be a contiguous int64 tensor of shape \(N, 3\)"):
        call(1, meta[:, :2].contiguous())
    with pytest.raises(RuntimeError, match=r"image_meta\[0\] = \(0, 11, 12\) does not describe an image inside images"):
        call(1, torch.tensor([[0, 11, 12]]))
    with pytest.raises(RuntimeError, match=r"image_index\[0\] = -1 is out of range for 1 image"):
        call(2, torch.tensor([-1]))
    with pytest.raises(RuntimeError, match="image_index must be a contiguous int64 tensor"):
        call(2, torch.tensor([0], dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"inv_affine must be a contiguous float64 tensor of shape \(M, 2, 3\)"):
        call(3, inv.float())
    with pytest.raises(RuntimeError, match="out_h and out_w must be positive"):
        call(4, 0)
    with pytest.raises(RuntimeError, match="mean and std must have 3 values each"):
        call(6, [0.5])
    with pytest.raises(RuntimeError, match="std finite and non-zero"):
        call(7, [0.25, 0.0, 0.25])
    with pytest.raises(RuntimeError, match="dtype must be float32, float16 or bfloat16"):
        call(9, torch.float64)


def test_auto_backend_on_cpu():
    assert C.resolve_backend("cpu").name == ("cpp" if HAS_CPP else "torch")
    with pytest.raises(RuntimeError, match="crop_boxes: backend 'cuda' cannot run these inputs"):
        hrnet_fast.ops.crop_boxes(random_images(13, shapes=((8, 8),)), [0], [[4.0, 4.0]], [[0.05, 0.05]], (8, 8),
                                  backend="cuda")


# ----------------------------------------------------------------------------------------------------
# GPU (skipped without one; nothing touches the GPU at import)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_vs_reference(backend, dtype):
    _skip_unavailable(backend, "cuda", dtype)
    imgs = [im.cuda() for im in random_images(14, shapes=((480, 640), (300, 451), (33, 20)))]
    shapes = [tuple(im.shape[:2]) for im in imgs]
    idx, center, scale, rot = random_boxes(15, 64, shapes, (256, 192))
    for udp in (False, True):
        for cl in (False, True):
            kw = dict(rotation=rot, udp=udp, dtype=dtype, channels_last=cl)
            ours = hrnet_fast.ops.crop_boxes(imgs, idx.cuda(), center.cuda(), scale.cuda(), (256, 192), backend=backend, **kw)
            ref = hrnet_fast.ops.crop_boxes(imgs, idx.cuda(), center.cuda(), scale.cuda(), (256, 192), backend="torch", **kw)
            assert ours.stride() == ref.stride() and torch.isfinite(ours).all()
            # GPUs fuse the blend into FMAs: a few float32 ulp, then one rounding to dtype
            atol = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
            torch.testing.assert_close(ours.float(), ref.float(), rtol=0, atol=atol)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_no_host_sync_and_nan_rules(backend):  # its opcheck: test_op_contract.py
    _skip_unavailable(backend, "cuda")
    imgs = torch.stack(random_images(16, shapes=((64, 80),) * 2)).cuda()
    idx, center, scale, rot = random_boxes(17, 8, [(64, 80)] * 2, (32, 24))
    idx, center, scale, rot = idx.cuda(), center.cuda(), scale.cuda(), rot.cuda()
    f = hrnet_fast.ops.crop_boxes
    f(imgs, idx, center, scale, (32, 24), rotation=rot, backend=backend)  # warm up (compilation, caches)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = f(imgs, idx, center, scale, (32, 24), rotation=rot, backend=backend)
        bad_idx = torch.where(torch.arange(8, device="cuda") == 3, torch.full_like(idx, 7), idx)
        nan_c = torch.where(torch.arange(8, device="cuda").view(8, 1) == 5, torch.full_like(center, math.nan), center)
        bad = f(imgs, bad_idx, nan_c, scale, (32, 24), rotation=rot, backend=backend)  # not checked on a GPU
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out).all()
    assert torch.isnan(bad[3]).all() and torch.isnan(bad[5]).all()
    keep = [i for i in range(8) if i not in (3, 5)]
    assert torch.equal(bad[keep], out[keep])


