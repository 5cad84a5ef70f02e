"""Images and person boxes to keypoints in image pixels: :class:`PoseEstimator`.

    est = hrnet_fast.PoseEstimator("w32_256x192", weights="pose_hrnet_w32_256x192.pth")
    result = est(image_bgr, boxes)           # boxes (M, 4) "xywh" or (M, 5) with the detection score
    result.keypoints                         # (M, 17, 3): x, y, score in image pixels, on the device
    results = est([img1, img2], [boxes1, boxes2])

What one call does, every step on the estimator's device and without a host synchronisation between the
copy of the inputs and the results (the caller decides when to wait, e.g. ``result.cpu()``):

1. boxes -> ``center``/``scale`` as the official ``_box2cs`` computes them (padding 1.25, the aspect ratio
   of the model input), on the host for host boxes, then one non-blocking copy; images are copied once
   (from pinned memory on CUDA);
2. :func:`hrnet_fast.ops.crop_boxes`: affine crop + BGR->RGB + normalisation of every person of every image,
   in chunks of ``max_batch`` persons;
3. one forward of the crops and of their mirror images (the flip test: ``2 * max_batch`` crops at most),
   padded on CUDA to a few fixed batch sizes (:func:`padded_batch_size`) so that the CUDA graphs that
   ``optimize()`` captures per input shape are reused;
4. :func:`hrnet_fast.decode_heatmaps` with the fused flip merge, back to image pixels;
5. the official rescoring: box score x the mean of the keypoint scores above 0.2 (0 when none is).

``oks_nms=0.9`` then applies the official OKS-NMS per image (:func:`hrnet_fast.coco.oks_nms`), which needs one host synchronisation (the
greedy suppression runs on the host, on the numbers the official code uses).

The checks of the images and boxes a call receives live in :mod:`hrnet_fast._inputs`.
"""
from __future__ import annotations

import copy
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ._device import resolve_device
from ._inputs import as_image, box_array, check_host_boxes, fix_channels, is_array
from .coco import COCO_SIGMAS, oks_iou, oks_nms  # oks_iou: re-exported (__all__), as before the move to coco.py

__all__ = ["COCO_SIGMAS", "PoseEstimator", "PoseResult", "oks_iou", "oks_nms", "padded_batch_size"]

#: Keypoints whose score is above this count in the rescoring (official TEST.IN_VIS_THRE).
IN_VIS_THRE = 0.2
_DECODES = ("argmax", "quarter", "dark", "udp")
_BOX_FORMATS = ("xywh", "xyxy")
_COLORS = ("bgr", "rgb")
_E = "PoseEstimator"


# --------------------------------------------------------------------------------------------------
# The result of one image
# --------------------------------------------------------------------------------------------------
@dataclass
class PoseResult:
    """The persons of one image, in the order of its boxes (score-descending after OKS-NMS).

    Attributes (tensors on the estimator's device, or on the CPU after :meth:`cpu`, or numpy arrays after
    :meth:`numpy`):
        keypoints: (M, K, 3) float32: x, y in image pixels (official convention: pixel centers at integer
            coordinates) and the keypoint score (the heatmap maximum).
        scores: (M,) float32: box score x mean of the keypoint scores above 0.2 (official rescoring).
        boxes: (M, 4) float32, the boxes as given, in the estimator's ``box_format``.
        box_scores: (M,) float32, the detection scores (column 5 of the boxes, else 1.0).
    """

    keypoints: Any
    scores: Any
    boxes: Any
    box_scores: Any

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def cpu(self) -> "PoseResult":
        """The same result with CPU tensors (waits for the device)."""
        return PoseResult(*(t.cpu() if isinstance(t, torch.Tensor) else t for t in self._fields()))

    def numpy(self) -> "PoseResult":
        """The same result with numpy arrays (waits for the device)."""
        return PoseResult(*(t.cpu().numpy() if isinstance(t, torch.Tensor) else t for t in self._fields()))

    def _fields(self):
        return (self.keypoints, self.scores, self.boxes, self.box_scores)

    def __repr__(self) -> str:
        kp = self.keypoints
        where = f"device={kp.device}" if isinstance(kp, torch.Tensor) else "numpy"
        return f"PoseResult({len(self)} persons, {kp.shape[1]} keypoints, {where})"


