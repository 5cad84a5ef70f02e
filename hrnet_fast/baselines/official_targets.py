"""Numpy ports of the training targets: the official HRNet Gaussian target and mmpose's UDP target.

``generate_target`` is ``JointsDataset.generate_target`` of leoxiaobin/deep-high-resolution-net.pytorch
(``lib/dataset/JointsDataset.py:233-289``, the ``gaussian`` branch) as written, with the dataset's attributes
as arguments: ``image_size`` and ``heatmap_size`` are ``np.array(cfg.MODEL.IMAGE_SIZE)`` and
``np.array(cfg.MODEL.HEATMAP_SIZE)`` there (``JointsDataset.py:50-51``: integer arrays, [W, H]), so
``feat_stride`` is float64; ``joints`` and ``joints_vis`` are the float64 ``joints_3d``/``joints_3d_vis``
of ``coco.py:184-195`` after the affine map; ``joints_weight`` the float32 (K, 1) of ``coco.py:97-103``.

``generate_udp_gaussian_heatmaps`` is mmpose's (``mmpose/codecs/utils/gaussian_heatmap.py:263-339``) as
written, and ``udp_gaussian_heatmaps`` the ``gaussian`` branch of ``UDPHeatmap`` around it: the float32 scale
``(input_size - 1) / (heatmap_size - 1)`` of ``mmpose/codecs/udp_heatmap.py:77-78`` and the division of
``encode`` (``udp_heatmap.py:116-120``).

The ops' spec is ``hrnet_fast.ops.heatmap_targets``; these are what it is tested against.
"""
from __future__ import annotations

from itertools import product
from typing import Optional, Tuple

import numpy as np


def generate_target(joints, joints_vis, image_size, heatmap_size, sigma,
                    joints_weight: Optional[np.ndarray] = None, use_different_joints_weight: bool = False):
    """JointsDataset.py:233-289. joints (K, 3), joints_vis (K, 3); image_size, heatmap_size (W, H).

    Returns target (K, H, W) float32 and target_weight (K, 1) float32.
    """
    image_size = np.array(image_size)  # JointsDataset.py:50-51
    heatmap_size = np.array(heatmap_size)
    num_joints = joints.shape[0]
    target_weight = np.ones((num_joints, 1), dtype=np.float32)
    target_weight[:, 0] = joints_vis[:, 0]

    target = np.zeros((num_joints,
                       heatmap_size[1],
                       heatmap_size[0]),
                      dtype=np.float32)

    tmp_size = sigma * 3

    for joint_id in range(num_joints):
        feat_stride = image_size / heatmap_size
        mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
        mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
        # Check that any part of the gaussian is in-bounds
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] \
                or br[0] < 0 or br[1] < 0:
            # If not, just return the image as is
            target_weight[joint_id] = 0
            continue

        # # Generate gaussian
        size = 2 * tmp_size + 1
        x = np.arange(0, size, 1, np.float32)
        y = x[:, np.newaxis]
        x0 = y0 = size // 2
        # The gaussian is not normalized, we want the center value to equal 1
        g = np.exp(- ((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))

        # Usable gaussian range
        g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
        # Image range
        img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
        img_y = max(0, ul[1]), min(br[1], heatmap_size[1])

        v = target_weight[joint_id]
        if v > 0.5:
            target[joint_id][img_y[0]:img_y[1], img_x[0]:img_x[1]] = \
                g[g_y[0]:g_y[1], g_x[0]:g_x[1]]

    if use_different_joints_weight:
        target_weight = np.multiply(target_weight, joints_weight)

    return target, target_weight


def generate_udp_gaussian_heatmaps(
    heatmap_size: Tuple[int, int],
    keypoints: np.ndarray,
    keypoints_visible: np.ndarray,
    sigma: float,
) -> Tuple[np.ndarray, np.ndarray]:
    """mmpose/codecs/utils/gaussian_heatmap.py:263-339. heatmap_size (W, H); keypoints (N, K, D) in heatmap
    pixels; keypoints_visible (N, K). Returns heatmaps (K, H, W) float32 (instances merged by max) and
    keypoint_weights (N, K)."""
    N, K, _ = keypoints.shape
    W, H = heatmap_size

    heatmaps = np.zeros((K, H, W), dtype=np.float32)
    keypoint_weights = keypoints_visible.copy()

    # 3-sigma rule
    radius = sigma * 3

    # xy grid
    gaussian_size = 2 * radius + 1
    x = np.arange(0, gaussian_size, 1, dtype=np.float32)
    y = x[:, None]

    for n, k in product(range(N), range(K)):
        # skip unlabled keypoints
        if keypoints_visible[n, k] < 0.5:
            continue

        mu = (keypoints[n, k] + 0.5).astype(np.int64)
        # check that the gaussian has in-bounds part
        left, top = (mu - radius).astype(np.int64)
        right, bottom = (mu + radius + 1).astype(np.int64)

        if left >= W or top >= H or right < 0 or bottom < 0:
            keypoint_weights[n, k] = 0
            continue

        mu_ac = keypoints[n, k]
        x0 = y0 = gaussian_size // 2
        x0 += mu_ac[0] - mu[0]
        y0 += mu_ac[1] - mu[1]
        gaussian = np.exp(-((x - x0)**2 + (y - y0)**2) / (2 * sigma**2))

        # valid range in gaussian
        g_x1 = max(0, -left)
        g_x2 = min(W, right) - left
        g_y1 = max(0, -top)
        g_y2 = min(H, bottom) - top

        # valid range in heatmap
        h_x1 = max(0, left)
        h_x2 = min(W, right)
        h_y1 = max(0, top)
        h_y2 = min(H, bottom)

        heatmap_region = heatmaps[k, h_y1:h_y2, h_x1:h_x2]
        gaussian_regsion = gaussian[g_y1:g_y2, g_x1:g_x2]

        _ = np.maximum(heatmap_region, gaussian_regsion, out=heatmap_region)

    return heatmaps, keypoint_weights


def udp_gaussian_heatmaps(keypoints, keypoints_visible, input_size, heatmap_size, sigma=2.0):
    """``UDPHeatmap(input_size, heatmap_size, 'gaussian', sigma).encode(keypoints, keypoints_visible)``:
    the scale of udp_heatmap.py:77-78 and the call of udp_heatmap.py:116-120. keypoints (1, K, 2) in input
    pixels (float32 in mmpose's pipeline), keypoints_visible (1, K); input_size, heatmap_size (W, H).
    Returns heatmaps (K, H, W) float32 and keypoint_weights (1, K)."""
    scale_factor = ((np.array(input_size) - 1) /
                    (np.array(heatmap_size) - 1)).astype(np.float32)
    assert keypoints.shape[0] == 1, "UDPHeatmap only supports single-instance keypoint encoding"
    return generate_udp_gaussian_heatmaps(heatmap_size=heatmap_size, keypoints=keypoints / scale_factor,
                                          keypoints_visible=keypoints_visible, sigma=sigma)
