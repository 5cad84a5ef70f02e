"""The official HRNet top-down recipe for one image and its person boxes, in numpy + OpenCV: the baseline of
``benchmarks/bench_pipeline.py`` and the oracle of ``tests/test_pipeline_official.py``.

From leoxiaobin/deep-high-resolution-net.pytorch:

- ``lib/dataset/coco.py``: ``_xywh2cs`` (center, aspect-ratio fix to the model input, ``scale = size / 200``,
  padding 1.25);
- ``lib/dataset/JointsDataset.py::__getitem__``: ``cv2.cvtColor(BGR2RGB)`` (COLOR_RGB), ``get_affine_transform``,
  ``cv2.warpAffine(..., flags=cv2.INTER_LINEAR)`` (constant zero border), then ``ToTensor`` + ``Normalize``
  (written out here: torchvision need not match the installed torch);
- ``lib/core/function.py::validate``: ``model(input)``, the flip test ``np.flip(input, 3)`` -> ``model`` ->
  ``flip_back`` -> SHIFT_HEATMAP -> ``(output + output_flipped) * 0.5``, then ``get_final_preds`` on the host;
- ``lib/utils/transforms.py`` and ``lib/core/inference.py`` through :mod:`hrnet_fast.baselines.official_numpy`
  (``get_final_preds``, ``flip_back``, ``get_dir``, ``get_3rd_point``), with OpenCV's own ``getAffineTransform``.

``exact_warp=True`` (not official) replaces ``cv2.warpAffine`` by the same warp computed exactly
(:func:`warp_affine_exact`): the recipe without OpenCV's rounding, to tell that rounding from other differences.

Two batchings: ``batch="image"`` (what ``validate()`` does with a data loader: every box of the image in one
forward, then the mirrored crops in a second forward) and ``batch="box"`` (what the official
``demo/inference.py`` does: one forward per box, here with the flip test added).
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from . import official_numpy
from .official_numpy import flip_back, get_final_preds

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - the callers skip without OpenCV
        raise ImportError("the official pipeline needs OpenCV: pip install opencv-python-headless") from exc
    return cv2


def xywh2cs(x, y, w, h, image_width: int, image_height: int, pixel_std: float = 200.0) -> Tuple[np.ndarray, np.ndarray]:
    """Official ``COCODataset._xywh2cs`` (aspect ratio = image_width / image_height, padding 1.25)."""
    aspect_ratio = image_width * 1.0 / image_height
    center = np.zeros((2), dtype=np.float32)
    center[0] = x + w * 0.5
    center[1] = y + h * 0.5
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w * 1.0 / pixel_std, h * 1.0 / pixel_std], dtype=np.float32)
    if center[0] != -1:
        scale = scale * 1.25
    return center, scale


def get_affine_transform(center, scale, rot, output_size, shift=np.array([0, 0], dtype=np.float32), inv=0):
    """Official ``get_affine_transform`` with ``cv2.getAffineTransform``."""
    return official_numpy.get_affine_transform(center, scale, rot, output_size, shift, inv,
                                               solve=_cv2().getAffineTransform)


def crop_person(image_rgb: np.ndarray, center, scale, image_size: Sequence[int], exact: bool = False) -> np.ndarray:
    """``cv2.warpAffine`` of the official ``__getitem__`` (rotation 0): an (H, W, 3) uint8 crop; with ``exact``
    the same warp without OpenCV's quantisation (:func:`warp_affine_exact`, float32 crop)."""
    cv2 = _cv2()
    trans = get_affine_transform(center, scale, 0, image_size)
    size = (int(image_size[0]), int(image_size[1]))
    if exact:
        return warp_affine_exact(image_rgb, trans, size)
    return cv2.warpAffine(image_rgb, trans, size, flags=cv2.INTER_LINEAR)


