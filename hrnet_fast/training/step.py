"""One training step of the official recipe, on the device: :class:`Recipe` (what an experiment asks of a step),
:func:`batch_inputs` (a collated batch of decoded images to crops, targets and weights), :func:`train_step`
(forward, loss, backward, optimizer step), the learning rate of an epoch (:func:`lr_at`) and the optimizer
(:func:`build_optimizer`). :func:`hrnet_fast.training.fit` runs these; ``benchmarks/bench_train.py`` times them.

    recipe = Recipe.from_experiment(load_experiment("w32_256x192"), amp="bf16", channels_last=True)
    for batch in loader:                       # DataLoader(CocoKeypoints(...), collate_fn=collate)
        loss = train_step(model, optimizer, batch, recipe, seed=0, epoch=epoch)   # a 0-dim tensor, no host sync

Per step (the official ``JointsDataset.__getitem__`` + ``function.train``, batched): the augmentation draws are a
function of (seed, epoch, sample index) (:func:`~hrnet_fast.training.augment.sample_augmentation`), the
augmentation geometry, the crops (``crop_boxes`` with rotation and flip), the Gaussian targets
(``heatmap_targets``) and everything after them run on the model's device; the DataLoader workers only decode.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["AMP_MODES", "COCO_JOINTS_WEIGHT", "Recipe", "batch_inputs", "build_optimizer", "lr_at", "train_step"]

#: --amp: the autocast dtype of each mode (None: off)
AMP_MODES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: the official ``joints_weight`` (coco.py:97-103), used with LOSS.USE_DIFFERENT_JOINTS_WEIGHT
COCO_JOINTS_WEIGHT = (1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What one step does with a batch, read from an experiment (:meth:`from_experiment`).

    ``image_size``/``heatmap_size`` are (H, W) (the official config writes [W, H]); ``augment`` an
    :class:`~hrnet_fast.training.augment.AugmentConfig`; ``color`` the ``crop_boxes`` color of the decoded BGR
    images ("bgr": swapped to RGB, the official ``COLOR_RGB: true``; "rgb": fed as they are, ``COLOR_RGB:
    false``); ``udp`` the UDP crops and targets instead of the official ones; ``joint_weights`` (K,) or None;
    ``amp`` "off", "bf16" or "fp16" (autocast of the forward); ``channels_last`` crops in channels_last."""

    image_size: Tuple[int, int]
    heatmap_size: Tuple[int, int]
    sigma: float
    augment: Any
    color: str = "bgr"
    udp: bool = False
    use_target_weight: bool = True
    joint_weights: Optional[Tuple[float, ...]] = None
    amp: str = "off"
    channels_last: bool = False

    def __post_init__(self):
        if self.amp not in AMP_MODES:
            raise ValueError(f"Recipe: amp must be one of {list(AMP_MODES)}, got {self.amp!r}")
        if self.color not in ("bgr", "rgb"):
            raise ValueError(f"Recipe: color must be 'bgr' or 'rgb', got {self.color!r}")

    @classmethod
    def from_experiment(cls, exp: Mapping[str, Any], augment: bool = True, amp: str = "off", channels_last: bool = False,
                        udp: bool = False) -> "Recipe":
        """The recipe of an experiment (:func:`hrnet_fast.config.load_experiment`). ``augment=False``: no half
        body, scale, rotation or flip (the identity crop of each person box)."""
        from .augment import AugmentConfig

        model, loss = exp["MODEL"], exp["LOSS"]
        aug = AugmentConfig.from_experiment(exp, enabled=bool(augment), udp=bool(udp))
        k = int(model["NUM_JOINTS"])
        weights = None
        if loss.get("USE_DIFFERENT_JOINTS_WEIGHT"):
            if k != len(COCO_JOINTS_WEIGHT):
                raise ValueError(f"Recipe: LOSS.USE_DIFFERENT_JOINTS_WEIGHT has the official weights of the 17 COCO joints "
                                 f"only, but MODEL.NUM_JOINTS is {k}")
            weights = COCO_JOINTS_WEIGHT
        return cls(image_size=(int(model["IMAGE_SIZE"][1]), int(model["IMAGE_SIZE"][0])),
                   heatmap_size=(int(model["HEATMAP_SIZE"][1]), int(model["HEATMAP_SIZE"][0])),
                   sigma=float(model["SIGMA"]), augment=aug, color="bgr" if exp["DATASET"]["COLOR_RGB"] else "rgb",
                   udp=bool(udp), use_target_weight=bool(loss["USE_TARGET_WEIGHT"]), joint_weights=weights, amp=amp,
                   channels_last=bool(channels_last))


def lr_at(epoch: int, lr: float, steps: Sequence[int], factor: float = 0.1) -> float:
    """``lr * factor ** #{m in steps: m <= epoch}`` (0-based ``epoch``): what the official ``MultiStepLR(steps,
    factor)`` is meant to give. The official ``train.py`` steps it at each epoch's start, which on PyTorch >= 1.1
    decays one epoch early (at 169 and 199 for [170, 200]) and again differently after a resume."""
    return float(lr) * float(factor) ** sum(1 for m in steps if int(m) <= epoch)


