"""Issue 21, test 5: fit() under torchrun (DistributedDataParallel, gloo, 2 processes, float64, 3 steps) equals one
process that runs each rank's half of every step separately (BatchNorm on each half), averages the two losses,
and keeps rank 0's BatchNorm running statistics (DDP broadcasts rank 0's buffers before every forward)."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from _train_support import coco_set, tiny_experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reference(exp, ann, images, steps, batch, world=2, seed=0):
    """Per step: each rank's batch (DistributedSampler(rank=r, shuffle=True, seed).set_epoch(epoch)), forwarded
    alone; loss = mean of the rank losses; BatchNorm buffers: rank 0's update."""
    from torch.utils.data import DistributedSampler

    from hrnet_fast.config import load_experiment
    from hrnet_fast.training.data import CocoKeypoints, collate
    from hrnet_fast.training.fit import build_model
    from hrnet_fast.training.step import Recipe, batch_inputs, build_optimizer, forward_loss, lr_at

    exp = load_experiment(exp)
    recipe = Recipe.from_experiment(exp)
    ds = CocoKeypoints(ann, images, image_size=recipe.image_size)
    samplers = [DistributedSampler(ds, num_replicas=world, rank=r, shuffle=True, seed=seed) for r in range(world)]
    per_epoch = math.ceil(len(samplers[0]) / batch)
    model = build_model(exp, seed).double().train()
    opt = build_optimizer(model, exp["TRAIN"])
    buffers = [b for _, b in model.named_buffers()]
    losses = []
    for step in range(steps):
        epoch, i = divmod(step, per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch, exp["TRAIN"]["LR"], exp["TRAIN"]["LR_STEP"])
        halves, indices = [], []
        for r, sampler in enumerate(samplers):
            sampler.set_epoch(epoch)
            indices.append(list(sampler)[i * batch:(i + 1) * batch])
            crops, targets, weights = batch_inputs(collate([ds[j] for j in indices[r]]), recipe, seed, epoch, "cpu",
                                                   torch.float64)
            halves.append(forward_loss(model, crops, targets, weights, recipe))
            if r == 0:
                rank0 = [b.clone() for b in buffers]
        loss = sum(halves) / world
        opt.zero_grad()
        loss.backward()  # (the backward reads the buffers' versions: they are put back after it)
        opt.step()
        with torch.no_grad():
            for b, v in zip(buffers, rank0):
                b.copy_(v)
        losses.append(float(loss.detach()))
        if step == 0:  # the control: the initial model on both halves at once (BatchNorm over the combined batch)
            both = batch_inputs(collate([ds[j] for idx in indices for j in idx]), recipe, seed, 0, "cpu", torch.float64)
            combined = float(forward_loss(build_model(exp, seed).double().train(), *both, recipe).detach())
    return model.state_dict(), losses, per_epoch, combined


@pytest.mark.slow
def test_ddp_equals_per_rank_halves(tmp_path_factory, tmp_path):
    ann, images, _ = coco_set(tmp_path_factory, 4)  # 6 persons: 3 a rank, batches of 2 then 1, so 3 steps cross an epoch
    exp = tiny_experiment()
    exp_path = tmp_path / "exp.json"
    exp_path.write_text(json.dumps(exp))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          os.path.join(ROOT, "tests", "_ddp_fit.py"), ann, images, str(out), str(exp_path), "3", "2"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    records = json.loads((out / "records.json").read_text())
    ddp = torch.load(out / "final_state.pth", weights_only=True)

    torch.set_flush_denormal(True)  # as fit() runs on the CPU
    try:
        ref, losses, per_epoch, combined = _reference(exp, ann, images, steps=3, batch=2)
    finally:
        torch.set_flush_denormal(False)
    assert per_epoch == 2
    assert [r["step"] for r in records] == [1, 2, 3] and [r["epoch"] for r in records] == [0, 0, 1]
    assert [r["loss"] for r in records] == pytest.approx(losses, rel=1e-12, abs=0)
    assert abs(combined - losses[0]) > 1e-6 * losses[0]  # a combined batch would differ: the halves matter
    assert list(ddp) == list(ref)
    worst = max(float((ddp[k].double() - ref[k].double()).abs().max()) for k in ref)
    assert worst <= 1e-12, worst  # measured 0: DDP's (g0/2 + g1/2) is the reference's gradient bit for bit
    assert all(torch.equal(ddp[k], ref[k]) for k in ref if k.endswith("num_batches_tracked"))
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["settings"]["world"] == 2 and ckpt["step"] == 3
