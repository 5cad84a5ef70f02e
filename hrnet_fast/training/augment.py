"""Training augmentation for a batch of person samples, on their device: the geometry of the official
``JointsDataset.__getitem__`` (``lib/dataset/JointsDataset.py:145-179``), without its per-sample host loop.

    draws = sample_augmentation(seed, epoch, batch["index"])          # CPU, a pure function of its arguments
    center, scale, rotation, flip, kp, vis = augment(draws, batch["center"].cuda(), batch["scale"].cuda(),
                                                     batch["keypoints"].cuda(), batch["visible"].cuda(),
                                                     widths.cuda(), cfg)
    crops = crop_boxes(images, index, center, scale, cfg.image_size, rotation=rotation, flip=flip)

Per sample, in the official order (``u`` uniform [0, 1), ``n`` standard normal, one of each per draw below):

1. Half body (``JointsDataset.py:65-108``) when ``sum(visible) > half_body_min_joints`` and
   ``half_u < half_body_prob``: the visible upper-body joints if ``half_n < 0.5`` and there are more than 2 of
   them, else the lower-body ones if more than 2, else the upper; fewer than 2 selected: no change. Center =
   the joints' mean, box = their min/max fitted to the model's aspect ratio, ``/ pixel_std * 1.5``.
2. ``scale *= clip(scale_n * scale_factor + 1, 1 - scale_factor, 1 + scale_factor)``.
3. ``rotation = clip(rot_n * rotation_factor, -2 rf, 2 rf)`` if ``rot_u <= rotation_prob`` else 0.
4. Flip if ``cfg.flip`` and ``flip_u <= 0.5``: joints ``x -> W_img - 1 - x``, left/right pairs swapped (joints
   and visibility), joints multiplied by the visibility (``transforms.py:32-46``), ``center_x -> W_img - 1 - cx``.
5. Visible joints (``visible > 0``) mapped by the crop transform (``get_affine_transform``, computed exactly in
   float64 by :func:`hrnet_fast.ops.crop_affine`); the others are left as they are (as the official code does).

The official code runs steps 1 and 4 on float32 numpy values (the dataset's center and scale, the half-body
joints) and the rest in float64; this module rounds where it rounds (float32 center, half-body mean summed in
joint order, float32 box fit), so that replaying the same draws gives the same center, scale, rotation and flip
(numpy >= 2 promotion rules) and keypoints within float32 rounding of the official ``cv2.getAffineTransform``
(``tests/test_training_augment.py``).

``sample_augmentation`` hashes ``(seed, epoch, index)`` (splitmix64): the draws of a sample do not depend on the
batch, worker or process that handles it, so the augmentation is the same for any ``DataLoader`` worker count and
any number of processes.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from ..ops.crop_boxes import crop_affine

__all__ = ["COCO_FLIP_PAIRS", "DRAW_KEYS", "AugmentConfig", "augment", "sample_augmentation"]

COCO_FLIP_PAIRS: Tuple[Tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
#: the keys of :func:`sample_augmentation`'s dict, in stream order (``*_u`` uniform [0, 1), ``*_n`` normal)
DRAW_KEYS = ("half_u", "half_n", "scale_n", "rot_u", "rot_n", "flip_u")
# lib/config/default.py: what a config without these keys gets
_OFFICIAL_DEFAULTS = {"SCALE_FACTOR": 0.25, "ROT_FACTOR": 30, "FLIP": True, "PROB_HALF_BODY": 0.0,
                      "NUM_JOINTS_HALF_BODY": 8, "IMAGE_SIZE": [256, 256]}


def _real(name: str, v, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (lo <= float(v) <= hi):
        raise ValueError(f"AugmentConfig: {name} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


@dataclass(frozen=True)
class AugmentConfig:
    """The official training augmentation's settings (``w32_256x192_adam_lr1e-3.yaml`` values by default).

    ``image_size`` is the model input ``(H, W)`` (the official ``IMAGE_SIZE`` is ``[W, H]``: see
    :meth:`from_experiment`). ``rotation_prob`` (0.6) and the flip probability (0.5) are constants in the official
    code. ``enabled=False``: no half body, scale factor 1, rotation 0, no flip (the crop of the box as is).
    ``udp=True`` maps the keypoints with the UDP crop transform, to pair with ``crop_boxes(udp=True)``.
    """

    image_size: Tuple[int, int]
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6
    flip: bool = True
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    upper_body_ids: Tuple[int, ...] = tuple(range(11))
    flip_pairs: Tuple[Tuple[int, int], ...] = COCO_FLIP_PAIRS
    pixel_std: float = 200.0
    enabled: bool = True
    udp: bool = False

    def __post_init__(self):
        try:
            h, w = self.image_size
        except (TypeError, ValueError):
            raise ValueError(f"AugmentConfig: image_size must be (H, W), got {self.image_size!r}") from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in (h, w)):
            raise ValueError(f"AugmentConfig: image_size must be two positive ints (H, W), got {self.image_size!r}")
        object.__setattr__(self, "image_size", (int(h), int(w)))
        for name, lo, hi in (("scale_factor", 0.0, 1.0), ("rotation_factor", 0.0, math.inf), ("rotation_prob", 0.0, 1.0),
                             ("half_body_prob", 0.0, 1.0), ("pixel_std", 1e-12, math.inf)):
            object.__setattr__(self, name, _real(name, getattr(self, name), lo, hi))  # ints from a YAML -> float
        if not isinstance(self.half_body_min_joints, numbers.Integral) or isinstance(self.half_body_min_joints, bool):
            raise ValueError(f"AugmentConfig: half_body_min_joints must be an int, got {self.half_body_min_joints!r}")
        object.__setattr__(self, "half_body_min_joints", int(self.half_body_min_joints))
        for name in ("flip", "enabled", "udp"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"AugmentConfig: {name} must be a bool, got {getattr(self, name)!r}")
        try:
            ids = tuple(int(i) for i in self.upper_body_ids)
            pairs = tuple((int(a), int(b)) for a, b in self.flip_pairs)
        except (TypeError, ValueError):
            raise ValueError("AugmentConfig: upper_body_ids must be ints and flip_pairs pairs of ints, got "
                             f"{self.upper_body_ids!r} and {self.flip_pairs!r}") from None
        if any(i < 0 for i in ids) or any(i < 0 for p in pairs for i in p):
            raise ValueError("AugmentConfig: joint ids must be >= 0")
        object.__setattr__(self, "upper_body_ids", ids)
        object.__setattr__(self, "flip_pairs", pairs)

    @classmethod
    def from_experiment(cls, exp: Mapping, **overrides) -> "AugmentConfig":
        """From an official experiment (the YAML's sections as dicts): ``DATASET.SCALE_FACTOR``, ``ROT_FACTOR``,
        ``FLIP``, ``PROB_HALF_BODY``, ``NUM_JOINTS_HALF_BODY`` and ``MODEL.IMAGE_SIZE`` ``[W, H]`` (-> ``(H, W)``).
        A key the experiment lacks takes the official default (``lib/config/default.py``, e.g. PROB_HALF_BODY 0.0),
        as the official code merges the YAML over it. ``overrides`` are fields (``enabled=False``, ``udp=True``)."""
        if not isinstance(exp, Mapping):
            raise TypeError(f"AugmentConfig.from_experiment: exp must be a dict of the config's sections, got "
                            f"{type(exp).__name__}")
        ds, model = exp.get("DATASET") or {}, exp.get("MODEL") or {}

        def get(section, key):
            return section.get(key, _OFFICIAL_DEFAULTS[key])

        size = get(model, "IMAGE_SIZE")
        try:
            w, h = size
        except (TypeError, ValueError):
            raise ValueError(f"AugmentConfig.from_experiment: MODEL.IMAGE_SIZE must be [W, H], got {size!r}") from None
        kw = dict(image_size=(h, w), scale_factor=get(ds, "SCALE_FACTOR"), rotation_factor=get(ds, "ROT_FACTOR"),
                  flip=bool(get(ds, "FLIP")), half_body_prob=get(ds, "PROB_HALF_BODY"),
                  half_body_min_joints=get(ds, "NUM_JOINTS_HALF_BODY"))
        kw.update(overrides)
        return cls(**kw)


# --------------------------------------------------------------------------------------------------
# Draws: a counter-based hash of (seed, epoch, index)
# --------------------------------------------------------------------------------------------------
_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64; arrays wrap silently)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _u64(name: str, v) -> np.ndarray:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"sample_augmentation: {name} must be an int, got {v!r}")
    return np.array([int(v) & _M64], dtype=np.uint64)


def sample_augmentation(seed: int, epoch: int, indices) -> Dict[str, torch.Tensor]:
    """The random draws of samples ``indices`` (M,) in ``epoch``: a dict of float64 CPU tensors (M,) keyed
    :data:`DRAW_KEYS` (``half_u, half_n, scale_n, rot_u, rot_n, flip_u``): ``*_u`` uniform on [0, 1) (53 bits),
    ``*_n`` standard normal (Box-Muller). Each value depends on ``(seed, epoch, index)`` only (splitmix64 streams
    keyed by a hash of the three), never on the batch, worker or process it is computed in."""
    if isinstance(indices, torch.Tensor):
        idx = indices.detach().cpu()
        if idx.is_floating_point() or idx.dtype == torch.bool or idx.is_complex():
            raise TypeError(f"sample_augmentation: indices must be integers, got {idx.dtype}")
        idx = idx.to(torch.int64).numpy()
    else:
        idx = np.asarray(indices)
        if idx.size and (idx.dtype.kind not in "iu"):
            raise TypeError(f"sample_augmentation: indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64)
    if idx.ndim != 1:
        raise ValueError(f"sample_augmentation: indices must have shape (M,), got {tuple(idx.shape)}")
    key = _mix(_mix(_u64("seed", seed) ^ np.uint64(0x5851F42D4C957F2D)) + _u64("epoch", epoch))
    key = _mix(key ^ idx.view(np.uint64))  # a bijection of the index: no two samples of an epoch share a key
    streams = np.stack([_mix(key + np.uint64((_GOLDEN * (j + 1)) & _M64)) for j in range(9)])  # (9, M)
    u = (streams >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # [0, 1)

    def normal(a, b):  # Box-Muller; 1 - u is in (0, 1]: the log is finite
        return np.sqrt(-2.0 * np.log1p(-u[a])) * np.cos(2.0 * math.pi * u[b])

    out = {"half_u": u[0], "half_n": normal(1, 2), "scale_n": normal(3, 4), "rot_u": u[5], "rot_n": normal(6, 7),
           "flip_u": u[8]}
    return {k: torch.from_numpy(np.ascontiguousarray(out[k])) for k in DRAW_KEYS}


# --------------------------------------------------------------------------------------------------
# The batched augmentation
# --------------------------------------------------------------------------------------------------
def _tensor(name: str, v, shape: Tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = v.detach() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"augment: {name} must be real, got {t.dtype}")
    if tuple(t.shape) != shape:
        want = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"augment: {name} must have shape {want}, got {tuple(t.shape)}")
    return t.to(device=device, dtype=dtype, non_blocking=True)


def _half_body(c32, s32, kp, vis, draws, cfg: AugmentConfig):
    """Step 1 (JointsDataset.py:65-108 and 146-153), float32 where the official code is."""
    m, k = vis.shape
    dev = kp.device
    upper = torch.zeros(k, dtype=torch.bool, device=dev)
    ids = [i for i in cfg.upper_body_ids if i < k]
    if ids:
        upper[torch.tensor(ids, device=dev)] = True
    seen = vis > 0
    up, low = seen & upper, seen & ~upper
    n_up, n_low = up.sum(1), low.sum(1)
    use_up = ((draws["half_n"] < 0.5) & (n_up > 2)) | ~(n_low > 2)
    sel = torch.where(use_up.view(m, 1), up, low)
    n_sel = sel.sum(1)
    take = (vis.sum(1) > cfg.half_body_min_joints) & (draws["half_u"] < cfg.half_body_prob) & (n_sel >= 2)
    j32 = kp.float()  # np.array(selected_joints, dtype=np.float32)
    # numpy's mean over axis 0 adds the rows in order in float32, then divides by the count in float32
    acc = torch.zeros(m, 2, dtype=torch.float32, device=dev)
    for i in range(k):
        acc = acc + torch.where(sel[:, i:i + 1], j32[:, i], torch.zeros_like(acc))
    center = acc / n_sel.clamp(min=1).to(torch.float32).view(m, 1)
    inf = torch.tensor(math.inf, dtype=torch.float32, device=dev)
    lt = torch.where(sel.unsqueeze(-1), j32, inf).amin(1)
    rb = torch.where(sel.unsqueeze(-1), j32, -inf).amax(1)
    w, h = rb[:, 0] - lt[:, 0], rb[:, 1] - lt[:, 1]
    # numpy >= 2: a Python float meets a float32 value as float32 (the aspect ratio and pixel_std rounded first)
    aspect = torch.tensor(cfg.image_size[1] * 1.0 / cfg.image_size[0], dtype=torch.float32, device=dev)
    ah = aspect * h
    h2 = torch.where(w > ah, w / aspect, h)
    w2 = torch.where(w < ah, h * aspect, w)
    std = torch.tensor(cfg.pixel_std, dtype=torch.float32, device=dev)
    s_half = torch.stack([w2 / std, h2 / std], dim=1) * torch.tensor(1.5, dtype=torch.float32, device=dev)
    t = take.view(m, 1)
    return torch.where(t, center, c32), torch.where(t, s_half, s32)


def augment(draws: Optional[Mapping[str, torch.Tensor]], center, scale, keypoints, visible, image_width,
            cfg: AugmentConfig):
    """Augment M samples on their device (``keypoints``' device) without a host sync.

    Args:
        draws: :func:`sample_augmentation`'s dict ((M,) each; moved to the device), or None when
            ``cfg.enabled`` is False.
        center, scale: (M, 2) box center and scale (``CocoKeypoints``' float32 values; the official code's).
        keypoints: (M, K, 2) image pixels (x, y); visible: (M, K) (0/1, the official ``min(v, 1)``);
            image_width: (M,) each sample's image width (the mirror axis).
        cfg: :class:`AugmentConfig`.

    Returns:
        ``(center, scale, rotation, flip, keypoints_crop, visible)``: center (M, 2) float64 holding the official
        float32 values, after the flip (``W_img - 1 - cx``), to pass to ``crop_boxes`` with ``flip``; scale (M, 2)
        float64; rotation (M,) float64 degrees; flip (M,) bool; keypoints_crop (M, K, 2) float64 crop pixels
        (visible joints; the others keep their image coordinates, zeroed when flipped); visible (M, K) in
        ``visible``'s dtype, left/right swapped when flipped.
    """
    if not isinstance(cfg, AugmentConfig):
        raise TypeError(f"augment: cfg must be an AugmentConfig, got {type(cfg).__name__}")
    kp_in = keypoints if isinstance(keypoints, torch.Tensor) else torch.as_tensor(np.asarray(keypoints))
    if kp_in.dim() != 3 or kp_in.shape[2] != 2:
        raise ValueError(f"augment: keypoints must have shape (M, K, 2), got {tuple(kp_in.shape)}")
    m, k = int(kp_in.shape[0]), int(kp_in.shape[1])
    dev = kp_in.device
    bad = [i for i in cfg.upper_body_ids if i >= k] + [i for p in cfg.flip_pairs for i in p if i >= k]
    if cfg.enabled and bad:
        raise ValueError(f"augment: cfg names joint {bad[0]}, but keypoints have K = {k} joints (flip_pairs, "
                         "upper_body_ids are COCO's by default)")
    vis_dtype = visible.dtype if isinstance(visible, torch.Tensor) and visible.is_floating_point() else torch.float32
    kp = _tensor("keypoints", kp_in, (m, k, 2), dev, torch.float64)  # the official joints are float64
    vis = _tensor("visible", visible, (m, k), dev, torch.float64)
    c32 = _tensor("center", center, (m, 2), dev, torch.float32)  # coco.py's _xywh2cs center is float32
    s32 = _tensor("scale", scale, (m, 2), dev, torch.float32)
    width = _tensor("image_width", image_width, (m,), dev, torch.float64)
    flip = torch.zeros(m, dtype=torch.bool, device=dev)
    rot = torch.zeros(m, dtype=torch.float64, device=dev)
    if cfg.enabled:
        if draws is None or not isinstance(draws, Mapping):
            raise TypeError("augment: draws must be sample_augmentation()'s dict (None only with cfg.enabled=False)")
        missing = [key for key in DRAW_KEYS if key not in draws]
        if missing:
            raise ValueError(f"augment: draws lacks {missing} (keys of sample_augmentation: {list(DRAW_KEYS)})")
        d = {key: _tensor(f"draws[{key!r}]", draws[key], (m,), dev, torch.float64) for key in DRAW_KEYS}
        c32, s32 = _half_body(c32, s32, kp, vis, d, cfg)
        sf, rf = cfg.scale_factor, cfg.rotation_factor
        s64 = s32.double() * torch.clamp(d["scale_n"] * sf + 1, 1 - sf, 1 + sf).view(m, 1)
        rot = torch.where(d["rot_u"] <= cfg.rotation_prob, torch.clamp(d["rot_n"] * rf, -rf * 2, rf * 2), rot)
        if cfg.flip:
            flip = d["flip_u"] <= 0.5
        # transforms.py:32-46: x -> W - x - 1 in float64, pairs swapped, joints * vis
        perm = list(range(k))
        for a, b in cfg.flip_pairs:
            perm[a], perm[b] = perm[b], perm[a]
        perm_t = torch.tensor(perm, device=dev)
        fx = (width.view(m, 1) - kp[..., 0]) - 1
        mirrored = torch.stack([fx, kp[..., 1]], dim=-1)[:, perm_t] * vis[:, perm_t].unsqueeze(-1)
        kp = torch.where(flip.view(m, 1, 1), mirrored, kp)
        vis = torch.where(flip.view(m, 1), vis[:, perm_t], vis)
        # c[0] = data_numpy.shape[1] - c[0] - 1 on a float32 value: two float32 roundings
        cx = (width.float() - c32[:, 0]) - 1
        c32 = torch.where(flip.view(m, 1), torch.stack([cx, c32[:, 1]], dim=1), c32)
    else:
        s64 = s32.double()
    center_out = c32.double()
    fwd = crop_affine(center_out, s64, cfg.image_size, rotation=rot, udp=cfg.udp)  # (M, 2, 3) image -> crop
    mapped = torch.einsum("mij,mkj->mki", fwd[:, :, :2], kp) + fwd[:, :, 2].unsqueeze(1)
    kp_crop = torch.where((vis > 0).unsqueeze(-1), mapped, kp)
    return center_out, s64, rot, flip, kp_crop, vis.to(vis_dtype)
