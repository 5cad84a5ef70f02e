"""The official training losses and the per-step training accuracy, as written: the oracle of
``tests/test_training_loss.py`` and the baseline of ``benchmarks/bench_train.py``.

From leoxiaobin/deep-high-resolution-net.pytorch:

- ``lib/core/loss.py:15-39`` ``JointsMSELoss``: a Python loop over the joints, ``0.5 * MSELoss(pred * w, gt * w)``
  per joint, summed and divided by the number of joints;
- ``lib/core/loss.py:42-84`` ``JointsOHKMMSELoss``: the per-(sample, joint) losses, then per sample the mean of
  its ``topk`` largest, averaged over the batch (a Python loop over the samples);
- ``lib/core/evaluate.py:16-72`` ``calc_dists``, ``dist_acc``, ``accuracy``: the PCK-style accuracy that
  ``train()`` computes on the host after every step (``lib/core/function.py:62-68``), with
  ``lib/core/inference.py::get_max_preds`` (:func:`hrnet_fast.baselines.official_numpy.get_max_preds`).

The loss modules keep the official quirks: ``.squeeze()`` drops the batch axis for a batch of one, so
``JointsOHKMMSELoss(use_target_weight=False)`` fails on a batch of one (``mean(dim=1)`` of a 1-d tensor).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .official_numpy import get_max_preds

__all__ = ["JointsMSELoss", "JointsOHKMMSELoss", "accuracy", "calc_dists", "dist_acc", "get_max_preds"]


class JointsMSELoss(nn.Module):
    """``lib/core/loss.py:15-39``. output, target (B, K, H, W); target_weight (B, K, 1)."""

    def __init__(self, use_target_weight):
        super(JointsMSELoss, self).__init__()
        self.criterion = nn.MSELoss(reduction='mean')
        self.use_target_weight = use_target_weight

    def forward(self, output, target, target_weight):
        batch_size = output.size(0)
        num_joints = output.size(1)
        heatmaps_pred = output.reshape((batch_size, num_joints, -1)).split(1, 1)
        heatmaps_gt = target.reshape((batch_size, num_joints, -1)).split(1, 1)
        loss = 0

        for idx in range(num_joints):
            heatmap_pred = heatmaps_pred[idx].squeeze()
            heatmap_gt = heatmaps_gt[idx].squeeze()
            if self.use_target_weight:
                loss += 0.5 * self.criterion(
                    heatmap_pred.mul(target_weight[:, idx]),
                    heatmap_gt.mul(target_weight[:, idx])
                )
            else:
                loss += 0.5 * self.criterion(heatmap_pred, heatmap_gt)

        return loss / num_joints


class JointsOHKMMSELoss(nn.Module):
    """``lib/core/loss.py:42-84``. output, target (B, K, H, W); target_weight (B, K, 1); needs K >= topk."""

    def __init__(self, use_target_weight, topk=8):
        super(JointsOHKMMSELoss, self).__init__()
        self.criterion = nn.MSELoss(reduction='none')
        self.use_target_weight = use_target_weight
        self.topk = topk

    def ohkm(self, loss):
        ohkm_loss = 0.
        for i in range(loss.size()[0]):
            sub_loss = loss[i]
            topk_val, topk_idx = torch.topk(
                sub_loss, k=self.topk, dim=0, sorted=False
            )
            tmp_loss = torch.gather(sub_loss, 0, topk_idx)
            ohkm_loss += torch.sum(tmp_loss) / self.topk
        ohkm_loss /= loss.size()[0]
        return ohkm_loss

    def forward(self, output, target, target_weight):
        batch_size = output.size(0)
        num_joints = output.size(1)
        heatmaps_pred = output.reshape((batch_size, num_joints, -1)).split(1, 1)
        heatmaps_gt = target.reshape((batch_size, num_joints, -1)).split(1, 1)

        loss = []
        for idx in range(num_joints):
            heatmap_pred = heatmaps_pred[idx].squeeze()
            heatmap_gt = heatmaps_gt[idx].squeeze()
            if self.use_target_weight:
                loss.append(0.5 * self.criterion(
                    heatmap_pred.mul(target_weight[:, idx]),
                    heatmap_gt.mul(target_weight[:, idx])
                ))
            else:
                loss.append(
                    0.5 * self.criterion(heatmap_pred, heatmap_gt)
                )

        loss = [l.mean(dim=1).unsqueeze(dim=1) for l in loss]  # noqa: E741 - the official name
        loss = torch.cat(loss, dim=1)

        return self.ohkm(loss)


def calc_dists(preds, target, normalize):
    """``lib/core/evaluate.py:16-28``. preds, target (N, K, 2); normalize (N, 2) -> dists (K, N), -1 where the
    target is at x <= 1 or y <= 1 (the official "not labelled" test)."""
    preds = preds.astype(np.float32)
    target = target.astype(np.float32)
    dists = np.zeros((preds.shape[1], preds.shape[0]))
    for n in range(preds.shape[0]):
        for c in range(preds.shape[1]):
            if target[n, c, 0] > 1 and target[n, c, 1] > 1:
                normed_preds = preds[n, c, :] / normalize[n]
                normed_targets = target[n, c, :] / normalize[n]
                dists[c, n] = np.linalg.norm(normed_preds - normed_targets)
            else:
                dists[c, n] = -1
    return dists


def dist_acc(dists, thr=0.5):
    """``lib/core/evaluate.py:31-38``: the fraction of distances below ``thr``, ignoring -1; -1 if none."""
    dist_cal = np.not_equal(dists, -1)
    num_dist_cal = dist_cal.sum()
    if num_dist_cal > 0:
        return np.less(dists[dist_cal], thr).sum() * 1.0 / num_dist_cal
    else:
        return -1


def accuracy(output, target, hm_type='gaussian', thr=0.5):
    """``lib/core/evaluate.py:41-72``. output, target (N, K, H, W) ndarrays -> (acc (K+1,), avg_acc, cnt, pred (N, K, 2))."""
    idx = list(range(output.shape[1]))
    norm = 1.0
    if hm_type == 'gaussian':
        pred, _ = get_max_preds(output)
        target, _ = get_max_preds(target)
        h = output.shape[2]
        w = output.shape[3]
        norm = np.ones((pred.shape[0], 2)) * np.array([h, w]) / 10
    dists = calc_dists(pred, target, norm)

    acc = np.zeros((len(idx) + 1))
    avg_acc = 0
    cnt = 0

    for i in range(len(idx)):
        acc[i + 1] = dist_acc(dists[idx[i]])
        if acc[i + 1] >= 0:
            avg_acc = avg_acc + acc[i + 1]
            cnt += 1

    avg_acc = avg_acc / cnt if cnt != 0 else 0
    if cnt != 0:
        acc[0] = avg_acc
    return acc, avg_acc, cnt, pred
