"""hrnet_fast.training.augment against the official ``JointsDataset.__getitem__`` (issue 21, test 3).

The replay: ``np.random.rand``, ``np.random.randn`` and ``random.random`` are scripted (monkeypatched) to return
our draws to the official code (hrnet_fast.baselines.official_dataset, the port), each draw to the call that the
official code makes for it: ``rand`` -> half_u; ``randn`` inside ``half_body_transform`` -> half_n, then the
scale's -> scale_n and the rotation's -> rot_n; the first ``random.random`` -> rot_u, the second -> flip_u. Center,
scale, rotation and flip must be equal; joints within 1e-3 px (the official transform comes from float32
points); targets equal except joints within 1e-4 of a rounding boundary; crops (crop_boxes with flip and
rotation) within test_crop_boxes.py's bound of OpenCV. Also: the draws do not depend on how samples are split
among workers or processes; every half-body branch; the config; bad input.
"""
import math
import random
import sys

import numpy as np
import pytest
import torch

import hrnet_fast
from _training_inputs import varied_coco
from hrnet_fast.baselines import official_dataset
from hrnet_fast.training import AugmentConfig, CocoKeypoints, augment, collate, sample_augmentation
from hrnet_fast.training.augment import DRAW_KEYS
from test_crop_boxes import CV2_MAX_LEVELS, MEAN, STD, _opencv_bound, invert_affine

cv2 = pytest.importorskip("cv2", reason="the official dataset reads and warps with OpenCV")

IMAGE_HW = (256, 192)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    ann, img_dir, _ = varied_coco(str(root))
    ours = CocoKeypoints(ann, img_dir, image_size=IMAGE_HW)
    port = official_dataset.OfficialCocoKeypoints(ann, img_dir, image_size=[192, 256], heatmap_size=[48, 64])
    assert len(ours) == len(port) == 9
    return ours, port


class Script:
    """The three official random functions, returning the draws of one sample."""

    def __init__(self, draws, i):
        self.d = {k: float(v[i]) for k, v in draws.items()}
        self.calls = []

    def rand(self, *args):
        assert not args
        self.calls.append("half_u")
        return self.d["half_u"]

    def randn(self, *args):
        assert not args
        caller = sys._getframe(1).f_code.co_name
        key = "half_n" if caller == "half_body_transform" else ("scale_n" if "rot_u" not in self.calls else "rot_n")
        self.calls.append(key)
        return self.d[key]

    def random(self):
        key = "rot_u" if "rot_u" not in self.calls else "flip_u"
        self.calls.append(key)
        return self.d[key]

    def install(self, monkeypatch):
        monkeypatch.setattr(np.random, "rand", self.rand)
        monkeypatch.setattr(np.random, "randn", self.randn)
        monkeypatch.setattr(random, "random", self.random)


def _official(port, i, draws, monkeypatch):
    """port[i] under the scripted draws; also whether it flipped and took the half body."""
    seen = {"flip": False, "half": False}
    real_flip, real_half = official_dataset.fliplr_joints, port.half_body_transform

    def flip(*a):
        seen["flip"] = True
        return real_flip(*a)

    def half(*a):
        c, s = real_half(*a)
        seen["half"] = c is not None
        return c, s

    script = Script(draws, i)
    with monkeypatch.context() as mp:
        script.install(mp)
        mp.setattr(official_dataset, "fliplr_joints", flip)
        mp.setattr(port, "half_body_transform", half)
        out = port[i]
    assert len(script.calls) == len(set(script.calls)), script.calls  # every draw used at most once
    return out, seen


def _ours(ours, draws, cfg):
    batch = collate([ours[i] for i in range(len(ours))])
    res = augment(draws, batch["center"], batch["scale"], batch["keypoints"], batch["visible"], batch["image_width"], cfg)
    return batch, res


