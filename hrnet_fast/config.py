"""HRNet configurations: the official experiment-file format, as names, YAML files or dicts.

A config is the ``MODEL`` section of an official experiment file (``experiments/coco/hrnet/*.yaml``)::

    {"NUM_JOINTS": 17, "IMAGE_SIZE": [192, 256], "HEATMAP_SIZE": [48, 64],
     "EXTRA": {"FINAL_CONV_KERNEL": 1,
               "STAGE2": {"NUM_MODULES": 1, "NUM_BRANCHES": 2, "BLOCK": "BASIC",
                          "NUM_BLOCKS": [4, 4], "NUM_CHANNELS": [32, 64], "FUSE_METHOD": "SUM"},
               "STAGE3": {...}, "STAGE4": {...}}}

``IMAGE_SIZE`` and ``HEATMAP_SIZE`` are (width, height), as in the official files.

Training reads the whole experiment: :func:`load_experiment` returns its MODEL, LOSS, DATASET, TRAIN and TEST
sections merged over the official defaults (``lib/config/default.py``, in :mod:`hrnet_fast._experiments`).
"""
from __future__ import annotations

import copy
import numbers
import os
import warnings
from typing import Any, Dict, Mapping, Union

from ._experiments import DEFAULTS, EXPERIMENT_SECTIONS, experiment_sections

__all__ = ["CONFIGS", "resolve_config", "load_experiment", "ConfigError"]


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


def _load_document(path: str) -> Dict[str, Any]:
    """The whole official experiment file at ``path`` (a mapping with a MODEL section), or :class:`ConfigError`."""
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
    return dict(doc)


def load_yaml(path: str) -> Dict[str, Any]:
    """The MODEL section of the official experiment file at ``path`` (:func:`load_experiment` reads them all)."""
    return _load_document(path)["MODEL"]


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


# the official top-level keys (lib/config/default.py:18-33, 136-141) that only the official scripts read
_PLUMBING = ("OUTPUT_DIR", "LOG_DIR", "DATA_DIR", "GPUS", "WORKERS", "PRINT_FREQ", "AUTO_RESUME", "PIN_MEMORY", "RANK",
             "CUDNN", "DEBUG")


def _coerce(default, value, where: str):
    """``value`` for a key whose official default is ``default``: the same kind (yacs checks the type too), a
    list for a list or tuple, any real number for a number."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, numbers.Real):
        ok = isinstance(value, numbers.Real)
        value = float(value) if ok and isinstance(default, float) else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = "a list" if isinstance(default, (list, tuple)) else f"a {type(default).__name__}"
        raise ConfigError(f"config: {where} must be {kind} (official default {default!r}), got {value!r}")
    return value


def _merge(base: Mapping, over, where: str) -> Dict[str, Any]:
    """``over`` merged into a copy of ``base`` as yacs' ``merge_from_file`` does: a key the defaults lack is an
    error (except under MODEL.EXTRA, ``new_allowed`` officially)."""
    if not isinstance(over, Mapping):
        raise ConfigError(f"config: {where} must be a mapping, got {type(over).__name__}")
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        path = f"{where}.{key}"
        if key not in base:
            if where != "MODEL.EXTRA":
                raise ConfigError(f"config: unknown key {path} (not in the official lib/config/default.py)")
            out[key] = copy.deepcopy(value)
        elif isinstance(base[key], Mapping):
            out[key] = _merge(base[key], value, path)
        else:
            out[key] = _coerce(base[key], value, path)
    return out


def load_experiment(config: ConfigLike) -> Dict[str, Any]:
    """The whole official experiment: ``{"MODEL", "LOSS", "DATASET", "TRAIN", "TEST"}`` merged over the
    official defaults (``lib/config/default.py``), as the official ``update_config`` merges a YAML.

    ``config``: a known name (its official ``experiments/*/hrnet/*.yaml``: e.g. ``w32_256x192`` is
    ``w32_256x192_adam_lr1e-3.yaml``), a YAML path, or a dict (a whole experiment, or a MODEL section alone).
    MODEL is checked as :func:`resolve_config` checks it. A key the official defaults do not have, or a value
    of another type, raises :class:`ConfigError` naming it; the official scripts' other top-level keys
    (OUTPUT_DIR, GPUS, CUDNN, ...) are ignored. A YAML or dict that leaves ``DATASET.COLOR_RGB`` unset gets
    the official default False (the network is fed BGR crops) with a warning: the official COCO experiments
    set it true. ``IMAGE_SIZE``/``HEATMAP_SIZE`` stay (width, height).
    """
    if isinstance(config, (str, os.PathLike)) and os.fspath(config) in CONFIGS:
        name = os.fspath(config)
        doc = experiment_sections(name)
        extra = doc["MODEL"]["EXTRA"]  # the YAML's PRETRAINED_LAYERS over the network of CONFIGS[name]
        doc["MODEL"]["EXTRA"] = {**copy.deepcopy(CONFIGS[name]["EXTRA"]), **extra}
        where = name
    elif isinstance(config, Mapping):
        doc = dict(config) if "MODEL" in config and isinstance(config["MODEL"], Mapping) else {"MODEL": config}
        where = "the config dict"
    elif isinstance(config, (str, os.PathLike)):
        where = os.fspath(config)
        if not os.path.isfile(where):
            resolve_config(where)  # raises the error of a bad name or path, as every command reports it
        doc = _load_document(where)
    else:
        raise TypeError(f"config must be a name, a YAML path or a dict, got {type(config).__name__}")
    for key in doc:
        if key not in EXPERIMENT_SECTIONS and key not in _PLUMBING:
            raise ConfigError(f"config: unknown section {key} in {where} (official sections: {', '.join(EXPERIMENT_SECTIONS)})")
    dataset = doc.get("DATASET")
    if not isinstance(dataset, Mapping) or "COLOR_RGB" not in dataset:
        warnings.warn(f"config: {where} leaves DATASET.COLOR_RGB unset: the official default False feeds the network "
                      f"BGR crops (the official COCO experiments set COLOR_RGB: true)", UserWarning, stacklevel=2)
    out = {section: _merge(DEFAULTS[section], doc.get(section, {}), section) for section in EXPERIMENT_SECTIONS}
    out["MODEL"] = validate_config(out["MODEL"])
    return out

