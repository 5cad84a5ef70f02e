"""Configs: what is rejected when the config is read (not at the first forward), with the field named."""
import pytest
import yaml

from hrnet_fast.config import CONFIGS, ConfigError, resolve_config

from _golden import TINY_YAML


def _tiny():
    with open(TINY_YAML) as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("size, near", [([190, 256], r"\[160 or 192, 256\]"), ([192, 250], r"\[192, 224 or 256\]"),
                                        ([16, 256], r"\[32, 256\]")])
def test_image_size_not_a_multiple_of_32_is_rejected(size, near):
    cfg = _tiny()
    cfg["MODEL"]["IMAGE_SIZE"] = size
    with pytest.raises(ConfigError, match=r"MODEL\.IMAGE_SIZE .*multiples of 32, got " + rf"\[{size[0]}, {size[1]}\].*{near}"):
        resolve_config(cfg)


def test_image_size_check_reads_yaml_files_too(tmp_path):
    cfg = _tiny()
    cfg["MODEL"]["IMAGE_SIZE"] = [100, 128]
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="IMAGE_SIZE"):
        resolve_config(str(path))


def test_known_configs_and_tiny_are_accepted():
    for name in CONFIGS:
        assert resolve_config(name)["IMAGE_SIZE"] == CONFIGS[name]["IMAGE_SIZE"]
    assert resolve_config(TINY_YAML)["IMAGE_SIZE"] == [96, 128]


def test_random_bytes_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "random.yaml"
    path.write_bytes(bytes([0xFF, 0xFE, 0x80]) + bytes(range(128, 256)))  # not UTF-8 from the first byte
    with pytest.raises(ConfigError, match=r"random\.yaml is not a YAML text file"):
        resolve_config(str(path))


def test_unreadable_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "dir.yaml"
    path.mkdir()  # a directory with a YAML name: not a file
    with pytest.raises(ConfigError, match="no such file"):
        resolve_config(str(path))


# ---------------------------------------------------------------------------------------------- experiments
# The values that tell the official experiment files apart (experiments/coco/hrnet/*_adam_lr1e-3.yaml,
# experiments/mpii/hrnet/*_256x256_adam_lr1e-3.yaml): (SIGMA, TRAIN/TEST batch, width of STAGE4's first branch).
OFFICIAL = {"w32_256x192": (2, 32, 32), "w32_384x288": (3, 32, 32), "w48_256x192": (2, 32, 48), "w48_384x288": (3, 24, 48),
            "w32_256x256_mpii": (2, 32, 32), "w48_256x256_mpii": (2, 32, 48)}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_named_configs_carry_their_official_experiment(name):
    from hrnet_fast.config import load_experiment

    exp = load_experiment(name)
    sigma, batch, width = OFFICIAL[name]
    assert list(exp) == ["MODEL", "LOSS", "DATASET", "TRAIN", "TEST"]
    assert exp["MODEL"]["SIGMA"] == sigma and exp["MODEL"]["EXTRA"]["STAGE4"]["NUM_CHANNELS"][0] == width
    assert exp["MODEL"]["IMAGE_SIZE"] == CONFIGS[name]["IMAGE_SIZE"]
    assert exp["TRAIN"]["BATCH_SIZE_PER_GPU"] == exp["TEST"]["BATCH_SIZE_PER_GPU"] == batch
    assert exp["TRAIN"]["LR"] == 1e-3 and exp["TRAIN"]["LR_STEP"] == [170, 200] and exp["TRAIN"]["END_EPOCH"] == 210
    assert exp["TRAIN"]["OPTIMIZER"] == "adam" and exp["LOSS"]["USE_TARGET_WEIGHT"] is True
    assert exp["DATASET"]["COLOR_RGB"] is True and exp["DATASET"]["FLIP"] is True
    assert exp["MODEL"]["PRETRAINED"].endswith(f"hrnet_w{width}-{'36af842e' if width == 32 else '8ef0771d'}.pth")
    assert exp["MODEL"]["EXTRA"]["PRETRAINED_LAYERS"][0] == "conv1" and len(exp["MODEL"]["EXTRA"]["PRETRAINED_LAYERS"]) == 11
    if name.endswith("mpii"):
        assert (exp["DATASET"]["SCALE_FACTOR"], exp["DATASET"]["ROT_FACTOR"], exp["DATASET"]["PROB_HALF_BODY"]) == (0.25, 30, -1.0)
    else:
        assert (exp["DATASET"]["SCALE_FACTOR"], exp["DATASET"]["ROT_FACTOR"], exp["DATASET"]["PROB_HALF_BODY"]) == (0.35, 45, 0.3)
        assert exp["TEST"]["USE_GT_BBOX"] is True and exp["TEST"]["OKS_THRE"] == 0.9 and exp["TEST"]["FLIP_TEST"] is True
    # the MODEL-only reader still gives the network alone
    assert resolve_config(name)["EXTRA"]["STAGE4"] == exp["MODEL"]["EXTRA"]["STAGE4"]


