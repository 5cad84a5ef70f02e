"""Training: the official HRNet recipe (issue 21), batched on the device.

Imported on first use (``import hrnet_fast`` does not import it). Data and augmentation:
:class:`CocoKeypoints` + :func:`collate` (CPU workers: the official cleaning, JPEG decoding),
:func:`sample_augmentation` + :func:`augment` (the official augmentation's geometry on the device).
"""
from .augment import AugmentConfig, augment, sample_augmentation  # noqa: F401  (the function shadows its module)
from .data import CocoKeypoints, collate  # noqa: F401

__all__ = ["AugmentConfig", "CocoKeypoints", "augment", "collate", "sample_augmentation"]