@pytest.mark.parametrize("seed,epoch", [(0, 0), (1, 5), (123, 2), (7, 40)])
def test_replay_against_official_getitem(data, seed, epoch, monkeypatch):
    ours, port = data
    cfg = AugmentConfig(IMAGE_HW)
    idx = torch.arange(len(ours))
    draws = sample_augmentation(seed, epoch, idx)
    batch, (center, scale, rot, flip, kp, vis) = _ours(ours, draws, cfg)
    crops = hrnet_fast.ops.crop_boxes(batch["images"], torch.arange(len(ours)), center, scale, IMAGE_HW, rotation=rot,
                                      flip=flip)
    major = int(cv2.__version__.split(".")[0])
    for i in range(len(ours)):
        (inp, target, tw, meta), seen = _official(port, i, draws, monkeypatch)
        np.testing.assert_array_equal(center[i].numpy(), np.asarray(meta["center"], np.float64))
        np.testing.assert_array_equal(scale[i].numpy(), np.asarray(meta["scale"], np.float64))
        assert float(rot[i]) == float(meta["rotation"])
        assert bool(flip[i]) == seen["flip"]
        np.testing.assert_allclose(kp[i].numpy(), meta["joints"][:, :2], rtol=0, atol=1e-3)
        np.testing.assert_array_equal(vis[i].numpy(), meta["joints_vis"][:, 0])
        # the crop: the official input is cv2.warpAffine of the (mirrored) RGB image (COLOR_RGB: true)
        img = batch["images"][i].numpy()[..., ::-1]
        src = img[:, ::-1] if seen["flip"] else img
        trans = official_dataset.get_affine_transform(meta["center"], meta["scale"], meta["rotation"], [192, 256])
        ref = ((inp.astype(np.float64) / 255 - MEAN) / STD).transpose(2, 0, 1)
        diff = np.abs(crops[i].double().numpy() - ref) * (255 * STD[:, None, None])
        bound = _opencv_bound(np.ascontiguousarray(src), invert_affine(trans), *IMAGE_HW)
        assert (diff <= bound).all(), f"sample {i}: {int((diff > bound).sum())} pixels over the bound"
        assert diff.max() <= CV2_MAX_LEVELS[5 if major >= 5 else 4], diff.max()
        near = _compare_targets(kp[i], vis[i], meta, target, tw)
        assert near <= 1, near  # the exception stays an exception


def _compare_targets(kp, vis, meta, target, tw):
    """Our targets of one sample against the official ones: equal, except for joints within 1e-4 (in heatmap
    pixels) of the official rounding boundary int(x / 4 + 0.5) (our keypoints carry float32-point rounding)."""
    targets, weights = hrnet_fast.ops.heatmap_targets(kp[None], vis[None], IMAGE_HW, (64, 48), sigma=2.0)
    v = meta["joints"][:, :2] / 4.0 + 0.5
    near = (np.abs(v - np.round(v)) < 1e-4).any(1) & (meta["joints_vis"][:, 0] > 0)
    keep = ~near
    np.testing.assert_array_equal(targets[0].numpy()[keep], target[keep])
    np.testing.assert_array_equal(weights[0].numpy()[keep], tw[keep])
    assert target[keep].any()  # some joint lands in the heatmap
    return int(near.sum())


def test_replay_covers_every_branch(data, monkeypatch):
    """Over the replay's draws the official code took the half body, rotated, flipped, and did not (so the
    replay test above compares each branch); checked on the draws themselves."""
    ours, port = data
    taken = {"half": 0, "flip": 0, "noflip": 0, "rot": 0, "norot": 0}
    for seed, epoch in [(0, 0), (1, 5), (123, 2), (7, 40)]:
        draws = sample_augmentation(seed, epoch, torch.arange(len(ours)))
        for i in range(len(ours)):
            (_, _, _, meta), seen = _official(port, i, draws, monkeypatch)
            taken["half"] += seen["half"]
            taken["flip" if seen["flip"] else "noflip"] += 1
            taken["rot" if meta["rotation"] != 0 else "norot"] += 1
    assert all(v > 0 for v in taken.values()), taken


# ----------------------------------------------------------------------------------------------------
# The half-body rule, branch by branch (forced draws)
# ----------------------------------------------------------------------------------------------------
def _forced(m, half_n, half_u=0.0):
    z = torch.zeros(m, dtype=torch.float64)
    return {"half_u": z + half_u, "half_n": z + half_n, "scale_n": z, "rot_u": z + 1.0, "rot_n": z, "flip_u": z + 1.0}