def build_optimizer(model: nn.Module, train: Mapping[str, Any], lr: Optional[float] = None) -> torch.optim.Optimizer:
    """The official ``get_optimizer`` (``lib/utils/utils.py:60-76``): Adam(lr) without weight decay, or SGD with
    TRAIN.MOMENTUM, WD and NESTEROV. Every group carries ``initial_lr``, which the official resume
    (``MultiStepLR(last_epoch=epoch)``) needs."""
    lr = float(train["LR"] if lr is None else lr)
    name = str(train["OPTIMIZER"]).lower()
    if name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(train["MOMENTUM"]), weight_decay=float(train["WD"]),
                              nesterov=bool(train["NESTEROV"]))
    else:
        raise ValueError(f"TRAIN.OPTIMIZER must be 'adam' or 'sgd' (the official choices), got {train['OPTIMIZER']!r}")
    for group in opt.param_groups:
        group["initial_lr"] = lr
    return opt


def batch_inputs(batch: Mapping[str, Any], recipe: Recipe, seed: int, epoch: int, device, dtype: torch.dtype = torch.float32):
    """A collated batch (:func:`hrnet_fast.training.data.collate`) to the inputs of one step, on ``device``.

    Returns ``(crops (M, 3, H, W) dtype (the autocast dtype under AMP), targets (M, K, Hh, Wh) float32,
    weights (M, K, 1) float32)``. The draws of sample ``i`` are ``sample_augmentation(seed, epoch, i)``."""
    from ..ops.crop_boxes import crop_boxes
    from ..ops.heatmap_targets import heatmap_targets
    from .augment import augment, sample_augmentation

    device = torch.device(device)
    images = [im.to(device, non_blocking=True) for im in batch["images"]]
    index = batch["index"]
    draws = None  # augmentation off: the crop of each box as it is
    if recipe.augment.enabled:
        draws = {k: v.to(device, non_blocking=True) for k, v in sample_augmentation(seed, epoch, index).items()}
    width = torch.tensor([im.shape[1] for im in batch["images"]], dtype=torch.float64).to(device, non_blocking=True)
    center, scale, rotation, flip, keypoints, visible = augment(
        draws, batch["center"].to(device, non_blocking=True), batch["scale"].to(device, non_blocking=True),
        batch["keypoints"].to(device, non_blocking=True), batch["visible"].to(device, non_blocking=True), width, recipe.augment)
    crop_dtype = AMP_MODES[recipe.amp] or torch.float32
    crops = crop_boxes(images, torch.arange(len(images), device=device), center, scale, recipe.image_size,
                       rotation=rotation, flip=flip, color=recipe.color, dtype=crop_dtype, channels_last=recipe.channels_last,
                       udp=recipe.udp)
    if dtype == torch.float64:  # a float64 model on the CPU (equivalence tests): the crops are float32 crops widened
        crops = crops.to(torch.float64)
    joint_weights = None if recipe.joint_weights is None else torch.tensor(recipe.joint_weights, device=device)
    targets, weights = heatmap_targets(keypoints, visible, recipe.image_size, recipe.heatmap_size, sigma=recipe.sigma,
                                       method="udp" if recipe.udp else "msra", joint_weights=joint_weights)
    return crops, targets, weights


def forward_loss(model: nn.Module, crops: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, recipe: Recipe,
                 criterion: Optional[nn.Module] = None) -> torch.Tensor:
    """The loss of ``model`` on one batch's inputs (the forward under the recipe's autocast), with the graph."""
    if criterion is None:
        from .loss import JointsMSELoss

        criterion = JointsMSELoss(recipe.use_target_weight)
    amp = AMP_MODES[recipe.amp]
    with torch.autocast(crops.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        output = model(crops)
    return criterion(output, targets, weights)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Mapping[str, Any], recipe: Recipe, *,
               seed: int = 0, epoch: int = 0, criterion: Optional[nn.Module] = None,
               scaler: Optional["torch.amp.GradScaler"] = None) -> torch.Tensor:
    """One optimisation step of ``model`` (in train mode, on its own device and dtype) on a collated batch: the
    inputs (:func:`batch_inputs`), the forward and the loss (``criterion``, default the official
    ``JointsMSELoss(recipe.use_target_weight)``), the backward (through ``scaler`` for fp16) and
    ``optimizer.step()``. Returns the loss, detached, on the device (no host synchronisation). A batch without
    a sample (every image unreadable) is a ``ValueError``: :func:`~hrnet_fast.training.fit` skips those."""
    if len(batch["images"]) == 0:
        raise ValueError(f"train_step: the batch has no sample ({batch.get('skipped', 0)} unreadable image(s) dropped)")
    p = next(model.parameters())
    crops, targets, weights = batch_inputs(batch, recipe, seed, epoch, p.device, p.dtype)
    loss = forward_loss(model, crops, targets, weights, recipe, criterion)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def amp_scaler(amp: str, device: torch.device) -> Optional["torch.amp.GradScaler"]:
    """A GradScaler for fp16 (None otherwise): fp16 gradients underflow without one."""
    if amp != "fp16":
        return None
    try:
        return torch.amp.GradScaler(device.type)
    except (AttributeError, TypeError):  # torch < 2.3: the CUDA one
        return torch.cuda.amp.GradScaler()


def lr_state(lr: float, steps: Sequence[int], factor: float, epoch: int) -> Dict[str, Any]:
    """The checkpoint's ``scheduler`` entry: plain Python values (MultiStepLR's own state holds a Counter)."""
    return {"base_lr": float(lr), "milestones": [int(m) for m in steps], "gamma": float(factor), "last_epoch": int(epoch)}
