"""hrnet_fast.models.init: the official training init (pose_hrnet.py:462-479) and the pretrained load with
PRETRAINED_LAYERS (pose_hrnet.py:480-492), on the tiny model and a saved state dict."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

import hrnet_fast
from hrnet_fast.checkpoint import CheckpointMismatchError, CheckpointReadError
from hrnet_fast.models.init import load_pretrained, official_init

from _support import DATA

TINY_YAML = os.path.join(DATA, "tiny_hrnet.yaml")


def _tiny():
    return hrnet_fast.pose_hrnet(TINY_YAML)


def _official_init_weights(model):
    """The loop of the official ``init_weights`` as written (pose_hrnet.py:464-479)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.001)
            for name, _ in m.named_parameters():
                if name in ['bias']:
                    nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, std=0.001)
            for name, _ in m.named_parameters():
                if name in ['bias']:
                    nn.init.constant_(m.bias, 0)


def test_official_init_draws_what_the_official_loop_draws():
    a, b = _tiny(), _tiny()
    torch.manual_seed(7)
    official_init(a)
    torch.manual_seed(7)
    _official_init_weights(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    convs = torch.cat([m.weight.flatten() for m in a.modules() if isinstance(m, nn.Conv2d)])
    assert abs(convs.std().item() - 0.001) < 5e-5 and abs(convs.mean().item()) < 5e-5
    assert torch.equal(a.final_layer.bias, torch.zeros_like(a.final_layer.bias))
    for m in a.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))


def test_official_init_with_a_generator_is_reproducible():
    a = official_init(_tiny(), generator=torch.Generator().manual_seed(3))
    b = official_init(_tiny(), generator=torch.Generator().manual_seed(3))
    c = official_init(_tiny(), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        official_init("model")


@pytest.fixture
def imagenet_like(tmp_path):
    """A 'classification' checkpoint of the tiny backbone: DataParallel prefix, a head the pose model lacks and
    a final_layer of another shape (as the ImageNet HRNet's)."""
    src = _tiny()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in src.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    sd = {f"module.{k}": v for k, v in src.state_dict().items() if not k.startswith("final_layer")}
    sd["module.final_layer.weight"] = torch.randn(2048, 64, 1, 1)
    sd["module.classifier.weight"] = torch.randn(1000, 2048)
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    return path, src


def test_load_pretrained_loads_the_chosen_layers(imagenet_like):
    path, src = imagenet_like
    model = official_init(_tiny(), generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2", "stage3",
              "transition3", "stage4")
    report = load_pretrained(model, path, layers)
    sd, want = model.state_dict(), src.state_dict()
    assert report and all(k.split(".")[0] in layers for k in report)
    assert set(report) == {k for k in want if k.split(".")[0] in layers}
    for k in sd:
        assert torch.equal(sd[k], want[k] if k in report else before[k]), k
    assert sorted(report.skipped) == ["classifier.weight", "final_layer.weight"] and report.unexpected == []
    assert set(report.missing) == {"final_layer.weight", "final_layer.bias"}
    assert "loaded" in report.summary() and report.loaded == list(report)


def test_load_pretrained_every_layer_refuses_a_shape_conflict(imagenet_like):
    path, _ = imagenet_like
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"final_layer.weight: file \(2048, 64, 1, 1\)"):
        load_pretrained(model, path)  # layers ("*",): the classification head's final_layer comes too
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing was loaded


def test_load_pretrained_bad_input(imagenet_like, tmp_path):
    path, _ = imagenet_like
    model = _tiny()
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pretrained(model, tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="a directory"):
        load_pretrained(model, tmp_path)
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointReadError, match="truncated.pth"):
        load_pretrained(model, bad)
    with pytest.raises(ValueError, match="no tensor of .* fits the model's layers"):
        load_pretrained(model, path, ("backbone",))
    with pytest.raises(ValueError, match="layers must be a non-empty sequence"):
        load_pretrained(model, path, "stage2")


def test_load_pretrained_every_layer_ignores_unknown_keys(tmp_path):
    src = official_init(_tiny(), generator=torch.Generator().manual_seed(5))
    sd = dict(src.state_dict(), **{"classifier.weight": torch.ones(3)})
    torch.save(sd, tmp_path / "w.pth")
    model = _tiny()
    report = load_pretrained(model, tmp_path / "w.pth")
    assert report.unexpected == ["classifier.weight"] and report.missing == [] and report.skipped == []
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in model.state_dict().items())