@pytest.mark.parametrize("case,hide,half_n,expect", [
    ("upper", [], 0.0, "upper"),
    ("lower", [], 1.0, "lower"),
    ("upper too few -> lower", list(range(0, 9)), 0.0, "lower"),       # upper 2 (9, 10)
    ("lower too few -> upper", [13, 14, 15, 16], 1.0, "upper"),        # lower 2 (11, 12)
])
def test_half_body_branches(data, case, hide, half_n, expect, monkeypatch):
    ours, port = data
    g = np.random.default_rng(31)
    joints = np.zeros((17, 3))
    joints[:, :2] = g.uniform(50, 400, (17, 2)).round(1)
    jv = np.ones((17, 3))
    jv[:, 2] = 0
    jv[hide] = 0
    monkeypatch.setattr(np.random, "randn", Script(_forced(1, half_n), 0).randn)
    c_off, s_off = port.half_body_transform(joints.copy(), jv.copy())
    part = list(range(11)) if expect == "upper" else list(range(11, 17))
    sel = [k for k in part if jv[k, 0] > 0]
    np.testing.assert_allclose(c_off, joints[sel, :2].mean(0), rtol=1e-6)  # the official took the expected set
    cfg = AugmentConfig(IMAGE_HW, half_body_min_joints=0)  # the rule itself (8 visible joints in case 3)
    c, s, *_ = augment(_forced(1, half_n), torch.tensor([[300.0, 200.0]]), torch.tensor([[1.0, 1.3333]]),
                       torch.from_numpy(joints[None, :, :2]), torch.from_numpy(jv[None, :, 0]), torch.tensor([640]), cfg)
    np.testing.assert_array_equal(c[0].numpy(), c_off.astype(np.float64))
    np.testing.assert_array_equal(s[0].numpy(), s_off.astype(np.float64))  # scale_n = 0: factor 1


def test_half_body_fewer_than_two_joints_and_threshold(data, monkeypatch):
    ours, port = data
    joints = np.zeros((17, 3))
    joints[:, :2] = np.arange(34, dtype=np.float64).reshape(17, 2) * 7 + 20
    jv = np.zeros((17, 3))
    jv[3, :2] = 1  # one visible joint: selected (upper, the fallback) has 1 < 2 -> no half body
    monkeypatch.setattr(np.random, "randn", Script(_forced(1, 0.0), 0).randn)
    assert port.half_body_transform(joints, jv) == (None, None)
    c0, s0 = torch.tensor([[300.0, 200.0]]), torch.tensor([[1.0, 1.3333]])
    args = (torch.from_numpy(joints[None, :, :2]), torch.from_numpy(jv[None, :, 0]), torch.tensor([640]))
    for min_joints in (0, 8):  # 0: the rule runs and finds < 2 joints; 8: sum(vis) = 1 is not > 8
        c, s, *_ = augment(_forced(1, 0.0), c0, s0, *args, AugmentConfig(IMAGE_HW, half_body_min_joints=min_joints))
        assert torch.equal(c.float(), c0) and torch.equal(s.float(), s0)
    # half_u >= half_body_prob: not taken, even with every joint visible
    jv[:] = 1
    c, s, *_ = augment(_forced(1, 0.0, half_u=0.3), c0, s0, args[0], torch.ones(1, 17), args[2], AugmentConfig(IMAGE_HW))
    assert torch.equal(c.float(), c0)
    c, s, *_ = augment(_forced(1, 0.0, half_u=0.2999), c0, s0, args[0], torch.ones(1, 17), args[2], AugmentConfig(IMAGE_HW))
    assert not torch.equal(c.float(), c0)


# ----------------------------------------------------------------------------------------------------
# sample_augmentation: a pure function of (seed, epoch, index)
# ----------------------------------------------------------------------------------------------------
class _DrawSet(torch.utils.data.Dataset):
    def __len__(self):
        return 24

    def __getitem__(self, i):
        return sample_augmentation(11, 3, [i])


def test_draws_independent_of_partitioning():
    idx = torch.arange(200)
    full = sample_augmentation(11, 3, idx)
    assert set(full) == set(DRAW_KEYS) and all(v.dtype == torch.float64 and v.shape == (200,) for v in full.values())
    for ranks in (2, 3, 8):  # DistributedSampler-style interleaving across processes
        parts = [sample_augmentation(11, 3, idx[r::ranks]) for r in range(ranks)]
        for k in DRAW_KEYS:
            for r in range(ranks):
                assert torch.equal(parts[r][k], full[k][r::ranks])
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    shuffled = sample_augmentation(11, 3, perm.numpy())
    assert all(torch.equal(shuffled[k], full[k][perm]) for k in DRAW_KEYS)
    single = sample_augmentation(11, 3, [57])
    assert all(float(single[k][0]) == float(full[k][57]) for k in DRAW_KEYS)
    # DataLoader workers (separate processes) compute the same values
    loader = torch.utils.data.DataLoader(_DrawSet(), batch_size=None, num_workers=2)
    got = list(loader)
    ref = sample_augmentation(11, 3, torch.arange(24))
    assert all(float(got[i][k][0]) == float(ref[k][i]) for i in range(24) for k in DRAW_KEYS)
    # and they change with the seed, the epoch and the index
    for other in (sample_augmentation(12, 3, idx), sample_augmentation(11, 4, idx)):
        assert all((other[k] != full[k]).float().mean() > 0.99 for k in DRAW_KEYS)


