"""Checkpoint loading: official, mmpose, DataParallel, wrappers, files, and clear mismatch errors."""
import pytest
import torch

import hrnet_fast
from hrnet_fast import CheckpointMismatchError

from _golden import TINY_YAML, tiny_golden, tiny_state_dict


@pytest.fixture(scope="module")
def official():
    return tiny_state_dict(tiny_golden())


def _assert_loaded(model, official):
    sd = model.state_dict()
    assert set(sd) == set(official)
    for k, v in official.items():
        assert torch.equal(sd[k], v), k


def _mmpose(official, head_prefix):
    out = {}
    for k, v in official.items():
        out[(head_prefix if k.startswith("final_layer.") else "backbone.") + (k[len("final_layer."):] if k.startswith("final_layer.") else k)] = v
    return out


@pytest.mark.parametrize(
    "wrap",
    [
        "official",
        "module",
        "state_dict",
        "mmpose_1x",
        "mmpose_0x",
        "mmpose_ddp_wrapped",
    ],
)
def test_load_checkpoint_formats(official, wrap):
    if wrap == "official":
        ckpt = dict(official)
    elif wrap == "module":
        ckpt = {"module." + k: v for k, v in official.items()}
    elif wrap == "state_dict":
        ckpt = {"state_dict": dict(official), "epoch": 140, "optimizer": {"state": {}}}
    elif wrap == "mmpose_1x":
        ckpt = {"meta": {"mmpose_version": "1.3"}, "state_dict": _mmpose(official, "head.final_layer.")}
    elif wrap == "mmpose_0x":
        ckpt = {"state_dict": _mmpose(official, "keypoint_head.final_layer.")}
    else:
        ckpt = {"state_dict": {"module." + k: v for k, v in _mmpose(official, "head.final_layer.").items()}}
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    hrnet_fast.load_checkpoint(model, ckpt, strict=True)
    _assert_loaded(model, official)


def test_load_checkpoint_from_file_weights_only(tmp_path, official):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": official}, path)
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    hrnet_fast.load_checkpoint(model, str(path))
    _assert_loaded(model, official)


def test_file_with_pickled_object_is_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pth"  # an arbitrary Python object: weights_only must refuse to unpickle it
    torch.save({"state_dict": {}, "obj": argparse.Namespace(a=1)}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        hrnet_fast.load_checkpoint(hrnet_fast.pose_hrnet(TINY_YAML), str(path))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        hrnet_fast.load_checkpoint(hrnet_fast.pose_hrnet(TINY_YAML), "/nonexistent/ckpt.pth")


def test_mismatch_lists_keys_and_shapes_and_loads_nothing(official):
    ckpt = dict(official)
    del ckpt["final_layer.bias"]
    ckpt["extra.weight"] = torch.zeros(3)
    ckpt["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        hrnet_fast.load_checkpoint(model, ckpt)
    msg = str(info.value)
    assert "missing keys (1): final_layer.bias" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "conv1.weight: checkpoint (64, 3, 5, 5) vs model (64, 3, 3, 3)" in msg
    assert info.value.missing == ["final_layer.bias"]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a failed load changed the model"


def test_wrong_config_checkpoint_does_not_fit(official):
    model = hrnet_fast.pose_hrnet("w32_256x256_mpii")
    with pytest.raises(CheckpointMismatchError, match="shape conflicts"):
        hrnet_fast.load_checkpoint(model, official)


def test_non_strict_loads_matching_and_reports(official):
    ckpt = dict(official)
    del ckpt["final_layer.bias"]
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    missing, unexpected, conflicts = hrnet_fast.load_checkpoint(model, ckpt, strict=False)
    assert missing == ["final_layer.bias"] and unexpected == [] and conflicts == []
    assert torch.equal(model.state_dict()["conv1.weight"], official["conv1.weight"])


def test_not_a_mapping():
    with pytest.raises(TypeError, match="state_dict"):
        hrnet_fast.load_checkpoint(hrnet_fast.pose_hrnet(TINY_YAML), [1, 2, 3])
