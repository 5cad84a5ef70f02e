"""Test configuration.

Without a CUDA GPU the Triton kernels run under the Triton interpreter on CPU tensors, which must be
switched on before any kernel module is imported: hence the environment variable is set here, at
collection time, before the tests import hrnet_fast. Nothing here touches the GPU at import.
"""
import os

import pytest

if os.environ.get("HRNET_FAST_TEST_NO_INTERPRET") != "1":
    try:
        import torch

        _has_gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        _has_gpu = False
    if not _has_gpu:
        os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def data_dir():
    return DATA


def devices():
    """Devices to parametrize over: always CPU, plus CUDA when present (as a gpu-marked param)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
