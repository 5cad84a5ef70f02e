"""Training with the official recipe: :func:`fit` (``hrnet-fast train`` runs it; ``torchrun`` runs it on N GPUs).

    from hrnet_fast.training import fit
    records = fit("w32_256x192", "annotations/person_keypoints_train2017.json", "images/train2017", "runs/w32",
                  val_ann="annotations/person_keypoints_val2017.json", val_images="images/val2017",
                  amp="bf16", channels_last=True, pretrained="hrnet_w32-36af842e.pth")

The data order is ``DistributedSampler(shuffle=True, seed=seed)`` with ``set_epoch(epoch)``, one process or N;
the DataLoader workers only decode (:class:`~hrnet_fast.training.data.CocoKeypoints`); the augmentation, the
crops, the targets, the forward and the backward run on the device (:func:`~hrnet_fast.training.step.train_step`).
Everything a step depends on is a function of (seed, epoch, sample index) and the checkpointed state, so a run
resumed from any step (``resume="auto"``) continues bit for bit as the uninterrupted run (on the CPU; cuDNN's
nondeterministic kernels aside). See :mod:`hrnet_fast.training.run_dir` for the files it writes.
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from .._dist import Dist
from .run_dir import BEST, FINAL, RunDir, read_checkpoint, unprefixed
from .step import AMP_MODES, Recipe, amp_scaler, build_optimizer, lr_at, lr_state, train_step

__all__ = ["DEFAULT_OPTIONS", "fit", "build_model", "default_workers"]

#: fit()'s overrides (the ``hrnet-fast train`` flags, with underscores) and their defaults; None: the experiment's
DEFAULT_OPTIONS: Dict[str, Any] = {
    "epochs": None,  # TRAIN.END_EPOCH
    "batch": None,  # per process; TRAIN.BATCH_SIZE_PER_GPU
    "lr": None,  # TRAIN.LR
    "lr_steps": None,  # TRAIN.LR_STEP (0-based epochs at which the lr is multiplied by TRAIN.LR_FACTOR)
    "workers": None,  # default_workers()
    "amp": "off",
    "channels_last": False,
    "sync_bn": False,
    "val_every": 1,  # epochs between validations (0: never)
    "pretrained": None,  # ImageNet weights for MODEL.EXTRA.PRETRAINED_LAYERS
    "resume": None,  # "auto" or a checkpoint path
    "seed": 0,
    "device": "auto",
    "no_progress": False,
    # library-only knobs
    "augment": True,  # False: no half body, scale, rotation or flip
    "udp": False,  # UDP crops, targets and decoding (mmpose) instead of the official ones
    "log_every": 20,  # steps between training records
    "checkpoint_every": None,  # steps between mid-epoch checkpoints (None: at epoch ends and at max_steps)
    "val_batch": 32,  # persons per validation forward
}


def default_workers(world: int = 1) -> int:
    """DataLoader workers per process: this machine's CPUs shared by the processes, at most 8 (decoding a
    640x480 JPEG takes ~1.3 ms: 8 workers feed ~5000 images/s)."""
    return max(1, min(8, (os.cpu_count() or 2) // max(1, world)))


def _options(overrides: Dict[str, Any], exp: Dict[str, Any], world: int) -> Dict[str, Any]:
    unknown = sorted(set(overrides) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"fit() got unknown override(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
    o = {**DEFAULT_OPTIONS, **{k: v for k, v in overrides.items() if v is not None or k == "resume"}}
    train = exp["TRAIN"]
    o["epochs"] = int(train["END_EPOCH"] if o["epochs"] is None else o["epochs"])
    o["batch"] = int(train["BATCH_SIZE_PER_GPU"] if o["batch"] is None else o["batch"])
    o["lr"] = float(train["LR"] if o["lr"] is None else o["lr"])
    o["lr_steps"] = [int(m) for m in (train["LR_STEP"] if o["lr_steps"] is None else o["lr_steps"])]
    o["workers"] = default_workers(world) if o["workers"] is None else int(o["workers"])
    for name in ("epochs", "batch", "log_every", "val_batch"):
        if isinstance(o[name], bool) or o[name] < 1:
            raise ValueError(f"fit: {name} must be a positive integer, got {o[name]!r}")
    if o["checkpoint_every"] is not None and (isinstance(o["checkpoint_every"], bool) or o["checkpoint_every"] < 1):
        raise ValueError(f"fit: checkpoint_every must be a positive integer or None, got {o['checkpoint_every']!r}")
    if o["workers"] < 0 or o["val_every"] < 0:
        raise ValueError(f"fit: workers and val_every must be >= 0, got {o['workers']} and {o['val_every']}")
    if not (o["lr"] > 0 and math.isfinite(o["lr"])):
        raise ValueError(f"fit: lr must be a positive number, got {o['lr']!r}")
    if o["amp"] not in AMP_MODES:
        raise ValueError(f"fit: amp must be one of {list(AMP_MODES)}, got {o['amp']!r}")
    return o


def build_model(exp: Dict[str, Any], seed: int, pretrained: Optional[str] = None) -> nn.Module:
    """The network of ``exp`` with the official init drawn from ``torch.manual_seed(seed)`` (the caller's global
    RNG is left as it was), then ``pretrained`` loaded for MODEL.EXTRA.PRETRAINED_LAYERS (strict=False)."""
    from ..models.init import load_pretrained, official_init
    from ..models.pose_hrnet import pose_hrnet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = official_init(pose_hrnet(exp["MODEL"]))
    if pretrained:
        load_pretrained(model, pretrained, layers=tuple(exp["MODEL"]["EXTRA"].get("PRETRAINED_LAYERS", ["*"])))
    return model


def _without_sync_bn(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every SyncBatchNorm a BatchNorm2d again (validation runs in one process)."""
    module = copy.deepcopy(module)

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.SyncBatchNorm):
            bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            bn.load_state_dict(m.state_dict())
            return bn.to(m.weight.device if m.affine else m.running_mean.device)
        for name, child in m.named_children():
            setattr(m, name, convert(child))
        return m

    return convert(module)