def test_draws_distribution():
    d = sample_augmentation(5, 0, torch.arange(40000))
    for k in ("half_u", "rot_u", "flip_u"):
        assert 0 <= float(d[k].min()) and float(d[k].max()) < 1
        assert abs(float(d[k].mean()) - 0.5) < 0.01 and abs(float(d[k].std()) - math.sqrt(1 / 12)) < 0.01
    for k in ("half_n", "scale_n", "rot_n"):
        assert abs(float(d[k].mean())) < 0.02 and abs(float(d[k].std()) - 1) < 0.02
    assert abs(float((d["half_n"] < 0.5).double().mean()) - 0.6915) < 0.01  # the official p(upper) ~ 0.69
    x = torch.stack([d[k] for k in DRAW_KEYS])
    corr = torch.corrcoef(x) - torch.eye(6, dtype=torch.float64)
    assert corr.abs().max() < 0.03, corr
    neighbours = torch.corrcoef(torch.stack([d["scale_n"][:-1], d["scale_n"][1:]]))[0, 1]
    assert abs(float(neighbours)) < 0.03


def test_sample_augmentation_errors():
    with pytest.raises(TypeError, match="sample_augmentation: indices must be integers, got torch.float32"):
        sample_augmentation(0, 0, torch.zeros(3))
    with pytest.raises(ValueError, match=r"indices must have shape \(M,\)"):
        sample_augmentation(0, 0, np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="seed must be an int"):
        sample_augmentation(0.5, 0, [1])
    assert sample_augmentation(0, 0, [])["half_u"].shape == (0,)


# ----------------------------------------------------------------------------------------------------
# The config, the identity, bad input
# ----------------------------------------------------------------------------------------------------
def test_config_from_experiment():
    # the augmentation keys of experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml
    exp = {"DATASET": {"COLOR_RGB": True, "FLIP": True, "NUM_JOINTS_HALF_BODY": 8, "PROB_HALF_BODY": 0.3,
                       "ROT_FACTOR": 45, "SCALE_FACTOR": 0.35},
           "MODEL": {"IMAGE_SIZE": [192, 256], "HEATMAP_SIZE": [48, 64], "SIGMA": 2}}
    cfg = AugmentConfig.from_experiment(exp)
    assert cfg == AugmentConfig((256, 192))  # the yaml's values are the defaults
    assert type(cfg.rotation_factor) is float and cfg.image_size == (256, 192)
    assert AugmentConfig.from_experiment({"MODEL": {"IMAGE_SIZE": [288, 384]}}) == AugmentConfig(
        (384, 288), scale_factor=0.25, rotation_factor=30.0, half_body_prob=0.0)  # lib/config/default.py
    assert not AugmentConfig.from_experiment(exp, enabled=False).enabled
    with pytest.raises(ValueError, match=r"MODEL.IMAGE_SIZE must be \[W, H\]"):
        AugmentConfig.from_experiment({"MODEL": {"IMAGE_SIZE": 256}})
    with pytest.raises(ValueError, match=r"image_size must be two positive ints \(H, W\)"):
        AugmentConfig((256.0, 192))
    with pytest.raises(ValueError, match=r"half_body_prob must be a number in \[0.0, 1.0\]"):
        AugmentConfig((256, 192), half_body_prob=1.5)
    with pytest.raises(TypeError, match="flip must be a bool"):
        AugmentConfig((256, 192), flip=1)


