"""The hrnet-fast command line: bench --quick, info, check (including a forced mismatch), argument errors,
--version, and a --help that does not import torch."""
import json
import os
import subprocess
import sys

import pytest

from hrnet_fast import _timing, checks, cli
from hrnet_fast.cli import bench

from _golden import TINY_YAML


def test_bench_quick_writes_expected_json(tmp_path, capsys, monkeypatch):
    # a busy machine and rounds that disagree: both must be reported, in the JSON and on stderr
    monkeypatch.setattr(_timing, "load_average", lambda: 64.0)
    monkeypatch.setattr(_timing, "ROUND_SPREAD_WARN", -1.0)
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--device", "cpu", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    meta = doc["meta"]
    for field in ("date", "config", "device", "device_name", "dtype", "versions", "batches", "rounds", "cores"):
        assert field in meta, field
    assert meta["load_average"] == {"start": 64.0, "end": 64.0, "max": 64.0}
    assert meta["warnings"][0] == f"load average 64.0 exceeds the {meta['cores']} cores: other processes share the CPU"
    assert any("model batch 1 hrnet_fast default (optimize): repeated rounds differ by" in w for w in meta["warnings"])
    for r in doc["results"]:
        assert len(r["rounds_ms"]) == meta["rounds"] == 2 and r["round_spread"] >= 0, r
    assert meta["device"] == "cpu" and meta["dtype"] == "fp32" and meta["batches"] == [1]
    for field in ("torch", "triton", "threads"):
        assert field in meta["versions"]
    sections = {r["section"] for r in doc["results"]}
    assert {"exchange", "model", "decode"} <= sections
    fast_rows = [r for r in doc["results"] if "speedup" in r]
    assert {r["section"] for r in fast_rows} == {"exchange", "model", "decode"}
    for r in doc["results"]:
        assert r["ms"] > 0 and r["p20_ms"] <= r["p80_ms"]
    for r in fast_rows:
        assert r["speedup"] > 0
        if r["section"] in ("exchange", "model"):
            assert r["max_rel_err"] < 1e-4, r  # fp32: hrnet_fast matches the reference
        else:
            assert r["max_abs_err_px"] < 1e-3, r
    captured = capsys.readouterr()
    assert "speed-up" in captured.out and "hrnet_fast default (optimize)" in captured.out and "spread" in captured.out
    variants = {r["variant"] for r in doc["results"] if r["section"] == "model"}
    assert variants == {"official eager fp32", "official + BN folded + channels_last", "hrnet_fast default (optimize)"}
    assert "[hrnet-fast] warning: load average 64.0 exceeds" in captured.err
    # each warning once (it used to be printed twice, in the table and again on stderr; the load three times)
    for w in meta["warnings"]:
        assert (captured.out + captured.err).count(w) == 1, w


def test_bench_reports_the_highest_load_seen_during_the_run(tmp_path, capsys, monkeypatch):
    """The load average is watched during the whole run: quiet at the start and busy later is reported, with the
    peak, once."""
    loads = iter([1.0])
    monkeypatch.setattr(_timing, "load_average", lambda: next(loads, 70.0))
    monkeypatch.setattr(_timing, "cores", lambda: 2)
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--device", "cpu", "--config", TINY_YAML, "--no-compile", "--json", str(out)]) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["load_average"] == {"start": 1.0, "end": 70.0, "max": 70.0}
    busy = "load average 70.0 exceeds the 2 cores: other processes share the CPU"
    assert meta["warnings"][0] == busy
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count(busy) == 1 and "load average 1.0" not in captured.err


def test_load_monitor_samples_in_the_background(monkeypatch):
    values = iter([0.5, 3.0, 9.0])
    monkeypatch.setattr(_timing, "load_average", lambda: next(values, 1.0))
    with _timing.LoadMonitor(interval=0.01) as load:
        import time

        deadline = time.time() + 5
        while load.peak != 9.0 and time.time() < deadline:
            time.sleep(0.01)
    assert load.as_dict() == {"start": 0.5, "end": 1.0, "max": 9.0}


def test_bench_rejects_bad_batch():
    with pytest.raises(SystemExit):
        cli.main(["bench", "--batch", "0", "--device", "cpu"])


def test_info_lists_backends(capsys):
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    for name in ("torch", "cpp", "cuda", "triton"):
        assert f"  {name}" in text


