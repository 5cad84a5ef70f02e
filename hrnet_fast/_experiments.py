"""The official experiment tables: ``lib/config/default.py`` (the defaults every YAML is merged over) and the
training sections of ``experiments/coco/hrnet/*.yaml`` and ``experiments/mpii/hrnet/*.yaml``, as plain dicts.

Read by :func:`hrnet_fast.config.load_experiment`; standard library only. Only the sections a run uses are kept
(MODEL, LOSS, DATASET, TRAIN, TEST): the official CUDNN/DEBUG/GPUS/OUTPUT_DIR keys are the official scripts'
plumbing and have no meaning here.
"""
from __future__ import annotations

from typing import Any, Dict

__all__ = ["DEFAULTS", "EXPERIMENT_SECTIONS", "experiment_sections"]

#: the sections :func:`hrnet_fast.config.load_experiment` returns, in the official order
EXPERIMENT_SECTIONS = ("MODEL", "LOSS", "DATASET", "TRAIN", "TEST")

# lib/config/default.py:34-130 (MODEL.EXTRA is a CfgNode(new_allowed=True): any key may be added to it)
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "MODEL": {
        "NAME": "pose_hrnet",
        "INIT_WEIGHTS": True,
        "PRETRAINED": "",
        "NUM_JOINTS": 17,
        "TAG_PER_JOINT": True,
        "TARGET_TYPE": "gaussian",
        "IMAGE_SIZE": [256, 256],  # width, height
        "HEATMAP_SIZE": [64, 64],  # width, height
        "SIGMA": 2,
        "EXTRA": {},
    },
    "LOSS": {
        "USE_OHKM": False,
        "TOPK": 8,
        "USE_TARGET_WEIGHT": True,
        "USE_DIFFERENT_JOINTS_WEIGHT": False,
    },
    "DATASET": {
        "ROOT": "",
        "DATASET": "mpii",
        "TRAIN_SET": "train",
        "TEST_SET": "valid",
        "DATA_FORMAT": "jpg",
        "HYBRID_JOINTS_TYPE": "",
        "SELECT_DATA": False,
        "FLIP": True,
        "SCALE_FACTOR": 0.25,
        "ROT_FACTOR": 30,
        "PROB_HALF_BODY": 0.0,
        "NUM_JOINTS_HALF_BODY": 8,
        "COLOR_RGB": False,
    },
    "TRAIN": {
        "LR_FACTOR": 0.1,
        "LR_STEP": [90, 110],
        "LR": 0.001,
        "OPTIMIZER": "adam",
        "MOMENTUM": 0.9,
        "WD": 0.0001,
        "NESTEROV": False,
        "GAMMA1": 0.99,
        "GAMMA2": 0.0,
        "BEGIN_EPOCH": 0,
        "END_EPOCH": 140,
        "RESUME": False,
        "CHECKPOINT": "",
        "BATCH_SIZE_PER_GPU": 32,
        "SHUFFLE": True,
    },
    "TEST": {
        "BATCH_SIZE_PER_GPU": 32,
        "FLIP_TEST": False,
        "POST_PROCESS": False,
        "SHIFT_HEATMAP": False,
        "USE_GT_BBOX": False,
        "IMAGE_THRE": 0.1,
        "NMS_THRE": 0.6,
        "SOFT_NMS": False,
        "OKS_THRE": 0.5,
        "IN_VIS_THRE": 0.0,
        "COCO_BBOX_FILE": "",
        "BBOX_THRE": 1.0,
        "MODEL_FILE": "",
    },
}

_PRETRAINED_LAYERS = ["conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
                      "transition3", "stage4"]
_IMAGENET = {32: "models/pytorch/imagenet/hrnet_w32-36af842e.pth", 48: "models/pytorch/imagenet/hrnet_w48-8ef0771d.pth"}


