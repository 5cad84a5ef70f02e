"""Model initialisation: the official training init and pretrained load (:func:`official_init`,
:func:`load_pretrained`), and random weights with realistic BatchNorm statistics for benchmarks and
equivalence checks (:func:`realistic_random_init`)."""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..checkpoint import CheckpointMismatchError, _read, _unloadable, normalize_state_dict

__all__ = ["PretrainedLoad", "load_pretrained", "official_init", "realistic_random_init"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def realistic_random_init(model: nn.Module, image_hw=(256, 192), seed: int = 0, batches: int = 2, batch_size: int = 2) -> nn.Module:
    """Randomise ``model`` in place so that eval-mode activations look like a trained network's.

    Convolutions keep PyTorch's default init; BatchNorm affine parameters are drawn around (1, 0);
    running statistics are then *measured*: a few train-mode forwards on random images with a
    cumulative average (``momentum=None``), so every BN normalises what it actually sees and the
    eval-mode activations neither vanish nor explode (with the official ``running_var = 1`` they do).
    Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        c = bn.num_features
        bn.weight.copy_((torch.rand(c, generator=gen) * 0.5 + 0.75).to(device, dtype))
        bn.bias.copy_((torch.randn(c, generator=gen) * 0.1).to(device, dtype))
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for _ in range(batches):
        x = torch.randn(batch_size, 3, *image_hw, generator=gen).to(device, dtype)
        model(x)
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


@torch.no_grad()
def official_init(model: nn.Module, generator: Optional[torch.Generator] = None) -> nn.Module:
    """The official training init (``pose_hrnet.py:462-479``, ``init_weights`` before the pretrained load), in
    place: every ``Conv2d`` and ``ConvTranspose2d`` weight ~ N(0, 0.001) and bias 0; every ``BatchNorm2d``
    weight 1 and bias 0 (running statistics untouched: fresh ones are 0/1).

    Modules are visited in ``model.modules()`` order, as the official code does, and the draws come from
    ``generator`` (default: the global RNG, as the official code), so with the same seed a
    :func:`~hrnet_fast.models.pose_hrnet` model gets the weights the official model gets. Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"official_init: model must be an nn.Module, got {type(model).__name__}")
    if getattr(model, "inference_config", None) is not None:
        raise ValueError("official_init: model is an optimize()d model (BatchNorm folded, a frozen plan): "
                         "initialise the plain model from pose_hrnet(...) instead")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            # Tensor.normal_ (not nn.init.normal_, whose generator argument needs torch >= 2.2)
            m.weight.normal_(0.0, 0.001, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
    return model


class PretrainedLoad(list):
    """What :func:`load_pretrained` loaded: the list of loaded keys (model names, checkpoint order), with

    - ``skipped``: checkpoint keys outside the chosen layers (e.g. an ImageNet classifier's head);
    - ``unexpected``: keys of the chosen layers that the model does not have (ignored, as ``strict=False``);
    - ``missing``: model keys that were not loaded (they keep their values, e.g. :func:`official_init`'s);
    - ``path``, ``layers``.
    """

    def __init__(self, loaded: List[str], skipped: List[str], unexpected: List[str], missing: List[str],
                 path: str, layers: Tuple[str, ...]):
        super().__init__(loaded)
        self.skipped, self.unexpected, self.missing = skipped, unexpected, missing
        self.path, self.layers = path, layers

    @property
    def loaded(self) -> List[str]:
        return list(self)

    def summary(self) -> str:
        """One line for a log."""
        return (f"pretrained {self.path}: loaded {len(self)} tensors (layers {', '.join(self.layers)}); "
                f"skipped {len(self.skipped)} outside those layers and {len(self.unexpected)} the model lacks; "
                f"{len(self.missing)} model tensors keep their init")


def load_pretrained(model: nn.Module, path: Union[str, "os.PathLike[str]"], layers: Sequence[str] = ("*",)) -> PretrainedLoad:
    """The official pretrained load (``pose_hrnet.py:480-492``): the checkpoint's tensors whose first name
    component is in ``layers`` (every tensor when ``layers[0] == "*"``) are loaded with ``strict=False``.

    ``layers``: the experiment's ``MODEL.EXTRA.PRETRAINED_LAYERS``, e.g. ``("conv1", "bn1", ..., "stage4")`` for
    the ImageNet ``hrnet_w32-36af842e.pth``, whose classification head (``incre_modules``, ``final_layer``,
    ``classifier``, ...) is then left out. The file is read with ``torch.load(weights_only=True)``; wrappers
    (``{'state_dict': ...}``) and ``module.`` prefixes are removed first (:func:`hrnet_fast.normalize_state_dict`).

    Stricter than the official code, which continues silently: a missing path raises ``FileNotFoundError``;
    an unreadable file :class:`~hrnet_fast.checkpoint.CheckpointReadError` naming it; a chosen tensor whose
    shape differs from the model's (the official ``load_state_dict`` raises too) or that cannot be cast
    :class:`~hrnet_fast.checkpoint.CheckpointMismatchError`, before anything is loaded; a file of which no
    tensor fits the chosen layers of the model ``ValueError``. Returns a :class:`PretrainedLoad` (the loaded
    keys, plus the skipped ones) and logs its summary.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_pretrained: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"load_pretrained: path must be a file path, got {path!r}")
    path = os.fspath(path)
    if isinstance(layers, str) or not layers or not all(isinstance(name, str) and name for name in layers):
        raise ValueError(f"load_pretrained: layers must be a non-empty sequence of layer names (or ('*',)), got {layers!r}")
    layers = tuple(layers)
    if not os.path.isfile(path):
        what = "a directory" if os.path.isdir(path) else "no such file"
        raise FileNotFoundError(f"load_pretrained: pretrained weights {path!r}: {what} (download them first, e.g. the "
                                f"ImageNet hrnet_w32-36af842e.pth of the official README)")
    sd = normalize_state_dict(_read(path, "cpu"))
    every = layers[0] == "*"
    chosen = {k: v for k, v in sd.items() if every or k.split(".")[0] in layers}
    skipped = [k for k in sd if k not in chosen]
    own = model.state_dict()
    unexpected = [k for k in chosen if k not in own]
    to_load = {k: v for k, v in chosen.items() if k in own}
    conflicts = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in to_load.items() if v.shape != own[k].shape]
    if conflicts:
        shown = "; ".join(f"{k}: file {a} vs model {b}" for k, a, b in conflicts[:8])
        more = f" ... and {len(conflicts) - 8} more" if len(conflicts) > 8 else ""
        raise CheckpointMismatchError([], [], conflicts, reason=(
            f"{len(conflicts)} tensors of {path!r} in layers {list(layers)} have other shapes than the model's: "
            f"{shown}{more} (other weights, e.g. another width? or choose the layers: PRETRAINED_LAYERS)"))
    unloadable = _unloadable(to_load, own)
    if unloadable:
        raise CheckpointMismatchError([], [], [], unloadable)
    if not to_load:
        raise ValueError(f"load_pretrained: no tensor of {path!r} ({len(sd)} tensors, e.g. {list(sd)[:3]}) fits the model's "
                         f"layers {list(layers)}: wrong file, or layer names that are not the model's "
                         f"(first components of its state_dict keys, e.g. conv1, layer1, stage4)")
    model.load_state_dict(to_load, strict=False)
    missing = [k for k in own if k not in to_load]
    report = PretrainedLoad(list(to_load), skipped, unexpected, missing, path, layers)
    logger.info(report.summary())
    return report