def validate(model: nn.Module, exp: Dict[str, Any], val_ann: str, val_images: str, device, dist: Dist,
             udp: bool = False, max_batch: int = 32) -> Optional[Dict[str, float]]:
    """The official validation (``function.py:97-237``) of ``model`` with the ground-truth person boxes: flip test
    per TEST.FLIP_TEST, OKS-NMS 0.9, pycocotools AP. Each rank runs its share of the images; rank 0 returns the
    stats (the others None). ``hrnet_fast.coco.gt_person_boxes`` drops the zero-size boxes the official
    cleaning keeps (see the README)."""
    from ..coco import evaluate, gt_person_boxes, read_image, read_json, to_coco
    from ..estimator import PoseEstimator

    ann = read_json(val_ann, "COCO annotation file")
    boxes = gt_person_boxes(ann)
    est = PoseEstimator(_without_sync_bn(model), device=device, dtype=torch.float32, oks_nms=0.9,
                        flip_test=bool(exp["TEST"]["FLIP_TEST"]), decode="udp" if udp else "quarter",
                        color="bgr" if exp["DATASET"]["COLOR_RGB"] else "rgb", max_batch=max_batch)
    images = [im for im in ann.get("images", []) if im["id"] in boxes]
    rows: List[Dict[str, Any]] = []
    for im in images[dist.rank::dist.world]:
        path = os.path.join(val_images, im["file_name"])
        image = read_image(path)
        if image is None:
            warnings.warn(f"validation: cannot read {path}: its persons are left out", stacklevel=2)
            continue
        rows.extend(to_coco(im["id"], est(image, boxes[im["id"]]).numpy()))
    rows = dist.gather(rows)
    if rows is None:
        return None
    if not rows:
        return {"AP": 0.0}
    return evaluate(ann, rows, verbose=False)


