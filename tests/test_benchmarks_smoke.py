"""Smoke run of every script in benchmarks/ at tiny sizes on the CPU, each in a subprocess as it is run by
hand: exit status 0 and the JSON each writes has its fields. This catches what only running catches (a
NameError in a closure, a bad flag) before a GPU run does; the CUDA-only paths of the timing harness are
exercised in test_timing.py, and `ruff --select F` over benchmarks/ catches undefined names there."""
import json
import re
import os
import shutil
import subprocess
import sys

import pytest

from hrnet_fast import engines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
TINY_YAML = os.path.join(ROOT, "tests", "data", "tiny_hrnet.yaml")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _run(args, timeout=120, **env):
    res = subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(**env), capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, f"{args} exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _positive_times(d):
    return all(isinstance(v, float) and v > 0 for v in d.values())


def test_exchange_table_tiny(tmp_path):
    out = tmp_path / "exchange.json"
    res = _run([os.path.join(BENCH, "exchange_table.py"), "--device", "cpu", "--models", TINY_YAML, "--image", "64x64",
                "--batches", "1", "--rounds", "2", "--min-time", "0.005", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["complete"] is True and "wrote" in res.stdout
    for field in ("device", "torch", "threads", "commit"):
        assert field in doc["info"], field
    rows = doc["rows"]
    # every (layout, mode) pair has its unit rows and one "all" row summing them
    assert {(r["layout"], r["mode"]) for r in rows} == {(lay, m) for lay in ("nchw", "nhwc") for m in ("fwd", "fwdbwd")}
    units = [r for r in rows if r["unit"] != "all"]
    totals = [r for r in rows if r["unit"] == "all"]
    assert len(totals) == 4 and len(units) >= 4 * 3  # the tiny net has stage2, stage3 and stage4 units
    provs = {"torch", "cpp"} - set(p.split("/")[0] for p in doc["skipped"])
    assert "torch" in provs
    for r in units:
        assert set(r["times_s"]) == provs and _positive_times(r["times_s"]), r
        assert all(len(v) == 2 for v in r["rounds_s"].values()) and set(r["round_spread"]) == provs
        assert (r["mode"] == "fwd") == ("bytes" in r)
    for t in totals:
        same = [u for u in units if (u["layout"], u["mode"]) == (t["layout"], t["mode"])]
        assert t["times_s"]["torch"] == pytest.approx(sum(u["count"] * u["times_s"]["torch"] for u in same))


def test_decode_table_tiny(tmp_path):
    out = tmp_path / "decode.json"
    _run([os.path.join(BENCH, "decode_table.py"), "--device", "cpu", "--shapes", "16x12", "--batches", "2",
          "--dtypes", "fp32,fp16", "--methods", "quarter,flip_quarter,dark,udp", "--rounds", "2", "--budget", "0.01",
          "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "decode_heatmaps" and doc["complete"] is True
    for field in ("device", "device_name", "torch", "commit", "load_average"):
        assert field in doc["env"], field
    rows = doc["rows"]
    assert {(r["dtype"], r["method"]) for r in rows} == {(d, m) for d in ("fp32", "fp16")
                                                          for m in ("quarter", "flip_quarter", "dark", "udp")}
    for r in rows:
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["p80_ms"] and r["rounds"] == 2 and r["speedup_vs_torch"] > 0, r
        # the numpy baseline exists for the official methods only
        assert (r["speedup_vs_numpy"] is None) == (r["method"] in ("dark", "udp")), r
    assert {"numpy_official", "torch"} <= {r["provider"] for r in rows}


def test_bench_crop_boxes_quick(tmp_path):
    out = tmp_path / "crop.json"
    res = _run([os.path.join(BENCH, "bench_crop_boxes.py"), "--device", "cpu", "--quick", "--out", str(out)])
    assert "wrote" in res.stdout and "ms/box" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "crop_boxes" and doc["config"]["quick"] is True
    for field in ("device", "device_name", "torch", "opencv", "commit", "threads"):
        assert field in doc["env"], field
    provs = {r["provider"] for r in doc["rows"]}
    assert "torch" in provs and provs | set(doc["skipped"]) >= {"cv2", "torch", "cpp", "cuda", "triton"}
    for r in doc["rows"]:
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["p80_ms"], r
        if "cv2" in provs and r["provider"] != "cv2":
            # OpenCV rounds its crops to uint8; the fixed-point releases (4.x) move sample points by 1/64 px
            assert r["speedup_vs_cv2"] > 0 and r["max_diff_vs_cv2_levels"] <= 5, r


def test_bench_heatmap_targets_quick(tmp_path):
    out = tmp_path / "targets.json"
    for method in ("msra", "udp"):
        res = _run([os.path.join(BENCH, "bench_heatmap_targets.py"), "--device", "cpu", "--quick", "--method", method,
                    "--out", str(out)])
        assert "wrote" in res.stdout and "us/sample" in res.stdout
        doc = json.loads(out.read_text())
        assert doc["benchmark"] == "heatmap_targets" and doc["config"]["method"] == method
        provs = {r["provider"] for r in doc["rows"]}
        assert {"official", "torch"} <= provs and provs | set(doc["skipped"]) >= {"official", "torch", "cpp", "cuda", "triton"}
        for r in doc["rows"]:
            assert r["median_ms"] > 0 and r["p20_ms"] <= r["p80_ms"] and r["speedup_vs_official"] > 0, r
            assert r["max_diff_vs_official"] <= (0.0 if method == "msra" else 1e-6), r  # msra is bit-exact


def _has_export():
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def test_bench_pipeline_quick(tmp_path):
    pytest.importorskip("cv2", reason="the official recipe in bench_pipeline.py uses OpenCV")
    out = tmp_path / "pipeline.json"
    res = _run([os.path.join(BENCH, "bench_pipeline.py"), "--device", "cpu", "--quick", "--out", str(out)], timeout=300)
    assert "wrote" in res.stdout and "per stage, hrnet_fast vs official" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "pipeline" and doc["complete"] is True and doc["setup"]["quick"] is True
    for field in ("device", "device_name", "torch", "opencv", "commit", "threads", "load_average"):
        assert field in doc["env"], field
    names = [r["pipeline"] for r in doc["rows"]]
    assert names[0].startswith("official, validate") and names[1].startswith("official, demo") and names[2].startswith("hrnet_fast")
    for r in doc["rows"]:
        assert r["total_ms"] > 0 and r["p20_ms"] <= r["p80_ms"] and set(r["stages_ms"]) == {"crop", "forward", "decode"}, r
    ours = doc["rows"][2]
    assert ours["kind"] == "hrnet_fast" and ours["speedup_vs_validate"] > 0 and ours["speedup_vs_demo"] > 0
    # the CPU engine rows (issue 20), one per installed engine, after hrnet_fast's torch row
    engine_rows = {r["engine"]: r for r in doc["rows"][3:]}
    installed = {e for e, v in engines.engine_versions().items() if v} if _has_export() else set()
    assert set(engine_rows) == installed and all(r["kind"] == "engine" for r in engine_rows.values())
    for r in engine_rows.values():
        assert r["speedup_vs_hrnet_fast_torch"] > 0 and r["export_s"] > 0 and r["keypoints_equal_to_torch_fraction"] >= 0.9, r
    assert 0 <= doc["keypoints_equal_to_official_fraction"] <= 1 and doc["gpu_targets"] is None


def test_pytest_benchmark_suites_quick(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", BENCH,
                          os.path.join(BENCH, "bench_fused_exchange.py"), os.path.join(BENCH, "bench_decode.py"),
                          os.path.join(BENCH, "bench_model.py"), "--benchmark-min-rounds=1",
                          f"--benchmark-json={out}"],
                         cwd=ROOT, env=_env(HRNET_FAST_BENCH_QUICK="1"), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    doc = json.loads(out.read_text())
    names = [b["name"] for b in doc["benchmarks"]]
    for prefix in ("test_exchange_units", "test_decode_official", "test_decode_dark_udp", "test_model_forward"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for b in doc["benchmarks"]:
        assert b["stats"]["median"] > 0 and b["stats"]["rounds"] >= 1, b["name"]


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """A `hrnet-fast bench` document as device_check.sh merges it: {"runs": {name: {"meta", "results"}}}."""
    path = tmp_path_factory.mktemp("plot") / "merged.json"
    run = {"meta": {"device_name": "Test GPU", "dtype": "fp16"},
           "results": [{"section": "model", "batch": 64, "dtype": "fp16", "variant": "hrnet_fast.optimize", "speedup": 1.3},
                       {"section": "model", "batch": 64, "dtype": "fp16", "variant": "reference (official eager)"}]}
    path.write_text(json.dumps({"steps": [], "runs": {"bench_fp16": run}}))
    return path


def test_plot_results_lists_the_bars(bench_json):
    res = _run([os.path.join(BENCH, "plot_results.py"), "--list", str(bench_json),
                os.path.join(BENCH, "results", "cpu-2026-11-26-bench.json")])
    assert "Test GPU | fp16 | model b64 | hrnet_fast.optimize | x1.30" in res.stdout
    assert "bars from 2 file(s)" in res.stdout


def test_plot_results_png(bench_json, tmp_path):
    pytest.importorskip("matplotlib", reason="plot_results.py draws with matplotlib, not installed here")
    out = tmp_path / "summary.png"
    _run([os.path.join(BENCH, "plot_results.py"), "--out", str(out), str(bench_json)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sanitize_script_runs_its_calls_on_the_cpu():
    # compute-sanitizer needs a GPU; the script's own code runs on the CPU with the cpp backend, every group:
    # crop_boxes and the exchange with more lows than one CUDA launch takes included
    res = _run([os.path.join(BENCH, "sanitize_cuda.py"), "--device", "cpu"])
    assert "sanitize_cuda: 22 cpp kernel calls completed (exchange 4, decode 5, dark_udp 8, crop 3, heatmap_targets 2)" in res.stdout
    res = _run([os.path.join(BENCH, "sanitize_cuda.py"), "--device", "cpu", "--only", "dark_udp"])
    assert "sanitize_cuda: 8 cpp kernel calls completed (dark_udp 8)" in res.stdout


def test_sanitize_script_names_an_unknown_group():
    res = subprocess.run([sys.executable, os.path.join(BENCH, "sanitize_cuda.py"), "--device", "cpu", "--only", "nope"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--only: unknown group(s) ['nope']" in res.stderr


def test_sanitize_script_exchange_exceeds_one_cuda_launch():
    """The sanitizer's many-lows case must stay above what one CUDA launch takes, or the fp32 chaining of
    partial sums goes unchecked: the script's constant must follow the kernel header."""
    import re
    header = open(os.path.join(ROOT, "csrc", "cuda", "fused_exchange_kernel.h")).read()
    per_launch = int(re.search(r"kMaxLowsPerLaunch\s*=\s*(\d+)", header).group(1))
    script = open(os.path.join(BENCH, "sanitize_cuda.py")).read()
    assert int(re.search(r"MAX_LOWS_PER_CUDA_LAUNCH = (\d+)", script).group(1)) == per_launch


def test_device_check_budget_fits_its_deadline():
    """The step limits add up to at most the deadline, the deadline is at most 420 s (a 7-minute check
    that leaves room for a rerun in a 15-minute GPU window), the build gets 90 s, and every step run has a limit."""
    script = os.path.join(BENCH, "device_check.sh")
    res = subprocess.run(["bash", script, "--budget"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    limits = {ln.split()[0]: int(ln.split()[1]) for ln in res.stdout.splitlines() if ln.split()[0] != "sum"}
    total, deadline = (int(x) for x in re.findall(r"(\d+) s", res.stdout.splitlines()[-1]))
    assert total == sum(limits.values()) <= deadline <= 420
    assert limits["build"] == 90
    assert "check" not in limits  # the GPU tests compare every backend with its reference
    body = open(script).read()
    stepped = re.findall(r"^\s*step ([a-z0-9-]+) ", body, flags=re.M)
    assert stepped and set(stepped) == set(limits), (stepped, limits)
    # a budget over the deadline is refused
    res = subprocess.run(["bash", script, "--budget"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "DEVICE_CHECK_BUDGET": "300"})
    assert res.returncode == 1 and "more than the deadline" in res.stderr


def test_device_check_limits_each_step_and_records_timeouts(tmp_path):
    """device_check.sh with a stand-in for python: the build overruns its limit, the first GPU tests fail after
    using up most of the script's deadline; the script goes on, and its summary and JSON name each outcome."""
    fake = tmp_path / "fakepy"
    fake.write_text(f"""#!/usr/bin/env bash
case "$1" in
  setup.py) exec sleep 30 ;;
  -) exec {sys.executable} "$@" ;;
  -c) exit 1 ;;
  -m) [ "$2" = pytest ] && [ "$3" = -v ] && [ "$8" = tests/test_inference.py ] && sleep 5 && exit 3; exit 0 ;;
  *) exit 0 ;;
esac
""")
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = _env(PYTHON=str(fake), LIMIT_build="1", DEVICE_CHECK_BUDGET="8", DEVICE_CHECK_COMMIT="abc1234",
               PATH="/usr/bin:/bin")
    res = subprocess.run(["bash", os.path.join(BENCH, "device_check.sh"), str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    (path,) = out.glob("*.json")
    assert path.name.endswith("-abc1234.json"), path.name
    merged = json.loads(path.read_text())
    assert merged["meta"]["commit"] == "abc1234" and merged["meta"]["deadline_s"] == 8
    status = {s["step"]: s["status"] for s in merged["steps"]}
    assert status["build"] == "TIMEOUT(1s)"
    assert status["info"] == "ok" and status["tests-new"] == "FAIL(3)"
    for later in ("tests-rest", "bench-fp16", "exchange-table", "decode-table", "pipeline"):
        assert status[later] == "skipped (deadline)", later
    for tool in ("memcheck", "racecheck", "synccheck"):
        assert status[tool] == "skipped (compute-sanitizer not installed)"
    assert merged["total_s"] <= 8 + 2
    log = (out / "device_check.log").read_text()
    assert "=== build: stopped after 1s" in log and "=== summary" in log
    assert "tests/test_inference.py" in log  # the never-run GPU tests go first


def test_benchmarks_have_no_undefined_names():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=os.path.dirname(sys.executable))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff)")
    res = subprocess.run([ruff, "check", "--select", "F,E9", "--no-cache", BENCH], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def _sanitize_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sanitize_cuda", os.path.join(BENCH, "sanitize_cuda.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sanitize_script_runs_every_registered_op(monkeypatch, capsys):
    """Every OPS entry is covered by a group, and an op added to the registry gets a group of its own that
    runs its samples (here a stand-in op on the cpp backend's table of crop_boxes)."""
    import dataclasses

    import torch

    from hrnet_fast.ops import OPS, Sample

    script = _sanitize_module()
    covered = {script.GROUP_OPS.get(g, g) for g in script.groups()}
    assert covered == set(OPS), covered
    calls = []

    def toy(x, backend="auto"):
        calls.append((backend, x.dtype))
        return x

    samples = lambda dev, dtype: [Sample("a", (torch.zeros(2, device=dev, dtype=dtype),), {})] * 2  # noqa: E731
    monkeypatch.setitem(OPS, "toy", dataclasses.replace(OPS["crop_boxes"], name="toy", public=toy, samples=samples))
    assert script.groups()[-1] == "toy"
    assert script.main(["--device", "cpu", "--only", "toy"]) == 0
    assert calls == [("cpp", torch.float32)] * 2
    assert "sanitize_cuda: 2 cpp kernel calls completed (toy 2)" in capsys.readouterr().out


def test_bench_engines_quick(tmp_path):
    """benchmarks/bench_engines.py --quick: every variant timed, its error, the per-layer profiles and the
    keypoint agreement on photographs; the engine rows present exactly when the engine is installed."""
    import importlib.util

    out = tmp_path / "engines.json"
    has_skimage = importlib.util.find_spec("skimage") is not None
    res = _run([os.path.join(BENCH, "bench_engines.py"), "--quick", "--out", str(out)]
               + ([] if has_skimage else ["--no-accuracy"]), timeout=300)
    assert "wrote" in res.stdout and "per layer, fp32 batch 1" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "engines" and doc["complete"] is True and doc["setup"]["quick"] is True
    assert not list(tmp_path.glob(".*")), "the atomic write left its temporary file"
    versions = doc["env"]["engines"] if _has_export() else {}
    expect = {"official eager fp32", "hrnet_fast optimize(m) fp32", "hrnet_fast optimize(m, dtype=bf16)"}
    if versions.get("onnxruntime"):
        expect.add("onnxruntime fp32")
    if versions.get("openvino"):
        expect.add("OpenVINO f32")
        if "BF16" in (doc["env"]["openvino_cpu_capabilities"] or []):
            expect.add("OpenVINO bf16")
    rows = {r["variant"]: r for r in doc["rows"]}
    assert set(rows) == expect and all(r["batch"] == 1 for r in rows.values())
    for name, r in rows.items():
        assert r["ms"] > 0 and r["p20_ms"] <= r["p80_ms"] and len(r["rounds_ms"]) == 2 and r["x_official"] > 0, r
        if name != "official eager fp32":
            assert r["max_rel_err"] < (1e-4 if "bf16" not in name else 0.5), r
    prof = doc["profiles"]["fp32 batch 1"]
    assert prof["torch"]["total_us"] > 0 and prof["torch"]["top_layers"]
    if "OpenVINO f32" in rows:
        ov = prof["openvino"]
        assert ov["nodes"] > 10 and ov["top_layers"][0]["real_us"] > 0 and ov["by_kernel"], ov
    if has_skimage:
        acc = doc["accuracy"]
        assert acc["boxes"] == 4 and set(acc["variants"]) == expect - {"official eager fp32"}
        for name, v in acc["variants"].items():
            assert 0 <= v["exact"] <= v["within_1px"] <= 1, (name, v)
            if "bf16" not in name:
                assert v["within_1px"] >= 0.97, (name, v)  # fp32 paths agree with the official model (a near tie may flip)


def test_bench_train_quick(tmp_path):
    """benchmarks/bench_train.py --quick: every CPU variant timed (the official step with its loader, ours through
    train_step, the model-only steps), the per-sample times, the JSON written atomically."""
    pytest.importorskip("cv2", reason="the official training samples in bench_train.py use OpenCV")
    out = tmp_path / "train.json"
    res = _run([os.path.join(BENCH, "bench_train.py"), "--quick", "--out", str(out)], timeout=300)
    assert "wrote" in res.stdout and "training step" in res.stdout and "x official" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "train" and doc["complete"] is True and doc["setup"]["quick"] is True
    assert not list(tmp_path.glob(".*")), "the atomic write left its temporary file"
    for field in ("device", "device_name", "torch", "opencv", "commit", "threads", "load_average"):
        assert field in doc["env"], field
    rows = {r["variant"]: r for r in doc["rows"]}
    labels = ("fp32", "fp32 channels_last", "bf16 channels_last")
    assert set(rows) == ({"official step", "official model-only"} | {f"hrnet_fast step {x}" for x in labels}
                         | {f"fused model-only {x}" for x in labels})
    for name, r in rows.items():
        assert r["s_per_step"] > 0 and r["p20_s"] <= r["p80_s"] and r["img_per_s"] > 0 and r["x_official"] > 0, r
        assert r["batch"] == 2 and len(r["rounds_s"]) == 1
        if r["kind"] == "step":
            assert 0 <= r["data_wait_share"] <= 1, r
        else:
            assert r["data_wait_share"] is None, r
    assert rows["official step"]["x_official"] == 1.0 and not rows["official step"]["fused"]
    ps = doc["per_sample"]
    assert ps["official_getitem_ms_per_sample"] > 0 and ps["ours_decode_ms_per_sample"] > 0
    assert ps["ours_batch_inputs_ms_per_batch"] > 0 and ps["batch"] == 2


def test_bench_train_gpu_mode_skips_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the GPU mode runs (benchmarks/bench_train.py --device cuda)")
    out = tmp_path / "train_gpu.json"
    res = _run([os.path.join(BENCH, "bench_train.py"), "--device", "cuda", "--quick", "--out", str(out)], timeout=60)
    assert "no CUDA GPU here, GPU mode skipped" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "train" and doc["complete"] is False and doc["skipped"] == "no CUDA GPU"
