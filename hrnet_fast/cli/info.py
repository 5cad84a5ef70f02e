"""``hrnet-fast info``: versions, devices, and which backends are built and available here (and why not)."""
from __future__ import annotations

import argparse

from ._common import versions

DESCRIPTION = "Print versions, devices, and which backends are built and available here (and why not)."
validate = None  # no arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``info`` takes no options."""


def run(args) -> int:
    """Print the versions, CPU and GPUs, and the backends table of :func:`hrnet_fast.backends`."""
    import torch

    from .. import backends
    from .._timing import cpu_name

    v = versions()
    print(f"hrnet_fast {v['hrnet_fast']}  torch {v['torch']} (CUDA {v['torch_cuda']})  triton {v['triton']}  python {v['python']}")
    print(f"CPU: {cpu_name()}, {v['threads']} torch threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")
    else:
        print("GPU: none visible to torch")
    print("backends:")
    for name, st in backends().items():
        print(f"  {name:7s} {'yes' if st['available'] else 'no ':3s}  {st['reason']}")
    return 0
