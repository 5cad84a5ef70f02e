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