# --------------------------------------------------------------------------------------------------
# Batch padding for CUDA graphs
# --------------------------------------------------------------------------------------------------
def padded_batch_size(n: int, limit: int) -> int:
    """The batch a forward of ``n`` crops is padded to: the next power of two, at most ``limit`` (and never
    less than ``n``). A handful of shapes (1, 2, 4, ..., ``limit``) then covers every call, so the CUDA
    graphs captured per input shape are reused instead of captured again for every new person count.
    """
    if n < 0 or limit < 1:
        raise ValueError(f"padded_batch_size: expected n >= 0 and limit >= 1, got n={n}, limit={limit}")
    if n <= 1:
        return n
    p = 1 << (n - 1).bit_length()
    return max(n, min(p, limit))


def _padded_sizes(max_batch: int, flip_test: bool) -> List[int]:
    """Every forward batch :class:`PoseEstimator` pads to: a chunk of m persons (1..max_batch) is a forward
    of m crops, or 2m with the flip test, padded by :func:`padded_batch_size`. About log2(max_batch) + 2
    sizes: with the flip test and max_batch > 128 more than the 8 graphs ``optimize()`` keeps by default."""
    k = 2 if flip_test else 1
    return sorted({padded_batch_size(k * m, k * max_batch) for m in range(1, max_batch + 1)})


# --------------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------------
def _resolve_device(device) -> torch.device:
    try:
        return resolve_device(device)
    except ValueError as exc:
        raise ValueError(f"{_E}: {exc}") from None
    except RuntimeError as exc:
        raise RuntimeError(f"{_E}: device {device!r}: {exc}") from None


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _first_param(model: nn.Module) -> Optional[torch.Tensor]:
    return next(iter(model.parameters()), None)