@pytest.mark.parametrize("sub", ["bench", "info", "check"])
def test_help_of_each_subcommand(sub):
    res = subprocess.run([sys.executable, "-m", "hrnet_fast", sub, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "usage: hrnet-fast " + sub in res.stdout


def test_check_passes_on_cpu(capsys):
    assert cli.main(["check", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "cpp" in text and "ok" in text
    # fused_exchange: the error against float64 and the torch reference's own error, both reported
    assert "fused_exchange   cpp     float32   ok    max rel err" in text and "vs float64, torch reference" in text
    assert "IEEE fp32, TF32 off" in text and "compared" in text
    # the last line names every op and backend compared: crop_boxes too (it was never run before)
    last = text.strip().splitlines()[-1]
    assert last.startswith("hrnet-fast check: ") and "all match the reference" in last, last
    for op in ("fused_exchange: cpp (float32, float64)", "decode_heatmaps: cpp (", "crop_boxes: cpp (float32"):
        assert op in last, last


def test_check_fails_when_a_backend_disagrees(monkeypatch, capsys):
    import dataclasses

    from hrnet_fast.ops import OPS

    spec = OPS["fused_exchange"]

    def wrong(*args, backend="auto", **kwargs):
        out = spec.public(*args, backend=backend, **kwargs)
        return out + 1e-3 * out.abs().max() if backend == "cpp" else out

    monkeypatch.setitem(OPS, "fused_exchange", dataclasses.replace(spec, public=wrong))
    assert cli.main(["check", "--device", "cpu"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_table_shows_a_failed_variant(capsys):
    meta = {"config": "w32_256x192", "device_name": "GPU", "device": "cuda", "dtype": "fp16",
            "versions": {"torch": "x", "triton": "y", "threads": 1}}
    rows = [dict(section="model", batch=64, dtype="fp16", variant="reference (official eager)", ms=2.0, p20_ms=1.9, p80_ms=2.1),
            dict(section="model", batch=64, dtype="fp16", variant="reference + torch.compile", error="BackendCompilerFailed: boom")]
    bench._print_table(meta, rows)
    out = capsys.readouterr().out
    assert "FAILED: BackendCompilerFailed: boom" in out and "2.000" in out


def _usage_error(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    # progress lines ("[hrnet-fast] loading ...") may come first; then argparse's usage and one error line
    err = "\n".join(line for line in err.splitlines() if not line.startswith("[hrnet-fast] "))
    assert "Traceback" not in err and err.startswith("usage: hrnet-fast")
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hrnet-fast {argv[0]}: error: ") and expected in last, last


@pytest.mark.parametrize("argv, expected", [
    (["bench", "--config", "nope"], "--config nope: unknown config name 'nope'; known names: w32_256x192"),
    (["bench", "--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["bench", "--batch", "1,x"], "argument --batch: expected positive integers separated by commas (e.g. 1,8), got '1,x'"),
    (["bench", "--batch", "0"], "argument --batch: expected positive integers"),
    (["bench", "--compile-batches", "8,x"], "argument --compile-batches: expected positive integers"),
    (["bench", "--device", "foo"], "argument --device: expected auto, cpu, cuda or cuda:N"),
    (["bench", "--device", "mps"], "argument --device: expected auto, cpu, cuda or cuda:N"),
    (["bench", "--device", "meta"], "argument --device: expected auto, cpu, cuda or cuda:N"),
    (["check", "--device", "meta"], "argument --device: expected auto, cpu, cuda or cuda:N"),
    (["bench", "--weights", "/nonexistent/ckpt.pth"], "--weights /nonexistent/ckpt.pth: no such file"),
])
def test_bad_arguments_exit_2_with_a_one_line_error(capsys, monkeypatch, argv, expected):
    def started(*a, **k):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(bench, "_build_models", started)
    _usage_error(capsys, argv, expected)


def test_unreadable_weights_file_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(bytes(range(256)) * 4)  # not a torch.save file
    _usage_error(capsys, ["bench", "--device", "cpu", "--config", TINY_YAML, "--weights", str(path)],
                 f"--weights {path}: checkpoint: '{path}' (1024 bytes) is not a readable checkpoint")


def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    _usage_error(capsys, ["check", "--device", "cuda"], "--device cuda: torch sees no CUDA GPU")


def test_unwritable_json_fails_before_the_benchmark(tmp_path, capsys, monkeypatch):
    def started(*a, **k):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(bench, "_build_models", started)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = blocker / "out.json"  # a path under a regular file: no user, root included, can write it
    _usage_error(capsys, ["bench", "--device", "cpu", "--json", str(target)], f"--json {target}: cannot write there")
    _usage_error(capsys, ["bench", "--device", "cpu", "--json", str(tmp_path)], "is a directory")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_writable_json_path_is_not_left_behind_by_the_check(tmp_path, monkeypatch):
    def started(*a, **k):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(bench, "_build_models", started)
    target = tmp_path / "new" / "bench.json"
    with pytest.raises(AssertionError, match="the benchmark started"):
        cli.main(["bench", "--device", "cpu", "--config", TINY_YAML, "--json", str(target)])
    assert target.parent.is_dir() and not target.exists()


def test_check_with_nothing_compared_exits_nonzero(monkeypatch, capsys):
    monkeypatch.setattr(checks, "KERNEL_BACKENDS", ("no_such_backend",))
    assert cli.main(["check", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "hrnet-fast check: nothing was compared on cpu: every backend was skipped" in out
    assert "matches" not in out


def test_version(capsys):
    import hrnet_fast

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"hrnet-fast {hrnet_fast.__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["bench", "--help"], ["check", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    """`hrnet-fast --help` must answer at once: the package imports torch lazily (`-X importtime` lists
    every module the command imported)."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "hrnet_fast", *argv], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(cli.__file__)))})
    assert res.returncode == 0, res.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "numpy", "triton", "yaml"))
    assert not heavy, heavy[:10]
    assert "hrnet_fast.cli" in imported


def test_lazy_package_keeps_its_public_names():
    code = ("import sys, hrnet_fast; assert 'torch' not in sys.modules; "
            "import hrnet_fast._optimize; assert callable(hrnet_fast.optimize), hrnet_fast.optimize; "
            "assert callable(hrnet_fast.pose_hrnet) and callable(hrnet_fast.decode_heatmaps); "
            "assert hrnet_fast.backends()['torch']['available']; assert hrnet_fast.ops.fused_exchange; "
            "from hrnet_fast import *; assert CheckpointReadError and COCO_FLIP_PAIRS; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


# ---------------------------------------------------------------------------------------------- the command package


def _fake_gpus(monkeypatch, count):
    """torch's CUDA queries answering as on a machine with ``count`` GPUs (nothing touches a GPU)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_resolve_device_is_one_resolver_for_library_and_command_line(monkeypatch, capsys):
    import torch

    from hrnet_fast._device import resolve_device
    from hrnet_fast._dist import Dist
    from hrnet_fast.estimator import PoseEstimator

    _fake_gpus(monkeypatch, 0)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(RuntimeError, match=r"^torch sees no CUDA GPU \(torch "):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'"):
        resolve_device("mps")
    with pytest.raises(RuntimeError, match=r"^PoseEstimator: device 'cuda': torch sees no CUDA GPU"):
        PoseEstimator(torch.nn.Identity(), device="cuda", input_size=(8, 8), flip_test=False)
    _fake_gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match=r"^there are 2 CUDA device\(s\)$"):
        resolve_device("cuda:2")
    _usage_error(capsys, ["check", "--device", "cuda:2"], "--device cuda:2: there are 2 CUDA device(s)")
    # under torchrun each rank takes cuda:LOCAL_RANK (modulo the GPUs); alone, the resolver's answer
    assert Dist(rank=3, world=4, local_rank=3).device("auto") == torch.device("cuda", 1)
    assert Dist().device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="there are 2 CUDA device"):
        Dist(rank=1, world=2, local_rank=1).device("cuda:5")


def test_each_command_has_its_own_defaults_for_the_shared_options():
    def parse(argv):
        return cli.build_parser(argv[0]).parse_args(argv)

    b = parse(["bench"])
    assert (b.config, b.weights, b.device, b.dtype) == ("w32_256x192", None, "auto", "fp32")
    e = parse(["export", "--out", "m.onnx"])
    assert (e.config, e.weights, e.dtype) == ("w32_256x192", None, "fp32") and not hasattr(e, "device")
    p = parse(["predict", "--config", "c", "--weights", "w", "x.jpg"])
    assert (p.dtype, p.device) == ("auto", "auto")
    ev = parse(["eval", "--ann", "a.json"])
    assert (ev.config, ev.weights, ev.dtype, ev.draw) == (None, None, "auto", None)
    c = parse(["check"])
    assert c.device == "auto" and not hasattr(c, "config") and not hasattr(c, "dtype")
    for argv, choices in ((["bench"], ["bf16", "fp16", "fp32"]), (["export", "--out", "m"], ["fp16", "fp32"]),
                          (["predict"], ["auto", "bf16", "fp16", "fp32"])):
        parser = cli.build_parser(argv[0])
        sub = next(a for a in parser._actions if a.dest == "command").choices[argv[0]]
        assert sorted(next(a for a in sub._actions if a.dest == "dtype").choices) == choices, argv


def test_command_table_is_lazy(monkeypatch):
    """Building the parser for one command imports that command's module only."""
    import importlib

    imported = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name) or real(name, *a))
    cli.build_parser()
    assert imported == []
    cli.build_parser("check")
    assert imported == ["hrnet_fast.cli.check"]
    assert set(cli.commands_dict) == {"bench", "info", "check", "export", "predict", "eval", "train"}
    for name in cli.commands_dict:
        module = cli.create_command(name)
        assert callable(module.run) and callable(module.add_arguments) and module.DESCRIPTION, name