def warp_affine_exact(image: np.ndarray, trans: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """What ``cv2.warpAffine(image, trans, size, flags=cv2.INTER_LINEAR)`` (constant zero border) computes, in
    float64 and without its quantisation: no rounding of the result to uint8, no 1/32-pixel sample positions
    (OpenCV 4's fixed-point tables). Not official: the recipe's reference without OpenCV's rounding. Returns an
    (H, W, C) float32 crop on the 0..255 scale."""
    cv2 = _cv2()
    w, h = int(size[0]), int(size[1])
    inv = cv2.invertAffineTransform(np.asarray(trans, dtype=np.float64))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    img = image.reshape(image.shape[0], image.shape[1], -1).astype(np.float64)
    ih, iw = img.shape[:2]

    def tap(yy, xx):  # a neighbour outside the image is 0 (BORDER_CONSTANT)
        ok = (xx >= 0) & (xx < iw) & (yy >= 0) & (yy < ih)
        v = img[np.clip(yy, 0, ih - 1).astype(np.int64), np.clip(xx, 0, iw - 1).astype(np.int64)]
        return np.where(ok[..., None], v, 0.0)

    out = (tap(y0, x0) * (1 - fx) * (1 - fy) + tap(y0, x0 + 1) * fx * (1 - fy)
           + tap(y0 + 1, x0) * (1 - fx) * fy + tap(y0 + 1, x0 + 1) * fx * fy)
    return out.astype(np.float32)


def to_tensor_normalize(crop: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    """torchvision ``ToTensor()`` then ``Normalize(mean, std)``, written out: (3, H, W) float32 (a float32
    crop is taken on the same 0..255 scale)."""
    t = torch.from_numpy(crop.transpose((2, 0, 1))).contiguous().float().div(255)
    m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return t.sub_(m).div_(s)


class OfficialPipeline:
    """The official recipe around ``model`` (the same network and weights as the pipeline under test).

    ``__call__(image_bgr, boxes_xywh)`` -> ``(preds (M, K, 2) float, maxvals (M, K, 1))`` in image pixels, as
    ``validate()`` stores them in ``all_preds``; ``self.last_times`` holds the seconds of the last call's
    stages ``crop`` (color conversion, warpAffine, ToTensor/Normalize, batching), ``forward`` (the model
    calls with the input flip and host copies) and ``decode`` (``flip_back``, shift, merge, ``get_final_preds``).
    """

    def __init__(self, model: torch.nn.Module, image_size: Sequence[int], flip_pairs=COCO_FLIP_PAIRS,
                 device="cpu", flip_test: bool = True, shift_heatmap: bool = True, color_rgb: bool = True,
                 batch: str = "image", exact_warp: bool = False):
        if batch not in ("image", "box"):
            raise ValueError(f"OfficialPipeline: batch must be 'image' or 'box', got {batch!r}")
        self.model = model.eval()
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.flip_pairs = [list(p) for p in flip_pairs]
        self.device = torch.device(device)
        self.flip_test = flip_test
        self.shift_heatmap = shift_heatmap
        self.color_rgb = color_rgb
        self.batch = batch
        self.exact_warp = exact_warp
        self.last_times: Dict[str, float] = {}
        self.last_crops: Optional[torch.Tensor] = None
        self.last_heatmaps: Optional[np.ndarray] = None

    def centers_scales(self, boxes_xywh) -> Tuple[np.ndarray, np.ndarray]:
        cs = [xywh2cs(*b[:4], *self.image_size) for b in np.asarray(boxes_xywh, dtype=np.float64)]
        c = np.stack([x[0] for x in cs]) if cs else np.zeros((0, 2), np.float32)
        s = np.stack([x[1] for x in cs]) if cs else np.zeros((0, 2), np.float32)
        return c, s

    def _forward(self, inputs: torch.Tensor) -> np.ndarray:
        """validate()'s model calls for one batch: the merged heatmaps, on the host."""
        with torch.no_grad():
            output = self.model(inputs.to(self.device))
            if self.flip_test:
                input_flipped = np.flip(inputs.cpu().numpy(), 3).copy()
                input_flipped = torch.from_numpy(input_flipped).to(self.device)
                outputs_flipped = self.model(input_flipped)
                return output, outputs_flipped
        return output, None

    def _merge(self, output, outputs_flipped):
        if outputs_flipped is None:
            return output.clone().cpu().numpy()
        output_flipped = flip_back(outputs_flipped.cpu().numpy(), self.flip_pairs)
        output_flipped = torch.from_numpy(output_flipped.copy()).to(output.device)
        if self.shift_heatmap:
            output_flipped[:, :, :, 1:] = output_flipped.clone()[:, :, :, 0:-1]
        output = (output + output_flipped) * 0.5
        return output.clone().cpu().numpy()

    def __call__(self, image_bgr: np.ndarray, boxes_xywh) -> Tuple[np.ndarray, np.ndarray]:
        cv2 = _cv2()
        t0 = time.perf_counter()
        image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB) if self.color_rgb else image_bgr
        center, scale = self.centers_scales(boxes_xywh)
        inputs = [to_tensor_normalize(crop_person(image, c, s, self.image_size, self.exact_warp)) for c, s in zip(center, scale)]
        batches = [torch.stack(inputs)] if self.batch == "image" else [x.unsqueeze(0) for x in inputs]
        t1 = time.perf_counter()
        outs = [self._forward(x) for x in batches]
        t2 = time.perf_counter()
        heatmaps = np.concatenate([self._merge(o, f) for o, f in outs], 0)
        preds, maxvals = get_final_preds(heatmaps, center, scale)
        t3 = time.perf_counter()
        self.last_times = {"crop": t1 - t0, "forward": t2 - t1, "decode": t3 - t2}
        self.last_crops = torch.stack(inputs) if inputs else None
        self.last_heatmaps = heatmaps
        return preds, maxvals