class PoseEstimator:
    """Top-down pose estimation: images and person boxes in, keypoints in image pixels out.

    Args:
        config_or_model: a config name (``"w32_256x192"``, ...), an official experiment YAML path or a
            config dict (then the network is built and ``weights`` loaded with :func:`load_checkpoint`), or
            a model: a plain HRNet (optimized here: BN folded, channels_last, ``dtype``), one returned by
            :func:`hrnet_fast.optimize` (used as it is, moved to ``device``), or any module mapping
            (N, 3, H, W) crops to (N, K, H/4, W/4) heatmaps (give ``input_size`` when it has no ``cfg``).
        weights: checkpoint path or state dict (official, mmpose, DataParallel), loaded before optimizing.
            Without weights a config gives random weights (a warning says so).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: compute dtype; None = float16 on CUDA, float32 on the CPU (an already optimized model
            keeps its own dtype).
        flip_test: also run the mirrored crops (in the same forward) and merge as the official code does.
        decode: ``"quarter"`` (official), ``"argmax"``, ``"dark"`` or ``"udp"`` (UDP crops and decoding).
        max_batch: persons per forward (the forward batch is twice that with the flip test). The model's
            CUDA-graph cache is made large enough for every padded batch size (see ``pad_batches``).
        color: channel order of the images, ``"bgr"`` (OpenCV) or ``"rgb"``.
        box_format: ``"xywh"`` (COCO) or ``"xyxy"`` (most detectors).
        oks_nms: None (off) or the OKS threshold of the official OKS-NMS (0.9 in the official test); needs
            one host synchronisation per call.
        input_size: (W, H) of the model input; default: the model's ``cfg["IMAGE_SIZE"]``.
        flip_pairs: left/right joint pairs for the flip test; default COCO (17 joints) or MPII (16).
        pad_batches: pad the forward batch to :func:`padded_batch_size` (default: on CUDA only).
        engine: what runs the network, as ``optimize(..., engine=)``: ``"torch"`` (default), ``"openvino"``,
            ``"onnxruntime"`` (CPU only), ``"auto"`` (an engine on the CPU, torch on CUDA) or ``"inductor"``
            (opt-in, compiles per input shape); see :mod:`hrnet_fast.engines` and :mod:`hrnet_fast._inductor`.
            Cropping and decoding stay hrnet_fast's kernels.

    Call: ``estimator(images, boxes=None)``.

    - ``images``: one image or a list of images, each an (H, W, 3) uint8 numpy array or tensor, BGR unless
      ``color="rgb"``, of any size; or an (N, H, W, 3) uint8 tensor batch (possibly already on the device).
      Grayscale (H, W) or (H, W, 1) images are replicated to 3 channels; a 4th (alpha) channel is dropped.
      Other dtypes raise ``TypeError``.
    - ``boxes``: for one image an (M, 4) or (M, 5) array (5th column: the detection score, else 1.0) in
      ``box_format``; for a list of images a list of those, one per image; ``None`` (or a ``None`` entry)
      means the whole image as one box. An empty array gives an empty result. Boxes may lie partly or wholly
      outside the image (the crop is zero-padded there, as the official ``cv2.warpAffine`` does; a box wholly
      outside gives a black crop and low scores). A zero width *or* height is widened by the aspect-ratio rule
      (official ``_box2cs``); host boxes that are NaN/inf, have a negative size, or zero width and height
      raise ``ValueError``. Boxes passed as CUDA tensors are not checked on the host (that would synchronise):
      the persons of such invalid boxes get NaN keypoints and score 0.

    Returns one :class:`PoseResult` for one image, a list for a list or a batch.
    """

    def __init__(self, config_or_model, weights=None, device="auto", dtype: Optional[torch.dtype] = None,
                 flip_test: bool = True, decode: str = "quarter", max_batch: int = 64, color: str = "bgr",
                 box_format: str = "xywh", oks_nms: Optional[float] = None, *, input_size: Optional[Sequence[int]] = None,
                 flip_pairs=None, pad_batches: Optional[bool] = None, engine: str = "torch"):
        if decode not in _DECODES:
            raise ValueError(f"{_E}: decode must be one of {list(_DECODES)}, got {decode!r}")
        if color not in _COLORS:
            raise ValueError(f"{_E}: color must be 'bgr' or 'rgb', got {color!r}")
        if box_format not in _BOX_FORMATS:
            raise ValueError(f"{_E}: box_format must be 'xywh' or 'xyxy', got {box_format!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, numbers.Integral) or max_batch < 1:
            raise ValueError(f"{_E}: max_batch must be a positive int, got {max_batch!r}")
        if oks_nms is not None and not (isinstance(oks_nms, numbers.Real) and 0 < oks_nms <= 1):
            raise ValueError(f"{_E}: oks_nms must be None or a threshold in (0, 1] (official: 0.9), got {oks_nms!r}")
        if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"{_E}: dtype must be None, torch.float32, float16 or bfloat16, got {dtype}")
        self.device = _resolve_device(device)
        if engine not in ("torch", "openvino", "onnxruntime", "auto", "inductor"):
            raise ValueError(f"{_E}: engine must be 'torch', 'openvino', 'onnxruntime', 'auto' or 'inductor', got {engine!r}")
        if engine in ("openvino", "onnxruntime") and self.device.type != "cpu":
            raise ValueError(f"{_E}: engine={engine!r} runs on the CPU, not on {self.device}: use device='cpu' or engine='torch'")
        self._engine = "torch" if self.device.type != "cpu" else engine  # "auto" on a GPU: torch
        self.flip_test = bool(flip_test)
        self.decode = decode
        self.max_batch = int(max_batch)
        self.color = color
        self.box_format = box_format
        self.oks_nms = None if oks_nms is None else float(oks_nms)
        self.model = self._build_model(config_or_model, weights, dtype)
        p = _first_param(self.model)
        self.dtype = p.dtype if p is not None and p.is_floating_point() else (dtype or torch.float32)
        cfg = getattr(self.model, "cfg", None)
        if input_size is None:
            if not isinstance(cfg, dict) or "IMAGE_SIZE" not in cfg:
                raise ValueError(f"{_E}: input_size=(W, H) is needed for a model without cfg['IMAGE_SIZE']")
            input_size = cfg["IMAGE_SIZE"]
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_joints = int(cfg["NUM_JOINTS"]) if isinstance(cfg, dict) and "NUM_JOINTS" in cfg else None
        self._flip_pairs = None if flip_pairs is None else tuple(tuple(int(v) for v in p) for p in flip_pairs)
        if self.num_joints is not None and self.flip_test:
            self._pairs(self.num_joints)  # fail now, not at the first call
        if self.oks_nms is not None and self.num_joints not in (None, len(COCO_SIGMAS)):
            raise ValueError(f"{_E}: oks_nms uses the 17 COCO keypoint sigmas; this model has {self.num_joints} joints")
        config = getattr(self.model, "inference_config", None)  # optimize()'s, on an hrnet_fast model
        self.channels_last = bool(getattr(config, "channels_last", False))
        # benchmarks/bench_pipeline.py sets a callable(stage name) here, called after each stage of a chunk
        # (crop: input checks, box transform, copies and crop_boxes; forward; decode), to time the stages
        self._stage_hook = None
        self.pad_batches = (self.device.type == "cuda") if pad_batches is None else bool(pad_batches)
        self._prepare_runtime()

    # ---------------------------------------------------------------- construction
    def _prepare_runtime(self) -> None:
        """What the first call would otherwise set up in the middle of serving.

        - The model's CUDA-graph cache (``model.inference_plan().graphs`` of an ``optimize()``d model, a
          :class:`~hrnet_fast.cuda_graphs.GraphCache`) gets room for one graph per padded batch size this
          estimator can produce (:func:`_padded_sizes`), so a stream of varying person counts captures each
          size once instead of re-capturing on every least-recently-used miss (each capture also empties
          the allocator's cache). A shared model's cache only grows. Without padding every batch size is its
          own graph: the cache is left as it is.
        - The decoder's device constants (flip permutation, blur weights) are built now, outside any CUDA
          graph capture (they must not be built inside one)."""
        from .ops.decode_heatmaps import _blur_weights, _flip_perm, _normalize_pairs

        plan_of = getattr(self.model, "inference_plan", None)  # an optimize()d model's frozen plan
        graphs = getattr(plan_of() if callable(plan_of) else None, "graphs", None)
        if self.pad_batches and callable(getattr(graphs, "reserve", None)):
            graphs.reserve(len(_padded_sizes(self.max_batch, self.flip_test)))
        if self.flip_test and self.num_joints is not None:
            _flip_perm(_normalize_pairs(self._pairs(self.num_joints), self.num_joints), self.num_joints, self.device)
        if self.decode in ("dark", "udp"):
            _blur_weights(11, self.device)  # decode_heatmaps' default blur_kernel, which _decode uses

    def _build_model(self, config_or_model, weights, dtype) -> nn.Module:
        from ._optimize import optimize
        from .checkpoint import load_checkpoint

        default_dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        if isinstance(config_or_model, nn.Module):
            model = config_or_model
            if _has_batchnorm(model):  # a plain model: optimize a copy (the caller's model is not changed)
                if weights is not None:
                    model = copy.deepcopy(model)
                    load_checkpoint(model, weights)
                return optimize(model, dtype=default_dtype, engine=self._engine).to(self.device)  # eval-mode copy
            if weights is not None:
                raise ValueError(f"{_E}: weights were given with a model that has no BatchNorm (already optimized?): "
                                 f"load them into the plain model before optimize(), or pass the config")
            if self._engine != "torch" and hasattr(model, "exchange_units"):  # an optimize()d HRNet: export it
                return optimize(model, dtype=dtype, engine=self._engine)
            p = _first_param(model)
            t = p if p is not None else next(iter(model.buffers()), None)
            want_dtype = dtype if dtype is not None else (p.dtype if p is not None else None)
            if t is not None and (t.device != self.device or (p is not None and p.dtype != want_dtype)):
                # an optimize()d model's copy leaves its plan out and builds one for the new device and dtype
                model = copy.deepcopy(model).to(device=self.device, dtype=want_dtype)
            return model.eval()
        from .models.pose_hrnet import pose_hrnet

        model = pose_hrnet(config_or_model)
        if weights is not None:
            load_checkpoint(model, weights)
        else:
            warnings.warn(f"{_E}: no weights given: the network has random weights and its keypoints mean nothing "
                          f"(pass weights=<official or mmpose checkpoint>; see the README, 'Weights')", stacklevel=3)
        return optimize(model.eval(), dtype=default_dtype, engine=self._engine).to(self.device)

    def _pairs(self, k: int):
        from .ops.decode_heatmaps import COCO_FLIP_PAIRS, MPII_FLIP_PAIRS

        if self._flip_pairs is not None:
            return self._flip_pairs
        if k == 17:
            return COCO_FLIP_PAIRS
        if k == 16:
            return MPII_FLIP_PAIRS
        raise ValueError(f"{_E}: the flip test needs flip_pairs for a model with {k} joints (COCO and MPII are built in)")

    def __repr__(self) -> str:
        return (f"PoseEstimator(input {self.input_size[0]}x{self.input_size[1]}, device={self.device}, dtype={self.dtype}, "
                f"flip_test={self.flip_test}, decode={self.decode!r}, max_batch={self.max_batch}, color={self.color!r}, "
                f"box_format={self.box_format!r}, oks_nms={self.oks_nms})")

    # ---------------------------------------------------------------- the call
    def __call__(self, images, boxes=None):
        single, imgs, per_image = self._images(images)
        if single:
            box_list = [boxes]
        else:
            if boxes is None:
                box_list = [None] * len(per_image)
            elif isinstance(boxes, (list, tuple)):
                box_list = list(boxes)
            else:
                raise TypeError(f"{_E}: for a list or batch of {len(per_image)} images, boxes must be a list with one "
                                f"(M, 4|5) array (or None) per image, got {type(boxes).__name__}")
            if len(box_list) != len(per_image):
                raise ValueError(f"{_E}: got {len(per_image)} images but {len(box_list)} box arrays: give one per image "
                                 f"(None for the whole image)")
        plan = self._plan(per_image, box_list, single)
        results = self._run(imgs, plan)
        return results[0] if single else results

    def _images(self, images):
        """-> (single, images for crop_boxes (a list of (H, W, 3) device tensors or one batch tensor), [(H, W)])."""
        if is_array(images) and images.ndim == 4:
            t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
            if t.dtype != torch.uint8:
                raise TypeError(f"{_E}: the image batch must be uint8 (0-255), got dtype {t.dtype}")
            t = fix_channels(t, "the image batch")
            hw = [(int(t.shape[1]), int(t.shape[2]))] * int(t.shape[0])
            if t.shape[1] == 0 or t.shape[2] == 0:
                raise ValueError(f"{_E}: the image batch is empty: shape {tuple(t.shape)}")
            return False, self._upload(t), hw
        if is_array(images):
            img = as_image(images, "image")
            return True, [self._upload(img)], [(int(img.shape[0]), int(img.shape[1]))]
        if isinstance(images, (list, tuple)):
            checked = [as_image(x, f"images[{i}]") for i, x in enumerate(images)]
            return False, [self._upload(x) for x in checked], [(int(x.shape[0]), int(x.shape[1])) for x in checked]
        raise TypeError(f"{_E}: images must be an (H, W, 3) uint8 array or tensor, a list of them, or an (N, H, W, 3) "
                        f"uint8 tensor, got {type(images).__name__}")

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self.device:
            return t
        if self.device.type == "cuda" and t.device.type == "cpu":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _plan(self, hw: List[Tuple[int, int]], box_list, single: bool) -> "_Plan":
        from .ops.crop_boxes import boxes_to_center_scale

        arrays = []
        for j, b in enumerate(box_list):
            where = "boxes" if single else f"boxes[{j}]"
            a = box_array(b, where, hw[j], self.device)
            if isinstance(a, np.ndarray):
                check_host_boxes(a, where, self.box_format if b is not None else "xywh")
                if b is None and self.box_format == "xyxy":
                    a = a.copy()  # [0, 0, W, H] reads the same in both formats
            arrays.append(a)
        counts = [int(a.shape[0]) for a in arrays]
        image_index = np.repeat(np.arange(len(arrays)), counts)
        m = int(sum(counts))
        on_device = any(isinstance(a, torch.Tensor) for a in arrays)
        if not on_device:
            boxes = torch.from_numpy(np.concatenate(arrays, 0).astype(np.float32)) if m else torch.zeros((0, 5))
            center, scale = (torch.as_tensor(t, dtype=torch.float32) for t in
                             boxes_to_center_scale(boxes[:, :4], image_size=self.input_size, box_format=self.box_format))
            # one host-to-device copy for center, scale, box and score: (M, 9)
            packed = torch.cat([center.reshape(m, 2), scale.reshape(m, 2), boxes], 1)
            if self.device.type == "cuda":
                packed = packed.pin_memory()
            packed = packed.to(self.device, non_blocking=True)
            valid = None
        else:
            boxes = torch.cat([a if isinstance(a, torch.Tensor) else torch.from_numpy(a.astype(np.float32)).to(self.device)
                               for a in arrays], 0)
            w, h = ((boxes[:, 2], boxes[:, 3]) if self.box_format == "xywh"
                    else (boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))
            valid = torch.isfinite(boxes).all(1) & (w >= 0) & (h >= 0) & ((w > 0) | (h > 0))
            default = boxes.new_zeros(5)
            default[2:4] = 1.0  # a unit box (a fill kernel: no host-to-device copy, no sync)
            safe = torch.where(valid.unsqueeze(1), boxes, default)
            center, scale = (torch.as_tensor(t, dtype=torch.float32, device=self.device) for t in
                             boxes_to_center_scale(safe[:, :4], image_size=self.input_size, box_format=self.box_format))
            packed = torch.cat([center.reshape(m, 2), scale.reshape(m, 2), boxes], 1)
        idx = torch.from_numpy(image_index.astype(np.int64))
        if self.device.type == "cuda":
            idx = idx.pin_memory()
        idx = idx.to(self.device, non_blocking=True)
        return _Plan(counts=counts, first_image=image_index, image_index=idx, center=packed[:, 0:2], scale=packed[:, 2:4], boxes=packed[:, 4:8],
                     box_scores=packed[:, 8], valid=valid)

    # ---------------------------------------------------------------- stages (also timed one by one by benchmarks/bench_pipeline.py)
    def _crop(self, images, plan: "_Plan", a: int, b: int) -> torch.Tensor:
        """(b - a, 3, H, W) normalised RGB crops of persons a..b-1, in the model's dtype and layout."""
        from .ops.crop_boxes import crop_boxes

        # only the images this chunk uses (persons are sorted by image): crop_boxes packs a list into one buffer
        j0, j1 = int(plan.first_image[a]), int(plan.first_image[b - 1]) + 1
        index = plan.image_index[a:b] if j0 == 0 else plan.image_index[a:b] - j0
        w, h = self.input_size
        return crop_boxes(images[j0:j1], index, plan.center[a:b], plan.scale[a:b], (h, w), color=self.color,
                          dtype=self.dtype, channels_last=self.channels_last, udp=self.decode == "udp")

    def _forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Heatmaps of the crops, and of their mirror images after them with the flip test: (2m or m, K, h, w)."""
        m = crops.shape[0]
        n = 2 * m if self.flip_test else m
        size = padded_batch_size(n, 2 * self.max_batch if self.flip_test else self.max_batch) if self.pad_batches else n
        if size == m:
            x = crops
        else:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            x = torch.empty((size,) + tuple(crops.shape[1:]), dtype=crops.dtype, device=crops.device, memory_format=fmt)
            x[:m] = crops
            if self.flip_test:
                x[m:n] = crops.flip(3)
            if size > n:
                x[n:].zero_()
        with torch.no_grad():
            out = self.model(x)
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != size:
            raise RuntimeError(f"{_E}: the model must return (N, K, H, W) heatmaps for N = {size} crops, got "
                               f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        return out[:n]

    def _decode(self, heatmaps: torch.Tensor, plan: "_Plan", a: int, b: int) -> torch.Tensor:
        """(m, K, 3) keypoints (x, y, score) in image pixels from the forward's heatmaps."""
        from .ops.decode_heatmaps import decode_heatmaps

        m = b - a
        if self.flip_test:
            coords, maxvals = decode_heatmaps(heatmaps[:m], plan.center[a:b], plan.scale[a:b], method=self.decode,
                                              flipped=heatmaps[m:2 * m], flip_pairs=self._pairs(heatmaps.shape[1]),
                                              shift=self.decode != "udp")
        else:
            coords, maxvals = decode_heatmaps(heatmaps[:m], plan.center[a:b], plan.scale[a:b], method=self.decode)
        return torch.cat([coords, maxvals], 2)

    def _run(self, images, plan: "_Plan") -> List[PoseResult]:
        m = plan.center.shape[0]
        mark = self._stage_hook
        chunks = []
        for a in range(0, m, self.max_batch):
            b = min(m, a + self.max_batch)
            crops = self._crop(images, plan, a, b)
            if mark is not None:
                mark("crop")
            heatmaps = self._forward(crops)
            if mark is not None:
                mark("forward")
            chunks.append(self._decode(heatmaps, plan, a, b))
            if mark is not None:
                mark("decode")
        k = chunks[0].shape[1] if chunks else (self.num_joints or 17)
        kpts = torch.cat(chunks, 0) if chunks else torch.zeros((0, k, 3), device=self.device)
        s = kpts[:, :, 2]
        above = s > IN_VIS_THRE
        n_above = above.sum(1)
        mean = torch.where(above, s, torch.zeros_like(s)).sum(1) / n_above.clamp(min=1)
        scores = torch.where(n_above > 0, mean, torch.zeros_like(mean)) * plan.box_scores
        if plan.valid is not None:
            kpts = torch.where(plan.valid.view(-1, 1, 1), kpts, torch.full_like(kpts, math.nan))
            scores = torch.where(plan.valid, scores, torch.zeros_like(scores))
        keep = self._oks_keep(kpts, scores, plan) if self.oks_nms is not None and m else None
        results = []
        for j, (kp, sc, bx, bs) in enumerate(zip(*(t.split(plan.counts) for t in (kpts, scores, plan.boxes, plan.box_scores)))):
            if keep is not None:
                kp, sc, bx, bs = (t.index_select(0, keep[j]) for t in (kp, sc, bx, bs))
            results.append(PoseResult(kp, sc, bx, bs))
        return results

    def _oks_keep(self, kpts: torch.Tensor, scores: torch.Tensor, plan: "_Plan") -> List[torch.Tensor]:
        """Per image, the indices the official OKS-NMS keeps (score-descending), as device tensors."""
        k = kpts.shape[1]
        if k != len(COCO_SIGMAS):
            raise ValueError(f"{_E}: oks_nms uses the 17 COCO keypoint sigmas; the heatmaps have {k} joints")
        area = (plan.scale.double() * 200).prod(1)  # official: the padded box area
        host = torch.cat([kpts.double().flatten(1), scores.double().unsqueeze(1), area.unsqueeze(1)], 1).cpu().numpy()  # the one sync
        keep = []
        start = 0
        for c in plan.counts:
            h = host[start:start + c]
            kept = oks_nms(h[:, :3 * k].reshape(c, k, 3), h[:, 3 * k], h[:, 3 * k + 1], self.oks_nms)
            keep.append(torch.tensor(kept, dtype=torch.int64).to(self.device, non_blocking=True))
            start += c
        return keep


@dataclass
class _Plan:
    counts: List[int]              # persons per image
    first_image: np.ndarray        # (M,) the image of each person, on the host
    image_index: torch.Tensor      # (M,) the same, int64 on the device
    center: torch.Tensor           # (M, 2) float32 on the device
    scale: torch.Tensor            # (M, 2)
    boxes: torch.Tensor            # (M, 4) as given
    box_scores: torch.Tensor       # (M,)
    valid: Optional[torch.Tensor]  # (M,) bool for device boxes (unchecked on the host), else None

