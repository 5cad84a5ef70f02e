"""What the test files share: the data folder, and the markers for tests that need the compiled extension
or the Triton interpreter.

With ``CI=true`` (or ``HRNET_FAST_REQUIRE_EXTENSION=1``) a missing or broken ``hrnet_fast._C`` is a failure,
not a skip: ``needs_ext`` then does not skip, the tests run and fail on the missing ops, and
``tests/test_backends.py::test_extension_loads_where_required`` names the import error.
"""
import os

import pytest
import torch

from hrnet_fast import _backends

DATA = os.path.join(os.path.dirname(__file__), "data")

EXTENSION_REQUIRED = os.environ.get("CI") == "true" or os.environ.get("HRNET_FAST_REQUIRE_EXTENSION") == "1"
HAS_EXT = _backends.extension() is not None
needs_ext = pytest.mark.skipif(
    not HAS_EXT and not EXTENSION_REQUIRED, reason=f"extension not built: {_backends.extension_error()}"
)
HAS_INTERP = (not torch.cuda.is_available() and _backends.triton_interpreter()
              and _backends._triton_import_error() is None)
needs_interp = pytest.mark.skipif(not HAS_INTERP, reason="CPU Triton tests need the interpreter (TRITON_INTERPRET=1, no GPU)")
