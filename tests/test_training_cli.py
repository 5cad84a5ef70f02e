"""``hrnet-fast train``: the help, the usage errors that come before any work (issue 21, test 9: a missing path
exits 2), a run through ``--data COCO_ROOT`` in the official layout, and the command under torchrun."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

from _train_support import coco_set, tiny_experiment

from hrnet_fast import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return coco_set(tmp_path_factory, 4)


@pytest.fixture
def exp_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment()))
    return str(path)


@pytest.fixture
def no_training(monkeypatch):
    """fit() must not start: every usage error comes before any work."""
    import importlib

    fit_module = importlib.import_module("hrnet_fast.training.fit")  # (the package's `fit` is the function)

    def started(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(fit_module, "fit", started)


def _usage_error(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err and err.startswith("usage: hrnet-fast train")
    last = err.strip().splitlines()[-1]
    assert last.startswith("hrnet-fast train: error: ") and expected in last, last


def test_help_lists_the_flags_without_importing_torch():
    env = {**os.environ, "PYTHONPATH": ROOT}
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hrnet_fast", "train", "--help"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 0 and res.stdout.startswith("usage: hrnet-fast train"), res.stderr[-2000:]
    for flag in ("--config", "--train-ann", "--train-images", "--val-ann", "--val-images", "--data", "--out", "--epochs",
                 "--batch", "--lr", "--lr-steps", "--workers", "--amp", "--channels-last", "--sync-bn", "--val-every",
                 "--pretrained", "--resume", "--seed", "--max-steps", "--device", "--no-progress"):
        assert flag in res.stdout, flag
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert not [m for m in imported if m.split(".")[0] in ("torch", "numpy", "yaml")]
    top = subprocess.run([sys.executable, "-m", "hrnet_fast", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert "train" in top.stdout and "official recipe" in top.stdout


def test_data_and_paths_are_checked_before_any_work(small, exp_yaml, tmp_path, capsys, no_training):
    ann, images, _ = small
    out = str(tmp_path / "run")
    base = ["train", "--config", exp_yaml, "--out", out, "--device", "cpu"]
    data = ["--train-ann", ann, "--train-images", images]
    cases = [
        (base, "give the training data: --data COCO_ROOT, or --train-ann"),
        (base + data + ["--data", str(tmp_path)], "give --data COCO_ROOT or --train-ann with --train-images, not both"),
        (base + ["--train-ann", ann], "--train-ann and --train-images go together"),
        (base + ["--train-ann", "/nonexistent/a.json", "--train-images", images], "--train-ann /nonexistent/a.json: no such file"),
        (base + ["--train-ann", ann, "--train-images", "/nonexistent/dir"], "--train-images /nonexistent/dir: no such directory"),
        (base + data + ["--val-ann", ann], "--val-ann and --val-images go together"),
        (base + data + ["--val-ann", "/nonexistent/v.json", "--val-images", images], "--val-ann /nonexistent/v.json: no such file"),
        (base + ["--data", "/nonexistent/coco"], "--data /nonexistent/coco: no such directory"),
        (base + ["--data", str(tmp_path)], "no file " + os.path.join(str(tmp_path), "annotations", "person_keypoints_train2017.json")),
        (base + data + ["--pretrained", "/nonexistent/w.pth"], "--pretrained /nonexistent/w.pth: no such file"),
        (base + data + ["--resume", "/nonexistent/c.pth"], "--resume /nonexistent/c.pth: no such file"),
        (base + data + ["--sync-bn"], "--sync-bn needs CUDA"),
        (base + data + ["--amp", "fp16"], "--amp fp16 needs CUDA; on the CPU use --amp bf16"),
        (base + data + ["--lr-steps", "170,x"], "argument --lr-steps: expected comma-separated epochs"),
        (base + data + ["--lr", "-1"], "argument --lr: expected a positive number"),
        (base + data + ["--batch", "0"], "argument --batch: expected a positive integer"),
        (["train", "--config", "w99", "--out", out] + data, "--config w99: unknown config name 'w99'"),
    ]
    for argv, expected in cases:
        _usage_error(capsys, argv, expected)
    assert not os.path.exists(out)
    os.makedirs(out)
    open(os.path.join(out, "checkpoint.pth"), "wb").close()
    _usage_error(capsys, base + data, "holds a run (checkpoint.pth): --resume auto continues it")


def test_train_on_a_coco_root_writes_the_run_directory(small, exp_yaml, tmp_path, capsys):
    """--data in the official layout (annotations/, images/train2017, images/val2017); one epoch of 2 steps, then
    validation (AP, model_best.pth)."""
    ann, images, _ = small
    root = tmp_path / "coco"
    os.makedirs(root / "annotations")
    os.makedirs(root / "images")
    for subset in ("train2017", "val2017"):
        os.symlink(ann, root / "annotations" / f"person_keypoints_{subset}.json")
        os.symlink(images, root / "images" / subset)
    out = tmp_path / "run"
    argv = ["train", "--config", exp_yaml, "--data", str(root), "--out", str(out), "--batch", "3", "--workers", "0",
            "--device", "cpu", "--no-progress", "--lr-steps", "1"]
    assert cli.main(argv + ["--max-steps", "2"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {out}" in err and "best AP" in err
    assert sorted(os.listdir(out)) == ["checkpoint.pth", "final_state.pth", "log.jsonl", "model_best.pth"]
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["settings"]["batch"]) == (1, 2, 3)
    assert ckpt["scheduler"]["milestones"] == [1] and ckpt["optimizer"]["param_groups"][0]["lr"] == 1e-3  # epoch 0
    # continuing the run: --resume auto, one more epoch at the decayed lr
    assert cli.main(argv + ["--resume", "auto", "--max-steps", "4"]) == 0
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4, rel=1e-12)


@pytest.mark.slow
def test_train_under_torchrun(small, exp_yaml, tmp_path):
    """``torchrun --nproc_per_node 2 -m hrnet_fast train ...`` on the CPU (gloo): rank 0 writes the run directory."""
    ann, images, _ = small
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
                          "hrnet_fast", "train", "--config", exp_yaml, "--train-ann", ann, "--train-images", images,
                          "--out", str(out), "--batch", "2", "--max-steps", "2", "--workers", "0", "--device", "cpu",
                          "--no-progress"], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stderr.count("hrnet-fast train: wrote") == 1  # rank 0 only
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["settings"]["world"] == 2 and ckpt["step"] == 2 and ckpt["epoch"] == 1  # 6 persons: 3 a rank, 2 steps of 2
