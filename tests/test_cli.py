"""The hrnet-fast command line: bench --quick, info, check (including a forced mismatch)."""
import json
import subprocess
import sys

import pytest
import torch

from hrnet_fast import cli


def test_bench_quick_writes_expected_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--device", "cpu", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    meta = doc["meta"]
    for field in ("date", "config", "device", "device_name", "dtype", "versions", "batches"):
        assert field in meta, field
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
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "hrnet_fast.optimize" in printed


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


def test_check_fails_when_a_backend_disagrees(monkeypatch, capsys):
    from hrnet_fast import checks

    real = checks.fused_exchange

    def wrong(*args, backend="auto", **kwargs):
        out = real(*args, backend=backend, **kwargs)
        return out + 1e-3 * out.abs().max() if backend == "cpp" else out

    monkeypatch.setattr(checks, "fused_exchange", wrong)
    assert cli.main(["check", "--device", "cpu"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_table_shows_a_failed_variant(capsys):
    meta = {"config": "w32_256x192", "device_name": "GPU", "device": "cuda", "dtype": "fp16",
            "versions": {"torch": "x", "triton": "y", "threads": 1}}
    rows = [dict(section="model", batch=64, dtype="fp16", variant="reference (official eager)", ms=2.0, p20_ms=1.9, p80_ms=2.1),
            dict(section="model", batch=64, dtype="fp16", variant="reference + torch.compile", error="BackendCompilerFailed: boom")]
    cli._print_table(meta, rows)
    out = capsys.readouterr().out
    assert "FAILED: BackendCompilerFailed: boom" in out and "2.000" in out