class _Meter:
    """Per-interval sums kept on the device (no host synchronisation per step), read at each log record."""

    def __init__(self, device):
        self.device = device
        self.reset()
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.steps = self.batches = self.images = self.skipped = 0
        self.wait = 0.0
        self.start = time.perf_counter()

    def add(self, loss: Optional[torch.Tensor], step: int, images: int, skipped: int, wait: float) -> None:
        self.batches += 1  # the same count on every rank: flush() is collective
        self.images += images
        self.skipped += skipped
        self.wait += wait
        if loss is None:  # a batch of unreadable images only
            return
        bad = ~torch.isfinite(loss)
        self.first_bad = torch.where(bad & (self.first_bad < 0), torch.full_like(self.first_bad, step), self.first_bad)
        self.loss += torch.where(bad, torch.zeros_like(loss), loss).to(torch.float64)
        self.steps += 1

    def read(self, dist: Dist):
        """``(mean loss over ranks, images of all ranks, skipped, first step (1-based) of a non-finite loss or -1)``."""
        stats = torch.stack([self.loss, torch.tensor(float(self.steps), dtype=torch.float64, device=self.device),
                             torch.tensor(float(self.images), dtype=torch.float64, device=self.device),
                             torch.tensor(float(self.skipped), dtype=torch.float64, device=self.device)])
        bad = torch.where(self.first_bad < 0, torch.full_like(self.first_bad, 2 ** 62), self.first_bad).clone()
        if dist.world > 1:
            import torch.distributed as tdist

            tdist.all_reduce(stats)
            tdist.all_reduce(bad, op=tdist.ReduceOp.MIN)
        loss, steps, images, skipped = stats.tolist()
        bad_step = int(bad.item())
        return loss / max(steps, 1.0), int(images), int(skipped), (-1 if bad_step >= 2 ** 62 else bad_step)


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    import sys

    return tqdm(total=total, initial=initial, unit="step", desc="train", file=sys.stderr, dynamic_ncols=True)


def fit(config, train_ann, train_images, out_dir, val_ann=None, val_images=None, dtype=None, max_steps=None,
        **overrides) -> List[Dict[str, Any]]:
    """Train ``config`` (a name, an official experiment YAML or a dict: :func:`hrnet_fast.config.load_experiment`)
    on a COCO keypoint annotation file and its image folder, writing the run directory ``out_dir``.

    Args:
        val_ann, val_images: the validation set (every ``val_every`` epochs: AP, ``model_best.pth``); None: none.
        dtype: the weights' dtype, torch.float32 (default) or torch.float64 (on the CPU, for equivalence
            checks); mixed precision is ``amp="bf16"|"fp16"``.
        max_steps: stop after this many optimizer steps in all (counted from the start of the run, across
            resumes), writing ``checkpoint.pth`` there.
        overrides: the ``hrnet-fast train`` flags (:data:`DEFAULT_OPTIONS`): ``epochs``, ``batch`` (per process),
            ``lr``, ``lr_steps``, ``workers``, ``amp``, ``channels_last``, ``sync_bn`` (CUDA only), ``val_every``,
            ``pretrained``, ``resume`` ("auto" or a path), ``seed``, ``device``, ``no_progress``; and ``augment``,
            ``udp``, ``log_every``, ``checkpoint_every``, ``val_batch``.

    Under ``torchrun`` every process calls it (DistributedDataParallel; gloo on the CPU, nccl on CUDA); rank 0
    writes the files and shows the progress bar. Returns the log records (on every rank; the losses are
    averaged over the ranks). A non-finite loss raises ``FloatingPointError`` naming the step.
    """
    from ..config import load_experiment

    exp = load_experiment(config)
    dist = Dist.from_env()
    opts = _options(overrides, exp, dist.world)
    device = dist.device(opts["device"])
    dtype = torch.float32 if dtype is None else dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"fit: dtype must be torch.float32 or torch.float64 (mixed precision: amp='bf16' or 'fp16'), got {dtype}")
    if opts["sync_bn"] and device.type != "cuda":
        raise ValueError(f"fit: sync_bn needs CUDA devices (torch's SyncBatchNorm has no CPU kernels); the device is {device}")
    if opts["amp"] == "fp16" and device.type != "cuda":
        raise ValueError("fit: amp='fp16' needs a CUDA device (on the CPU use amp='bf16')")
    if max_steps is not None and (isinstance(max_steps, bool) or int(max_steps) < 1):
        raise ValueError(f"fit: max_steps must be a positive integer or None, got {max_steps!r}")
    if (val_ann is None) != (val_images is None):
        raise ValueError("fit: give val_ann and val_images together (or neither)")
    # the official init (N(0, 0.001) weights) makes denormal activations, gradients and Adam moments: the CPU's
    # denormal arithmetic made a tiny-model step ~10x slower (0.2 s -> 2 s); flushed to zero, as GPUs do
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    joined = False
    if dist.world > 1:
        import torch.distributed as tdist

        if not tdist.is_initialized():
            dist.init(device)
            joined = True
    try:
        return _fit(exp, opts, dist, device, dtype, max_steps, train_ann, train_images, val_ann, val_images, RunDir(out_dir))
    finally:
        if joined:
            dist.close()
        if flush:
            torch.set_flush_denormal(False)


