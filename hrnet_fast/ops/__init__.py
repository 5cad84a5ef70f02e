"""Public ops: one entry point each, ``backend="auto"`` by default; the torch reference beside each.

:data:`OPS` lists them (name -> :class:`OpSpec`: support table, samples, reference, tolerances, module);
``hrnet-fast check``, the sanitizer script and the op-contract tests iterate it.
"""
from ._registry import OPS, OpSpec, Sample  # noqa: F401
from .crop_boxes import boxes_to_center_scale, crop_affine, crop_boxes  # noqa: F401
from .decode_heatmaps import COCO_FLIP_PAIRS, MPII_FLIP_PAIRS, decode_heatmaps, flip_merge  # noqa: F401
from .fused_exchange import fused_exchange, fused_exchange_reference  # noqa: F401
from .heatmap_targets import heatmap_targets  # noqa: F401

__all__ = ["COCO_FLIP_PAIRS", "MPII_FLIP_PAIRS", "OPS", "OpSpec", "Sample", "boxes_to_center_scale", "crop_affine",
           "crop_boxes", "decode_heatmaps", "flip_merge", "fused_exchange", "fused_exchange_reference",
           "heatmap_targets"]