def _coco(width: int, image_wh, heatmap_wh, sigma: int, batch: int) -> Dict[str, Any]:
    """experiments/coco/hrnet/w{32,48}_{256x192,384x288}_adam_lr1e-3.yaml, less MODEL.EXTRA's stages (those are
    :data:`hrnet_fast.config.CONFIGS`'), which differ only in the width, the input size, SIGMA and the batch."""
    return {
        "DATASET": {"COLOR_RGB": True, "DATASET": "coco", "DATA_FORMAT": "jpg", "FLIP": True, "NUM_JOINTS_HALF_BODY": 8,
                    "PROB_HALF_BODY": 0.3, "ROOT": "data/coco/", "ROT_FACTOR": 45, "SCALE_FACTOR": 0.35,
                    "TEST_SET": "val2017", "TRAIN_SET": "train2017"},
        "MODEL": {"INIT_WEIGHTS": True, "NAME": "pose_hrnet", "NUM_JOINTS": 17, "PRETRAINED": _IMAGENET[width],
                  "TARGET_TYPE": "gaussian", "IMAGE_SIZE": list(image_wh), "HEATMAP_SIZE": list(heatmap_wh), "SIGMA": sigma,
                  "EXTRA": {"PRETRAINED_LAYERS": list(_PRETRAINED_LAYERS)}},
        "LOSS": {"USE_TARGET_WEIGHT": True},
        "TRAIN": {"BATCH_SIZE_PER_GPU": batch, "SHUFFLE": True, "BEGIN_EPOCH": 0, "END_EPOCH": 210, "OPTIMIZER": "adam",
                  "LR": 0.001, "LR_FACTOR": 0.1, "LR_STEP": [170, 200], "WD": 0.0001, "GAMMA1": 0.99, "GAMMA2": 0.0,
                  "MOMENTUM": 0.9, "NESTEROV": False},
        "TEST": {"BATCH_SIZE_PER_GPU": batch,
                 "COCO_BBOX_FILE": "data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
                 "BBOX_THRE": 1.0, "IMAGE_THRE": 0.0, "IN_VIS_THRE": 0.2, "MODEL_FILE": "", "NMS_THRE": 1.0, "OKS_THRE": 0.9,
                 "USE_GT_BBOX": True, "FLIP_TEST": True, "POST_PROCESS": True, "SHIFT_HEATMAP": True},
    }


def _mpii(width: int) -> Dict[str, Any]:
    """experiments/mpii/hrnet/w{32,48}_256x256_adam_lr1e-3.yaml, less MODEL.EXTRA's stages."""
    return {
        "DATASET": {"COLOR_RGB": True, "DATASET": "mpii", "DATA_FORMAT": "jpg", "FLIP": True, "NUM_JOINTS_HALF_BODY": 8,
                    "PROB_HALF_BODY": -1.0, "ROOT": "data/mpii/", "ROT_FACTOR": 30, "SCALE_FACTOR": 0.25,
                    "TEST_SET": "valid", "TRAIN_SET": "train"},
        "MODEL": {"INIT_WEIGHTS": True, "NAME": "pose_hrnet", "NUM_JOINTS": 16, "PRETRAINED": _IMAGENET[width],
                  "TARGET_TYPE": "gaussian", "IMAGE_SIZE": [256, 256], "HEATMAP_SIZE": [64, 64], "SIGMA": 2,
                  "EXTRA": {"PRETRAINED_LAYERS": list(_PRETRAINED_LAYERS)}},
        "LOSS": {"USE_TARGET_WEIGHT": True},
        "TRAIN": {"BATCH_SIZE_PER_GPU": 32, "SHUFFLE": True, "BEGIN_EPOCH": 0, "END_EPOCH": 210, "OPTIMIZER": "adam",
                  "LR": 0.001, "LR_FACTOR": 0.1, "LR_STEP": [170, 200], "WD": 0.0001, "GAMMA1": 0.99, "GAMMA2": 0.0,
                  "MOMENTUM": 0.9, "NESTEROV": False},
        "TEST": {"BATCH_SIZE_PER_GPU": 32, "MODEL_FILE": "", "FLIP_TEST": True, "POST_PROCESS": True, "SHIFT_HEATMAP": True},
    }


# config name -> the official YAML's sections (merged over DEFAULTS, with CONFIGS[name] as MODEL's network)
_NAMED = {
    "w32_256x192": lambda: _coco(32, (192, 256), (48, 64), 2, 32),
    "w32_384x288": lambda: _coco(32, (288, 384), (72, 96), 3, 32),
    "w48_256x192": lambda: _coco(48, (192, 256), (48, 64), 2, 32),
    "w48_384x288": lambda: _coco(48, (288, 384), (72, 96), 3, 24),
    "w32_256x256_mpii": lambda: _mpii(32),
    "w48_256x256_mpii": lambda: _mpii(48),
}


def experiment_sections(name: str) -> Dict[str, Any]:
    """The sections of the official experiment file behind config ``name`` (a new dict); ``KeyError`` if none."""
    return _NAMED[name]()
