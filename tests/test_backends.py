"""Backend discovery: import works without the compiled extension and says why a backend is missing."""
import subprocess
import sys
import textwrap

import pytest
import torch

import hrnet_fast
from hrnet_fast import _backends


def test_backends_reports_every_backend_with_a_reason():
    status = hrnet_fast.backends()
    assert set(status) == {"torch", "cpp", "cuda", "triton"}
    for name, st in status.items():
        assert isinstance(st["available"], bool) and st["reason"], name
    assert status["torch"]["available"]
    if not torch.cuda.is_available():
        assert not status["cuda"]["available"]


def test_import_without_extension_reports_why():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["hrnet_fast._C"] = None  # as if the extension were not built
        import torch, hrnet_fast
        st = hrnet_fast.backends()
        assert st["torch"]["available"]
        assert not st["cpp"]["available"] and "hrnet_fast._C" in st["cpp"]["reason"], st["cpp"]
        assert not st["cuda"]["available"]
        m = hrnet_fast.pose_hrnet("w32_256x192")  # the model still builds and runs on the torch path
        print("ok", st["cpp"]["reason"])
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")


def test_select_backend_errors_are_clear():
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of"):
        _backends.select_backend("op", "fast", torch.device("cpu"), ["cpp", "torch"], lambda n: [])
    with pytest.raises(RuntimeError, match=r"backend 'cuda' cannot run these inputs"):
        _backends.select_backend("op", "cuda", torch.device("cpu"), ["cpp", "torch"], lambda n: [])
    assert _backends.select_backend("op", "auto", torch.device("cpu"), ["cuda", "torch"], lambda n: []) == "torch"
    with pytest.raises(RuntimeError, match=r"no backend can run.*torch: too big"):
        _backends.select_backend("op", "auto", torch.device("cpu"), ["torch"], lambda n: ["too big"])