def _fit(exp, o, dist: Dist, device, dtype, max_steps, train_ann, train_images, val_ann, val_images, run: RunDir):
    from torch.utils.data import DataLoader, DistributedSampler

    from .data import CocoKeypoints, collate

    resume = run.resume_path(o["resume"])  # before any work: a bad path, or a run that would be overwritten
    if resume is None and o["resume"] is None and os.path.exists(run.file("checkpoint.pth")):
        raise FileExistsError(f"fit: {run.file('checkpoint.pth')} exists: resume='auto' continues that run; choose "
                              f"another out_dir to start a new one")
    recipe = Recipe.from_experiment(exp, augment=o["augment"], amp=o["amp"], channels_last=o["channels_last"], udp=o["udp"])
    dataset = CocoKeypoints(train_ann, train_images, num_joints=int(exp["MODEL"]["NUM_JOINTS"]), image_size=recipe.image_size)
    sampler = DistributedSampler(dataset, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=o["seed"])
    per_epoch = math.ceil(len(sampler) / o["batch"])
    total = o["epochs"] * per_epoch
    stop = total if max_steps is None else min(total, int(max_steps))
    rank0 = dist.rank == 0
    if rank0:
        run.create()
    settings = {"batch": o["batch"], "world": dist.world, "seed": o["seed"], "samples": len(dataset), "epochs": o["epochs"],
                "lr": o["lr"], "lr_steps": o["lr_steps"], "amp": o["amp"], "augment": o["augment"], "udp": o["udp"]}

    model = build_model(exp, o["seed"], o["pretrained"])
    model = model.to(device=device, dtype=dtype)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if o["sync_bn"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, exp["TRAIN"], o["lr"])
    scaler = amp_scaler(o["amp"], device)
    factor = float(exp["TRAIN"]["LR_FACTOR"])
    step, best_perf, perf = 0, 0.0, 0.0
    records: List[Dict[str, Any]] = []
    if resume is not None:
        ckpt = read_checkpoint(resume)
        model.load_state_dict(unprefixed(ckpt["state_dict"]))
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        step = int(ckpt["step"]) if "step" in ckpt else int(ckpt["epoch"]) * per_epoch  # the official: epoch ends
        perf = float(ckpt.get("perf", 0.0))
        best_perf = float(ckpt.get("best_perf", perf))
        old = ckpt.get("settings") or {}
        changed = [k for k in ("batch", "world", "seed", "samples") if k in old and old[k] != settings[k]]
        if changed and rank0:
            warnings.warn(f"resume: {', '.join(f'{k} {old[k]} -> {settings[k]}' for k in changed)} since {resume}: the "
                          f"run goes on, but not as the interrupted run would have", stacklevel=3)
        if rank0:
            records = run.truncate_log(step)
    elif rank0:
        run.truncate_log(-1)  # a fresh run: the log starts empty
    net = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    from .loss import JointsMSELoss

    criterion = JointsMSELoss(recipe.use_target_weight)
    meter = _Meter(device)
    bar = _progress(rank0 and not o["no_progress"], stop, step)
    started = time.perf_counter()

    def checkpoint(epoch_done: int) -> None:
        if rank0:
            run.save_checkpoint(epoch=epoch_done, step=step, model_name=exp["MODEL"]["NAME"], state_dict=model.state_dict(),
                                perf=perf, best_perf=best_perf, optimizer=optimizer.state_dict(),
                                scheduler=lr_state(o["lr"], o["lr_steps"], factor, step // per_epoch),
                                scaler=None if scaler is None else scaler.state_dict(), settings=settings,
                                experiment=exp)

    def log(record: Dict[str, Any]) -> None:
        records.append(record)
        if rank0:
            run.log(record)

    def flush(epoch: int, lr: float) -> None:
        loss, images, skipped, bad = meter.read(dist)
        if bad >= 0:
            raise FloatingPointError(f"fit: the training loss is not finite (NaN or inf) at step {bad} (epoch "
                                     f"{(bad - 1) // per_epoch}): training stopped; {run.file('checkpoint.pth')} holds the last "
                                     f"checkpoint before it, if any")
        dt = max(time.perf_counter() - meter.start, 1e-9)
        log({"kind": "train", "epoch": epoch, "step": step, "loss": loss, "lr": lr, "img_per_s": images / dt,
             "data_wait": meter.wait / dt, "skipped": skipped, "time": time.perf_counter() - started})
        if bar is not None:
            bar.set_postfix_str(f"loss {loss:.3g} lr {lr:.3g} {images / dt:.1f} img/s data-wait {meter.wait / dt:.0%}",
                                refresh=False)
        meter.reset()

    try:
        for epoch in range(step // per_epoch, o["epochs"]):
            if step >= stop:
                break
            lr = lr_at(epoch, o["lr"], o["lr_steps"], factor)
            for group in optimizer.param_groups:
                group["lr"] = lr
            sampler.set_epoch(epoch)
            order = list(sampler)[(step - epoch * per_epoch) * o["batch"]:]  # a resume mid-epoch skips what was done
            loader = DataLoader(dataset, batch_size=o["batch"], sampler=order, num_workers=o["workers"], collate_fn=collate,
                                pin_memory=device.type == "cuda")
            net.train()
            meter.start = time.perf_counter()
            it = iter(loader)
            while step < stop:
                t0 = time.perf_counter()
                batch = next(it, None)
                wait = time.perf_counter() - t0
                if batch is None:
                    break
                if len(batch["images"]) == 0:
                    if dist.world > 1:
                        raise RuntimeError(f"fit: every image of the batch of step {step} is unreadable; under torchrun a "
                                           f"rank cannot skip a step alone")
                    loss = None  # nothing to learn from: no optimizer step
                else:
                    loss = train_step(net, optimizer, batch, recipe, seed=o["seed"], epoch=epoch, criterion=criterion,
                                      scaler=scaler)
                meter.add(loss, step + 1, len(batch["images"]), batch["skipped"], wait)  # summed over ranks when read
                step += 1
                if bar is not None:
                    bar.update(1)
                if step % o["log_every"] == 0:
                    flush(epoch, lr)
                if o["checkpoint_every"] and step % o["checkpoint_every"] == 0 and step % per_epoch:
                    if meter.batches:
                        flush(epoch, lr)  # (raises on a non-finite loss: no checkpoint of NaN weights)
                    checkpoint(step // per_epoch)
            if meter.batches:
                flush(epoch, lr)
            if step % per_epoch == 0 and step > 0:  # the epoch is complete
                if val_ann is not None and o["val_every"] and (epoch + 1) % o["val_every"] == 0:
                    stats = validate(model, exp, val_ann, val_images, device, dist, udp=o["udp"], max_batch=o["val_batch"])
                    if dist.world > 1:  # every rank logs (and returns) the same stats
                        import torch.distributed as tdist

                        shared = [stats]
                        tdist.broadcast_object_list(shared, src=0)
                        stats = shared[0]
                    perf = float(stats["AP"])
                    if perf >= best_perf:  # official train.py:196-201
                        best_perf = perf
                        if rank0:
                            run.save_state_dict(BEST, model.state_dict())
                    log({"kind": "val", "epoch": epoch, "step": step, **stats, "best_AP": best_perf})
                checkpoint(epoch + 1)
            elif step >= stop:
                checkpoint(step // per_epoch)
    finally:
        if bar is not None:
            bar.close()
    if rank0:
        run.save_state_dict(FINAL, model.state_dict())
    return records
