"""Training: the official HRNet recipe (issue 21), batched on the device.

Imported on first use (``import hrnet_fast`` does not import it). Data and augmentation:
:class:`CocoKeypoints` + :func:`collate` (CPU workers: the official cleaning, JPEG decoding),
:func:`sample_augmentation` + :func:`augment` (the official augmentation's geometry on the device). Training:
:func:`fit` (the whole run: ``hrnet-fast train``), :func:`train_step` (one step) with its :class:`Recipe`, the
official losses :class:`JointsMSELoss` and :class:`JointsOHKMMSELoss`.
"""
from .augment import AugmentConfig, augment, sample_augmentation  # noqa: F401  (the function shadows its module)
from .data import CocoKeypoints, collate  # noqa: F401
from .fit import fit  # noqa: F401
from .loss import JointsMSELoss, JointsOHKMMSELoss  # noqa: F401
from .step import Recipe, train_step  # noqa: F401

__all__ = ["AugmentConfig", "CocoKeypoints", "JointsMSELoss", "JointsOHKMMSELoss", "Recipe", "augment", "collate", "fit",
           "sample_augmentation", "train_step"]
