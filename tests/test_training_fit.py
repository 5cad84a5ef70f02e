"""fit(): the run directory in the official format, a bitwise mid-epoch resume (issue 21, test 6), learning on the
dot images (test 7), a non-finite loss named by its step and the argument checks (test 9, library side)."""
import json
import os

import numpy as np
import pytest
import torch

from _train_support import coco_set, tiny_experiment

from hrnet_fast.training.fit import fit

FAST = dict(workers=0, no_progress=True, val_every=0, log_every=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """4 images, 6 persons: with batch 2, 3 steps an epoch."""
    return coco_set(tmp_path_factory, 4)


def _plain(obj, where="checkpoint"):
    """Every value is a tensor or a plain Python value (what torch.load(weights_only=True) and the official
    torch.load on torch >= 2.6 accept)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r}"
            _plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _plain(v, f"{where}[{i}]")
    else:
        assert obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor), \
            f"{where}: {type(obj).__name__}"


def _losses(records):
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


@pytest.mark.parametrize("workers", [0, 2])
def test_mid_epoch_resume_is_bitwise_equal(small, tmp_path, workers):
    ann, images, _ = small
    cfg = tiny_experiment()
    kw = dict(FAST, batch=2, epochs=2, workers=workers)  # 3 steps an epoch: stop at 2 (mid-epoch 0), end at 5 (in epoch 1)
    full = fit(cfg, ann, images, tmp_path / "full", max_steps=5, **kw)
    first = fit(cfg, ann, images, tmp_path / "cut", max_steps=2, **kw)
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)
    resumed = fit(cfg, ann, images, tmp_path / "cut", max_steps=5, resume="auto", **kw)

    assert [s for s, _ in _losses(first)] == [1, 2]
    assert _losses(resumed) == _losses(full) and len(_losses(full)) == 5  # the resumed run returns the whole log
    with open(tmp_path / "cut" / "log.jsonl") as fh:
        assert [json.loads(line)["step"] for line in fh] == [1, 2, 3, 4, 5]
    a = torch.load(tmp_path / "full" / "final_state.pth", weights_only=True)
    b = torch.load(tmp_path / "cut" / "final_state.pth", weights_only=True)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ca = torch.load(tmp_path / "full" / "checkpoint.pth", weights_only=True)
    cb = torch.load(tmp_path / "cut" / "checkpoint.pth", weights_only=True)
    assert (ca["epoch"], ca["step"]) == (cb["epoch"], cb["step"]) == (1, 5)
    for i, st in ca["optimizer"]["state"].items():
        assert all(torch.equal(st[k], cb["optimizer"]["state"][i][k]) for k in st)


def test_run_directory_has_the_official_format(small, tmp_path):
    """checkpoint.pth loads with weights_only=True and resumes the official way (DataParallel model,
    optimizer.load_state_dict, MultiStepLR(last_epoch=epoch), which needs initial_lr); final_state.pth loads
    strictly into the network, as the official test.py loads it."""
    ann, images, _ = small
    cfg = tiny_experiment()
    fit(cfg, ann, images, tmp_path, max_steps=3, batch=2, epochs=3, **FAST)
    ckpt = torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=True)
    _plain(ckpt)
    for key in ("epoch", "model", "state_dict", "best_state_dict", "perf", "optimizer", "scheduler", "scaler", "step"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 1 and ckpt["model"] == "pose_hrnet" and ckpt["scaler"] is None
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    assert {k[len("module."):] for k in ckpt["state_dict"]} == set(ckpt["best_state_dict"])
    assert ckpt["scheduler"] == {"base_lr": 1e-3, "milestones": [90, 110], "gamma": 0.1, "last_epoch": 1}
    assert all(g["initial_lr"] == 1e-3 for g in ckpt["optimizer"]["param_groups"])

    from hrnet_fast.models.pose_hrnet import pose_hrnet

    official = torch.nn.DataParallel(pose_hrnet(cfg))  # on the CPU: a pass-through wrapper with the module. prefix
    official.load_state_dict(ckpt["state_dict"])
    opt = torch.optim.Adam(official.parameters(), lr=1e-3)
    opt.load_state_dict(ckpt["optimizer"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [90, 110], 0.1, last_epoch=ckpt["epoch"])  # KeyError without initial_lr
    assert sched.last_epoch == 2  # the constructor's own step: the official resume's lr shift (see the README)
    final = torch.load(tmp_path / "final_state.pth", weights_only=True)
    pose_hrnet(cfg).load_state_dict(final, strict=True)
    assert all(torch.equal(final[k], ckpt["best_state_dict"][k]) for k in final)
    assert not os.path.exists(tmp_path / "model_best.pth")  # no validation set: no best model


@pytest.mark.slow
def test_learning_on_dot_images(tmp_path_factory, tmp_path):
    """Test 7: the tiny network, 16 dot images (24 persons), no augmentation, 120 steps of 8: the loss falls below
    half of the all-zero prediction's and the keypoints of the trained network land within 15 px (measured: loss
    0.0079 -> 0.0016 against 0.0082 for all-zero heatmaps, error 8.7 px, AP 0.78; 32 s on 2 quiet cores).
    Validation runs once at the end (AP, model_best.pth)."""
    from hrnet_fast.coco import gt_person_boxes, read_image
    from hrnet_fast.config import load_experiment
    from hrnet_fast.estimator import PoseEstimator
    from hrnet_fast.models.pose_hrnet import pose_hrnet
    from hrnet_fast.training.data import CocoKeypoints, collate
    from hrnet_fast.training.step import Recipe, batch_inputs

    ann, images, doc = coco_set(tmp_path_factory, 16)
    cfg = tiny_experiment()
    records = fit(cfg, ann, images, tmp_path, val_ann=ann, val_images=images, max_steps=120, batch=8, epochs=40,
                  val_every=40, augment=False, workers=0, log_every=3, no_progress=True)
    recipe = Recipe.from_experiment(load_experiment(cfg), augment=False)
    ds = CocoKeypoints(ann, images, image_size=recipe.image_size)
    _, targets, weights = batch_inputs(collate([ds[i] for i in range(len(ds))]), recipe, 0, 0, "cpu")
    zero_loss = 0.5 * float(((targets * weights[..., None]) ** 2).mean())
    train = [r for r in records if r["kind"] == "train"]
    assert train[0]["loss"] > 0.8 * zero_loss  # the official init predicts ~0
    assert train[-1]["loss"] <= 0.5 * zero_loss, (train[-1]["loss"], zero_loss)

    model = pose_hrnet(cfg)
    model.load_state_dict(torch.load(tmp_path / "final_state.pth", weights_only=True))
    est = PoseEstimator(model.eval(), device="cpu", dtype=torch.float32, flip_test=False, color="bgr")
    boxes = gt_person_boxes(doc)
    errors = []
    for im in doc["images"]:
        result = est(read_image(os.path.join(images, im["file_name"])), boxes[im["id"]]).numpy()
        truth = [np.reshape(a["keypoints"], (17, 3))[:, :2] for a in doc["annotations"] if a["image_id"] == im["id"]]
        errors += [np.linalg.norm(p[:, :2] - t, axis=1).mean() for p, t in zip(result.keypoints, truth)]
    assert len(errors) == 24 and np.mean(errors) <= 15.0, np.mean(errors)
    val = [r for r in records if r["kind"] == "val"]
    assert len(val) == 1 and val[0]["step"] == 120 and val[0]["AP"] > 0.5 and val[0]["best_AP"] == val[0]["AP"]
    assert os.path.exists(tmp_path / "model_best.pth")
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=True)["perf"] == val[0]["AP"]


def test_a_non_finite_loss_stops_training_naming_the_step(small, tmp_path, monkeypatch):
    from hrnet_fast.training import loss as loss_module

    real = loss_module.JointsMSELoss.forward
    calls = []

    def second_is_nan(self, output, target, weight):
        calls.append(1)
        value = real(self, output, target, weight)
        return value * float("nan") if len(calls) == 2 else value

    monkeypatch.setattr(loss_module.JointsMSELoss, "forward", second_is_nan)
    ann, images, _ = small
    with pytest.raises(FloatingPointError, match=r"not finite \(NaN or inf\) at step 2 \(epoch 0\)"):
        fit(tiny_experiment(), ann, images, tmp_path, max_steps=3, batch=2,
            **{**FAST, "log_every": 20})  # checked when the records are written: here at the epoch's end
    assert len(calls) == 3 and not os.path.exists(tmp_path / "checkpoint.pth")


def test_bad_arguments_are_refused_before_any_work(small, tmp_path):
    ann, images, _ = small
    cfg = tiny_experiment()
    with pytest.raises(TypeError, match="unknown override.*batch_size"):
        fit(cfg, ann, images, tmp_path, batch_size=4)
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        fit(cfg, ann, images, tmp_path, sync_bn=True, device="cpu")
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        fit(cfg, ann, images, tmp_path, amp="fp16", device="cpu")
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        fit(cfg, ann, images, tmp_path, dtype=torch.float16)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        fit(cfg, ann, images, tmp_path, batch=0)
    with pytest.raises(ValueError, match="val_ann and val_images together"):
        fit(cfg, ann, images, tmp_path, val_ann=ann)
    assert os.listdir(tmp_path) == []
    (tmp_path / "checkpoint.pth").write_bytes(b"")
    with pytest.raises(FileExistsError, match="resume='auto' continues that run"):
        fit(cfg, ann, images, tmp_path, max_steps=1, batch=2, **FAST)


def test_resume_errors_name_the_file(small, tmp_path):
    from hrnet_fast.training.run_dir import CheckpointError

    ann, images, _ = small
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        fit(tiny_experiment(), ann, images, tmp_path, resume=str(tmp_path / "none.pth"), **FAST)
    plain = tmp_path / "final_state.pth"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not a training checkpoint.*--pretrained"):
        fit(tiny_experiment(), ann, images, tmp_path / "run", resume=str(plain), **FAST)


def test_lr_schedule_is_the_intended_multisteplr():
    from hrnet_fast.training.step import lr_at

    lrs = [lr_at(e, 1e-3, [170, 200]) for e in (0, 169, 170, 199, 200, 209)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5], rel=1e-12)


def test_plain_values_and_sync_bn_reverted():
    from hrnet_fast.training.fit import _without_sync_bn
    from hrnet_fast.training.run_dir import plain_values

    assert plain_values({"a": np.float64(0.5), "b": [np.int64(3)], "t": (1, 2)}) == {"a": 0.5, "b": [3], "t": (1, 2)}
    assert type(plain_values(np.float64(0.5))) is float
    with pytest.raises(TypeError, match=r"checkpoint\['x'\]: ndarray"):
        plain_values({"x": np.zeros(3)})
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4))  # SyncBatchNorm builds on the CPU
    net[1].running_mean.fill_(0.25)
    plain = _without_sync_bn(net)
    assert type(plain[1]) is torch.nn.BatchNorm2d and float(plain[1].running_mean[0]) == 0.25
    assert type(net[1]) is torch.nn.SyncBatchNorm  # the training model is untouched


def test_udp_bf16_channels_last_run_with_validation(small, tmp_path):
    """The other paths of a step: UDP crops/targets/decoding, bf16 autocast (crops made in bf16), channels_last; an
    epoch of 3 steps, then validation."""
    ann, images, _ = small
    records = fit(tiny_experiment(), ann, images, tmp_path, val_ann=ann, val_images=images, max_steps=3, batch=2,
                  udp=True, amp="bf16", channels_last=True, **{**FAST, "val_every": 1})
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 3 and all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in train)
    assert [r["kind"] for r in records][-1] == "val" and 0.0 <= records[-1]["AP"] <= 1.0
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert ckpt["settings"]["udp"] is True and ckpt["settings"]["amp"] == "bf16"
    assert os.path.exists(tmp_path / "model_best.pth")


def test_checkpoint_every_writes_mid_epoch_checkpoints(small, tmp_path, monkeypatch):
    from hrnet_fast.training.run_dir import RunDir

    saved = []
    real = RunDir.save_checkpoint
    monkeypatch.setattr(RunDir, "save_checkpoint", lambda self, **k: saved.append((k["epoch"], k["step"])) or real(self, **k))
    ann, images, _ = small  # 6 persons, batch 1: 6 steps an epoch
    records = fit(tiny_experiment(), ann, images, tmp_path, max_steps=5, batch=1, epochs=1, checkpoint_every=2,
                  **{**FAST, "log_every": 5})
    assert saved == [(0, 2), (0, 4), (0, 5)]  # every 2 steps, then where max_steps stops
    assert [r["step"] for r in records] == [2, 4, 5]  # the losses are checked (records written) before each checkpoint


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_fit_on_cuda(small, tmp_path, amp):
    """The CUDA path: autocast with the fp16 scaler (its state checkpointed), channels_last, SyncBatchNorm (one
    process: plain BatchNorm statistics), pinned workers' batches, validation on the GPU."""
    ann, images, _ = small
    records = fit(tiny_experiment(), ann, images, tmp_path, val_ann=ann, val_images=images, max_steps=3, batch=2,
                  device="cuda", amp=amp, channels_last=True, sync_bn=True, **{**FAST, "workers": 2, "val_every": 1})
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 3 and all(np.isfinite(r["loss"]) for r in train) and records[-1]["kind"] == "val"
    ckpt = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert (ckpt["scaler"] is not None) == (amp == "fp16") and ckpt["step"] == 3
    from hrnet_fast.models.pose_hrnet import pose_hrnet

    pose_hrnet(tiny_experiment()).load_state_dict(torch.load(tmp_path / "final_state.pth", map_location="cpu"))
