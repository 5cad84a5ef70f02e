"""Test configuration.

Without a CUDA GPU the Triton kernels run under the Triton interpreter on CPU tensors, which must be
switched on before any kernel module is imported: hence the environment variable is set here, at
collection time, before the tests import hrnet_fast. Nothing here touches the GPU at import.
"""
import os
import random

import pytest

if os.environ.get("HRNET_FAST_TEST_NO_INTERPRET") != "1":
    try:
        import torch

        _has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        _has_gpu = False
    if not _has_gpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def poison_outputs(monkeypatch):
    """Every backend (C++, CUDA, Triton) fills its fresh outputs with NaN before its kernels run
    (``hrnet_fast._backends.POISON_ENV``), so an element a kernel fails to write fails the comparison. The op
    test files use it for every test: ``pytestmark = pytest.mark.usefixtures("poison_outputs")``."""
    from hrnet_fast import _backends

    monkeypatch.setenv(_backends.POISON_ENV, "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global random state: a test that draws unseeded inputs still gets
    the same ones on every run (tests should seed their own generators too)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
