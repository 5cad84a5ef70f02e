"""A faithful numpy port of the official HRNet decoding: the baseline users have today.

From leoxiaobin/deep-high-resolution-net.pytorch: ``lib/core/inference.py`` (``get_max_preds``,
``get_final_preds`` with POST_PROCESS on: the quarter offset), ``lib/utils/transforms.py``
(``get_affine_transform``, ``affine_transform``, ``transform_preds``, ``flip_back``) and the flip-test
merge of ``lib/core/function.py::validate``. ``cv2.getAffineTransform`` is replaced by the same 6x6
linear solve in float64 (OpenCV solves it by LU too), since OpenCV is not a dependency here.

``official_decode(output, center, scale)`` takes what ``validate()`` has: a torch tensor (possibly on the
GPU), and does what it does: ``output.clone().cpu().numpy()`` (the device-to-host copy and sync), then
decodes on the host with its Python loops over points.
"""
from __future__ import annotations

import math

import numpy as np


def get_max_preds(batch_heatmaps):
    """(N, K, H, W) ndarray -> preds (N, K, 2) float32, maxvals (N, K, 1)."""
    assert isinstance(batch_heatmaps, np.ndarray), "batch_heatmaps should be numpy.ndarray"
    assert batch_heatmaps.ndim == 4, "batch_images should be 4-ndim"
    batch_size = batch_heatmaps.shape[0]
    num_joints = batch_heatmaps.shape[1]
    width = batch_heatmaps.shape[3]
    heatmaps_reshaped = batch_heatmaps.reshape((batch_size, num_joints, -1))
    idx = np.argmax(heatmaps_reshaped, 2)
    maxvals = np.amax(heatmaps_reshaped, 2)
    maxvals = maxvals.reshape((batch_size, num_joints, 1))
    idx = idx.reshape((batch_size, num_joints, 1))
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = (preds[:, :, 0]) % width
    preds[:, :, 1] = np.floor((preds[:, :, 1]) / width)
    pred_mask = np.tile(np.greater(maxvals, 0.0), (1, 1, 2))
    pred_mask = pred_mask.astype(np.float32)
    preds *= pred_mask
    return preds, maxvals


def get_dir(src_point, rot_rad):
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_result = [0, 0]
    src_result[0] = src_point[0] * cs - src_point[1] * sn
    src_result[1] = src_point[0] * sn + src_point[1] * cs
    return src_result


def get_3rd_point(a, b):
    direct = a - b
    return b + np.array([-direct[1], direct[0]], dtype=np.float32)


def _cv2_get_affine_transform(src, dst):
    """cv2.getAffineTransform: the 2x3 M with M @ [x, y, 1] = dst for three point pairs (float64)."""
    a = np.zeros((6, 6), dtype=np.float64)
    b = np.zeros(6, dtype=np.float64)
    for i in range(3):
        a[i, 0:2] = src[i]
        a[i, 2] = 1.0
        a[i + 3, 3:5] = src[i]
        a[i + 3, 5] = 1.0
        b[i] = dst[i, 0]
        b[i + 3] = dst[i, 1]
    return np.linalg.solve(a, b).reshape(2, 3)


def get_affine_transform(center, scale, rot, output_size, shift=np.array([0, 0], dtype=np.float32), inv=0,
                         solve=_cv2_get_affine_transform):
    """Official ``get_affine_transform``; ``solve`` stands for ``cv2.getAffineTransform`` (a numpy solve of
    the same 3-point system by default; the official pipeline passes OpenCV's own)."""
    if not isinstance(scale, np.ndarray) and not isinstance(scale, list):
        scale = np.array([scale, scale])
    scale_tmp = scale * 200.0
    src_w = scale_tmp[0]
    dst_w = output_size[0]
    dst_h = output_size[1]
    rot_rad = np.pi * rot / 180
    src_dir = get_dir([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center + scale_tmp * shift
    src[1, :] = center + src_dir + scale_tmp * shift
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2:, :] = get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = get_3rd_point(dst[0, :], dst[1, :])
    if inv:
        return solve(np.float32(dst), np.float32(src))
    return solve(np.float32(src), np.float32(dst))


def affine_transform(pt, t):
    new_pt = np.array([pt[0], pt[1], 1.0]).T
    new_pt = np.dot(t, new_pt)
    return new_pt[:2]


def transform_preds(coords, center, scale, output_size):
    target_coords = np.zeros(coords.shape)
    trans = get_affine_transform(center, scale, 0, output_size, inv=1)
    for p in range(coords.shape[0]):
        target_coords[p, 0:2] = affine_transform(coords[p, 0:2], trans)
    return target_coords


def get_final_preds(batch_heatmaps, center, scale, post_process=True):
    """Official get_final_preds (config.TEST.POST_PROCESS = post_process)."""
    coords, maxvals = get_max_preds(batch_heatmaps)
    heatmap_height = batch_heatmaps.shape[2]
    heatmap_width = batch_heatmaps.shape[3]
    if post_process:
        for n in range(coords.shape[0]):
            for p in range(coords.shape[1]):
                hm = batch_heatmaps[n][p]
                px = int(math.floor(coords[n][p][0] + 0.5))
                py = int(math.floor(coords[n][p][1] + 0.5))
                if 1 < px < heatmap_width - 1 and 1 < py < heatmap_height - 1:
                    diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
                    coords[n][p] += np.sign(diff) * 0.25
    preds = coords.copy()
    for i in range(coords.shape[0]):
        preds[i] = transform_preds(coords[i], center[i], scale[i], [heatmap_width, heatmap_height])
    return preds, maxvals


def flip_back(output_flipped, matched_parts):
    """output_flipped: numpy.ndarray (batch_size, num_joints, height, width)."""
    assert output_flipped.ndim == 4, "output_flipped should be [batch_size, num_joints, height, width]"
    output_flipped = output_flipped[:, :, :, ::-1]
    for pair in matched_parts:
        tmp = output_flipped[:, pair[0], :, :].copy()
        output_flipped[:, pair[0], :, :] = output_flipped[:, pair[1], :, :]
        output_flipped[:, pair[1], :, :] = tmp
    return output_flipped


def official_flip_merge(output, output_flipped, flip_pairs, shift_heatmap=True):
    """validate()'s merge on torch tensors, with its host round trip of the flipped heatmaps."""
    import torch

    flipped = flip_back(output_flipped.cpu().numpy(), flip_pairs)
    flipped = torch.from_numpy(flipped.copy()).to(output.device)
    if shift_heatmap:
        flipped[:, :, :, 1:] = flipped.clone()[:, :, :, 0:-1]
    return (output + flipped) * 0.5


def official_decode(output, center, scale, post_process=True):
    """What validate() does with the model output: host copy, then get_final_preds on numpy arrays.

    ``output`` is a torch tensor (any device) or an ndarray; ``center``/``scale`` (N, 2) ndarrays.
    """
    if hasattr(output, "detach"):
        output = output.clone().cpu().numpy()
    return get_final_preds(output, center, scale, post_process=post_process)
