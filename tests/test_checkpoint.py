"""Checkpoint loading: official, mmpose, DataParallel, wrappers, files, and clear mismatch errors."""
import pytest
import torch

import hrnet_fast
from hrnet_fast.checkpoint import CheckpointMismatchError, CheckpointReadError

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
    with pytest.raises(CheckpointReadError, match=r"weights_only=True\) refuses to unpickle \(unsupported global argparse\.Namespace\)"):
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


def test_training_checkpoint_with_tensors_beside_the_state_dict(official):
    ckpt = {"epoch": torch.tensor(3), "best_perf": torch.tensor(0.74), "state_dict": dict(official),
            "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-3}]}}
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    hrnet_fast.load_checkpoint(model, ckpt, strict=True)
    _assert_loaded(model, official)


def _late_key(official):
    """The last key in load order: a bad tensor there is met after every other one has been copied."""
    return list(official)[-1]


@pytest.mark.parametrize("bad", ["meta", "complex", "float_into_int", "sparse", "shape", "missing"])
@pytest.mark.parametrize("strict", [True, False])
def test_failed_load_leaves_the_model_bit_identical(official, bad, strict):
    ckpt = {k: v.clone() + 1 if v.is_floating_point() else v.clone() for k, v in official.items()}
    key = _late_key(official)
    if bad == "meta":
        ckpt[key] = torch.empty(official[key].shape, device="meta")
    elif bad == "complex":
        ckpt[key] = torch.zeros(official[key].shape, dtype=torch.complex64)
    elif bad == "float_into_int":
        key = next(k for k in official if k.endswith("num_batches_tracked"))
        ckpt[key] = torch.tensor(1.5)
    elif bad == "sparse":
        ckpt[key] = official[key].to_sparse()
    elif bad == "shape":
        ckpt[key] = torch.zeros(3, *official[key].shape[1:])
    else:
        del ckpt[key]
    model = hrnet_fast.pose_hrnet(TINY_YAML)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    if strict or bad in ("meta", "complex", "float_into_int", "sparse"):
        with pytest.raises(CheckpointMismatchError, match=key.replace(".", r"\.")):
            hrnet_fast.load_checkpoint(model, ckpt, strict=strict)
        after = model.state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not changed, f"a failed load changed {len(changed)} tensors, e.g. {changed[:3]}"
    else:  # strict=False loads what fits and reports the rest
        missing, _, conflicts = hrnet_fast.load_checkpoint(model, ckpt, strict=False)
        assert [key] == (missing if bad == "missing" else [c[0] for c in conflicts])
        assert torch.equal(model.state_dict()["conv1.weight"], ckpt["conv1.weight"])


def test_unloadable_tensor_is_named_with_its_reason(official):
    ckpt = dict(official)
    ckpt["conv1.weight"] = torch.empty(official["conv1.weight"].shape, device="meta")
    with pytest.raises(CheckpointMismatchError, match=r"conv1\.weight: on the meta device") as info:
        hrnet_fast.load_checkpoint(hrnet_fast.pose_hrnet(TINY_YAML), ckpt)
    assert info.value.unloadable == [("conv1.weight", "on the meta device (it holds no values)")]


@pytest.mark.parametrize("content", ["empty", "truncated", "random", "text"])
def test_unreadable_file_names_the_file(tmp_path, official, content):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": official}, good)
    data = {"empty": b"", "truncated": good.read_bytes()[: good.stat().st_size // 2],
            "random": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                    dtype=torch.uint8).numpy().tobytes(),
            "text": b"MODEL:\n  NAME: pose_hrnet\n"}[content]
    path = tmp_path / f"{content}.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointReadError, match="is not a readable checkpoint") as info:
        hrnet_fast.load_checkpoint(hrnet_fast.pose_hrnet(TINY_YAML), str(path))
    assert str(path) in str(info.value)