def test_disabled_is_the_plain_crop():
    g = torch.Generator().manual_seed(3)
    m = 5
    center = torch.rand(m, 2, generator=g) * 300 + 50
    scale = torch.rand(m, 2, generator=g) + 0.5
    kp = torch.rand(m, 17, 2, generator=g) * 400
    vis = (torch.rand(m, 17, generator=g) > 0.3).float()
    cfg = AugmentConfig(IMAGE_HW, enabled=False)
    c, s, r, f, kc, v = augment(None, center, scale, kp, vis, torch.full((m,), 640), cfg)
    assert torch.equal(c, center.double()) and torch.equal(s, scale.double())
    assert not r.any() and not f.any() and torch.equal(v, vis)
    fwd = hrnet_fast.ops.crop_affine(center, scale, IMAGE_HW)
    mapped = torch.einsum("mij,mkj->mki", fwd[:, :, :2], kp.double()) + fwd[:, None, :, 2]
    assert torch.equal(kc[vis > 0], mapped[vis > 0]) and torch.equal(kc[vis == 0], kp.double()[vis == 0])
    # flip=False in the config: never mirrored, whatever flip_u says
    d = _forced(m, 0.0, half_u=1.0)
    d["flip_u"] = torch.zeros(m, dtype=torch.float64)
    assert not augment(d, center, scale, kp, vis, torch.full((m,), 640), AugmentConfig(IMAGE_HW, flip=False))[3].any()
    assert augment(d, center, scale, kp, vis, torch.full((m,), 640), AugmentConfig(IMAGE_HW))[3].all()


def test_augment_bad_input():
    c, s, kp, v, w = torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2, 17, 2), torch.ones(2, 17), torch.full((2,), 9)
    cfg = AugmentConfig(IMAGE_HW)
    d = _forced(2, 0.0)
    with pytest.raises(TypeError, match="cfg must be an AugmentConfig"):
        augment(d, c, s, kp, v, w, {"image_size": IMAGE_HW})
    with pytest.raises(ValueError, match=r"keypoints must have shape \(M, K, 2\)"):
        augment(d, c, s, kp[..., :1], v, w, cfg)
    with pytest.raises(ValueError, match=r"center must have shape \(2, 2\), got \(3, 2\)"):
        augment(d, torch.zeros(3, 2), s, kp, v, w, cfg)
    with pytest.raises(ValueError, match=r"image_width must have shape \(2,\)"):
        augment(d, c, s, kp, v, w[:1], cfg)
    with pytest.raises(ValueError, match=r"draws lacks \['flip_u'\]"):
        augment({k: d[k] for k in DRAW_KEYS[:-1]}, c, s, kp, v, w, cfg)
    with pytest.raises(ValueError, match=r"draws\['rot_u'\] must have shape \(2,\)"):
        augment({**d, "rot_u": torch.zeros(3)}, c, s, kp, v, w, cfg)
    with pytest.raises(TypeError, match="draws must be sample_augmentation"):
        augment(None, c, s, kp, v, w, cfg)
    with pytest.raises(ValueError, match="cfg names joint 5, but keypoints have K = 5 joints"):
        augment(_forced(2, 0.0), c, s, kp[:, :5], v[:, :5], w, AugmentConfig(IMAGE_HW, upper_body_ids=(0, 1)))


@pytest.mark.gpu
def test_gpu_augment_matches_cpu_without_host_sync(data):
    ours, _ = data
    draws = sample_augmentation(0, 1, torch.arange(len(ours)))
    batch = collate([ours[i] for i in range(len(ours))])
    cfg = AugmentConfig(IMAGE_HW)
    args = [batch[k] for k in ("center", "scale", "keypoints", "visible", "image_width")]
    cpu = augment(draws, *args, cfg)
    gd = {k: v.cuda() for k, v in draws.items()}
    ga = [a.cuda() for a in args]
    augment(gd, *ga, cfg)  # warm up
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = augment(gd, *ga, cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-9)


def test_flip_center_rounds_as_official():
    """c[0] = W - c[0] - 1 on a float32 value rounds twice (W - c, then - 1): across a power of two the result
    differs from one rounding of W - 1 - c. 1025 - 0.3 lies in [1024, 2048), its - 1 in [512, 1024)."""
    c0 = torch.tensor([[0.3, 50.0], [123.456, 7.0]])
    d = _forced(2, 0.0, half_u=1.0)
    d["flip_u"] = torch.zeros(2, dtype=torch.float64)
    widths = torch.tensor([1025, 640])
    c, *_ = augment(d, c0, torch.ones(2, 2), torch.zeros(2, 17, 2), torch.zeros(2, 17), widths, AugmentConfig(IMAGE_HW))
    for i in range(2):
        official = c0[i].numpy().copy()
        official[0] = int(widths[i]) - official[0] - 1  # JointsDataset.py:165
        assert float(c[i, 0]) == float(official[0])
    once = np.float32(1025 - 1 - np.float64(np.float32(0.3)))
    assert float(c[0, 0]) != float(once)  # the case does tell the two roundings apart