def test_yaml_merges_over_the_official_defaults_and_warns_without_color_rgb():
    from hrnet_fast.config import load_experiment

    with pytest.warns(UserWarning, match=r"DATASET\.COLOR_RGB unset.*default False"):
        exp = load_experiment(TINY_YAML)  # MODEL only: every other section is lib/config/default.py's
    assert exp["MODEL"]["IMAGE_SIZE"] == [96, 128] and exp["MODEL"]["SIGMA"] == 2 and exp["MODEL"]["TARGET_TYPE"] == "gaussian"
    assert exp["DATASET"]["COLOR_RGB"] is False and exp["DATASET"]["SCALE_FACTOR"] == 0.25 and exp["DATASET"]["ROT_FACTOR"] == 30
    assert exp["DATASET"]["PROB_HALF_BODY"] == 0.0 and exp["TRAIN"]["LR_STEP"] == [90, 110] and exp["TRAIN"]["END_EPOCH"] == 140
    assert exp["LOSS"] == {"USE_OHKM": False, "TOPK": 8, "USE_TARGET_WEIGHT": True, "USE_DIFFERENT_JOINTS_WEIGHT": False}


def test_a_whole_yaml_round_trips_and_sets_color(tmp_path, recwarn):
    from hrnet_fast.config import load_experiment

    exp = load_experiment("w48_384x288")
    doc = dict(exp, OUTPUT_DIR="output", CUDNN={"BENCHMARK": True}, GPUS="(0,1,2,3)")  # official plumbing: ignored
    path = tmp_path / "w48.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert load_experiment(str(path)) == exp
    assert not [w for w in recwarn if "COLOR_RGB" in str(w.message)]


def test_experiment_overrides_merge_and_coerce(tmp_path):
    from hrnet_fast.config import load_experiment

    cfg = _tiny()
    cfg["DATASET"] = {"COLOR_RGB": True, "SCALE_FACTOR": 0, "FLIP": False}
    cfg["TRAIN"] = {"LR": 1, "LR_STEP": (3, 4)}
    exp = load_experiment(cfg)
    assert exp["DATASET"]["SCALE_FACTOR"] == 0.0 and isinstance(exp["DATASET"]["SCALE_FACTOR"], float)
    assert exp["TRAIN"]["LR"] == 1.0 and exp["TRAIN"]["LR_STEP"] == [3, 4] and exp["DATASET"]["FLIP"] is False
    assert exp["DATASET"]["ROT_FACTOR"] == 30  # not given: the default
    assert cfg["TRAIN"] == {"LR": 1, "LR_STEP": (3, 4)}  # the caller's dict is not changed


@pytest.mark.parametrize("section, key, value, match", [
    ("DATASET", "SCALE_FACTORS", 0.3, r"unknown key DATASET\.SCALE_FACTORS"),
    ("TRAIN", "LR", "fast", r"TRAIN\.LR must be a float .*got 'fast'"),
    ("DATASET", "FLIP", 1, r"DATASET\.FLIP must be a bool"),
    ("TRAIN", "LR_STEP", 170, r"TRAIN\.LR_STEP must be a list"),
    ("TRAINING", None, {}, r"unknown section TRAINING"),
])
def test_experiment_errors_name_the_key(section, key, value, match):
    from hrnet_fast.config import load_experiment

    cfg = _tiny()
    cfg.setdefault("DATASET", {})["COLOR_RGB"] = True
    cfg[section] = value if key is None else {**cfg.get(section, {}), key: value}
    with pytest.raises(ConfigError, match=match):
        load_experiment(cfg)


def test_experiment_bad_name_or_path():
    from hrnet_fast.config import load_experiment

    with pytest.raises(ConfigError, match="unknown config name 'w99'"):
        load_experiment("w99")
    with pytest.raises(ConfigError, match="no such file"):
        load_experiment("missing/exp.yaml")
    with pytest.raises(TypeError, match="config must be"):
        load_experiment(3)
