"""hrnet_fast: a drop-in, faster HRNet for human pose estimation.

    import hrnet_fast
    model = hrnet_fast.pose_hrnet("w32_256x192")              # official module names and keys
    hrnet_fast.load_checkpoint(model, "pose_hrnet_w32_256x192.pth")  # strict by default
    fast = hrnet_fast.optimize(model)                          # BN folded, fused exchange units
    heatmaps = fast(images)                                    # (N, 17, 64, 48)

    estimator = hrnet_fast.PoseEstimator("w32_256x192", weights="pose_hrnet_w32_256x192.pth")
    result = estimator(image_bgr, boxes_xywh)                  # keypoints (M, 17, 3) in image pixels

``hrnet_fast.backends()`` tells which compute backends (torch, cpp, cuda, triton) run here and why not.
``hrnet_fast.training`` (``fit``, the dataset, the augmentation, the losses) trains with the official recipe.

The public names are imported on first use (PEP 562), so that ``import hrnet_fast`` and
``hrnet-fast --help`` / ``--version`` do not import torch: the first access to any of them (or to a
submodule such as ``hrnet_fast.ops``) imports what it needs, including the op registrations.
"""
import importlib
import sys
from typing import TYPE_CHECKING

from ._version import __version__  # noqa: F401 - a leaf module, read by pyproject.toml too

# public name -> the submodule defining it
_LAZY = {
    "backends": "._backends",
    "CheckpointMismatchError": ".checkpoint",
    "CheckpointReadError": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "normalize_state_dict": ".checkpoint",
    "CONFIGS": ".config",
    "ConfigError": ".config",
    "ExchangeUnit": ".models.pose_hrnet",
    "PoseHighResolutionNet": ".models.pose_hrnet",
    "pose_hrnet": ".models.pose_hrnet",
    "fold_batchnorm": "._optimize",
    "fold_conv_bn": "._optimize",
    "optimize": "._optimize",
    "COCO_FLIP_PAIRS": ".ops.decode_heatmaps",
    "MPII_FLIP_PAIRS": ".ops.decode_heatmaps",
    "decode_heatmaps": ".ops.decode_heatmaps",
    "flip_merge": ".ops.decode_heatmaps",
    "export_onnx": ".export",
    "boxes_to_center_scale": ".ops.crop_boxes",
    "PoseEstimator": ".estimator",
    "PoseResult": ".estimator",
}
# submodules reachable as attributes after a bare `import hrnet_fast` (as when __init__ imported them eagerly)
_SUBMODULES = ("_backends", "baselines", "checkpoint", "checks", "cli", "coco", "config", "draw", "estimator", "export",
               "models", "ops", "training", "video")

__all__ = [
    "CONFIGS",
    "CheckpointMismatchError",
    "CheckpointReadError",
    "ConfigError",
    "ExchangeUnit",
    "PoseHighResolutionNet",
    "backends",
    "fold_batchnorm",
    "fold_conv_bn",
    "load_checkpoint",
    "normalize_state_dict",
    "optimize",
    "pose_hrnet",
    "COCO_FLIP_PAIRS",
    "MPII_FLIP_PAIRS",
    "decode_heatmaps",
    "flip_merge",
    "export_onnx",
    "boxes_to_center_scale",
    "PoseEstimator",
    "PoseResult",
]

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ below imports these on first use
    from ._backends import backends  # noqa: F401
    from .checkpoint import CheckpointMismatchError, CheckpointReadError, load_checkpoint, normalize_state_dict  # noqa: F401
    from .config import CONFIGS, ConfigError  # noqa: F401
    from .export import export_onnx  # noqa: F401
    from .models.pose_hrnet import ExchangeUnit, PoseHighResolutionNet, pose_hrnet  # noqa: F401
    from .estimator import PoseEstimator, PoseResult  # noqa: F401
    from .ops.crop_boxes import boxes_to_center_scale  # noqa: F401
    from .ops.decode_heatmaps import COCO_FLIP_PAIRS, MPII_FLIP_PAIRS, decode_heatmaps, flip_merge  # noqa: F401
    from ._optimize import fold_batchnorm, fold_conv_bn, optimize  # noqa: F401


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        setattr(sys.modules[__name__], name, value)
        return value
    if name in _SUBMODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
