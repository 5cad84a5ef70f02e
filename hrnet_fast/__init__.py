"""hrnet_fast: a drop-in, faster HRNet for human pose estimation.

    import hrnet_fast
    model = hrnet_fast.pose_hrnet("w32_256x192")              # official module names and keys
    hrnet_fast.load_checkpoint(model, "pose_hrnet_w32_256x192.pth")  # strict by default
    fast = hrnet_fast.optimize(model)                          # BN folded, fused exchange units
    heatmaps = fast(images)                                    # (N, 17, 64, 48)

``hrnet_fast.backends()`` tells which compute backends (torch, cpp, cuda, triton) run here and why not.
"""
from ._backends import backends
from .checkpoint import CheckpointMismatchError, load_checkpoint, normalize_state_dict
from .config import CONFIGS, ConfigError
from .models.pose_hrnet import ExchangeUnit, PoseHighResolutionNet, pose_hrnet
from .optimize import fold_batchnorm, optimize
from .ops.decode_heatmaps import COCO_FLIP_PAIRS, MPII_FLIP_PAIRS, decode_heatmaps, flip_merge

__version__ = "0.1.0"

__all__ = [
    "CONFIGS",
    "CheckpointMismatchError",
    "ConfigError",
    "ExchangeUnit",
    "PoseHighResolutionNet",
    "backends",
    "fold_batchnorm",
    "load_checkpoint",
    "normalize_state_dict",
    "optimize",
    "pose_hrnet",
    "COCO_FLIP_PAIRS",
    "MPII_FLIP_PAIRS",
    "decode_heatmaps",
    "flip_merge",
]
