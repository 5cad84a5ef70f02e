"""HRNet configurations: the official experiment-file format, as names, YAML files or dicts.

A config is the ``MODEL`` section of an official experiment file (``experiments/coco/hrnet/*.yaml``)::

    {"NUM_JOINTS": 17, "IMAGE_SIZE": [192, 256], "HEATMAP_SIZE": [48, 64],
     "EXTRA": {"FINAL_CONV_KERNEL": 1,
               "STAGE2": {"NUM_MODULES": 1, "NUM_BRANCHES": 2, "BLOCK": "BASIC",
                          "NUM_BLOCKS": [4, 4], "NUM_CHANNELS": [32, 64], "FUSE_METHOD": "SUM"},
               "STAGE3": {...}, "STAGE4": {...}}}

``IMAGE_SIZE`` and ``HEATMAP_SIZE`` are (width, height), as in the official files.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, Mapping, Union

__all__ = ["CONFIGS", "resolve_config", "ConfigError"]


class ConfigError(ValueError):
    """A config that is unknown, malformed or inconsistent."""


def _stage(num_modules, channels, num_blocks=4):
    n = len(channels)
    return {
        "NUM_MODULES": num_modules,
        "NUM_BRANCHES": n,
        "BLOCK": "BASIC",
        "NUM_BLOCKS": [num_blocks] * n,
        "NUM_CHANNELS": list(channels),
        "FUSE_METHOD": "SUM",
    }


def _official(width: int, image_wh, heatmap_wh, num_joints: int) -> Dict[str, Any]:
    c = width
    return {
        "NAME": "pose_hrnet",
        "NUM_JOINTS": num_joints,
        "IMAGE_SIZE": list(image_wh),
        "HEATMAP_SIZE": list(heatmap_wh),
        "EXTRA": {
            "FINAL_CONV_KERNEL": 1,
            "PRETRAINED_LAYERS": ["*"],
            "STAGE2": _stage(1, [c, 2 * c]),
            "STAGE3": _stage(4, [c, 2 * c, 4 * c]),
            "STAGE4": _stage(3, [c, 2 * c, 4 * c, 8 * c]),
        },
    }


# The official experiment files (experiments/coco/hrnet/*.yaml, experiments/mpii/hrnet/*.yaml).
CONFIGS: Dict[str, Dict[str, Any]] = {
    "w32_256x192": _official(32, (192, 256), (48, 64), 17),
    "w32_384x288": _official(32, (288, 384), (72, 96), 17),
    "w48_256x192": _official(48, (192, 256), (48, 64), 17),
    "w48_384x288": _official(48, (288, 384), (72, 96), 17),
    "w32_256x256_mpii": _official(32, (256, 256), (64, 64), 16),
    "w48_256x256_mpii": _official(48, (256, 256), (64, 64), 16),
}

_STAGE_FIELDS = ("NUM_MODULES", "NUM_BRANCHES", "BLOCK", "NUM_BLOCKS", "NUM_CHANNELS", "FUSE_METHOD")
_BLOCKS = ("BASIC", "BOTTLENECK")


def _require(mapping: Mapping, key: str, where: str):
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"config: {where} must be a mapping, got {type(mapping).__name__}")
    if key not in mapping:
        raise ConfigError(f"config: missing field {where}.{key}" if where else f"config: missing field {key}")
    return mapping[key]


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"config: {where} must be a positive integer, got {value!r}")
    return value


def _int_list(value, n: int, where: str):
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ConfigError(f"config: {where} must be a list of {n} positive integers, got {value!r}")
    return [_positive_int(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _near32(v: int) -> str:
    lo = v // 32 * 32
    if lo == v:
        return str(v)
    return f"{lo} or {lo + 32}" if lo else str(lo + 32)


def validate_config(model: Mapping) -> Dict[str, Any]:
    """Check a MODEL section and return a normalised deep copy (never mutates the input)."""
    cfg = copy.deepcopy(dict(model))
    _positive_int(_require(cfg, "NUM_JOINTS", "MODEL"), "MODEL.NUM_JOINTS")
    cfg["IMAGE_SIZE"] = _int_list(_require(cfg, "IMAGE_SIZE", "MODEL"), 2, "MODEL.IMAGE_SIZE")
    if any(v % 32 for v in cfg["IMAGE_SIZE"]):
        # the network halves the input 5 times (stem 4x, then 3 stride-2 transitions): anything else breaks
        # the exchange units' upsampling at the first forward
        w, h = cfg["IMAGE_SIZE"]
        raise ConfigError(f"config: MODEL.IMAGE_SIZE (width, height) must be multiples of 32, got {[w, h]}; "
                          f"nearest that work: [{_near32(w)}, {_near32(h)}]")
    cfg["HEATMAP_SIZE"] = _int_list(_require(cfg, "HEATMAP_SIZE", "MODEL"), 2, "MODEL.HEATMAP_SIZE")
    extra = _require(cfg, "EXTRA", "MODEL")
    k = _positive_int(_require(extra, "FINAL_CONV_KERNEL", "MODEL.EXTRA"), "MODEL.EXTRA.FINAL_CONV_KERNEL")
    if k not in (1, 3):
        raise ConfigError(f"config: MODEL.EXTRA.FINAL_CONV_KERNEL must be 1 or 3, got {k}")
    prev_branches = 1
    for name in ("STAGE2", "STAGE3", "STAGE4"):
        where = f"MODEL.EXTRA.{name}"
        stage = _require(extra, name, "MODEL.EXTRA")
        for field in _STAGE_FIELDS:
            _require(stage, field, where)
        _positive_int(stage["NUM_MODULES"], f"{where}.NUM_MODULES")
        nb = _positive_int(stage["NUM_BRANCHES"], f"{where}.NUM_BRANCHES")
        if nb < prev_branches:
            raise ConfigError(f"config: {where}.NUM_BRANCHES ({nb}) must not be smaller than the previous stage's ({prev_branches})")
        prev_branches = nb
        stage["NUM_BLOCKS"] = _int_list(stage["NUM_BLOCKS"], nb, f"{where}.NUM_BLOCKS (NUM_BRANCHES={nb})")
        stage["NUM_CHANNELS"] = _int_list(stage["NUM_CHANNELS"], nb, f"{where}.NUM_CHANNELS (NUM_BRANCHES={nb})")
        if str(stage["BLOCK"]).upper() not in _BLOCKS:
            raise ConfigError(f"config: {where}.BLOCK must be one of {list(_BLOCKS)}, got {stage['BLOCK']!r}")
        stage["BLOCK"] = str(stage["BLOCK"]).upper()
        if stage["FUSE_METHOD"] != "SUM":
            raise ConfigError(f"config: {where}.FUSE_METHOD must be 'SUM' (the only method HRNet defines), got {stage['FUSE_METHOD']!r}")
    return cfg


def load_yaml(path: str) -> Dict[str, Any]:
    import yaml

    try:
        with open(path, "r", encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config: {path} is not a YAML text file (not UTF-8 at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"config: {path} must hold a mapping with a MODEL section, got {type(doc).__name__}")
    if "MODEL" not in doc:
        raise ConfigError(f"config: missing field MODEL in {path}")
    return doc["MODEL"]


ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any]]


def resolve_config(config: ConfigLike) -> Dict[str, Any]:
    """A config name, a YAML path, or a dict (the MODEL section, or a whole experiment with MODEL)."""
    if isinstance(config, Mapping):
        model = config["MODEL"] if "MODEL" in config and isinstance(config["MODEL"], Mapping) else config
        return validate_config(model)
    if isinstance(config, (str, os.PathLike)):
        s = os.fspath(config)
        if s in CONFIGS:
            return validate_config(CONFIGS[s])
        if os.path.isfile(s):
            return validate_config(load_yaml(s))
        if s.endswith((".yaml", ".yml")) or os.sep in s:
            raise ConfigError(f"config: no such file {s!r}")
        raise ConfigError(f"config: unknown config name {s!r}; known names: {', '.join(CONFIGS)} (or a YAML path)")
    raise TypeError(f"config must be a name, a YAML path or a dict, got {type(config).__name__}")
